"""write_plaso against real plaso: its storage reader, timeliner, pinfo and psort."""

from __future__ import annotations

import collections
import csv
import json
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from dfdatetime import filetime as dfdatetime_filetime
from dfdatetime import semantic_time as dfdatetime_semantic_time
from dfdatetime import time_elements as dfdatetime_time_elements
from dfvfs.lib import definitions as dfvfs_definitions
from dfvfs.path import factory as path_spec_factory
from plaso.containers import events as plaso_events
from plaso.engine import timeliner as plaso_timeliner
from plaso.formatters import yaml_formatters_file
from plaso.storage import factory as storage_factory
from plaso_support import read_store, run, script

from toolmarks.events import Match, Trace
from toolmarks.indicators import loader
from toolmarks.indicators.model import IndicatorSet, Tool
from toolmarks.output import plaso_storage
from toolmarks.parsers import leads, manager, recyclebin, tasks, usn
from toolmarks.parsers.content import DATA_TYPE_FILE, DATA_TYPE_UNALLOCATED
from toolmarks.parsers.eventlog import DATA_TYPE as DATA_TYPE_EVENTLOG
from toolmarks.parsers.prefetch import DATA_TYPE as DATA_TYPE_PREFETCH
from toolmarks.parsers.registry import DATA_TYPE as DATA_TYPE_REGISTRY

DATA_TYPES = (
    DATA_TYPE_EVENTLOG,
    DATA_TYPE_FILE,
    DATA_TYPE_PREFETCH,
    DATA_TYPE_REGISTRY,
)
# FILETIME 132000000000000000 is 2019-04-17T18:40:00 UTC.
FILETIME = 132000000000000000
MICROS = 1555526400000000
MD5 = "bd73c74819d8db09c645c738bbd3f5b9"
SHA256 = "ab" * 32
BIG = "p1:/Windows/Temp/big.bin"
PREFETCH = "p1:/Windows/Prefetch/GETMAIL.EXE-1A2B3C4D.pf"
NTUSER = "p1:/Users/alice/NTUSER.DAT"
EVTX = "p1:/Windows/System32/winevt/Logs/System.evtx"
WRITE_ARGS = {
    "source_path": "/cases/pc1.E01",
    "command_line": "toolmarks scan /cases/pc1.E01 -o pc1.plaso",
    "toolmarks_version": "0.1.0",
    "indicator_set_version": "0123456789abcdef",
}


@pytest.fixture(scope="module")
def indicator_set() -> IndicatorSet:
    return loader.load()


@pytest.fixture(scope="module")
def tools(indicator_set: IndicatorSet) -> dict[str, Tool]:
    return indicator_set.tools


