"""`toolmarks scan IMAGE -o OUTDIR`: the main job."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import shlex
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolmarks import __version__
from toolmarks.cli.common import UsageError, add_indicator_options, load_set
from toolmarks.engine.scan import (
    ScanOptions,
    UnitResult,
    count_totals,
    default_workers,
    scan_image,
)
from toolmarks.evidence import Evidence, EvidenceError
from toolmarks.output import report, timeline
from toolmarks.output.text import printable
from toolmarks.parsers import manager

if TYPE_CHECKING:
    from toolmarks.evidence.verify import Verification

# Damaged streams named in the warning itself; scan.json lists them all.
DAMAGED_NAMED = 10


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
            try:
                self.set_totals(*count_totals(image, options))
            except Exception:
                logging.getLogger(__name__).debug("no totals", exc_info=True)

        threading.Thread(target=count, daemon=True).start()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str), file=sys.stderr)


def _media_size(evidence: Evidence) -> int | None:
    size = evidence.image_info.get("size") or evidence.image_info.get("media_size")
    return int(size) if size else None


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    started_at = datetime.datetime.now(datetime.UTC)
    indicator_set = load_set(args)
    outdir = Path(args.output)
    image = Path(args.image)
    if outdir.exists() and any(outdir.iterdir()) and not args.force:
        raise UsageError(f"{outdir}: exists and is not empty (use --force to reuse)")
    if (
        image.resolve() == outdir.resolve()
        or outdir.resolve() in image.resolve().parents
    ):
        raise UsageError(f"{outdir}: the output must not be inside the evidence")
    options = ScanOptions(
        partitions=args.partitions,
        vss=args.vss,
        max_file_size=args.max_file_size,
        workers=args.workers or default_workers(),
        artefacts=not args.no_artefacts,
        scan_metadata=args.scan_metadata,
        unallocated=args.unallocated,
    )
    warnings: list[dict[str, str]] = []

    def warn(location: str, message: str) -> None:
        warnings.append({"location": location, "message": message})
        if args.json_log:
            log("warning", location=location, message=message)
        else:
            print(
                f"toolmarks: warning: {printable(location)}: {printable(message)}",
                file=sys.stderr,
            )

    try:
        evidence = Evidence(
            str(image), partitions=args.partitions, vss=args.vss, warn=warn
        )
    except EvidenceError as error:
        print(f"toolmarks: error: {printable(str(error))}", file=sys.stderr)
        return 2
    verifier = None
    if evidence.image_info.get("format") == "ewf" and not args.no_verify:
        from toolmarks.evidence.verify import EwfVerifier

        verifier = EwfVerifier(str(image))
    try:
        image_info = dict(evidence.image_info)
        mode = "json" if args.json_log else "bar" if sys.stderr.isatty() else "none"
        progress = Progress(mode)
        try:
            result, volumes = scan_image(
                str(image),
                indicator_set,
                options,
                progress,
                evidence=evidence,
                started=lambda: progress.start_totals(str(image), options),
            )
        finally:
            progress.close()
        if verifier is not None:
            image_info["verification"] = check_verification(
                verifier.result(), evidence, result, image_info, warn
            )
    finally:
        evidence.close()
    result.warnings = warnings + result.warnings
    for item in result.warnings[len(warnings) :] + result.unreadable:
        text = item.get("message") or item.get("problem")
        if args.json_log:
            log("warning", **item)
        else:
            print(
                f"toolmarks: warning: {printable(item['location'])}: "
                f"{printable(str(text))}",
                file=sys.stderr,
            )
    return write_outputs(
        args,
        outdir,
        image,
        indicator_set,
        result,
        volumes,
        image_info,
        started,
        started_at,
    )


def check_verification(
    verification: Verification,
    evidence: Evidence,
    result: UnitResult,
    image_info: dict[str, Any],
    warn: Callable[[str, str], None],
) -> dict[str, Any]:
    """The verification summary; a failed one is a warning naming the streams
    with data on the bad sectors, whose traces are marked `damaged`."""
    sector = int(image_info.get("bytes_per_sector") or 512)
    summary = verification.as_dict(sector)
    image = evidence.image_path
    if verification.ok is None:
        warn(image, f"EWF image not verified: {verification.problem}")
    if verification.ok is not False:
        return summary
    message = f"EWF verification failed: {verification.problem}"
    if verification.bad_sectors:
        ranges = ", ".join(f"sectors {a}-{b}" for a, b in verification.bad_sectors)
        try:
            damaged, notes = evidence.files_on(summary["bad_byte_ranges"])
        except Exception as error:  # noqa: BLE001 - the scan's results still count
            damaged, notes = [], [f"files not mapped to the damaged ranges: {error}"]
        summary["damaged_streams"] = damaged
        summary["damage_notes"] = notes
        names = ", ".join(item["location"] for item in damaged[:DAMAGED_NAMED])
        if len(damaged) > DAMAGED_NAMED:
            names += f" (+{len(damaged) - DAMAGED_NAMED} more in scan.json)"
        message += (
            f"; checksum errors in {ranges} (data read there is zeros or garbage: "
            "hits and misses in files on them are unreliable); "
            + (
                f"streams with data there: {names}"
                if damaged
                else "no file has data there"
            )
        )
        by_location = {item["location"]: item for item in damaged}
        for trace in result.traces:
            item = by_location.get(trace.source)
            if item is not None:
                trace.attributes["damaged"] = (
                    "bytes "
                    + ", ".join(f"{a}-{b}" for a, b in item["stream_ranges"])
                    + " lie on sectors that failed their EWF checksum"
                )
    warn(image, message)
    for note in summary.get("damage_notes", []):
        warn(image, note)
    return summary


def write_outputs(
    args,
    outdir: Path,
    image: Path,
    indicator_set,
    result: UnitResult,
    volumes,
    image_info,
    started: float,
    started_at,
) -> int:
    from toolmarks.output import plaso_storage

    outdir.mkdir(parents=True, exist_ok=True)
    tools = indicator_set.tools
    traces = sorted(result.traces, key=timeline.sort_key)
    command_line = shlex.join(["toolmarks", *sys.argv[1:]])
    plaso_path = outdir / "timeline.plaso"
    if plaso_path.exists():
        plaso_path.unlink()
    events = plaso_storage.write_plaso(
        str(plaso_path),
        traces,
        tools,
        source_path=str(image),
        command_line=command_line,
        toolmarks_version=__version__,
        indicator_set_version=indicator_set.version,
    )
    timeline.write_jsonl(str(outdir / "timeline.jsonl"), traces, tools)
    timeline.write_csv(str(outdir / "timeline.csv"), traces, tools)
    matched = {t.source for t in traces}
    by_tool: dict[str, set[str]] = {}
    for trace in traces:
        for match in trace.matches:
            by_tool.setdefault(match.tool, set()).add(trace.source)
    summary = {
        "toolmarks_version": __version__,
        "indicator_set": {
            "version": indicator_set.version,
            "tools": len(tools),
            "indicators": len(indicator_set.indicators()),
            "sources": indicator_set.sources,
        },
        "command_line": command_line,
        "started": started_at.isoformat(),
        "seconds": round(time.monotonic() - started, 3),
        "image": {"path": str(image), **image_info},
        "volumes": [
            {
                "label": v.label,
                "file_system": v.fs_type,
                "offset": v.offset,
                "size": v.size,
            }
            for v in volumes
        ],
        "counts": {
            "files": result.counts.get("files", 0),
            "directories": result.counts.get("directories", 0),
            "bytes": result.counts.get("bytes", 0),
            "unallocated_bytes": result.counts.get("unallocated_bytes", 0),
            "matched_locations": len(matched),
            "events": events,
            **{
                f"{parser.name}_files": result.counts.get(f"{parser.name}_files", 0)
                for parser in manager.file_parsers()
            },
            "warnings": len(result.warnings),
            "unreadable": len(result.unreadable),
            "skipped": len(result.skipped),
            "not_checked": len(result.not_checked),
            "metadata_files_not_content_scanned": result.counts.get(
                "metadata_files_not_content_scanned", 0
            ),
        },
        "matches_by_tool": {
            tool: len(sources) for tool, sources in sorted(by_tool.items())
        },
        "parser_seconds": {k: round(v, 3) for k, v in result.parser_seconds.items()},
        "warnings": _unique(result.warnings),
        "unreadable": result.unreadable,
        "skipped": result.skipped,
        "not_checked": result.not_checked,
        "outputs": [
            "timeline.plaso",
            "timeline.jsonl",
            "timeline.csv",
            "scan.json",
            "report.html",
        ],
    }
    (outdir / "scan.json").write_text(
        json.dumps(summary, indent=2, default=str, ensure_ascii=False) + "\n"
    )
    report.write_report(str(outdir / "report.html"), traces, indicator_set, summary)
    line = (
        f"toolmarks: {summary['counts']['files']} files, "
        f"{summary['counts']['bytes'] / 2**20:.1f} MiB in {summary['seconds']} s; "
        f"{len(matched)} locations matched, {events} events; "
        f"{len(result.warnings)} warnings, {len(result.unreadable)} unreadable "
        f"-> {outdir}"
    )
    if args.json_log:
        log("done", **summary["counts"], outdir=str(outdir))
    else:
        print(line, file=sys.stderr)
    return 0


def _unique(items: list[dict[str, str]]) -> list[dict[str, str]]:
    seen, out = set(), []
    for item in items:
        key = tuple(sorted(item.items()))
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _size(text: str) -> int:
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    text = text.strip().lower().rstrip("ib")
    factor = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    try:
        return int(float(number) * factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "scan",
        help="scan a disk image into a tagged timeline",
        description="Scans every file of an image (raw, split raw, E01, VMDK, VHD, "
        "QCOW2) for the indicator set and writes timeline.plaso, timeline.jsonl, "
        "timeline.csv and scan.json to OUTDIR. The image is opened read-only.",
    )
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    parser.add_argument(
        "--partitions",
        default="all",
        help="'all' or partition numbers, e.g. 1,3 (default all)",
    )
    parser.add_argument(
        "--vss",
        default="none",
        help="Volume Shadow Copy stores: all, none or e.g. 1,2 (default none)",
    )
    parser.add_argument(
        "--max-file-size",
        type=_size,
        metavar="SIZE",
        help="skip content of larger files (counted and listed "
        "in scan.json); default: no cap",
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="processes (default: one per core)"
    )
    parser.add_argument(
        "--no-artefacts",
        action="store_true",
        help="do not run the artefact parsers (registry hives, prefetch files, "
        "event logs)",
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
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="do not check an E01's chunk checksums and stored MD5 (ewfverify, "
        "run beside the scan)",
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
