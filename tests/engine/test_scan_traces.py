"""End to end: registry and prefetch traces in the traces scenario are exact.

test_data/scenarios/traces.yaml plants real hives (with keys added by hivexsh)
and real prefetch files, one hive and one prefetch file deleted, plus real
decoys. Each planted file's `expect` list names the findings a scan must make on
it, derived from ../shared/test_data/real/MANIFEST.md and the planted keys; the
scans of the raw and E01 images must report those and nothing else.
"""

from __future__ import annotations

import datetime
import io
import json
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from Registry import Registry

from toolmarks.engine.scan import ScanOptions, UnitResult, scan_image
from toolmarks.events import Trace
from toolmarks.indicators import loader
from toolmarks.parsers.content import DATA_TYPE_FILE
from toolmarks.parsers.eventlog import DATA_TYPE as DATA_TYPE_EVENTLOG
from toolmarks.parsers.prefetch import DATA_TYPE as DATA_TYPE_PREFETCH
from toolmarks.parsers.recyclebin import DATA_TYPE as DATA_TYPE_RECYCLEBIN
from toolmarks.parsers.registry import DATA_TYPE as DATA_TYPE_REGISTRY
from toolmarks.parsers.tasks import DATA_TYPE as DATA_TYPE_TASK
from toolmarks.parsers.usn import DATA_TYPE as DATA_TYPE_USN

FORMATS = ["raw", "e01"]
# Keys of an `expect` entry that say which match; the others are checked values.
MATCH_KEYS = {"data_type", "tool", "indicator"}
# MANIFEST: the run times stored in SDELETE.EXE-D6B20984.pf, in file order.
SDELETE_RUNS = [
    "2021-02-14T02:38:08.922573Z",
    "2021-02-14T02:37:45.508301Z",
    "2021-02-14T02:23:50.871206Z",
    "2021-02-14T02:23:18.654248Z",
    "2021-02-14T02:22:57.090417Z",
]
# MANIFEST: last modification times of the SYSTEM hive's AppCompatCache entries.
SUITE = "C:\\Users\\tony\\Downloads\\SysinternalsSuite\\"
SHIMCACHE_TIMES = {
    SUITE + "sdelete.exe": "2018-11-15T15:33:40.889690Z",
    SUITE + "sdelete64.exe": "2018-11-15T15:33:41.323646Z",
    SUITE + "dbgview.exe": "2019-04-23T18:31:50.000000Z",
}
# The hives planted in traces.yaml (not the file named default in a profile).
HIVES = {
    "/Windows/System32/config/SYSTEM",
    "/Windows/System32/config/SAM",
    "/Windows/System32/config/SOFTWARE",
    "/Windows/System32/config/DEFAULT",
    "/Users/alice/NTUSER.DAT",
    "/Users/bob/NTUSER.DAT",
    "/Users/Mandatory/NTUSER.MAN",
}


@pytest.fixture(scope="module", params=FORMATS)
def scanned(request, traces_images) -> tuple[UnitResult, dict[str, Any]]:
    """The scan of one format with the shipped indicators, and the manifest."""
    # Leads are heuristics, not findings; tests/parsers/test_leads.py checks
    # those of this image.
    result, volumes = scan_image(
        str(traces_images[request.param]), loader.load(), ScanOptions(leads=False)
    )
    # One bare NTFS volume without a label: trace sources are plain paths.
    assert [(v.fs_type, v.label) for v in volumes] == [("NTFS", "")]
    return result, traces_images["manifest"]


# --- helpers -------------------------------------------------------------------


def located(item: dict[str, Any]) -> str:
    """A manifest entry's path as traces name it: `path:stream` for a stream."""
    return f"{item['path']}:{item['stream']}" if item["stream"] else item["path"]


