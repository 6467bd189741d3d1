"""Scheduled tasks detection core: one task file in, traces out.

Task Scheduler 2.0 keeps one XML file per task under Windows\\System32\\Tasks
(UTF-16 LE with a BOM), Task Scheduler 1.0 one binary .job file per task under
Windows\\Tasks (MS-TSCH .JOB File Format). The paths a task runs (command,
arguments, working directory) are matched against the filename indicators, its
command line against the commandline indicators; a task that meets one becomes
one Trace per time the file holds. Bad input never raises: it ends as a warning.

Times: XML RegistrationInfo/Date and the .job last-run and trigger times are
local times of the machine without a zone (a Date with a zone is read with it);
they are kept as dfdatetime values marked local, which the writers, having no
zone to give, read as UTC, as plaso does without --timezone.
"""

from __future__ import annotations

import dataclasses
import re
import struct
import uuid
from typing import Any, BinaryIO
from xml.etree import ElementTree

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeElementTree
from dfdatetime import definitions as dfdatetime_definitions
from dfdatetime import interface as dfdatetime_interface
from dfdatetime import systemtime as dfdatetime_systemtime
from dfdatetime import time_elements as dfdatetime_time_elements

from toolmarks.events import NOT_A_TIME, Match, Trace
from toolmarks.indicators.compiler import CompiledSet
from toolmarks.indicators.model import Indicator
from toolmarks.parsers import manager
from toolmarks.parsers.reading import Refused, describe, read_bounded

DATA_TYPE = "toolmarks:task:trace"

# Real task files are a few KiB; the cap only bounds what a hostile file costs.
MAX_SIZE = 4 * 1024 * 1024

# plaso's wording for .job files (timeliner.yaml windows:tasks:job/trigger).
DESC_REGISTRATION = "Registration Time"
DESC_LAST_RUN = "Last Time Executed"
DESC_START = "Scheduled to start"
DESC_END = "Scheduled to end"

_TASKS_FOLDER = re.compile(
    r"(?:^|/)windows/system32/tasks(?:_migrated)?(/[^:]*)$", re.IGNORECASE
)

# --- Task Scheduler 1.0 (.job), MS-TSCH 2.4 -----------------------------------
# FIXDLEN_DATA: product version, format version, job UUID, application name
# offset, triggers offset, error retry count and interval, idle deadline and
# wait, priority, maximum run time, exit code, status, flags, last run time.
_FIXED = struct.Struct("<HH16sHHHHHHIIIII8H")
_TRIGGER = struct.Struct("<HH3H3H2HIIII3HH2H")
_TRIGGER_SIZE = 48
JOB_PRODUCT_VERSIONS = {
    0x0400: "Windows NT 4.0",
    0x0500: "Windows 2000",
    0x0501: "Windows XP",
    0x0600: "Windows Vista",
    0x0601: "Windows 7",
    0x0602: "Windows 8",
    0x0603: "Windows 8.1",
    0x0A00: "Windows 10",
}
_JOB_STRINGS = ("application", "parameters", "working_directory", "author", "comment")
_TRIGGER_TYPES = {
    0: "once",
    1: "daily",
    2: "weekly",
    3: "monthly (date)",
    4: "monthly (day of week)",
    5: "on idle",
    6: "at system start",
    7: "at logon",
}
_TRIGGER_HAS_END_DATE = 0x1
_TRIGGER_DISABLED = 0x4
_JOB_FLAG_DISABLED = 0x4

