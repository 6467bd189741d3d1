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


# Written each in a forked process while this one writes the rest: with 4,144
# events they were 0.8 and 0.6 s of the 1.8 s the outputs took.
SLOW = ("timeline.plaso", "report.html")


def write_all(outcome: ScanOutcome, outdir: Path) -> list[Path]:
    """Writes every output into outdir (created if needed); returns their paths.

    Raises:
      OutputError: an output could not be written (the others are).
    """
    outdir.mkdir(parents=True, exist_ok=True)
    children = {name: _fork(_write, outcome, outdir, name) for name in SLOW}
    failures = []
    for name in WRITERS:
        if children.get(name) is None:
            try:
                _write(outcome, outdir, name)
            except Exception as error:  # noqa: BLE001 - said below, with the others
                failures.append(f"{name}: {type(error).__name__}: {error}")
    for name, child in children.items():
        if child is not None:
            problem = _wait(*child)
            if problem:
                failures.append(f"{name}: {problem}")
    if failures:
        raise OutputError("; ".join(failures))
    return [outdir / name for name in WRITERS]


class OutputError(Exception):
    """Outputs that could not be written; str() names each and why."""


def _write(outcome: ScanOutcome, outdir: Path, name: str) -> None:
    final = outdir / name
    partial = outdir / f".{name}.partial"
    partial.unlink(missing_ok=True)
    try:
        WRITERS[name](outcome, partial)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)


def _fork(function: Callable[..., None], *args: object) -> tuple[int, int] | None:
    """(pid, read end of its error pipe) of a child running function(*args);
    None where there is no fork: the caller runs it itself."""
    if not hasattr(os, "fork"):
        return None
    read, write = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read)
        os.close(write)
        return None
    if pid:
        os.close(write)
        return pid, read
    # The child: no return to the caller's code, whatever happens.
    status = 1
    try:
        os.close(read)
        try:
            function(*args)
            status = 0
        except BaseException as error:  # noqa: BLE001 - handed to the parent
            os.write(write, f"{type(error).__name__}: {error}".encode()[:4000])
    finally:
        os._exit(status)


def _wait(pid: int, read: int) -> str | None:
    """The child's error, None if it wrote its output."""
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return None
    return message or f"writer process ended with status {status}"
