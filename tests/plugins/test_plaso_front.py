"""`toolmarks log2timeline` and `toolmarks psort`: real plaso runs on the traces
scenario, compared with `toolmarks scan` of the same image."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import pytest
from plaso_support import read_store, run, script, toolmarks

from toolmarks.engine.scan import ScanOptions, scan_image
from toolmarks.indicators import loader
from toolmarks.output.plaso_storage import event_of
from toolmarks.parsers import manager

ARTEFACT_TYPES = {d.data_type for d in manager.file_parsers()}
# Task times are local times without a zone: plaso converts them with the
# time zone its preprocessing reads from the image's SYSTEM hive (MANIFEST:
# Pacific Standard Time, UTC-8 in February); the scan keeps them as written.
LOCAL_TIME_TYPES = {"toolmarks:task:trace"}
PST = 8 * 3600 * 1_000_000


@pytest.fixture(scope="module")
def scan_traces(traces_images) -> list[Any]:
    result, _ = scan_image(str(traces_images["raw"]), loader.load(), ScanOptions())
    return result.traces


def _key(data_type: str, source: str, indicators: list[str], when: Any) -> tuple:
    return (data_type, source, tuple(indicators), when)


def test_parsers_list_and_preset() -> None:
    done = toolmarks("log2timeline", "--parsers", "list")
    assert done.returncode == 0, done.stderr
    for definition in manager.file_parsers():
        assert definition.parser_name in done.stdout
    # The preset: plaso's file events (for hashes and YARA) and ours.
    preset = [line for line in done.stdout.splitlines() if "toolmarks :" in line]
    assert preset and "filestat" in preset[0]


def test_same_artefact_events_as_scan(front_store: Path, scan_traces) -> None:
    """Every artefact trace the scan finds in a live file, the plaso front finds
    too, with the same time, indicators and labels; the deleted files' traces
    (bob's hive, a prefetch file) are the scan's alone: plaso hands no deleted
    file to its parsers."""
    rows = [r for r in read_store(front_store) if r["data"].data_type in ARTEFACT_TYPES]
    front = collections.Counter(
        _key(
            r["data"].data_type,
            r["data"].source_location,
            r["data"].indicators,
            r["event"].timestamp
            - (PST if r["data"].data_type in LOCAL_TIME_TYPES else 0),
        )
        for r in rows
    )
    live = [
        t
        for t in scan_traces
        if t.data_type in ARTEFACT_TYPES and t.attributes["allocated"]
    ]
    deleted = [
        t
        for t in scan_traces
        if t.data_type in ARTEFACT_TYPES and not t.attributes["allocated"]
    ]
    scan = collections.Counter(
        _key(
            t.data_type,
            t.source,
            list(dict.fromkeys(m.indicator for m in t.matches)),
            event_of(t).timestamp,
        )
        for t in live
    )
    assert front == scan
    assert {t.source for t in deleted} == {
        "/Users/bob/NTUSER.DAT",
        "/Windows/Prefetch/SDELETE.EXE-0BADF00D.pf",
    }
    for row in rows:
        labels = set(row["labels"] or [])
        tools = {f"tool_{t}" for t in row["data"].tool.split(",")}
        assert {"toolmarks", *tools} <= labels
        matches = json.loads(row["data"].matches)
        assert {f"ioc_{m['kind']}" for m in matches} <= labels


def test_file_events_tagged_by_hash_and_yara(front_store: Path) -> None:
    """filestat events of a file whose content matched are tagged; the events
    parsed out of it are tagged only for what they themselves hold."""
    rows = read_store(front_store)
    system = [
        r
        for r in rows
        if r["data"].data_type == "fs:stat"
        and (getattr(r["data"], "filename", "") or "").endswith("config\\SYSTEM")
    ]
    assert system
    for row in system:
        assert "tool_wce" in row["labels"] and "ioc_string" in row["labels"]
    registry = [r for r in rows if r["data"].data_type.startswith("toolmarks:registry")]
    for row in registry:
        if "SYSTEM" in row["data"].source_location:
            assert "ioc_string" not in row["labels"]


def test_psort_reads_and_formats(front_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    done = toolmarks(
        "psort",
        "--logfile",
        str(tmp_path / "psort.log.gz"),
        "-o",
        "dynamic",
        "--fields",
        "datetime,timestamp_desc,parser,message,tag",
        "-w",
        str(out),
        str(front_store),
    )
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if "toolmarks_prefetch" in x)
    assert "sdelete.prefetch.exe" in line and "SDELETE.EXE" in line
    assert "tool_sdelete" in line


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return str([_plain(item) for item in value])
    copy = getattr(value, "CopyToDateTimeStringISO8601", None)
    return copy() if copy else str(value)


def _winreg_events(store: Path) -> collections.Counter:
    """plaso's own registry events: data type, time and every value."""
    out: collections.Counter = collections.Counter()
    for row in read_store(store):
        data = row["data"]
        if not data.data_type.startswith("windows:registry"):
            continue
        values = {
            name: _plain(value)
            for name, value in data.GetAttributes()
            if not name.startswith("_")
        }
        out[
            (data.data_type, row["event"].timestamp, json.dumps(values, sort_keys=True))
        ] += 1
    return out


def test_plaso_registry_events_unchanged_with_ours(
    traces_images, front_store: Path, tmp_path: Path
) -> None:
    """Our registry parser reads whole hive files beside plaso's winreg parser
    (which calls one plugin per key): plaso's own events are the same with it."""
    image = str(traces_images["raw"])
    common = ["--status_view", "none", "--unattended", "--hashers", "none"]
    common += ["--logfile", str(tmp_path / "log2timeline.log.gz")]
    plain = tmp_path / "plain.plaso"
    done = run(
        script("log2timeline"),
        "--storage_file",
        str(plain),
        "--parsers",
        "winreg",
        *common,
        image,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    both = tmp_path / "both.plaso"
    done = toolmarks(
        "log2timeline",
        "--storage_file",
        str(both),
        "--parsers",
        "winreg,toolmarks",
        *common,
        image,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    plaso_events = _winreg_events(plain)
    assert sum(plaso_events.values()) > 1000
    assert _winreg_events(both) == plaso_events
    ours = [r for r in read_store(both) if r["data"].data_type.startswith("toolmarks:")]
    assert len(ours) == len(
        [
            r
            for r in read_store(front_store)
            if r["data"].data_type.startswith("toolmarks:")
        ]
    )