# --- Task Scheduler 2.0 (XML) -----------------------------------------------------
# Registration dates as Windows writes them: 2022-03-10T15:59:03, with up to
# seven fraction digits, sometimes with a zone.
_ISO_DATE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d{2}:\d{2})?$"
)
# Arguments are cut into words (quoted strings kept whole, redirections apart);
# a word is matched as a path when it names a folder or a file with an extension.
_WORD = re.compile(r'"([^"]*)"?|([^\s"<>|&]+)')
_PATHLIKE = re.compile(r"[\\/]|\.[A-Za-z0-9]{1,4}$")
_VARIABLE = re.compile(r"%([A-Za-z0-9_()]+)%")
# System-wide variables have one value on every Windows; the others (TEMP,
# USERPROFILE, …) depend on the account and are left as written.
_SYSTEM_VARIABLES = {
    "systemroot": "\\Windows",
    "windir": "\\Windows",
    "systemdrive": "",
    "programfiles": "\\Program Files",
    "programfiles(x86)": "\\Program Files (x86)",
    "programw6432": "\\Program Files",
    "commonprogramfiles": "\\Program Files\\Common Files",
    "programdata": "\\ProgramData",
    "allusersprofile": "\\ProgramData",
    "public": "\\Users\\Public",
}
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclasses.dataclass
class Action:
    """One program a task runs, as the file writes it."""

    command: str
    arguments: str = ""
    working_directory: str = ""

    @property
    def command_line(self) -> str:
        """The line Windows builds: the program quoted when it holds a space."""
        program = self.command.strip()
        if " " in program and not program.startswith('"'):
            program = f'"{program}"'
        return f"{program} {self.arguments}".strip()


@dataclasses.dataclass
class TaskInfo:
    """What one task file says, as far as it could be read."""

    task_format: str  # "xml" or "job"
    task_path: str  # the task's name: its path under the Tasks folder
    actions: list[Action] = dataclasses.field(default_factory=list)
    # (time, description, what the time is) of every time the file holds.
    times: list[tuple[dfdatetime_interface.DateTimeValues, str, str]] = (
        dataclasses.field(default_factory=list)
    )
    triggers: list[str] = dataclasses.field(default_factory=list)
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TaskResult:
    """The outcome of one file: traces, warnings and what was read."""

    source: str
    info: TaskInfo | None = None
    traces: list[Trace] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def warn(self, problem: str) -> None:
        self.warnings.append(f"{self.source}: task: {problem}")


def parse_tasks(
    file_object: BinaryIO,
    source: str,
    compiled: CompiledSet,
    file_name: str = "",
    *,
    max_size: int = MAX_SIZE,
) -> TaskResult:
    """Parses one task file (XML or .job) and returns its traces; never raises.

    A file that is no task is a warning when it lies in a Tasks folder or is
    named .job; elsewhere (plaso hands over any UTF-16 XML by its signature)
    it is passed over in silence.
    """
    result = TaskResult(source=source)
    file_name = file_name or re.split(r"[\\/]", source)[-1]
    expected = bool(_TASKS_FOLDER.search(source)) or file_name.lower().endswith(".job")
    try:
        data = read_bounded(file_object, max_size)
        result.info = _parse(data, source, file_name, result, expected)
    except Refused as error:
        if expected:
            result.warn(str(error))
        return result
    except Exception as error:  # noqa: BLE001 - one odd file never ends a scan
        result.warn(f"internal error: {describe(error)}")
        return result
    if result.info is not None:
        result.traces = _traces(result.info, result, compiled)
    return result


def _task_path(source: str, file_name: str) -> str:
    """The task's name as Task Scheduler shows it: \\Folder\\Name."""
    found = _TASKS_FOLDER.search(source)
    if found and found.group(1).strip("/"):
        return found.group(1).replace("/", "\\")
    return "\\" + file_name


def _parse(
    data: bytes, source: str, file_name: str, result: TaskResult, expected: bool
) -> TaskInfo | None:
    if not data:
        raise Refused("empty file")
    head = data[:4]
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or head[:3] == b"\xef\xbb\xbf":
        return _parse_xml(data, source, file_name, result)
    if data.lstrip()[:1] == b"<" or data[:2] == b"<\x00":
        return _parse_xml(data, source, file_name, result)
    if len(data) >= 4:
        product, fmt = struct.unpack_from("<HH", data)
        if fmt == 1 and product in JOB_PRODUCT_VERSIONS:
            return _parse_job(data, file_name, result)
    if file_name.lower().endswith(".job"):
        return _parse_job(data, file_name, result)
    raise Refused(
        "neither a task XML file (no BOM, no '<') nor a .job file (first bytes "
        f"{data[:8].hex()}, {len(data)} bytes)"
    )


