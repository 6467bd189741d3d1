"""One scan of one image, from opening it to its outcome: the evidence opened
read-only, every volume scanned, an E01's chunks verified as the scan decodes
them (and its stored MD5 by ewfverify beside the scan, when asked) and the
traces on sectors that failed verification marked."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import time
from collections.abc import Callable
from typing import Any

from toolmarks import __version__
from toolmarks.engine.scan import (
    RunUnits,
    ScanOptions,
    UnitResult,
    WorkerPool,
    scan_image,
)
from toolmarks.evidence import Evidence
from toolmarks.evidence.verify import EwfVerifier, Verification, check_chunks
from toolmarks.indicators.model import IndicatorSet
from toolmarks.outcome import Note, ScanOutcome
from toolmarks.output.timeline import sort_key

# Damaged streams named in the warning itself; scan.json lists them all.
DAMAGED_NAMED = 10

Warn = Callable[[str, str], None]


def run_scan(
    image: str,
    indicator_set: IndicatorSet,
    options: ScanOptions,
    *,
    verify: bool = True,
    verify_md5: bool = False,
    command_line: str = "",
    warn: Warn | None = None,
    progress: Callable[[int, int], None] | None = None,
    started: Callable[[], None] | None = None,
    run_units: RunUnits | None = None,
    checking: Callable[[int], None] | None = None,
) -> ScanOutcome:
    """Scans the image; raises EvidenceError if it cannot be opened at all.

    `verify`: check every chunk's checksum of an E01; `verify_md5`: compare
    its stored MD5 too (ewfverify, a second decode). `warn` hears every
    warning as it happens (the outcome keeps them all); `progress`, `started`
    and `run_units` are scan_image's; `checking` hears the bytes of an E01's
    chunks no read of the scan decoded, before they are decoded to check them.
    """
    began = time.monotonic()
    began_at = datetime.datetime.now(datetime.UTC)
    early: list[Note] = []

    def note(location: str, message: str) -> None:
        early.append(Note(location, message))
        if warn:
            warn(location, message)

    with contextlib.ExitStack() as stack:
        if run_units is None and options.workers > 1:
            # Started first: the workers open the image while this process does.
            pool = stack.enter_context(WorkerPool(image, indicator_set, options))
        else:
            pool = None
        evidence = Evidence(
            image, partitions=options.partitions, vss=options.vss, warn=note
        )
        stack.callback(evidence.close)
        verify = verify and evidence.image_info.get("format") == "ewf"
        log = evidence.chunk_log
        verifier = None
        if verify and (verify_md5 or log is None):
            verifier = EwfVerifier(image)
        image_info = dict(evidence.image_info)
        result, volumes = scan_image(
            image,
            indicator_set,
            options,
            progress,
            evidence=evidence,
            started=started,
            run_units=run_units,
            pool=pool,
        )
        for item in result.warnings:
            if warn:
                warn(item["location"], item["message"])
        for item in result.unreadable:
            if warn:
                warn(item["location"], item["problem"])
        if verify:
            if verifier is not None:
                verification = verifier.result()
            else:
                result.note_chunks(evidence)  # what this process decoded
                verification = check_chunks(
                    *log.geometry,
                    result.chunks_read,
                    result.bad_sectors,
                    image_info.get("md5"),
                    pool.decode_chunks if pool is not None else log.decode,
                    announce=checking,
                )
            image_info["verification"] = check_verification(
                verification, evidence, result, image_info, note
            )
    return ScanOutcome(
        image=image,
        image_info=image_info,
        volumes=volumes,
        traces=sorted(result.traces, key=sort_key),
        indicator_set=indicator_set,
        options=dataclasses.asdict(options),
        counts=dict(result.counts),
        parser_seconds=dict(result.parser_seconds),
        warnings=_unique(
            early + [Note(i["location"], i["message"]) for i in result.warnings]
        ),
        unreadable=[Note(i["location"], i["problem"]) for i in result.unreadable],
        skipped=[Note(i["location"], i["reason"]) for i in result.skipped],
        not_checked=[Note(i["location"], i["reason"]) for i in result.not_checked],
        command_line=command_line,
        toolmarks_version=__version__,
        started=began_at,
        seconds=round(time.monotonic() - began, 3),
    )


def check_verification(
    verification: Verification,
    evidence: Evidence,
    result: UnitResult,
    image_info: dict[str, Any],
    warn: Warn,
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


def _unique(notes: list[Note]) -> list[Note]:
    return list(dict.fromkeys(notes))
