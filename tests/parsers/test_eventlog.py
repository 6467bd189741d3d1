"""The event log parser on the real logs of ../shared/test_data/real/evtx.

Facts from its MANIFEST.md: record counts; aptsimulator/System.evtx holds 7
PsExec service installs (event 7045, records 457-462 and 469) and simulated
WCESERVICE events 100/101 (records 466/467) written by eventcreate; the Atomic
Red Team Sysmon log holds process creations of `cmd.exe /c "sdelete.exe
C:\\some\\file.txt"` (record 81), `cmd.exe /c "gsecdump -a"` (542) and
`cmd.exe /c "wce -o output.txt"` (544), and no process record of the tools
themselves; the APTSimulator Sysmon log's tools (PsExec as p.exe, nbtscan,
mimikatz scheduled by at and schtasks) are none of ours.
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
ART = "gpl-3.0/PanacheSysmon_vs_AtomicRedTeam01.evtx"
# MANIFEST: record id -> the tool, the command cmd.exe ran.
ART_ATTEMPTS = {
    81: ("sdelete", "sdelete.exe C:\\some\\file.txt"),
    542: ("gsecdump", "gsecdump -a"),
    544: ("wce", "wce -o output.txt"),
}


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
    if name != ART:
        assert result.traces == []
    assert not any("internal error" in w for w in result.warnings)


def sysmon_record(real_data: Path, number: int) -> dict[str, str]:
    """A record's fields read with pyevtx alone, not through our parser."""
    import pyevtx

    log = pyevtx.file()
    log.open(str(real_data / "evtx" / ART))
    try:
        for index in range(log.number_of_records):
            record = log.get_record(index)
            if record.identifier == number:
                return eventlog.event_data(record.xml_string)
    finally:
        log.close()
    raise KeyError(number)


def test_atomic_red_team_attempts_via_cmd(real_data: Path, compiled) -> None:
    result = parse((real_data / "evtx" / ART).read_bytes(), compiled)
    by_record = {t.attributes["record_number"]: t for t in result.traces}
    # The recovered copies of records 542 and 544 in the log's free space are
    # the same records: one event each.
    assert sorted(by_record) == sorted(ART_ATTEMPTS) == [81, 542, 544]
    assert len(result.traces) == 3
    for number, (tool, command) in ART_ATTEMPTS.items():
        trace = by_record[number]
        fields = sysmon_record(real_data, number)
        attributes = trace.attributes
        assert (attributes["channel"], attributes["event_id"]) == (
            "Microsoft-Windows-Sysmon/Operational",
            1,
        )
        assert attributes["command_line"] == fields["CommandLine"]
        assert fields["CommandLine"].endswith(f'/c "{command}"')
        assert attributes["image"] == fields["Image"]
        assert fields["Image"].lower().endswith("\\cmd.exe")
        assert attributes["parent_image"] == fields["ParentImage"]
        assert attributes["execution"] == (
            "attempted via cmd.exe; the tool's own process record is absent in this log"
        )
        assert {m.tool for m in trace.matches} == {tool}
        program = trace.matches[0]
        assert program.indicator == f"{tool}.commandline.program"
        assert (program.kind, program.value) == ("commandline", command)
        assert dict(program.detail) == {
            "field": "CommandLine",
            "program": command.split()[0],
            "via": "cmd.exe",
        }
        assert trace.timestamp is not None


def test_the_tools_own_process_record_makes_it_a_run(
    real_data: Path, compiled, scenario_builder
) -> None:
    """vssadmin.exe renamed gsecdump.exe: record 68, vssadmin's own process
    record, becomes gsecdump's; the attempt of record 542 is no longer alone,
    and the image itself matches."""
    data = (real_data / "evtx" / ART).read_bytes()
    old, new = "vssadmin.exe".encode("utf-16-le"), "gsecdump.exe".encode("utf-16-le")
    assert old in data
    planted = scenario_builder.fix_evtx_checksums(data.replace(old, new))
    result = parse(planted, compiled)
    by_record = {t.attributes["record_number"]: t for t in result.traces}
    assert "present in this log" in by_record[542].attributes["execution"]
    assert "absent in this log" in by_record[544].attributes["execution"]
    own = by_record[68]
    assert own.attributes["image"].lower().endswith("\\gsecdump.exe")
    assert "execution" not in own.attributes
    assert {m.indicator for m in own.matches} >= {
        "gsecdump.filename.exe",
        "gsecdump.commandline.program",
    }


@pytest.mark.parametrize(
    ("channel", "event_id", "fields", "expected"),
    [
        (  # Security 4688 of a renamed-path WCE with its cleartext switch
            "Security",
            4688,
            {
                "NewProcessName": "C:\\Users\\bob\\AppData\\Local\\Temp\\wce.exe",
                "CommandLine": "wce.exe -w",
                "ParentProcessName": "C:\\Windows\\System32\\cmd.exe",
            },
            {
                "wce.filename.exe",
                "wce.commandline.program",
                "wce.commandline.cleartext",
            },
        ),
        (  # Security 4697: WCE's service as JPCERT documents it
            "Security",
            4697,
            {"ServiceName": "WCESERVICE", "ServiceFileName": "C:\\tmp\\wce.exe -S"},
            {"wce.filename.exe", "wce.commandline.program", "wce.commandline.service"},
        ),
        (  # Sysmon 7: an image load by WCE's imphash (Sigma's list)
            "Microsoft-Windows-Sysmon/Operational",
            7,
            {
                "ImageLoaded": "C:\\x\\a.exe",
                "Hashes": "SHA1=00,MD5=00,IMPHASH=136F0A8572C058A96436C82E541E4C41",
            },
            {"wce.imphash.sigma_1"},
        ),
        (  # Sysmon 1 of a PE whose original name is SDelete's, renamed on disk
            "Microsoft-Windows-Sysmon/Operational",
            1,
            {
                "Image": "C:\\Users\\Public\\svc.exe",
                "OriginalFileName": "sdelete.exe",
                "CommandLine": "svc.exe -accepteula -p 3 C:\\secret.docx",
            },
            {"sdelete.filename.exe"},
        ),
        (  # decoys: names that contain a tool's name, SDelete's help
            "Microsoft-Windows-Sysmon/Operational",
            1,
            {
                "Image": "C:\\Users\\bob\\wce.exe.txt",
                "OriginalFileName": "owce.exe",
                "CommandLine": "notepad.exe wce.exe -w & sdeleter -z",
            },
            set(),
        ),
    ],
    ids=["4688", "4697", "sysmon7-imphash", "sysmon1-original-name", "decoys"],
)
def test_process_records(compiled, channel, event_id, fields, expected) -> None:
    matches = eventlog.record_matches(channel, event_id, "", fields, compiled)
    assert {m.indicator for m in matches} == expected


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
