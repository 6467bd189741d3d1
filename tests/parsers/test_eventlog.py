"""The event log parser on the real logs of ../shared/test_data/real/evtx.

Facts from its MANIFEST.md: record counts; aptsimulator/System.evtx holds 7
PsExec service installs (event 7045, records 457-462 and 469) and simulated
WCESERVICE events 100/101 (records 466/467) written by eventcreate.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import pytest

from toolmarks.indicators import compiler, loader
from toolmarks.parsers import eventlog
from toolmarks.parsers.eventlog import DATA_TYPE as DATA_TYPE_EVENTLOG

# (file, records, recovered records as libevtx counts them)
LOGS = [
    ("aptsimulator/System.evtx", 831, 87),
    ("aptsimulator/Microsoft-Windows-Sysmon%4Operational.evtx", 1402, 2),
    ("plaso/System.evtx", 5009, 0),
    ("plaso/System2.evtx", 194, 0),
    ("gpl-3.0/PanacheSysmon_vs_AtomicRedTeam01.evtx", 565, 31),
    ("gpl-3.0/sysmon_10_lsass_mimikatz_sekurlsa_logonpasswords.evtx", 1, 23),
]
PSEXEC_INSTALLS = [457, 458, 459, 460, 461, 462, 469]


@pytest.fixture(scope="module")
def compiled() -> compiler.CompiledSet:
    return compiler.compile_set(loader.load())


def parse(data: bytes, compiled) -> eventlog.EventLogResult:
    return eventlog.parse_eventlog(io.BytesIO(data), "test.evtx", compiled)


def with_pwdump_service(data: bytes, scenario_builder) -> bytes:
    """The APTSimulator System log with its PsExec service named pwdump instead
    (same length in UTF-16LE) and its chunk checksums recomputed."""
    old, new = "PsExec".encode("utf-16-le"), "pwdump".encode("utf-16-le")
    assert data.count(old) == 7
    return scenario_builder.fix_evtx_checksums(data.replace(old, new))


@pytest.mark.parametrize(("name", "records", "recovered"), LOGS)
def test_real_logs_have_no_trace_of_a_seed_tool(
    real_data: Path, compiled, name: str, records: int, recovered: int
) -> None:
    result = parse((real_data / "evtx" / name).read_bytes(), compiled)
    assert (result.records, result.recovered_records) == (records, recovered)
    assert result.traces == []
    assert not any("internal error" in w for w in result.warnings)


def test_simulated_wce_events_are_not_a_service_install(real_data: Path) -> None:
    import pyevtx

    log = pyevtx.file()
    log.open(str(real_data / "evtx/aptsimulator/System.evtx"))
    records = {log.get_record(i).identifier: log.get_record(i) for i in (465, 466)}
    assert {r.event_identifier for r in records.values()} == {100, 101}
    fields = eventlog.event_data(records[466].xml_string)
    assert "Service Name:  WCESERVICE" in fields["param1"]
    # ... which WCE's indicators (SCM events 7045/7036) rightly do not take:
    # the log above gave no trace at all.


def test_planted_pwdump_service_installs(
    real_data: Path, compiled, scenario_builder
) -> None:
    data = (real_data / "evtx/aptsimulator/System.evtx").read_bytes()
    planted = with_pwdump_service(data, scenario_builder)
    # The recomputed checksums are the ones Windows would have written.
    for start in range(4096, len(planted), 65536):
        chunk = planted[start : start + 65536]
        if not chunk.startswith(b"ElfChnk\x00"):
            continue  # a chunk never used
        (free, records_crc) = struct.unpack_from("<II", chunk, 0x30)
        assert zlib.crc32(chunk[512:free]) == records_crc
        (header_crc,) = struct.unpack_from("<I", chunk, 0x7C)
        assert zlib.crc32(chunk[:0x78] + chunk[0x80:512]) == header_crc
    result = parse(planted, compiled)
    assert [t.attributes["record_number"] for t in result.traces] == PSEXEC_INSTALLS
    for trace in result.traces:
        assert trace.data_type == DATA_TYPE_EVENTLOG
        assert trace.timestamp_desc == "Creation Time"
        assert [(m.indicator, m.value, dict(m.detail)) for m in trace.matches] == [
            ("pwdump.eventlog.service_name", "pwdump", {"field": "ServiceName"})
        ]
        attributes = trace.attributes
        assert (attributes["channel"], attributes["event_id"]) == ("System", 7045)
        assert attributes["provider"] == "Service Control Manager"
        assert attributes["event_data"]["ImagePath"] == "%SystemRoot%\\PSEXESVC.EXE"
        assert attributes["recovered"] is False
    first = result.traces[0].timestamp.CopyToDateTimeString()
    assert first.startswith("2022-03-10 19:57:43.665111")


def test_provider_must_be_the_indicators(compiled) -> None:
    fields = {"ServiceName": "pwdump"}
    scm = compiled.match_eventlog("System", 7045, fields, "Service Control Manager")
    assert [ind.id for ind, _, _ in scm] == ["pwdump.eventlog.service_name"]
    assert compiled.match_eventlog("System", 7045, fields, "EventCreate") == []


@pytest.mark.parametrize(
    "make",
    [
        lambda data: b"",
        lambda data: os.urandom(200_000),
        lambda data: data[:4096],
        lambda data: data[: 4096 + 70_000],
        lambda data: data[:4096] + os.urandom(65536) + data[4096 + 65536 :],
    ],
    ids=["empty", "random", "header only", "cut in a chunk", "garbage chunk"],
)
def test_bad_logs_are_warnings(real_data: Path, compiled, scenario_builder, make):
    data = (real_data / "evtx/aptsimulator/System.evtx").read_bytes()
    damaged = make(with_pwdump_service(data, scenario_builder))
    result = parse(damaged, compiled)
    assert not any("internal error" in w for w in result.warnings)
    assert all(w.startswith("test.evtx: event log: ") for w in result.warnings)
    for trace in result.traces:
        assert trace.attributes["record_number"] in PSEXEC_INSTALLS
