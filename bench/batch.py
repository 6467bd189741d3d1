"""`toolmarks batch` on the local pool: throughput for N copies of the demo image
against the sum of the same scans one after another.

    python bench/batch.py [--images 20] [--workers 2] [--image test_data/demo/demo.E01]

Prints, for the same N images (symlinks in a temporary folder):
- serial: each image scanned in turn, in this process (scan_one, one worker),
  the sum of single scans without interpreter start-up;
- pool: scan_images with --workers W (images in parallel, one worker each),
  the batch's default split;
- inner: one image at a time, W workers inside each scan, the other split;
- the case view (case.json, case.html, case.jsonl) on its own.
The later Celery path compares against the `pool` line.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from toolmarks.engine import batch
from toolmarks.indicators import loader
from toolmarks.output.case import write_case

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--image", default=str(ROOT / "test_data/demo/demo.E01"))
    parser.add_argument(
        "--no-verify", action="store_true", help="no ewfverify beside each E01 scan"
    )
    args = parser.parse_args()
    indicator_set = loader.load([], shipped=True)
    options = batch.BatchOptions(verify=not args.no_verify)
    source = Path(args.image).resolve()
    size = source.stat().st_size
    with tempfile.TemporaryDirectory(prefix="toolmarks-bench-batch-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        images = []
        for number in range(args.images):
            link = folder / f"host{number:03d}{source.suffix}"
            link.symlink_to(source)
            images.append(str(link))

        began = time.perf_counter()
        serial_dir = Path(tmp) / "serial"
        names = batch.folder_names(images)
        for image in images:
            result = batch.scan_one(
                image, str(serial_dir / names[image]), indicator_set, options
            )
            assert result.status == "ok", result.error
        serial = time.perf_counter() - began

        def timed(case_dir: Path, workers: int, at_once: int | None) -> float:
            saved = batch.split_workers
            if at_once is not None:
                batch.split_workers = lambda w, n: (at_once, max(1, w // at_once))
            try:
                began = time.perf_counter()
                results = batch.scan_images(
                    images, case_dir, indicator_set, options, workers=workers
                )
                assert all(r.status == "ok" for r in results)
                return time.perf_counter() - began
            finally:
                batch.split_workers = saved

        pool = timed(Path(tmp) / "pool", args.workers, None)
        inner = timed(Path(tmp) / "inner", args.workers, 1)
        results = [
            batch.CaseImage(names[i], i, "ok") for i in images
        ]  # the pool's case folder, as the CLI hands it over
        began = time.perf_counter()
        write_case(Path(tmp) / "pool", results)
        view = time.perf_counter() - began

    total = size * args.images / 2**20
    print(
        f"{args.images} images of {size / 2**20:.1f} MiB ({source.name}), "
        f"{args.workers} workers, {os.cpu_count()} cores"
    )
    for label, seconds in (("serial", serial), ("pool", pool), ("inner", inner)):
        print(
            f"{label:>7}: {seconds:7.2f} s  {args.images / seconds:6.2f} images/s  "
            f"{total / seconds:7.1f} MiB/s  x{serial / seconds:.2f} of serial"
        )
    print(f"   case view: {view:.2f} s")


if __name__ == "__main__":
    main()