# --- XML ----------------------------------------------------------------------------


def _decode(data: bytes, result: TaskResult) -> str:
    """The XML text. Task Scheduler writes UTF-16 LE with a BOM; UTF-8 is read
    too, with a warning, since Windows did not write that file as it is.
    Offsets in the warnings are the file's."""
    bom = 2 if data[:2] in (b"\xff\xfe", b"\xfe\xff") else 0
    try:
        if data[:2] == b"\xff\xfe":
            return data[2:].decode("utf-16-le")
        if data[:2] == b"\xfe\xff":
            result.warn("UTF-16 big-endian, not as Task Scheduler writes it")
            return data[2:].decode("utf-16-be")
        if data[:2] == b"<\x00":
            result.warn("UTF-16 LE without a BOM, not as Task Scheduler writes it")
            return data.decode("utf-16-le")
    except UnicodeDecodeError as error:
        raise Refused(
            f"not valid UTF-16: bad bytes at offset {bom + error.start} "
            f"({error.reason})"
        ) from error
    bom = 3 if data[:3] == b"\xef\xbb\xbf" else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as error:
        raise Refused(
            f"neither UTF-16 nor UTF-8: bad byte at offset {bom + error.start}"
        ) from error
    result.warn("UTF-8, not UTF-16 as Task Scheduler writes it: read anyway")
    return text


def _local(tag: Any) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _child(element: ElementTree.Element | None, name: str) -> Any:
    if element is None:
        return None
    return next((c for c in element if _local(c.tag) == name), None)


def _text(element: ElementTree.Element | None, *path: str) -> str:
    for name in path:
        element = _child(element, name)
    return (element.text or "").strip() if element is not None else ""