@pytest.fixture(scope="module")
def traces(indicator_set: IndicatorSet) -> list[Trace]:
    find = indicator_set.indicator
    big_path_spec = path_spec_factory.Factory.NewPathSpec(
        dfvfs_definitions.TYPE_INDICATOR_OS, location="/mnt/p1/Windows/Temp/big.bin"
    )
    return [
        Trace(
            data_type=DATA_TYPE_FILE,
            timestamp=dfdatetime_filetime.Filetime(timestamp=FILETIME),
            timestamp_desc="Creation Time",
            source=BIG,
            matches=[
                Match.of(
                    find("wce.string.credentials_editor"),
                    "Windows Credentials Editor",
                    offset=1234,
                    encoding="ascii",
                ),
                Match.of(find("wce.md5.seed_1"), MD5),
            ],
            attributes={
                "md5": MD5.upper(),  # stored lower-case in the stream
                "sha256": SHA256,
                "size": 65536,
                "path_spec": big_path_spec,
                "pe": {"machine": "i386"},
                "header": b"MZ\x90\x00",
                "names": {"b", "a"},
                "message": "an attribute with a name plaso uses",
                "first_seen": dfdatetime_filetime.Filetime(timestamp=FILETIME),
            },
        ),
        Trace(
            data_type=DATA_TYPE_PREFETCH,
            timestamp=dfdatetime_filetime.Filetime(timestamp=FILETIME + 600_000_000),
            timestamp_desc="Last Time Executed",
            source=PREFETCH,
            matches=[
                Match.of(
                    find("getmail.prefetch.exe"),
                    "GETMAIL.EXE",
                    kind="prefetch",
                    referenced=("\\VOLUME{01d}\\TEMP\\GETMAIL.EXE",),
                )
            ],
            attributes={
                "executable": "GETMAIL.EXE",
                "run_count": 2,
                "run_index": 0,
                "volume_serial_numbers": ["0x1234abcd"],
                "damaged": "bytes 0-4095 lie on sectors that failed their EWF checksum",
            },
        ),
        Trace(
            # No time at all: the EULA value's key was not readable.
            data_type=DATA_TYPE_REGISTRY,
            timestamp=None,
            timestamp_desc="Registry Last Written Time",
            source=NTUSER,
            matches=[Match.of(find("sdelete.registry.eula"), "EulaAccepted")],
            attributes={
                "key_path": "Software\\Sysinternals\\SDelete",
                "value_name": "EulaAccepted",
                "artefact": "key",
                "control_sets": [1, None],
            },
        ),
        Trace(
            data_type=DATA_TYPE_EVENTLOG,
            timestamp=dfdatetime_time_elements.TimeElementsInMicroseconds(
                time_elements_tuple=(2019, 4, 17, 19, 0, 0, 250000)
            ),
            timestamp_desc="Creation Time",
            source=EVTX,
            matches=[
                Match.of(
                    find("gsecdump.eventlog.service_install_imagepath"),
                    "C:\\Windows\\gsecdump.exe",
                    field="ImagePath",
                )
            ],
            attributes={"channel": "System", "provider": "SCM", "event_id": 7045},
        ),
    ]


@pytest.fixture(scope="module")
def plaso_file(
    tmp_path_factory: pytest.TempPathFactory,
    traces: list[Trace],
    tools: dict[str, Tool],
) -> Path:
    path = tmp_path_factory.mktemp("plaso") / "scan.plaso"
    assert plaso_storage.write_plaso(str(path), traces, tools, **WRITE_ARGS) == 4
    return path


def _copy(path: Path, tmp_path: Path) -> Path:
    """psort adds a session to the file it reads: give it its own copy."""
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    return copy


def _by_source(path: Path) -> dict[str, dict[str, Any]]:
    return {row["data"].source_location: row for row in read_store(path)}


def test_events_and_event_data(plaso_file: Path) -> None:
    rows = _by_source(plaso_file)
    assert set(rows) == {BIG, PREFETCH, NTUSER, EVTX}
    assert {row["data"].data_type for row in rows.values()} == set(DATA_TYPES)

    big = rows[BIG]["data"]
    assert big.tool == "wce"
    assert big.indicators == ["wce.string.credentials_editor", "wce.md5.seed_1"]
    assert big.match_kinds == ["string", "md5"]
    assert big.matched_values == ["Windows Credentials Editor", MD5]
    matches = json.loads(big.matches)
    assert matches[0]["detail"] == {"encoding": "ascii", "offset": 1234}
    assert matches[1] == {
        "tool": "wce",
        "indicator": "wce.md5.seed_1",
        "kind": "md5",
        "value": MD5,
        "weak": False,
        "detail": {},
    }
    assert big.display_name == BIG
    assert big.indicator_set_version == "0123456789abcdef"
    assert big._parser_chain == "toolmarks_file"
    assert big._event_values_hash
    # Trace attributes, made plain for plaso.
    assert big.size == 65536
    assert big.md5 == MD5.upper()
    assert big.pe == '{"machine": "i386"}'
    assert big.header == "4d5a9000"
    assert big.names == ["a", "b"]
    assert big.first_seen == "2019-04-17T18:40:00.0000000+00:00"
    # A name plaso's output gives a meaning keeps its value under another name.
    assert big.trace_message == "an attribute with a name plaso uses"
    assert not hasattr(big, "path_spec")

    prefetch = rows[PREFETCH]["data"]
    assert prefetch.tool == "getmail"
    assert prefetch.run_count == 2
    assert prefetch.volume_serial_numbers == ["0x1234abcd"]
    assert rows[NTUSER]["data"].control_sets == [1, None]
    assert rows[EVTX]["data"].event_id == 7045


