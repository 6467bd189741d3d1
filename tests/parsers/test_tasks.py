"""Tests of the scheduled tasks detection core (task XML and .job files).

The real files' facts come from ../shared/test_data/real/MANIFEST.md; the .job
file's other fields are read independently with dtfabric and plaso's own
winjob.yaml definition. Planted tasks are built here from the real GameOver
task's XML or the real .job file, with planted commands. Missing test data
fails; nothing is skipped.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import struct
import time
import tracemalloc
from pathlib import Path

import pytest
from dtfabric.runtime import data_maps, fabric

from toolmarks.indicators.compiler import CompiledSet
from toolmarks.indicators.loader import load
from toolmarks.output import plaso_storage
from toolmarks.parsers import manager
from toolmarks.parsers.tasks import DATA_TYPE, TaskResult, parse_tasks

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / ".." / "shared" / "test_data" / "real" / "tasks"
GAMEOVER = REAL / "aptsimulator" / "GameOver"
WINTASK = REAL / "wintask.job"
INDICATORS = ROOT / "test_data" / "indicators"
TASKS = "/Windows/System32/Tasks"
# Generous bounds: a task parses in well under a millisecond; these only catch
# an XML bomb expanded or a hang.
TIME_LIMIT = 1.0
MEMORY_LIMIT = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def shipped() -> CompiledSet:
    return CompiledSet(load())


@pytest.fixture(scope="module")
def with_mimikatz() -> CompiledSet:
    return CompiledSet(load([INDICATORS / "tasks_mimikatz.yaml"]))


def parse(
    data: bytes, compiled: CompiledSet, source: str = f"{TASKS}/Task"
) -> TaskResult:
    name = source.rsplit("/", 1)[-1]
    result = parse_tasks(io.BytesIO(data), source, compiled, name)
    for warning in result.warnings:
        assert "internal error" not in warning
        assert warning.startswith(f"{source}: task: ")
    for trace in result.traces:
        assert trace.data_type == DATA_TYPE and trace.source == source
    return result


def task_xml(
    command: str,
    arguments: str = "",
    *,
    date: str | None = "2021-02-14T03:10:00",
    uri: str = "\\Microsoft\\Windows\\Maintenance\\Cleanup",
    extra_actions: str = "",
) -> str:
    """A task as Task Scheduler writes it (the real GameOver task's layout)."""
    date_element = f"<Date>{date}</Date>" if date is not None else ""
    args = f"<Arguments>{arguments}</Arguments>" if arguments else ""
    return (
        '<?xml version="1.0" encoding="UTF-16"?>\r\n'
        '<Task version="1.2" '
        'xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">\r\n'
        f"  <RegistrationInfo>{date_element}<Author>NT AUTHORITY\\SYSTEM</Author>"
        f"<URI>{uri}</URI></RegistrationInfo>\r\n"
        "  <Triggers><BootTrigger><Enabled>true</Enabled></BootTrigger></Triggers>\r\n"
        '  <Actions Context="Author">'
        f"{extra_actions}<Exec><Command>{command}</Command>{args}</Exec>"
        "</Actions>\r\n</Task>\r\n"
    )


def utf16(text: str) -> bytes:
    return b"\xff\xfe" + text.encode("utf-16-le")


def ids(result: TaskResult) -> set[str]:
    return {m.indicator for t in result.traces for m in t.matches}


# --- the real task XML ------------------------------------------------------------


def test_gameover_facts(with_mimikatz: CompiledSet) -> None:
    data = GAMEOVER.read_bytes()
    # MANIFEST: 3666 bytes, this sha256, UTF-16 LE with a BOM.
    assert len(data) == 3666
    assert hashlib.sha256(data).hexdigest() == (
        "fbab477fa514aff5c16b7e5bdc4346827594e7b65bd5b283dfca96b1b30d15f6"
    )
    assert data[:2] == b"\xff\xfe"
    result = parse(data, with_mimikatz, f"{TASKS}/GameOver")
    assert result.warnings == []
    # One time in the file: RegistrationInfo/Date, so one event.
    [trace] = result.traces
    attributes = trace.attributes
    assert trace.timestamp_desc == "Registration Time"
    assert trace.timestamp.CopyToDateTimeString().startswith("2022-03-10 15:59:03")
    # A local time without zone: kept so, the writers read it as UTC.
    assert trace.timestamp.is_local_time
    assert attributes["registration_date"] == "2022-03-10T15:59:03"
    assert attributes["author"] == "DESKTOP-TMKU40H\\TestUser"
    assert attributes["uri"] == "\\GameOver"
    assert attributes["task_path"] == "\\GameOver"
    assert attributes["task_format"] == "xml"
    assert attributes["command"] == "C:\\TMP\\mim.exe"
    assert attributes["arguments"] == "sekurlsa::LogonPasswords > C:\\TMP\\o.txt"
    [trigger] = attributes["triggers"]
    assert trigger.startswith("TimeTrigger") and "every PT5M" in trigger
    assert attributes["time_of"] == "registration"
    # The test indicators name the program and its command.
    matches = {(m.indicator, m.kind, m.value) for m in trace.matches}
    assert matches == {
        ("test_mimikatz.filename.mim", "filename", "C:\\TMP\\mim.exe"),
        (
            "test_mimikatz.commandline.logonpasswords",
            "commandline",
            "C:\\TMP\\mim.exe sekurlsa::LogonPasswords > C:\\TMP\\o.txt",
        ),
    }
    [filename] = [m for m in trace.matches if m.kind == "filename"]
    assert dict(filename.detail) == {"field": "command", "path": "\\TMP\\mim.exe"}
    assert {m.tool for m in trace.matches} == {"test_mimikatz"}


def test_gameover_gives_nothing_with_the_shipped_set(shipped: CompiledSet) -> None:
    # Mimikatz is no seed tool (MANIFEST index: mim.exe persisted by GameOver).
    result = parse(GAMEOVER.read_bytes(), shipped, f"{TASKS}/GameOver")
    assert result.warnings == []
    assert result.traces == []
    assert result.info is not None and result.info.actions[0].command == (
        "C:\\TMP\\mim.exe"
    )


# --- the real .job file -------------------------------------------------------------


def plaso_job_reading(data: bytes) -> dict:
    """The .job file read with dtfabric and plaso's winjob.yaml: another reader."""
    spec = importlib.util.find_spec("plaso")
    assert spec is not None and spec.submodule_search_locations
    definition = Path(spec.submodule_search_locations[0]) / "parsers" / "winjob.yaml"
    types = fabric.DataTypeFabric(yaml_definition=definition.read_bytes())
    fixed = types.CreateDataTypeMap("job_fixed_length_data_section").MapByteStream(data)
    context = data_maps.DataTypeMapContext()
    variable = types.CreateDataTypeMap(
        "job_variable_length_data_section"
    ).MapByteStream(data[68:], context=context)
    trigger = types.CreateDataTypeMap("job_trigger").MapByteStream(
        data[68 + context.byte_size :]
    )
    run = fixed.last_run_time
    return {
        "product_version": fixed.product_version,
        "last_run": (
            f"{run.year:04d}-{run.month:02d}-{run.day_of_month:02d} "
            f"{run.hours:02d}:{run.minutes:02d}:{run.seconds:02d}."
            f"{run.milliseconds:03d}"
        ),
        "application": variable.application_name,
        "parameters": variable.parameters,
        "author": variable.author,
        "triggers": variable.number_of_triggers,
        "trigger_start": (
            f"{trigger.start_date.year:04d}-{trigger.start_date.month:02d}-"
            f"{trigger.start_date.day_of_month:02d} {trigger.start_time.hours:02d}:"
            f"{trigger.start_time.minutes:02d}:00"
        ),
    }


def test_wintask_job_facts(shipped: CompiledSet) -> None:
    data = WINTASK.read_bytes()
    # MANIFEST: 896 bytes, this sha256, product version 0x0601, the application.
    assert len(data) == 896
    assert hashlib.sha256(data).hexdigest() == (
        "9f7cee1b79a240e2f837e27b1bc50e9e3d9d7b99f1a866f9cfdd18f7927245ac"
    )
    result = parse(data, shipped, "/Windows/Tasks/wintask.job")
    assert result.warnings == []
    # GoogleUpdate.exe is no tool: no event.
    assert result.traces == []
    info = result.info
    assert info is not None and info.task_format == "job"
    assert info.attributes["product_version"] == "0x0601"
    [action] = info.actions
    assert action.command == "C:\\Program Files (x86)\\Google\\Update\\GoogleUpdate.exe"
    other = plaso_job_reading(data)
    assert other["product_version"] == 0x0601
    assert action.command == other["application"]
    assert action.arguments == other["parameters"]
    assert info.attributes["author"] == other["author"]
    times = {what: value.CopyToDateTimeString() for value, _, what in info.times}
    assert times == {
        "last run": other["last_run"],
        "trigger 0 start": other["trigger_start"],
    }
    assert len(info.triggers) == other["triggers"] == 1


def job_with(application: str, parameters: str = "", working: str = "") -> bytes:
    """The real .job file with its strings replaced (lengths in characters with
    the NUL, as MS-TSCH writes them); the triggers offset follows."""
    real = WINTASK.read_bytes()
    fixed, rest = bytearray(real[:68]), real[68:]
    offset = 2
    strings = []
    for _ in range(5):
        length = struct.unpack_from("<H", rest, offset)[0]
        strings.append(rest[offset + 2 : offset + 2 + 2 * length])
        offset += 2 + 2 * length
    tail = rest[offset:]  # user data, reserved data, triggers

    def string(text: str) -> bytes:
        if not text:
            return b"\x00\x00"
        encoded = (text + "\x00").encode("utf-16-le")
        return struct.pack("<H", len(encoded) // 2) + encoded

    variable = rest[:2] + string(application) + string(parameters) + string(working)
    variable += struct.pack("<H", len(strings[3]) // 2) + strings[3]
    variable += struct.pack("<H", len(strings[4]) // 2) + strings[4]
    user_size = struct.unpack_from("<H", tail)[0]
    reserved_size = struct.unpack_from("<H", tail, 2 + user_size)[0]
    triggers_at = 68 + len(variable) + 4 + user_size + reserved_size
    struct.pack_into("<H", fixed, 22, triggers_at)
    return bytes(fixed) + variable + tail


def test_job_running_pwdump(shipped: CompiledSet) -> None:
    data = job_with("C:\\WINDOWS\\Temp\\PwDump7.exe", "-o hashes.txt")
    result = parse(data, shipped, "/Windows/Tasks/At1.job")
    assert result.warnings == []
    # Last run and trigger start of the real file: two events.
    assert [t.timestamp_desc for t in result.traces] == [
        "Last Time Executed",
        "Scheduled to start",
    ]
    assert {"pwdump.filename.pwdump_name", "pwdump.commandline.program"} <= ids(result)
    for trace in result.traces:
        assert trace.attributes["task_path"] == "\\At1"
        assert trace.attributes["command"] == "C:\\WINDOWS\\Temp\\PwDump7.exe"
        assert trace.attributes["author"] == "Brian"


def test_truncated_job(shipped: CompiledSet) -> None:
    data = job_with("C:\\WINDOWS\\Temp\\PwDump7.exe")
    source = "/Windows/Tasks/At1.job"
    # Cut inside the trigger: the strings and last run time are still read.
    cut = parse(data[:-40], shipped, source)
    [warning] = cut.warnings
    assert "trigger 0 of 1" in warning and "past the end" in warning
    assert [t.timestamp_desc for t in cut.traces] == ["Last Time Executed"]
    assert "pwdump.filename.pwdump_name" in ids(cut)
    # Cut inside the application name: a warning naming it, nothing matched.
    inside = parse(data[:90], shipped, source)
    [warning] = inside.warnings
    assert "application at offset 70" in warning and "past the end" in warning
    assert inside.traces == []
    # Cut inside the fixed-length section.
    short = parse(data[:40], shipped, source)
    assert short.warnings == [
        f"{source}: task: .job: truncated fixed-length section (40 of 68 bytes)"
    ]
    # A length pointing past the end is not followed.
    hostile = bytearray(data)
    struct.pack_into("<H", hostile, 70, 0xFFFF)
    [warning] = parse(bytes(hostile), shipped, source).warnings
    assert "65535 characters run past the end" in warning
    # Zero-filled: no Task Scheduler 1.0 header.
    [warning] = parse(bytes(896), shipped, source).warnings
    assert "product version 0x0000" in warning


# --- planted XML tasks: the scenario's pwdump, renamed, decoys ----------------------


def test_renamed_task_running_pwdump(shipped: CompiledSet) -> None:
    # The task has an innocuous name; its program is PwDump7.
    source = f"{TASKS}/Microsoft/Windows/Maintenance/Cleanup"
    xml = task_xml("C:\\Windows\\Temp\\PwDump7.exe", "-o C:\\Windows\\Temp\\h.txt")
    result = parse(utf16(xml), shipped, source)
    assert result.warnings == []
    [trace] = result.traces
    assert trace.attributes["task_path"] == "\\Microsoft\\Windows\\Maintenance\\Cleanup"
    assert trace.attributes["triggers"] == ["BootTrigger"]
    assert trace.timestamp.CopyToDateTimeString().startswith("2021-02-14 03:10:00")
    assert {(m.indicator, m.kind) for m in trace.matches} == {
        ("pwdump.filename.pwdump_name", "filename"),
        ("pwdump.commandline.program", "commandline"),
    }
    by_kind = {m.kind: m for m in trace.matches}
    assert by_kind["filename"].indicator == "pwdump.filename.pwdump_name"
    assert by_kind["filename"].value == "C:\\Windows\\Temp\\PwDump7.exe"
    assert by_kind["commandline"].indicator == "pwdump.commandline.program"
    assert by_kind["commandline"].value == (
        "C:\\Windows\\Temp\\PwDump7.exe -o C:\\Windows\\Temp\\h.txt"
    )
    assert {m.tool for m in trace.matches} == {"pwdump"}


def test_renamed_executable_is_not_found(shipped: CompiledSet) -> None:
    # PwDump7 renamed to a name no indicator knows, run with pwdump6's remote
    # switches: neither the file name nor the program name of the command line
    # names the tool, so nothing does (its hashes on the file would).
    xml = task_xml("C:\\Windows\\Temp\\svcupd.exe", "-o out.txt -u admin 10.0.0.5")
    result = parse(utf16(xml), shipped)
    assert result.warnings == [] and result.traces == []


def test_tool_behind_cmd_and_variables(shipped: CompiledSet) -> None:
    xml = task_xml(
        "%ComSpec%",
        "/c %SystemRoot%\\Temp\\pwdump7.exe &gt; %SystemRoot%\\Temp\\out.txt",
    )
    [trace] = parse(utf16(xml), shipped).traces
    [filename] = [m for m in trace.matches if m.kind == "filename"]
    assert filename.value == "%SystemRoot%\\Temp\\pwdump7.exe"
    assert dict(filename.detail) == {
        "field": "arguments",
        "path": "\\Windows\\Temp\\pwdump7.exe",
    }


def test_second_action_speaks_for_the_task(shipped: CompiledSet) -> None:
    benign = "<Exec><Command>C:\\Windows\\System32\\notepad.exe</Command></Exec>"
    xml = task_xml("C:\\Users\\Public\\wce.exe", "-w", extra_actions=benign)
    [trace] = parse(utf16(xml), shipped).traces
    assert trace.attributes["command"] == "C:\\Users\\Public\\wce.exe"
    assert trace.attributes["actions"] == [
        "C:\\Windows\\System32\\notepad.exe",
        "C:\\Users\\Public\\wce.exe -w",
    ]
    assert "wce.filename.exe" in ids(parse(utf16(xml), shipped))


@pytest.mark.parametrize(
    ("command", "arguments"),
    [
        ("C:\\Windows\\Temp\\pwdmp7.exe", ""),
        ("C:\\Windows\\Temp\\mypwdump.exe", "-o out.txt"),
        ("C:\\Tools\\wce-report.exe", "C:\\Tools\\wce.txt"),
        ("C:\\Windows\\System32\\sdclt.exe", "/KickOffElev"),
        ("C:\\Program Files\\gsecdumper\\gsecdumper.exe", ""),
        ("C:\\Windows\\System32\\cleanmgr.exe", "/autoclean /d C:"),
        # A folder of that name (quoted, with its trailing backslash).
        ("C:\\Windows\\System32\\notepad.exe", '"C:\\Users\\bob\\pwdump notes\\"'),
    ],
)
def test_decoys_give_nothing(
    shipped: CompiledSet, command: str, arguments: str
) -> None:
    result = parse(utf16(task_xml(command, arguments)), shipped)
    assert result.warnings == [] and result.traces == [], command


def test_task_named_after_a_tool_running_nothing_of_it(shipped: CompiledSet) -> None:
    # Only what the task runs counts; its name alone is no trace of the tool.
    source = f"{TASKS}/pwdump7"
    xml = task_xml("C:\\Windows\\System32\\notepad.exe", uri="\\pwdump7")
    assert parse(utf16(xml), shipped, source).traces == []


def test_registration_dates(shipped: CompiledSet) -> None:
    command = "C:\\Windows\\Temp\\PwDump7.exe"
    # With a zone: read with it, not local.
    [trace] = parse(
        utf16(task_xml(command, date="2014-09-17T14:34:52.6571285-07:00")), shipped
    ).traces
    assert not trace.timestamp.is_local_time
    assert trace.timestamp.GetPlasoTimestamp() == 1410989692657129
    # No Date: one event without a time.
    [trace] = parse(utf16(task_xml(command, date=None)), shipped).traces
    assert (trace.timestamp, trace.timestamp_desc) == (None, "Not a time")
    # A broken Date: a warning naming it, the task still reported.
    result = parse(utf16(task_xml(command, date="2021-13-45T99:00:00")), shipped)
    assert len(result.warnings) == 1 and "'2021-13-45T99:00:00'" in result.warnings[0]
    [trace] = result.traces
    assert trace.timestamp_desc == "Not a time"


def test_event_data_carries_the_registration_time(shipped: CompiledSet) -> None:
    [trace] = parse(utf16(task_xml("C:\\Windows\\Temp\\PwDump7.exe")), shipped).traces
    event = plaso_storage.event_of(trace)
    # Local time without zone, written as UTC (no zone to give).
    assert event.timestamp == 1613272200000000
    assert event.timestamp_desc == "Registration Time"
    event_data = plaso_storage.event_data_of(trace, shipped.tools, "test")
    # The file's path names the task; the URI inside may say otherwise.
    assert event_data.task_path == "\\Task"
    assert event_data.uri == "\\Microsoft\\Windows\\Maintenance\\Cleanup"
    assert event_data.registration_time.CopyToDateTimeString().startswith(
        "2021-02-14 03:10:00"
    )


# --- bad input ---------------------------------------------------------------------------


def test_utf8_task_is_read_with_a_warning(shipped: CompiledSet) -> None:
    xml = task_xml("C:\\Windows\\Temp\\PwDump7.exe").replace("UTF-16", "UTF-8")
    result = parse(xml.encode("utf-8"), shipped)
    [warning] = result.warnings
    assert "UTF-8, not UTF-16" in warning
    assert len(result.traces) == 1


def test_not_utf16_nor_utf8(shipped: CompiledSet) -> None:
    data = b"<?xml version='1.0'?><Task>\xff\xfe\x80</Task>"
    [warning] = parse(data, shipped).warnings
    assert "neither UTF-16 nor UTF-8: bad byte at offset 27" in warning
    odd = b"\xff\xfe" + "<Task>".encode("utf-16-le") + b"\x00\xd8"  # lone surrogate
    [warning] = parse(odd, shipped).warnings
    assert "not valid UTF-16: bad bytes at offset 14" in warning


def test_malformed_xml(shipped: CompiledSet) -> None:
    data = GAMEOVER.read_bytes()
    # Cut in the middle of the Settings element (even length: still UTF-16).
    [warning] = parse(data[:2000], shipped).warnings
    assert "not well-formed XML at line" in warning
    [warning] = parse(utf16("<Task><Actions></Task>"), shipped).warnings
    assert "not well-formed XML at line 1, column 17" in warning
    [warning] = parse(utf16("<Other/>"), shipped).warnings
    assert "XML root element is 'Other', not Task" in warning
    # Zero-filled and empty files.
    [warning] = parse(bytes(4096), shipped).warnings
    assert "neither a task XML file" in warning
    assert parse(b"", shipped).warnings == [f"{TASKS}/Task: task: empty file"]


def billion_laughs(levels: int = 9) -> str:
    entities = ['<!ENTITY lol0 "lol">']
    for level in range(1, levels + 1):
        entities.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">')
    return (
        '<?xml version="1.0" encoding="UTF-16"?>\n'
        f"<!DOCTYPE Task [{''.join(entities)}]>\n"
        f"<Task><Actions><Exec><Command>&lol{levels};</Command></Exec></Actions>"
        "</Task>"
    )


@pytest.mark.parametrize(
    "xml",
    [
        billion_laughs(),
        # External entity: would read a file of the examiner's machine.
        (
            '<?xml version="1.0"?><!DOCTYPE Task [<!ENTITY x SYSTEM '
            '"file:///etc/passwd">]><Task><Actions><Exec><Command>&x;</Command>'
            "</Exec></Actions></Task>"
        ),
        # Quadratic blow-up: one big entity used many times.
        '<?xml version="1.0"?><!DOCTYPE Task [<!ENTITY a "'
        + "a" * 50_000
        + '">]><Task><Actions><Exec><Command>'
        + "&a;" * 50_000
        + "</Command></Exec></Actions></Task>",
    ],
    ids=["billion_laughs", "external_entity", "quadratic"],
)
def test_xml_bombs_are_refused_quickly(shipped: CompiledSet, xml: str) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    result = parse(utf16(xml), shipped)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    [warning] = result.warnings
    assert "XML refused: a DTD or entity declaration" in warning
    assert result.traces == []
    assert elapsed < TIME_LIMIT
    assert peak < MEMORY_LIMIT + 4 * len(xml)


def test_oversized_file_is_not_read(shipped: CompiledSet) -> None:
    result = parse_tasks(
        io.BytesIO(bytes(5 * 1024 * 1024)), f"{TASKS}/Big", shipped, "Big"
    )
    [warning] = result.warnings
    assert "5242880 bytes, larger than the limit of 4194304: not read" in warning


def test_no_warning_outside_a_tasks_folder(shipped: CompiledSet) -> None:
    # plaso hands over any UTF-16 XML by its signature: a file that is no task
    # and lies in no Tasks folder is passed over in silence.
    for data in (utf16("<Other/>"), utf16("<broken"), bytes(100)):
        result = parse(data, shipped, "/Users/bob/settings.xml")
        assert result.warnings == [] and result.traces == []


# --- routing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "taken"),
    [
        ("Windows/System32/Tasks/GameOver", True),
        ("Windows/System32/Tasks/Microsoft/Windows/Maintenance/Cleanup", True),
        ("WINDOWS/system32/tasks/Microsoft/Windows/Defrag/ScheduledDefrag", True),
        ("Windows/System32/Tasks_Migrated/Old", True),
        ("Windows/Tasks/At1.job", True),
        ("Windows/Tasks/desktop.ini", False),
        ("Windows/Tasks/SA.DAT", False),
        ("Windows/System32/Tasks/GameOver:Zone.Identifier", False),
        ("Users/bob/Tasks/GameOver", False),
    ],
)
def test_routing(path: str, taken: bool) -> None:
    [definition] = [d for d in manager.file_parsers() if d.name == "tasks"]
    assert definition.takes(path) is taken
    assert definition.data_type == DATA_TYPE
