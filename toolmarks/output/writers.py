"""Every output of a scan, in the order they are written: one function each,
taking the scan's outcome and the file to write. A new output format is one
module and one line in WRITERS.

Each output is written to a temporary name beside its final one and renamed
when complete, so a failed or killed run never leaves a half-written output.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from toolmarks.outcome import ScanOutcome
from toolmarks.output import findings, plaso_storage, report, summary, timeline

Writer = Callable[[ScanOutcome, Path], None]


def _plaso(outcome: ScanOutcome, path: Path) -> None:
    plaso_storage.write_plaso(
        str(path),
        outcome.traces,
        outcome.indicator_set.tools,
        source_path=outcome.image,
        command_line=outcome.command_line,
        toolmarks_version=outcome.toolmarks_version,
        indicator_set_version=outcome.indicator_set.version,
    )


def _jsonl(outcome: ScanOutcome, path: Path) -> None:
    timeline.write_jsonl(str(path), outcome.traces, outcome.indicator_set.tools)


def _csv(outcome: ScanOutcome, path: Path) -> None:
    timeline.write_csv(str(path), outcome.traces, outcome.indicator_set.tools)


def _scan_json(outcome: ScanOutcome, path: Path) -> None:
    summary.write_scan_json(outcome, path, list(WRITERS))


def _findings(outcome: ScanOutcome, path: Path) -> None:
    findings.write_findings(
        path,
        findings.findings(outcome.traces, outcome.indicator_set.tools),
        outcome.image,
        outcome.indicator_set.version,
    )


def _report(outcome: ScanOutcome, path: Path) -> None:
    report.write_report(
        str(path),
        outcome.traces,
        outcome.indicator_set,
        summary.scan_summary(outcome, list(WRITERS)),
    )


WRITERS: dict[str, Writer] = {
    "timeline.plaso": _plaso,
    "timeline.jsonl": _jsonl,
    "timeline.csv": _csv,
    "scan.json": _scan_json,
    "findings.json": _findings,
    "report.html": _report,
}


def write_all(outcome: ScanOutcome, outdir: Path) -> list[Path]:
    """Writes every output into outdir (created if needed); returns their paths."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, writer in WRITERS.items():
        final = outdir / name
        partial = outdir / f".{name}.partial"
        partial.unlink(missing_ok=True)
        try:
            writer(outcome, partial)
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        written.append(final)
    return written