def test_timestamps(plaso_file: Path) -> None:
    rows = _by_source(plaso_file)
    big = rows[BIG]["event"]
    assert (big.timestamp, big.timestamp_desc) == (MICROS, "Creation Time")
    assert big.date_time.timestamp == FILETIME
    prefetch = rows[PREFETCH]["event"]
    assert prefetch.timestamp == MICROS + 60_000_000
    assert prefetch.timestamp_desc == "Last Time Executed"
    evtx = rows[EVTX]["event"]
    assert evtx.timestamp == MICROS + 20 * 60_000_000 + 250_000
    # No time: what plaso's timeliner writes for its place holder events.
    registry = rows[NTUSER]["event"]
    assert registry.timestamp == 0
    assert registry.timestamp_desc == "Not a time"
    assert isinstance(registry.date_time, dfdatetime_semantic_time.NotSet)


def test_event_data_stream(plaso_file: Path) -> None:
    rows = _by_source(plaso_file)
    stream = rows[BIG]["stream"]
    assert stream.md5_hash == MD5
    assert stream.sha256_hash == SHA256
    assert stream.sha1_hash is None
    assert stream.path_spec.location == "/mnt/p1/Windows/Temp/big.bin"
    assert all(rows[s]["stream"] is None for s in (PREFETCH, NTUSER, EVTX))


def test_tags(plaso_file: Path) -> None:
    rows = _by_source(plaso_file)
    assert rows[BIG]["labels"] == [
        "toolmarks",
        "tool_wce",
        "stage_lateral_movement",
        "stage_asset_discovery",
        "ioc_string",
        "ioc_md5",
    ]
    assert rows[PREFETCH]["labels"] == [
        "toolmarks",
        "tool_getmail",
        "stage_data_exfiltration",
        "ioc_prefetch",
    ]
    assert "dual_use" in rows[NTUSER]["labels"]
    assert "tool_sdelete" in rows[NTUSER]["labels"]
    assert "ioc_eventlog" in rows[EVTX]["labels"]
    assert not any("dual_use" in rows[s]["labels"] for s in (BIG, PREFETCH, EVTX))


def test_session_counters_and_report(plaso_file: Path) -> None:
    reader = storage_factory.StorageFactory.CreateStorageReaderForFile(str(plaso_file))
    try:
        (session,) = list(reader.GetSessions())
        assert session.product_name == "toolmarks"
        assert session.product_version == "0.1.0"
        assert session.command_line_arguments == WRITE_ARGS["command_line"]
        assert session.completion_time >= session.start_time
        assert session.aborted is False
        (source,) = list(reader.GetAttributeContainers("source_configuration"))
        assert source.path == "/cases/pc1.E01"
        assert source.source_type == dfvfs_definitions.SOURCE_TYPE_STORAGE_MEDIA_IMAGE

        labels = reader.GetEventLabelsCounter()
        assert labels["toolmarks"].number_of_events == 4
        assert labels["tool_wce"].number_of_events == 1
        assert labels["dual_use"].number_of_events == 1
        assert labels["total"].number_of_events == sum(
            count.number_of_events for key, count in labels.items() if key != "total"
        )
        data_types = reader.GetDataTypesCounter()
        assert {key: c.number_of_events for key, c in data_types.items()} == {
            **{data_type: 1 for data_type in DATA_TYPES},
            "total": 4,
        }
        assert reader.GetParsersCounter()["toolmarks_file"].number_of_events == 1

        (report,) = list(reader.GetAttributeContainers("analysis_report"))
        assert report.plugin_name == "toolmarks"
        assert "indicator set: 0123456789abcdef" in report.text
        assert "4 events" in report.text
    finally:
        reader.Close()


