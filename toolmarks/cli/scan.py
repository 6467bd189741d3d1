"""`toolmarks scan IMAGE -o OUTDIR`: the main job."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolmarks.cli.common import (
    UsageError,
    add_indicator_options,
    load_set,
    output_folder,
    positive_int,
    selection,
    size,
)
from toolmarks.output.text import printable

if TYPE_CHECKING:
    from toolmarks.engine.scan import ScanOptions


class Progress:
    """Files and bytes done, throughput and ETA on a terminal; JSON lines with
    --json-log; nothing otherwise. The totals arrive from a metadata walk run
    beside the scan, so the ETA appears once that walk is done."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.files = self.bytes = 0
        self.total_files: int | None = None
        self.total_bytes: int | None = None
        self.started = time.monotonic()
        self._last = 0.0
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm

            # No monitor thread: the scan forks its workers after the bar exists.
            tqdm.monitor_interval = 0
            self._bar = tqdm(
                total=None,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                dynamic_ncols=True,
                desc="scan",
            )

    def set_totals(self, files: int, size: int) -> None:
        self.total_files, self.total_bytes = files, size
        if self._bar is not None:
            self._bar.total = size
            self._bar.refresh()

    def __call__(self, files: int, size: int) -> None:
        self.files += files
        self.bytes += size
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(size)
            if now - self._last > 0.2:
                done = f"{self.files}/{self.total_files or '?'}"
                self._bar.set_postfix(entries=done, refresh=False)
                self._last = now
        elif self.mode == "json" and now - self._last > 1.0:
            self._last = now
            seconds = now - self.started
            eta = None
            if self.total_bytes and self.bytes:
                eta = round(seconds * (self.total_bytes - self.bytes) / self.bytes, 1)
            log(
                "progress",
                entries=self.files,
                total_entries=self.total_files,
                bytes=self.bytes,
                total_bytes=self.total_bytes,
                mib_per_s=round(self.bytes / 2**20 / max(seconds, 1e-6), 1),
                seconds=round(seconds, 1),
                eta_seconds=eta,
            )

    def start_totals(self, image: str, options: ScanOptions) -> None:
        if self.mode == "none":
            return

        def count() -> None:
            from toolmarks.engine.scan import count_totals

            try:
                self.set_totals(*count_totals(image, options))
            except Exception:
                logging.getLogger(__name__).debug("no totals", exc_info=True)

        threading.Thread(target=count, daemon=True).start()

    def checking(self, size: int) -> None:
        """The scan is done; the E01 chunks it did not read are decoded now."""
        self.close()
        self._bar = None
        message = "checking the E01 chunks the scan did not read"
        if self.mode == "json":
            log("checking", message=message, bytes=size)
        elif self.mode == "bar":
            print(f"toolmarks: {message} ({size / 2**20:.0f} MiB)", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str), file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    # Imported here: the engine loads every parser and matcher, which
    # `toolmarks --help` and the other commands need not pay for.
    from toolmarks.engine.run import run_scan
    from toolmarks.engine.scan import ScanOptions, default_workers
    from toolmarks.evidence import EvidenceError
    from toolmarks.output.findings import findings, summary_lines
    from toolmarks.output.writers import OutputError, write_all

    indicator_set = load_set(args)
    outdir: Path = args.output
    image = Path(args.image)
    if outdir.exists() and any(outdir.iterdir()) and not args.force:
        raise UsageError(f"{outdir}: exists and is not empty (use --force to reuse)")
    if (
        image.resolve() == outdir.resolve()
        or outdir.resolve() in image.resolve().parents
    ):
        raise UsageError(f"{outdir}: the output must not be inside the evidence")
    made = not outdir.exists()
    try:
        # Made now, not after a scan of hours: a folder that cannot be made
        # (read-only file system, no space for an entry) is a usage error.
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{outdir}: cannot make the output folder: {error.strerror}")
    options = ScanOptions(
        partitions=args.partitions,
        vss=args.vss,
        max_file_size=args.max_file_size,
        workers=args.workers or default_workers(str(image)),
        artefacts=not args.no_artefacts,
        leads=not args.no_leads,
        scan_metadata=args.scan_metadata,
        unallocated=args.unallocated,
    )

    told: set[tuple[str, str]] = set()

    def warn(location: str, message: str) -> None:
        # Each worker opens the evidence again and repeats its opening warnings.
        if (location, message) in told:
            return
        told.add((location, message))
        if args.json_log:
            log("warning", location=location, message=message)
        else:
            print(
                f"toolmarks: warning: {printable(location)}: {printable(message)}",
                file=sys.stderr,
            )

    mode = "json" if args.json_log else "bar" if sys.stderr.isatty() else "none"
    progress = Progress(mode)
    try:
        outcome = run_scan(
            str(image),
            indicator_set,
            options,
            verify=not args.no_verify,
            verify_md5=args.verify_md5,
            command_line=shlex.join(["toolmarks", *sys.argv[1:]]),
            warn=warn,
            progress=progress,
            started=lambda: progress.start_totals(str(image), options),
            checking=progress.checking,
        )
    except EvidenceError as error:
        if made:
            with contextlib.suppress(OSError):  # only if still empty
                outdir.rmdir()
        print(f"toolmarks: error: {printable(str(error))}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    try:
        write_all(outcome, outdir)
    except OutputError as error:
        print(
            f"toolmarks: error: not written: {printable(str(error))}", file=sys.stderr
        )
        return 1
    counts = outcome.counts
    matched = len({t.source for t in outcome.traces})
    if args.json_log:
        log(
            "done",
            files=counts.get("files", 0),
            bytes=counts.get("bytes", 0),
            matched_locations=matched,
            events=len(outcome.traces),
            **{name: len(notes) for name, notes in outcome.problems.items()},
            outdir=str(outdir),
        )
    else:
        print(
            f"toolmarks: {counts.get('files', 0)} files, "
            f"{counts.get('bytes', 0) / 2**20:.1f} MiB in {outcome.seconds} s; "
            f"{matched} locations matched, {len(outcome.traces)} events; "
            f"{len(outcome.warnings)} warnings, {len(outcome.unreadable)} unreadable "
            f"-> {outdir}",
            file=sys.stderr,
        )
        for line in summary_lines(findings(outcome.traces, indicator_set.tools)):
            print(f"toolmarks: {printable(line)}", file=sys.stderr)
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "scan",
        help="scan a disk image into a tagged timeline",
        description="Scans every file of an image (raw, split raw, E01, VMDK, VHD, "
        "QCOW2) for the indicator set and writes timeline.plaso, timeline.jsonl, "
        "timeline.csv and scan.json to OUTDIR. The image is opened read-only.",
    )
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument(
        "-o", "--output", required=True, type=output_folder, metavar="OUTDIR"
    )
    parser.add_argument(
        "--partitions",
        default="all",
        type=selection("partition", "p"),
        help="'all' or partition numbers, e.g. 1,3 (default all)",
    )
    parser.add_argument(
        "--vss",
        default="none",
        type=selection("VSS store", "vss"),
        help="Volume Shadow Copy stores to scan besides the current volumes: "
        "all, none or e.g. 1,2 (default none); a store that does not exist is "
        "a warning",
    )
    parser.add_argument(
        "--max-file-size",
        type=size,
        metavar="SIZE",
        help="skip content of larger files (counted and listed "
        "in scan.json); default: no cap",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        help="processes (default: one per core, at most 8; one for an image file "
        "under 64 MiB)",
    )
    parser.add_argument(
        "--no-artefacts",
        action="store_true",
        help="do not run the artefact parsers (registry hives, prefetch files, "
        "event logs)",
    )
    parser.add_argument(
        "--no-leads",
        action="store_true",
        help="do not raise leads (lead_odd_name, lead_unknown_build, "
        "lead_missing_program: heuristics apart from indicator hits)",
    )
    parser.add_argument(
        "--scan-metadata",
        action="store_true",
        help="also match the content of NTFS metadata files ($MFT, "
        "$LogFile, $Extend\\…), which echo every file name",
    )
    parser.add_argument(
        "--unallocated",
        action="store_true",
        help="also match the strings in the unallocated clusters of NTFS "
        "volumes (data of deleted files whose entries are gone); hits are "
        "toolmarks:unallocated:match events",
    )
    verification = parser.add_mutually_exclusive_group()
    verification.add_argument(
        "--no-verify",
        action="store_true",
        help="do not check the checksums of an E01's chunks (checked by default "
        "as the scan decodes them, each chunk once)",
    )
    verification.add_argument(
        "--verify-md5",
        action="store_true",
        help="also compare an E01's stored MD5 with one computed over its media "
        "(ewfverify, run beside the scan: every chunk decoded a second time)",
    )
    parser.add_argument(
        "--json-log",
        action="store_true",
        help="progress and warnings as JSON lines on stderr",
    )
    parser.add_argument(
        "--force", action="store_true", help="write into a non-empty OUTDIR"
    )
    add_indicator_options(parser)
    parser.set_defaults(run=run)
