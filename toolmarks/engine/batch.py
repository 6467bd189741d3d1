"""Many images, one case: each image scanned into its own folder of the case
folder by a local process pool (no broker, no service), images already
scanned with the same toolmarks version, indicator set and options skipped.

`scan_one` is the unit of work, a plain function of (image, folder, indicator
set, options) returning a JSON-able CaseImage, so another runner (a Celery
task) can call it as it is. The case view is toolmarks.output.case's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from toolmarks import __version__
from toolmarks.engine.run import run_scan
from toolmarks.engine.scan import RunUnits, ScanOptions
from toolmarks.evidence import EvidenceError
from toolmarks.indicators.model import IndicatorSet
from toolmarks.output.case import CASE_FILES, CaseImage
from toolmarks.output.writers import WRITERS, OutputError, write_all

# Written into an image's folder after all its outputs: its presence says the
# outputs are complete, its content with which settings they were made.
MARKER = "batch.json"
MARKER_SCHEMA = "toolmarks-batch-image/1"
# Options that change no output: not compared when deciding to skip an image.
_NOT_COMPARED = ("workers",)
_EWF_FIRST = re.compile(r"(?i)\.(e|ex|s|l|lx)01$")
_SPLIT_RAW_FIRST = re.compile(r"(?i)\.(000|001|aa|aaa)$")


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """How each image is scanned: the scan's options and the E01 check."""

    scan: ScanOptions = dataclasses.field(default_factory=ScanOptions)
    verify: bool = True
    verify_md5: bool = False

    def compared(self) -> dict[str, Any]:
        """The options whose change makes an image's outputs out of date."""
        scan = dataclasses.asdict(self.scan)
        for name in _NOT_COMPARED:
            scan.pop(name, None)
        return {"scan": scan, "verify": self.verify, "verify_md5": self.verify_md5}


def folder_names(images: Sequence[str]) -> dict[str, str]:
    """Each image's folder name under the case folder: its file name, unless
    another image of the batch has the same name (compared case-insensitively,
    as on the examiner's Windows share) or it is one of the case files; then
    the name and the start of the SHA-256 of its absolute path. The same images
    give the same names, whatever their order."""
    names = {image: Path(image).name or "image" for image in images}
    taken: dict[str, set[str]] = {}
    for image, name in names.items():
        taken.setdefault(name.casefold(), set()).add(os.path.abspath(image))
    reserved = {name.casefold() for name in CASE_FILES} | {".", ".."}
    result = {}
    for image, name in names.items():
        key = name.casefold()
        if len(taken[key]) > 1 or key in reserved or key.startswith("."):
            digest = hashlib.sha256(os.path.abspath(image).encode()).hexdigest()
            name = f"{name.lstrip('.') or 'image'}-{digest[:12]}"
        result[image] = name
    return result


def image_files(image: str) -> list[str]:
    """The files an image is made of: every segment of a split E01 or split raw
    image, else the file itself (a VMDK's extent files are not followed)."""
    try:
        if _EWF_FIRST.search(image):
            import pyewf

            return sorted(pyewf.glob(image))
        if _SPLIT_RAW_FIRST.search(image):
            import pysmraw

            return sorted(pysmraw.glob(image))
    except Exception:  # noqa: BLE001 - pyewf raises MemoryError for a missing file
        return [image]  # the scan says what is wrong with it
    return [image]


def fingerprint(image: str) -> list[dict[str, Any]]:
    """Size and modification time of each file of the image; raises OSError."""
    out = []
    for name in image_files(image):
        status = os.stat(name)
        out.append(
            {
                "file": os.path.abspath(name),
                "size": status.st_size,
                "mtime_ns": status.st_mtime_ns,
            }
        )
    return out


def marker(
    image: str, indicator_set: IndicatorSet, options: BatchOptions
) -> dict[str, Any]:
    """What an image folder's marker must say for its outputs to be reused;
    raises OSError when the image cannot be looked at."""
    return {
        "schema": MARKER_SCHEMA,
        "toolmarks_version": __version__,
        "indicator_set_version": indicator_set.version,
        "options": options.compared(),
        "image": os.path.abspath(image),
        "files": fingerprint(image),
    }


def is_current(folder: Path, wanted: dict[str, Any]) -> bool:
    """True if the folder holds every output, made with these settings from
    the image as it is now."""
    try:
        found = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return found == wanted and all((folder / name).is_file() for name in WRITERS)


