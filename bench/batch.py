"""`toolmarks batch` on the local pool: throughput for N copies of the demo image
against the sum of the same scans one after another.

    python bench/batch.py [--images 20] [--workers 2] [--image test_data/demo/demo.E01]

Prints, for the same N images (symlinks in a temporary folder):
- serial: each image scanned in turn, in this process (scan_one, one worker),
  the sum of single scans without interpreter start-up;
- pool: scan_images with --workers W (images in parallel, one worker each),
  the batch's default split;
- inner: one image at a time, W workers inside each scan, the other split;
- the case view (case.json, case.html, case.jsonl) on its own;
- celery: the same images sent to W `toolmarks worker` processes (concurrency
  1 each, already running) through a redis-server started for the bench,
  with the overhead against `pool` in % (goal: under 10 %).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from toolmarks.engine import batch, distributed
from toolmarks.indicators import loader
from toolmarks.output.case import write_case

ROOT = Path(__file__).resolve().parents[1]


def celery_batch(
    images: list[str], root: Path, workers: int, options: batch.BatchOptions
) -> float:
    """Seconds for the batch through redis-server and `workers` running
    workers (started, and stopped, here; their start-up is not counted)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    started = [
        subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]
    try:
        logs = []
        time.sleep(0.3)
        for number in range(workers):
            log = root / f".worker{number}.log"
            logs.append(log)
            with open(log, "wb") as out:
                started.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "toolmarks", "worker", "--broker", url]
                        + ["--evidence-root", str(root), "--name", f"bench{number}@%h"],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        while not all(b" ready." in log.read_bytes() for log in logs):
            time.sleep(0.1)
        indicator_set = loader.load([], shipped=True)
        began = time.perf_counter()
        results = distributed.scan_images_on_broker(
            images,
            root / "celery",
            indicator_set,
            options,
            broker=url,
            evidence_root=root,
            poll=0.1,
        )
        seconds = time.perf_counter() - began
        assert all(r.status == "ok" and not r.skipped for r in results), results
        return seconds
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


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
        celery = None
        if shutil.which("redis-server"):
            celery = celery_batch(images, Path(tmp), args.workers, options)
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
    if celery is None:
        print(" celery: not measured (no redis-server)")
    else:
        print(
            f"{'celery':>7}: {celery:7.2f} s  {args.images / celery:6.2f} images/s  "
            f"{total / celery:7.1f} MiB/s  overhead {100 * (celery / pool - 1):+.1f} "
            f"% of pool ({args.workers} workers)"
        )
    print(f"   case view: {view:.2f} s")


if __name__ == "__main__":
    main()