def test_pinfo(plaso_file: Path) -> None:
    result = run(script("pinfo"), "-v", str(plaso_file))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Event tags generated per label" in out
    for label, number in (("toolmarks", 4), ("tool_wce", 1), ("dual_use", 1)):
        assert re.search(rf"^\s*{label} : {number}$", out, re.MULTILINE), label
    assert re.search(r"Product name : toolmarks$", out, re.MULTILINE)
    assert re.search(r"toolmarks:file:match : 1$", out, re.MULTILINE)


def _psort_dynamic(path: Path, fields: str, out: Path) -> list[dict[str, str]]:
    """psort's dynamic CSV of a storage file, with toolmarks' formatters."""
    result = run(
        script("psort"),
        "--logfile",
        str(out.with_suffix(".log.gz")),
        "--status_view",
        "none",
        "-u",
        "-o",
        "dynamic",
        "--custom_formatter_definitions",
        plaso_storage.FORMATTERS_PATH,
        "--fields",
        fields,
        "-w",
        str(out),
        str(path),
    )
    assert result.returncode == 0, result.stderr
    with open(out, encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def test_psort_dynamic(plaso_file: Path, tmp_path: Path) -> None:
    rows = _psort_dynamic(
        _copy(plaso_file, tmp_path),
        "datetime,timestamp_desc,source,message,tag",
        tmp_path / "timeline.csv",
    )
    assert len(rows) == 4
    by_source = {row["source"]: row for row in rows}
    assert set(by_source) == {"FILE", "LOG", "REG", "EVT"}

    file_row = by_source["FILE"]
    assert file_row["datetime"] == "2019-04-17T18:40:00.000000+00:00"
    assert file_row["message"] == (
        "Windows Credential Editor (WCE) (tool wce) indicator "
        'wce.string.credentials_editor string "Windows Credentials Editor" '
        "at offset 1234; Windows Credential Editor (WCE) (tool wce) indicator "
        f'wce.md5.seed_1 md5 "{MD5}" in {BIG}'
    )
    assert file_row["tag"].split() == [
        "toolmarks",
        "tool_wce",
        "stage_lateral_movement",
        "stage_asset_discovery",
        "ioc_string",
        "ioc_md5",
    ]
    prefetch = by_source["LOG"]["message"]
    for part in ("(tool getmail)", "getmail.prefetch.exe", 'prefetch "GETMAIL.EXE"'):
        assert part in prefetch
    assert f"in {PREFETCH}: [GETMAIL.EXE] was executed run count 2" in prefetch
    assert prefetch.endswith(
        "DAMAGED: bytes 0-4095 lie on sectors that failed their EWF checksum"
    )
    assert "DAMAGED" not in file_row["message"]
    registry = by_source["REG"]
    assert registry["timestamp_desc"] == "Not a time"
    assert registry["message"].startswith(
        "SDelete (Sysinternals) (tool sdelete) indicator sdelete.registry.eula "
        'registry "EulaAccepted" [dual-use tool] in '
    )
    assert "key: Software\\Sysinternals\\SDelete" in registry["message"]
    assert {"tool_sdelete", "dual_use", "ioc_registry"} <= set(registry["tag"].split())
    evtx = by_source["EVT"]["message"]
    assert 'eventlog "C:\\Windows\\gsecdump.exe" field ImagePath' in evtx
    assert "channel: System" in evtx and "event ID: 7045" in evtx
    for row in rows:
        assert "WARNING DEFAULT FORMATTER" not in row["message"]


def test_unallocated_match_without_a_time(
    indicator_set: IndicatorSet, tools: dict[str, Tool], tmp_path: Path
) -> None:
    source = "p1:<unallocated bytes 8388608-16777215>"
    trace = Trace(
        DATA_TYPE_UNALLOCATED,
        None,
        "Not a time",
        source,
        [
            Match.of(
                indicator_set.indicator("wce.string.credentials_editor"),
                "Windows Credentials Editor",
                volume_offset=8390000,
                encoding="ascii",
            )
        ],
        {"volume": "p1", "first_cluster": 2048, "last_cluster": 4095},
    )
    path = tmp_path / "unallocated.plaso"
    assert plaso_storage.write_plaso(str(path), [trace], tools, **WRITE_ARGS) == 1
    (row,) = _psort_dynamic(
        path, "timestamp_desc,parser,message,tag", tmp_path / "timeline.csv"
    )
    assert row["timestamp_desc"] == "Not a time"
    assert row["parser"] == "toolmarks_unallocated"
    assert row["message"] == (
        "Windows Credential Editor (WCE) (tool wce) indicator "
        'wce.string.credentials_editor string "Windows Credentials Editor" '
        f"at volume offset 8390000 in {source} (unallocated clusters 2048 to 4095)"
    )
    assert {"tool_wce", "ioc_string"} <= set(row["tag"].split())


def test_psort_json_line(plaso_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "timeline.jsonl"
    result = run(
        script("psort"),
        "--logfile",
        str(out.with_suffix(".log.gz")),
        "--status_view",
        "none",
        "-u",
        "-o",
        "json_line",
        "--custom_formatter_definitions",
        plaso_storage.FORMATTERS_PATH,
        "-w",
        str(out),
        str(_copy(plaso_file, tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 4
    big = next(line for line in lines if line["source_location"] == BIG)
    assert big["md5_hash"] == MD5
    assert big["sha256_hash"] == SHA256
    assert big["indicators"] == ["wce.string.credentials_editor", "wce.md5.seed_1"]
    assert big["tag"]["labels"][:2] == ["toolmarks", "tool_wce"]
    assert big["message"].endswith(f"in {BIG}")
    assert big["parser"] == "toolmarks_file"


def test_timeliner_definitions_give_the_same_events(plaso_file: Path, tmp_path: Path):
    """plaso's own timeliner, reading the parser registry's timeliner
    definitions as its timeliner.yaml, makes the events write_plaso wrote from
    the stored event data."""
    copy = _copy(plaso_file, tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "timeliner.yaml", "w", encoding="utf-8") as file:
        yaml.safe_dump_all(manager.timeliner_definitions(), file)
    writer = storage_factory.StorageFactory.CreateStorageWriterForFile(str(copy))
    writer.Open(path=str(copy))
    try:
        written = list(writer.GetAttributeContainers("event"))
        timeliner = plaso_timeliner.EventDataTimeliner(data_location=str(data))
        for event_data in list(writer.GetAttributeContainers("event_data")):
            timeliner.ProcessEventData(writer, event_data, None)
        produced = list(writer.GetAttributeContainers("event"))[len(written) :]
    finally:
        writer.Close()

    def times(events: list[Any]) -> collections.Counter:
        return collections.Counter(
            (e.GetEventDataIdentifier().CopyToString(), e.timestamp, e.timestamp_desc)
            for e in events
        )

    assert len(produced) == 4
    assert times(produced) == times(written)


def test_data_files_cover_every_data_type() -> None:
    timeliner = {d["data_type"] for d in manager.timeliner_definitions()}
    every = {
        *DATA_TYPES,
        DATA_TYPE_UNALLOCATED,
        leads.DATA_TYPE,
        recyclebin.DATA_TYPE,
        tasks.DATA_TYPE,
        usn.DATA_TYPE,
    }
    assert every == {d.data_type for d in manager.definitions()}
    assert timeliner == every
    formatters = yaml_formatters_file.YAMLFormattersFile().ReadFromFile(
        plaso_storage.FORMATTERS_PATH
    )
    formatters = list(formatters)
    assert {f.data_type for f in formatters} == every
    for formatter in formatters:
        # Each message says the matches and where they are.
        assert {"match_summary", "source_location"} <= (
            formatter.GetFormatStringAttributeNames()
        )


def test_labels_are_plaso_labels(tools: dict[str, Tool]) -> None:
    odd = Tool("odd-tool.v2", "Odd", ["attack"], True, {}, "odd.yaml")
    trace = Trace(
        DATA_TYPE_FILE,
        None,
        "Not a time",
        "p1:/x",
        [Match("odd-tool.v2", "odd-tool.v2.md5.x", "md5", MD5)],
    )
    labels = plaso_storage.labels_of(trace, {**tools, odd.id: odd})
    assert labels == ["toolmarks", "tool_odd_tool_v2", "stage_attack", "dual_use"] + [
        "ioc_md5"
    ]
    tag = plaso_events.EventTag()
    tag.AddLabels(labels)  # plaso's own check: raises ValueError on a bad one


def test_appends_a_session_to_an_existing_file(
    tmp_path: Path, traces: list[Trace], tools: dict[str, Tool]
) -> None:
    path = tmp_path / "twice.plaso"
    plaso_storage.write_plaso(str(path), traces[:2], tools, **WRITE_ARGS)
    plaso_storage.write_plaso(str(path), traces, tools, **WRITE_ARGS)
    reader = storage_factory.StorageFactory.CreateStorageReaderForFile(str(path))
    try:
        assert len(list(reader.GetSessions())) == 2
        assert reader.GetNumberOfAttributeContainers("event") == 6
        assert reader.GetEventLabelsCounter()["toolmarks"].number_of_events == 6
        assert reader.GetDataTypesCounter()["total"].number_of_events == 6
        # One row per label: counts were updated, not added again.
        labels = [c.label for c in reader.GetAttributeContainers("event_label_count")]
        assert len(labels) == len(set(labels))
    finally:
        reader.Close()


def test_refuses_a_file_that_is_not_plaso(
    tmp_path: Path, traces: list[Trace], tools: dict[str, Tool]
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not plaso", encoding="utf-8")
    with pytest.raises(ValueError, match="not a plaso storage file"):
        plaso_storage.write_plaso(str(path), traces, tools, **WRITE_ARGS)
    assert path.read_text(encoding="utf-8") == "not plaso"
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ValueError):
        plaso_storage.write_plaso(str(other), traces, tools, **WRITE_ARGS)


def test_failure_while_reading_traces_aborts_the_session(
    tmp_path: Path, traces: list[Trace], tools: dict[str, Tool]
) -> None:
    def failing():
        yield traces[0]
        raise OSError("image read error")

    path = tmp_path / "aborted.plaso"
    with pytest.raises(OSError, match="image read error"):
        plaso_storage.write_plaso(str(path), failing(), tools, **WRITE_ARGS)
    reader = storage_factory.StorageFactory.CreateStorageReaderForFile(str(path))
    try:
        (session,) = list(reader.GetSessions())
        assert session.aborted is True
        assert session.completion_time is not None
        assert reader.GetNumberOfAttributeContainers("event") == 1
        assert reader.GetEventLabelsCounter()["toolmarks"].number_of_events == 1
    finally:
        reader.Close()


def test_appends_to_a_log2timeline_file(
    tmp_path: Path, traces: list[Trace], tools: dict[str, Tool]
) -> None:
    """The super-timeline case: toolmarks events join log2timeline's events."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.txt").write_text("hello", encoding="utf-8")
    path = tmp_path / "l2t.plaso"
    result = run(
        script("log2timeline"),
        "--status_view",
        "none",
        "-u",
        "--single_process",
        "--parsers",
        "filestat",
        "--storage_file",
        str(path),
        str(source),
    )
    assert result.returncode == 0, result.stderr
    before = len(read_store(path))
    assert before > 0

    assert plaso_storage.write_plaso(str(path), traces, tools, **WRITE_ARGS) == 4
    rows = read_store(path)
    assert len(rows) == before + 4
    ours = [row for row in rows if row["data"].data_type.startswith("toolmarks:")]
    assert len(ours) == 4 and all("toolmarks" in row["labels"] for row in ours)
    result = run(script("pinfo"), str(path))
    assert result.returncode == 0, result.stderr
    assert re.search(rf"^\s*Total : {before + 4}$", result.stdout, re.MULTILINE)
    assert re.search(r"^\s*filestat : \d+$", result.stdout, re.MULTILINE)