def _write_marker(folder: Path, data: dict[str, Any]) -> None:
    partial = folder / f".{MARKER}.partial"
    try:
        partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, folder / MARKER)
    finally:
        partial.unlink(missing_ok=True)


def scan_one(
    image: str,
    folder: str,
    indicator_set: IndicatorSet,
    options: BatchOptions,
    *,
    rescan: bool = False,
    command_line: str = "",
    run_units: RunUnits | None = None,
    failures: tuple[type[Exception], ...] = (),
    fatal: tuple[type[Exception], ...] = (),
) -> CaseImage:
    """Scans one image into `folder` (every output, then the marker), or skips
    it when the folder is current; never raises for a bad image: the result
    says why it failed. `run_units` runs the scan's units elsewhere (run_scan's);
    its errors of `failures` fail the image, of `fatal` end the batch."""
    name = Path(folder).name
    outdir = Path(folder)
    try:
        wanted: dict[str, Any] | None = marker(image, indicator_set, options)
    except OSError:
        wanted = None  # missing or unreadable: run_scan gives the message
    if wanted is not None and not rescan and is_current(outdir, wanted):
        return CaseImage(name, image, "ok", skipped=True)
    try:
        # Gone before the outputs change: a killed rescan leaves no marker
        # vouching for a mix of old and new outputs.
        if outdir.is_dir():
            (outdir / MARKER).unlink(missing_ok=True)
        outcome = run_scan(
            image,
            indicator_set,
            options.scan,
            verify=options.verify,
            verify_md5=options.verify_md5,
            command_line=command_line,
            run_units=run_units,
        )
        write_all(outcome, outdir)
        if wanted is not None:
            _write_marker(outdir, wanted)
    except (EvidenceError, OutputError, *failures) as error:
        return CaseImage(name, image, "failed", error=str(error))
    except fatal:
        raise
    except Exception as error:  # noqa: BLE001 - one image's failure, not the batch's
        message = f"internal error: {type(error).__name__}: {error}"
        return CaseImage(name, image, "failed", error=message)
    return CaseImage(
        name, image, "ok", seconds=outcome.seconds, warnings=len(outcome.warnings)
    )


def split_workers(workers: int, images: int) -> tuple[int, int]:
    """(images scanned at once, worker processes inside each scan): images in
    parallel first, since one image's scan has serial parts (opening, the
    metadata walk, merging) that leave cores idle; cores left over when there
    are fewer images than workers go to the scans themselves."""
    workers = max(1, workers)
    at_once = max(1, min(workers, images))
    return at_once, max(1, workers // at_once)


def scan_images(
    images: Sequence[str],
    case_dir: Path,
    indicator_set: IndicatorSet,
    options: BatchOptions,
    *,
    workers: int = 1,
    rescan: bool = False,
    command_line: str = "",
    done: Callable[[CaseImage], None] | None = None,
) -> list[CaseImage]:
    """Scans every image (duplicates once) into its folder of case_dir with a
    local process pool; `done` hears each result as it comes. A worker process
    that dies fails the images it had, not the batch."""
    unique = list(dict.fromkeys(images))
    names = folder_names(unique)
    at_once, inner = split_workers(workers, len(unique))
    each = dataclasses.replace(
        options, scan=dataclasses.replace(options.scan, workers=inner)
    )
    case_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, CaseImage] = {}

    def finish(image: str, result: CaseImage) -> None:
        results[image] = result
        if done:
            done(result)

    pool = ProcessPoolExecutor(max_workers=at_once)
    try:
        futures: dict[Future, str] = {
            pool.submit(
                scan_one,
                image,
                str(case_dir / names[image]),
                indicator_set,
                each,
                rescan=rescan,
                command_line=command_line,
            ): image
            for image in unique
        }
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=lambda f: futures[f]):
                image = futures[future]
                try:
                    result = future.result()
                except BrokenProcessPool:
                    result = CaseImage(
                        names[image],
                        image,
                        "failed",
                        error="the worker process scanning it died (killed, or "
                        "out of memory); rerun the batch to retry it",
                    )
                except Exception as error:  # noqa: BLE001 - e.g. a result not unpickled
                    message = f"internal error: {type(error).__name__}: {error}"
                    result = CaseImage(names[image], image, "failed", error=message)
                finish(image, result)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [results[image] for image in unique]