def expected(manifest: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    return {
        (located(item), e["data_type"], e["tool"], e["indicator"])
        for item in manifest["files"]
        for e in item["expect"]
    }


def findings(traces: list[Trace]) -> set[tuple[str, str, str, str]]:
    return {
        (t.source, t.data_type, m.tool, m.indicator) for t in traces for m in t.matches
    }


def of_file(traces: list[Trace], path: str, data_type: str) -> list[Trace]:
    return [t for t in traces if t.source == path and t.data_type == data_type]


def entries(item: dict[str, Any], data_type: str) -> list[dict[str, Any]]:
    return [e for e in item["expect"] if e["data_type"] == data_type]


def checked(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in MATCH_KEYS}


def filetime_of(iso: str) -> int:
    """An ISO 8601 UTC time as FILETIME (100 ns since 1601), to the microsecond."""
    moment = datetime.datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    delta = moment - datetime.datetime(1601, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def filetime(trace: Trace) -> int:
    assert trace.timestamp is not None
    return trace.timestamp.timestamp


def check_registry(traces: list[Trace], item: dict[str, Any]) -> None:
    """Each entry is one match of one trace with its attributes; no match is left."""
    found = of_file(traces, item["path"], DATA_TYPE_REGISTRY)
    claimed: Counter[tuple[int, str, str]] = Counter()
    for entry in entries(item, DATA_TYPE_REGISTRY):
        wanted = checked(entry)
        hits = [
            (n, m)
            for n, t in enumerate(found)
            for m in t.matches
            if (m.tool, m.indicator) == (entry["tool"], entry["indicator"])
            and all(t.attributes.get(k) == v for k, v in wanted.items())
        ]
        assert len(hits) == 1, (item["path"], entry, [t.attributes for t in found])
        n, match = hits[0]
        assert match.kind == "registry"
        claimed[(n, match.tool, match.indicator)] += 1
    every = Counter(
        (n, m.tool, m.indicator) for n, t in enumerate(found) for m in t.matches
    )
    assert claimed == every, item["path"]


def check_prefetch(traces: list[Trace], item: dict[str, Any]) -> None:
    """`runs` traces per entry, one per run time, with the entry's attributes."""
    found = of_file(traces, item["path"], DATA_TYPE_PREFETCH)
    total = 0
    for entry in entries(item, DATA_TYPE_PREFETCH):
        wanted = checked(entry)
        runs = wanted.pop("runs")
        mine = [
            t
            for t in found
            if (entry["tool"], entry["indicator"])
            in {(m.tool, m.indicator) for m in t.matches}
        ]
        assert len(mine) == runs, item["path"]
        assert sorted(t.attributes["run_index"] for t in mine) == list(range(runs))
        for trace in mine:
            for key, value in wanted.items():
                assert trace.attributes[key] == value, (item["path"], key)
        total += runs
    assert len(found) == total, item["path"]


def check_eventlog(traces: list[Trace], item: dict[str, Any]) -> None:
    """One trace per listed record, with the entry's value and attributes."""
    found = of_file(traces, item["path"], DATA_TYPE_EVENTLOG)
    total = 0
    for entry in entries(item, DATA_TYPE_EVENTLOG):
        wanted = checked(entry)
        records, value = wanted.pop("records"), wanted.pop("value")
        mine = [
            (t, m)
            for t in found
            for m in t.matches
            if (m.tool, m.indicator) == (entry["tool"], entry["indicator"])
        ]
        assert sorted(t.attributes["record_number"] for t, _ in mine) == records
        for trace, match in mine:
            assert (match.kind, match.value) == ("eventlog", value)
            for key, expected_value in wanted.items():
                assert trace.attributes[key] == expected_value, (item["path"], key)
        total += len(records)
    assert sum(len(t.matches) for t in found) == total, item["path"]


def check_recyclebin(traces: list[Trace], item: dict[str, Any]) -> None:
    """One trace per entry: its filename match, deletion time and attributes."""
    found = of_file(traces, item["path"], DATA_TYPE_RECYCLEBIN)
    wanted_entries = entries(item, DATA_TYPE_RECYCLEBIN)
    assert len(found) == len(wanted_entries), item["path"]
    for entry in wanted_entries:
        wanted = checked(entry)
        value, deleted = wanted.pop("value"), wanted.pop("deletion_time")
        [trace] = [
            t
            for t in found
            if [(m.tool, m.indicator, m.kind, m.value) for m in t.matches]
            == [(entry["tool"], entry["indicator"], "filename", value)]
        ]
        assert filetime(trace) == filetime_of(deleted)
        assert trace.timestamp_desc == "Content Deletion Time"
        for key, expected_value in wanted.items():
            assert trace.attributes[key] == expected_value, (item["path"], key)


def check_tasks(traces: list[Trace], item: dict[str, Any]) -> None:
    """Per entry one trace at `time` with a match of `kind` and `value` and the
    entry's attributes; no match is left unclaimed."""
    found = of_file(traces, item["path"], DATA_TYPE_TASK)
    claimed = 0
    for entry in entries(item, DATA_TYPE_TASK):
        wanted = checked(entry)
        kind, value = wanted.pop("kind"), wanted.pop("value")
        moment, description = wanted.pop("time"), wanted.pop("timestamp_desc")
        [trace] = [
            t
            for t in found
            if (entry["tool"], entry["indicator"], kind, value)
            in {(m.tool, m.indicator, m.kind, m.value) for m in t.matches}
        ]
        # A local time without zone (Task Scheduler's), written as UTC.
        utc = datetime.datetime.fromisoformat(moment).replace(tzinfo=datetime.UTC)
        assert trace.timestamp.GetPlasoTimestamp() == utc.timestamp() * 1_000_000
        assert trace.timestamp_desc == description
        for key, expected_value in wanted.items():
            assert trace.attributes[key] == expected_value, (item["path"], key)
        claimed += 1
    assert sum(len(t.matches) for t in found) == claimed, item["path"]


def check_usn(traces: list[Trace], item: dict[str, Any]) -> None:
    """One trace per entry, at its time, with a match of its indicator and its
    attributes (a wceaux.dll operation, an SDelete wipe)."""
    found = of_file(traces, located(item), DATA_TYPE_USN)
    wanted_entries = entries(item, DATA_TYPE_USN)
    assert len(found) == len(wanted_entries), item["path"]
    for entry in wanted_entries:
        wanted = checked(entry)
        when = filetime_of(wanted.pop("time"))
        [trace] = [
            t
            for t in found
            if filetime(t) == when
            and (entry["tool"], entry["indicator"])
            in [(m.tool, m.indicator) for m in t.matches]
        ]
        for key, expected_value in wanted.items():
            assert trace.attributes[key] == expected_value, (item["path"], key)


def check_file_matches(traces: list[Trace], item: dict[str, Any]) -> None:
    """The content matches on the file itself: kind, value and encoding."""
    found = of_file(traces, item["path"], DATA_TYPE_FILE)
    got = {
        (m.tool, m.indicator, m.kind, m.value, dict(m.detail).get("encoding"))
        for t in found
        for m in t.matches
    }
    want = {
        (e["tool"], e["indicator"], e["kind"], e["value"], e.get("encoding"))
        for e in entries(item, DATA_TYPE_FILE)
    }
    assert got == want, item["path"]
    for trace in found:
        assert trace.attributes["md5_hash"] == item["md5"]


# --- the scans -------------------------------------------------------------------


def test_traces_findings_are_exact(scanned) -> None:
    result, manifest = scanned
    assert findings(result.traces) == expected(manifest)
    # The one warning: libevtx cannot read some of the 87 records the planted
    # System log holds in its free space (MANIFEST); they are said, not dropped.
    [warning] = result.warnings
    assert warning["location"] == "/Windows/System32/winevt/Logs/System.evtx"
    assert " of 87 recovered records unreadable" in warning["message"]
    assert not result.unreadable
    # Every planted hive is parsed, and nothing else; the .pf files are prefetch.
    assert {f["path"] for f in manifest["files"]} >= HIVES
    assert result.counts["registry_files"] == len(HIVES)
    assert result.counts["prefetch_files"] == sum(
        "/Prefetch/" in f["path"] and f["path"].endswith(".pf")
        for f in manifest["files"]
    )
    assert result.counts["eventlog_files"] == sum(
        f["path"].endswith(".evtx") for f in manifest["files"]
    )
    assert {"registry", "prefetch", "eventlog"} <= set(result.parser_seconds)
    # The task files (XML and .job) are parsed, and nothing else.
    assert result.counts["tasks_files"] == sum(
        "/Tasks/" in f["path"] for f in manifest["files"]
    )
    # Both $I files are parsed (the wce.exe one and the decoy), not the $R file.
    assert result.counts["recyclebin_files"] == sum(
        "/$I" in f["path"] for f in manifest["files"]
    )


def test_traces_per_file(scanned) -> None:
    result, manifest = scanned
    for item in manifest["files"]:
        check_registry(result.traces, item)
        check_prefetch(result.traces, item)
        check_file_matches(result.traces, item)
        check_eventlog(result.traces, item)
        check_tasks(result.traces, item)
        check_recyclebin(result.traces, item)
        check_usn(result.traces, item)
        # A deleted hive or prefetch file is found as deleted, and only so.
        for trace in result.traces:
            if trace.source == item["path"]:
                assert trace.attributes["allocated"] is item["allocated"]
    deleted = {f["path"] for f in manifest["files"] if not f["allocated"]}
    assert deleted == {
        "/Users/bob/NTUSER.DAT",
        "/Windows/Prefetch/SDELETE.EXE-0BADF00D.pf",
    }
    assert deleted <= {t.source for t in result.traces}
    # MANIFEST: the NTUSER hive also accepted the PsExec and ProcDump EULAs;
    # neither is a seed tool, so those keys make no trace.
    for trace in result.traces:
        key_path = (trace.attributes.get("key_path") or "").lower()
        assert "psexec" not in key_path and "procdump" not in key_path


def test_traces_times_are_the_recorded_ones(scanned, traces_images) -> None:
    result, manifest = scanned
    # Prefetch: the five run times of the file, newest first (MANIFEST).
    for trace in [t for t in result.traces if t.data_type == DATA_TYPE_PREFETCH]:
        index = trace.attributes["run_index"]
        # MANIFEST times are rounded to the microsecond (10 FILETIME units).
        assert abs(filetime(trace) - filetime_of(SDELETE_RUNS[index])) <= 10
        assert trace.timestamp_desc == (
            "Last Time Executed" if index == 0 else "Previous Last Time Executed"
        )
    # ShimCache: the entries' file modification times (MANIFEST).
    registry = [t for t in result.traces if t.data_type == DATA_TYPE_REGISTRY]
    for trace in registry:
        path = trace.attributes.get("program_path")
        if trace.attributes["artefact"] == "shimcache" and path in SHIMCACHE_TIMES:
            assert abs(filetime(trace) - filetime_of(SHIMCACHE_TIMES[path])) <= 10
            assert trace.timestamp_desc == "File Last Modification Time"
    # TaskCache: the planted DynamicInfo times (traces.yaml), UTC FILETIMEs.
    cached = {
        t.attributes["time_of"]: t
        for t in registry
        if t.attributes["artefact"] == "task_cache"
    }
    assert {k: filetime(t) for k, t in cached.items()} == {
        "registration": filetime_of("2021-02-14T03:10:00Z"),
        "last run": filetime_of("2021-02-14T03:15:00Z"),
    }
    assert cached["registration"].timestamp_desc == "Registration Time"
    assert cached["last run"].timestamp_desc == "Last Time Executed"
    # Keys: their last written time, read with python-registry from the file's
    # content as sleuthkit's icat returns it (deleted hive included).
    hives, hives_data = {}, {}
    for item in manifest["files"]:
        if item["path"] in HIVES:
            data = subprocess.run(
                ["icat", str(traces_images["raw"]), str(item["mft_entry"])],
                capture_output=True,
                check=True,
            ).stdout
            assert len(data) == item["size"]
            hives[item["path"]] = Registry.Registry(io.BytesIO(data))
            hives_data[item["path"]] = data
    keyed = [t for t in registry if t.attributes["artefact"] in ("eula", "service")]
    # 2 WCE service traces, 2 EULA traces in each of the 4 NTUSER-type hives.
    assert len(keyed) == 10
    for trace in keyed:
        key = hives[trace.source].open(trace.attributes["key_path"])
        written = filetime_of(key.timestamp().isoformat())
        assert abs(filetime(trace) - written) <= 10
        assert trace.timestamp_desc == "Registry Last Written Time"
    # The deleted key: python-registry cannot open it, so its time is read from
    # the free nk cell itself (FILETIME 8 bytes into the record, after the
    # 4-byte cell size and the "nk" signature and flags).
    [deleted] = [t for t in registry if t.attributes["artefact"] == "deleted_key"]
    data = hives_data[deleted.source]
    cell = 4096 + deleted.attributes["cell_offset"]
    assert data[cell + 4 : cell + 6] == b"nk"
    assert struct.unpack_from("<i", data, cell)[0] > 0  # a free cell
    assert filetime(deleted) == struct.unpack_from("<Q", data, cell + 8)[0]
    with pytest.raises(Registry.RegistryKeyNotFoundException):
        hives[deleted.source].open(deleted.attributes["key_path"])


# --- the command line ----------------------------------------------------------------


def test_traces_cli_timeline(traces_images, tmp_path: Path) -> None:
    manifest = traces_images["manifest"]
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolmarks",
            "scan",
            str(traces_images["raw"]),
            "-o",
            str(out),
            "--no-leads",  # checked by tests/parsers/test_leads.py
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (out / "timeline.jsonl").open()]
    assert {
        (r["source"], r["data_type"], m["tool"], m["indicator"])
        for r in rows
        for m in r["matches"]
    } == expected(manifest)

    planted = [e for f in manifest["files"] for e in f["expect"]]
    prefetch = [r for r in rows if r["data_type"] == DATA_TYPE_PREFETCH]
    registry = [r for r in rows if r["data_type"] == DATA_TYPE_REGISTRY]
    assert len(prefetch) == sum(e.get("runs", 0) for e in planted) == 10
    # One registry entry per match of an event (a TaskCache event has two).
    assert sum(len(r["matches"]) for r in registry) == sum(
        e["data_type"] == DATA_TYPE_REGISTRY for e in planted
    )
    for row in prefetch:
        assert row["tools"] == ["sdelete"]
        assert {"toolmarks", "tool_sdelete", "dual_use", "ioc_prefetch"} <= set(
            row["tag"]
        )
        assert "stage_evidence_destruction" in row["tag"]
    for row in registry:
        [tool] = row["tools"]
        tags = set(row["tag"])
        assert {"toolmarks", f"tool_{tool}", "ioc_registry"} <= tags
        # SDelete and DebugView are dual-use Sysinternals tools; WCE and
        # pwdump are not.
        assert ("dual_use" in tags) is (tool in ("sdelete", "dbgview"))
    sdelete = {r["source"] for r in registry if "tool_sdelete" in r["tag"]}
    assert sdelete == {
        "/Windows/System32/config/SYSTEM",
        "/Windows/System32/config/DEFAULT",
        "/Users/alice/NTUSER.DAT",
        "/Users/bob/NTUSER.DAT",
        "/Users/Mandatory/NTUSER.MAN",
    }
    eula = [
        r for r in registry if r["artefact"] == "eula" and r["tools"] == ["sdelete"]
    ]
    # DEFAULT lies in no profile folder: its owner is the one its base block
    # names (tony, see traces.yaml).
    assert sorted((r["user"], r["allocated"]) for r in eula) == [
        ("Mandatory", True),
        ("alice", True),
        ("bob", False),
        ("tony", True),
    ]
    assert {r["allocated"] for r in prefetch} == {True, False}

    summary = json.loads((out / "scan.json").read_text())
    counts = summary["counts"]
    assert (counts["registry_files"], counts["prefetch_files"]) == (len(HIVES), 3)
    assert counts["eventlog_files"] == 2
    # The unreadable recovered records of the planted System log (see above).
    assert (counts["warnings"], counts["unreadable"]) == (1, 0)
    assert counts["events"] == len(rows)
    assert {"registry", "prefetch", "eventlog"} <= set(summary["parser_seconds"])
    # The 7 planted pwdump service installs, at their records' TimeCreated
    # (MANIFEST: 19:57:43.665111Z .. 19:57:55.597799Z and 20:41:24.319792Z).
    # The JSONL rounds FILETIME's 100 ns to microseconds, the MANIFEST cuts.
    installs = sorted(
        r["timestamp"] for r in rows if r["data_type"] == DATA_TYPE_EVENTLOG
    )
    assert len(installs) == 7
    for index, iso in (
        (0, "2022-03-10T19:57:43.665111Z"),
        (5, "2022-03-10T19:57:55.597799Z"),
        (6, "2022-03-10T20:41:24.319792Z"),
    ):
        moment = datetime.datetime.fromisoformat(iso)
        assert abs(installs[index] - moment.timestamp() * 1_000_000) <= 1