def _parse_xml(
    data: bytes, source: str, file_name: str, result: TaskResult
) -> TaskInfo:
    text = _decode(data, result)
    try:
        root = SafeElementTree.fromstring(
            text, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as error:
        raise Refused(
            f"XML refused: a DTD or entity declaration ({type(error).__name__}; "
            "task files have none: an XML bomb or external entity)"
        ) from error
    except ElementTree.ParseError as error:
        line, column = error.position
        raise Refused(
            f"not well-formed XML at line {line}, column {column}: {describe(error)}"
        ) from error
    if _local(root.tag) != "Task":
        raise Refused(f"XML root element is {_local(root.tag)!r}, not Task")

    info = TaskInfo(task_format="xml", task_path=_task_path(source, file_name))
    registration = _child(root, "RegistrationInfo")
    date_text = _text(registration, "Date")
    info.attributes.update(
        {
            "uri": _text(registration, "URI"),
            "author": _text(registration, "Author"),
            "description": _text(registration, "Description"),
            "registration_date": date_text,
            "task_version": root.get("version") or "",
            "user_id": _text(root, "Principals", "Principal", "UserId"),
            "group_id": _text(root, "Principals", "Principal", "GroupId"),
            "run_level": _text(root, "Principals", "Principal", "RunLevel"),
            "enabled": _text(root, "Settings", "Enabled").lower() != "false",
            "hidden": _text(root, "Settings", "Hidden").lower() == "true",
        }
    )
    if date_text:
        try:
            info.times.append((_iso_date(date_text), DESC_REGISTRATION, "registration"))
        except ValueError as error:
            result.warn(f"RegistrationInfo/Date {date_text!r}: {error}")

    actions = _child(root, "Actions")
    other = []
    for element in actions if actions is not None else ():
        kind = _local(element.tag)
        if kind == "Exec":
            info.actions.append(
                Action(
                    _text(element, "Command"),
                    _text(element, "Arguments"),
                    _text(element, "WorkingDirectory"),
                )
            )
        elif kind:
            # ComHandler (a COM class), SendEmail, ShowMessage: no path to match.
            class_id = _text(element, "ClassId")
            other.append(f"{kind} {class_id}".strip())
    info.attributes["other_actions"] = other

    triggers = _child(root, "Triggers")
    for element in triggers if triggers is not None else ():
        info.triggers.append(_xml_trigger(element))
    return info


def _xml_trigger(element: ElementTree.Element) -> str:
    parts = [_local(element.tag)]
    for label, path in (
        ("start", ("StartBoundary",)),
        ("end", ("EndBoundary",)),
        ("every", ("Repetition", "Interval")),
        ("for", ("Repetition", "Duration")),
        ("delay", ("Delay",)),
        ("user", ("UserId",)),
        ("days", ("ScheduleByDay", "DaysInterval")),
    ):
        value = _text(element, *path)
        if value:
            parts.append(f"{label} {value}")
    if _text(element, "Enabled").lower() == "false":
        parts.append("(disabled)")
    return " ".join(parts)


def _iso_date(text: str) -> dfdatetime_interface.DateTimeValues:
    found = _ISO_DATE.match(text)
    if not found:
        raise ValueError("not a date and time of the form 2022-03-10T15:59:03")
    year, month, day, hours, minutes, seconds = (int(g) for g in found.groups()[:6])
    nanoseconds = int((found.group(7) or "0").ljust(9, "0"))
    zone = found.group(8)
    offset = None
    if zone:
        offset = 0 if zone == "Z" else int(zone[1:3]) * 60 + int(zone[4:6])
        offset = -offset if zone.startswith("-") else offset
    value = dfdatetime_time_elements.TimeElementsInNanoseconds(
        time_elements_tuple=(year, month, day, hours, minutes, seconds, nanoseconds),
        time_zone_offset=offset,
    )
    value.is_local_time = zone is None
    return value


# --- .job -----------------------------------------------------------------------------


def _parse_job(data: bytes, file_name: str, result: TaskResult) -> TaskInfo:
    if len(data) < _FIXED.size:
        raise Refused(
            f".job: truncated fixed-length section ({len(data)} of {_FIXED.size} bytes)"
        )
    fields = _FIXED.unpack_from(data)
    product, fmt, job_id, _name_offset, triggers_offset = fields[:5]
    exit_code, status, flags = fields[11:14]
    last_run = fields[14:22]
    if fmt != 1 or product not in JOB_PRODUCT_VERSIONS:
        raise Refused(
            f".job: product version 0x{product:04x}, format version {fmt}: not "
            "a Task Scheduler 1.0 file"
        )
    name = file_name[:-4] if file_name.lower().endswith(".job") else file_name
    info = TaskInfo(task_format="job", task_path="\\" + name)
    info.attributes.update(
        {
            "product_version": f"0x{product:04x}",
            "product": JOB_PRODUCT_VERSIONS[product],
            "job_identifier": str(uuid.UUID(bytes_le=job_id)),
            "exit_code": exit_code,
            "status": f"0x{status:08x}",
            "enabled": not flags & _JOB_FLAG_DISABLED,
            "last_run_time_text": "",
        }
    )
    if any(last_run):
        try:
            value = dfdatetime_systemtime.Systemtime(system_time_tuple=last_run)
            value.is_local_time = True
            info.times.append((value, DESC_LAST_RUN, "last run"))
            info.attributes["last_run_time_text"] = value.CopyToDateTimeString()
        except ValueError as error:
            result.warn(f".job: last run time {last_run} at offset 52: {error}")

    offset = _FIXED.size + 2  # after the running instance count
    strings: dict[str, str] = {}
    try:
        for field in _JOB_STRINGS:
            strings[field], offset = _job_string(data, offset, field)
        for field in ("user data", "reserved data"):
            size = _u16(data, offset, field)
            if offset + 2 + size > len(data):
                raise Refused(
                    f".job: {field} at offset {offset}: {size} bytes run past "
                    f"the end of the file ({len(data)} bytes)"
                )
            offset += 2 + size
        if offset != triggers_offset:
            result.warn(
                f".job: the header puts the triggers at offset {triggers_offset}, "
                f"the strings end at {offset}: read from {offset}"
            )
        count = _u16(data, offset, "number of triggers")
        offset += 2
        for index in range(count):
            if offset + _TRIGGER_SIZE > len(data):
                raise Refused(
                    f".job: trigger {index} of {count} at offset {offset} runs "
                    f"past the end of the file ({len(data)} bytes)"
                )
            info.triggers.append(_job_trigger(data, offset, index, info, result))
            offset += _TRIGGER_SIZE
    except Refused as error:
        result.warn(f"{error}; the rest of the file is not read")
    info.actions.append(
        Action(
            strings.get("application", ""),
            strings.get("parameters", ""),
            strings.get("working_directory", ""),
        )
    )
    info.attributes["author"] = strings.get("author", "")
    info.attributes["description"] = strings.get("comment", "")
    return info


def _u16(data: bytes, offset: int, field: str) -> int:
    if offset + 2 > len(data):
        raise Refused(
            f".job: {field} at offset {offset} lies past the end of the file "
            f"({len(data)} bytes)"
        )
    return struct.unpack_from("<H", data, offset)[0]


def _job_string(data: bytes, offset: int, field: str) -> tuple[str, int]:
    """A length-prefixed UTF-16 string (length in characters, with its NUL)."""
    characters = _u16(data, offset, f"{field} length")
    end = offset + 2 + 2 * characters
    if end > len(data):
        raise Refused(
            f".job: {field} at offset {offset}: {characters} characters run "
            f"past the end of the file ({len(data)} bytes)"
        )
    raw = data[offset + 2 : end].decode("utf-16-le", errors="replace")
    return raw.partition("\x00")[0], end


def _job_trigger(
    data: bytes, offset: int, index: int, info: TaskInfo, result: TaskResult
) -> str:
    values = _TRIGGER.unpack_from(data, offset)
    size = values[0]
    start_date, end_date, start_time = values[2:5], values[5:8], values[8:10]
    duration, interval, trigger_flags, trigger_type = values[10:14]
    if size != _TRIGGER_SIZE:
        result.warn(
            f".job: trigger {index} at offset {offset} says {size} bytes, "
            f"not {_TRIGGER_SIZE}"
        )
    kind = _TRIGGER_TYPES.get(trigger_type, f"type {trigger_type}")
    summary = [kind]
    if any(start_date):
        try:
            value = dfdatetime_time_elements.TimeElements(
                precision=dfdatetime_definitions.PRECISION_1_MINUTE,
                time_elements_tuple=(*start_date, *start_time, 0),
            )
            value.is_local_time = True
            info.times.append((value, DESC_START, f"trigger {index} start"))
            summary.append(f"start {value.CopyToDateTimeString()}")
        except ValueError as error:
            result.warn(f".job: trigger {index} start {start_date}: {error}")
    if any(end_date):
        try:
            value = dfdatetime_time_elements.TimeElements(
                precision=dfdatetime_definitions.PRECISION_1_DAY,
                time_elements_tuple=(*end_date, 0, 0, 0),
            )
            value.is_local_time = True
            info.times.append((value, DESC_END, f"trigger {index} end"))
            summary.append(f"end {value.CopyToDateTimeString()[:10]}")
        except ValueError as error:
            result.warn(f".job: trigger {index} end {end_date}: {error}")
    if interval:
        summary.append(f"every {interval} min for {duration} min")
    if trigger_flags & _TRIGGER_DISABLED:
        summary.append("(disabled)")
    return " ".join(summary)


# --- matching ---------------------------------------------------------------------------


def _as_path(text: str) -> str:
    """A `\\`-separated path without drive letter, as filename indicators take."""
    text = text.strip().strip('"').strip()

    def expand(found: re.Match[str]) -> str:
        known = _SYSTEM_VARIABLES.get(found.group(1).lower())
        return found.group(0) if known is None else known

    text = _DRIVE.sub("", _VARIABLE.sub(expand, text))
    return text if text.startswith("\\") else "\\" + text


def _words(arguments: str) -> list[str]:
    words = []
    for found in _WORD.finditer(arguments):
        word = found.group(1) if found.group(1) is not None else found.group(2)
        word = word.strip()
        # Switches (/c, -o) are no paths; quoted paths and names are.
        if word and word[0] not in "/-" and _PATHLIKE.search(word):
            words.append(word)
    return words


def task_matches(info: TaskInfo, compiled: CompiledSet) -> list[tuple[int, Match]]:
    """(action number, match) of every action: its paths against the filename
    indicators, its command line against the commandline indicators."""
    matches: dict[tuple[str, str, str], tuple[int, Match]] = {}

    def add(number: int, indicator: Indicator, value: str, **detail: Any) -> None:
        key = (indicator.id, value, detail["field"])
        if key not in matches:
            matches[key] = (number, Match.of(indicator, value, **detail))

    # Guarded: the commandline section came later than this parser.
    match_commandline = getattr(compiled, "match_commandline", None)
    for number, action in enumerate(info.actions):
        candidates = [("command", action.command)]
        candidates += [("arguments", word) for word in _words(action.arguments)]
        candidates.append(("working_directory", action.working_directory))
        for field, written in candidates:
            written = written.strip().strip('"').strip()
            if not written:
                continue
            path = _as_path(written)
            for indicator in compiled.filenames.match(path):
                add(number, indicator, written, field=field, path=path)
        if match_commandline is not None and action.command:
            for hit in match_commandline(action.command_line):
                add(
                    number, hit.indicator, hit.value, field="command_line", **hit.detail
                )
    return list(matches.values())


def _traces(info: TaskInfo, result: TaskResult, compiled: CompiledSet) -> list[Trace]:
    found = task_matches(info, compiled)
    if not found:
        return []
    matches = [match for _, match in found]
    # The first action that matched speaks for the task; all are listed.
    action = info.actions[min(number for number, _ in found)]
    base = {
        "task_format": info.task_format,
        "task_path": info.task_path,
        "command": action.command,
        "arguments": action.arguments,
        "working_directory": action.working_directory,
        "actions": [a.command_line for a in info.actions],
        "triggers": info.triggers,
        "matched_values": list(dict.fromkeys(m.value for m in matches)),
        **info.attributes,
    }
    times: list[tuple[Any, str, str]] = list(info.times) or [(None, NOT_A_TIME, "none")]
    return [
        Trace(
            data_type=DATA_TYPE,
            timestamp=timestamp,
            timestamp_desc=description,
            source=result.source,
            matches=list(matches),
            attributes={**base, "time_of": what},
        )
        for timestamp, description, what in times
    ]


manager.register(
    manager.ParserDefinition(
        name="tasks",
        evidence="scheduled",
        data_type=DATA_TYPE,
        description="Scheduled tasks (XML and .job): actions running tool paths",
        times={
            "registration_time": DESC_REGISTRATION,
            "last_run_time": DESC_LAST_RUN,
            "start_time": DESC_START,
            "end_time": DESC_END,
        },
        report_fields=("task_path", "command", "arguments", "author", "time_of"),
        indicator_sections=("filenames", "commandline"),
        paths=re.compile(
            r"(?:^|/)windows/(?:system32/tasks(?:_migrated)?/[^:]+"
            r"|tasks/[^/:]+\.job)$",
            re.IGNORECASE,
        ),
        signatures=(
            (0, b"\xff\xfe<\x00?\x00x\x00m\x00l\x00"),
            (0, b"\xff\xfe<\x00T\x00a\x00s\x00k\x00"),
            *((0, struct.pack("<HH", v, 1)) for v in JOB_PRODUCT_VERSIONS),
        ),
        parse=parse_tasks,
    )
)
