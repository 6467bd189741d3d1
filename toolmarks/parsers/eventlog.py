"""Windows event log (EVTX) detection core: one .evtx file in, traces out.

libevtx (pyevtx) reads the records, and the recovered ones a dirty or cut log
still holds in its free space. Only records whose channel and event ID some
indicator names, or that record a process, driver, image or service start
(PROCESS_RECORDS), are turned into XML. Their EventData (or UserData) fields are
matched against the indicators' field patterns; a process record's program
paths, names and hashes against every tool's filename and hash indicators and
its command line against the commandline indicators. Each matching record
becomes one Trace at its TimeCreated. Bad input never raises: it ends as a
warning.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, BinaryIO
from xml.etree import ElementTree

import pyevtx
from dfdatetime import filetime as dfdatetime_filetime

from toolmarks.events import NOT_A_TIME, Match, Trace
from toolmarks.indicators.commandline import commands
from toolmarks.indicators.compiler import CompiledSet
from toolmarks.parsers import manager
from toolmarks.parsers.reading import describe

DATA_TYPE = "toolmarks:eventlog:trace"

DESC_CREATION = "Creation Time"
SYSMON = "microsoft-windows-sysmon/operational"


@dataclasses.dataclass(frozen=True)
class ProcessFields:
    """Where a record names the program it starts or loads."""

    paths: tuple[str, ...] = ()  # program paths: filename indicators
    names: tuple[str, ...] = ()  # PE original file names: filename indicators
    command_lines: tuple[str, ...] = ()  # commandline indicators
    hashes: str | None = None  # Sysmon's "MD5=…,SHA256=…,IMPHASH=…"
    parent: str | None = None  # reported, not matched
    starts_process: bool = False  # its program's own process record


# (lower-case channel, event ID) -> fields. Sysmon 1 process creation, 6 driver
# and 7 image loads; Security 4688 process creation and 4697 service installs;
# System 7045 service installs (its ImagePath is a command line).
PROCESS_RECORDS = {
    (SYSMON, 1): ProcessFields(
        ("Image",),
        ("OriginalFileName",),
        ("CommandLine",),
        "Hashes",
        "ParentImage",
        starts_process=True,
    ),
    (SYSMON, 6): ProcessFields(("ImageLoaded",), hashes="Hashes"),
    (SYSMON, 7): ProcessFields(
        ("ImageLoaded",), ("OriginalFileName",), hashes="Hashes"
    ),
    ("security", 4688): ProcessFields(
        ("NewProcessName",),
        (),
        ("CommandLine",),
        parent="ParentProcessName",
        starts_process=True,
    ),
    ("security", 4697): ProcessFields(command_lines=("ServiceFileName",)),
    ("system", 7045): ProcessFields(command_lines=("ImagePath",)),
}
_NT_PREFIXES = ("\\??\\", "\\\\?\\")
_NAMESPACE = "{http://schemas.microsoft.com/win/2004/08/events/event}"


@dataclasses.dataclass
class EventLogResult:
    """The outcome of one file: traces, warnings and how many records it has."""

    source: str
    traces: list[Trace] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    records: int = 0
    recovered_records: int = 0

    def warn(self, problem: str) -> None:
        self.warnings.append(f"{self.source}: event log: {problem}")


def parse_eventlog(
    file_object: BinaryIO, source: str, compiled: CompiledSet
) -> EventLogResult:
    """Parses one .evtx file and returns its traces; never raises on bad input."""
    result = EventLogResult(source=source)
    if not compiled.eventlog:
        return result
    try:
        _parse_into(result, file_object, compiled)
    except Exception as error:  # noqa: BLE001 - one odd file never ends a scan
        result.warn(f"internal error: {describe(error)}")
        result.traces = []
    return result


def _parse_into(
    result: EventLogResult, file_object: BinaryIO, compiled: CompiledSet
) -> None:
    evtx_file = pyevtx.file()
    try:
        evtx_file.open_file_object(file_object)
    except Exception as error:  # noqa: BLE001
        result.warn(f"libevtx cannot open it: {describe(error)}")
        return
    programs: set[str] = set()  # file names of every process record's program
    live: set[tuple[int, str, int | None]] = set()  # matched live records
    try:
        result.records = evtx_file.number_of_records
        result.recovered_records = evtx_file.number_of_recovered_records
        for recovered, count, get in (
            (False, result.records, evtx_file.get_record),
            (True, result.recovered_records, evtx_file.get_recovered_record),
        ):
            failed, first_error = 0, ""
            for index in range(count):
                try:
                    trace = _match(
                        get(index), recovered, compiled, result.source, programs
                    )
                except Exception as error:  # noqa: BLE001 - a damaged record
                    failed += 1
                    first_error = first_error or f"{index}: {describe(error)}"
                    continue
                if trace is None:
                    continue
                number = trace.attributes["record_number"]
                if not recovered:
                    live.add((number, trace.timestamp_desc, _time(trace)))
                elif (number, trace.timestamp_desc, _time(trace)) in live:
                    # A copy of a live record left in free space.
                    continue
                result.traces.append(trace)
            if failed:
                kind = "recovered records" if recovered else "records"
                result.warn(
                    f"{failed} of {count} {kind} unreadable (first: {first_error})"
                )
    finally:
        evtx_file.close()
    _mark_attempts(result.traces, programs)


def _match(
    record: Any,
    recovered: bool,
    compiled: CompiledSet,
    source: str,
    programs: set[str],
) -> Trace | None:
    channel = record.channel_name or ""
    event_id = record.event_identifier
    key = (channel.lower(), event_id)
    process = PROCESS_RECORDS.get(key)
    if process is None and key not in compiled.eventlog:
        return None
    fields = event_data(record.xml_string)
    if process is not None and process.starts_process:
        for name in process.paths:
            programs.add(
                windows_path(fields.get(name) or "").rsplit("\\", 1)[-1].lower()
            )
    provider = record.source_name or ""
    matches = record_matches(channel, event_id, provider, fields, compiled)
    if not matches:
        return None
    created = record.get_creation_time_as_integer()
    attributes = {
        "channel": channel,
        "provider": provider,
        "event_id": event_id,
        "record_number": record.identifier,
        "recovered": recovered,
        "computer_name": record.computer_name,
        "event_data": fields,
    }
    if process is not None:
        for name in (*process.paths, *process.command_lines, process.parent):
            if name and fields.get(name):
                attributes[_ATTRIBUTE_NAMES.get(name, "command_line")] = fields[name]
    return Trace(
        DATA_TYPE,
        dfdatetime_filetime.Filetime(timestamp=created) if created else None,
        DESC_CREATION if created else NOT_A_TIME,
        source,
        matches,
        attributes,
    )


def record_matches(
    channel: str,
    event_id: int,
    provider: str,
    fields: dict[str, str],
    compiled: CompiledSet,
    detail: dict[str, Any] | None = None,
) -> list[Match]:
    """The matches of one record's fields: the indicators that name its channel
    and event ID, and for a process record its programs, hashes and command
    lines; one match per indicator, the first field that met it. `detail`
    goes into every match (the plaso front names the record there)."""
    matches: dict[str, Match] = {}
    detail = detail or {}

    def add(match: Match) -> None:
        matches.setdefault(match.indicator, match)

    for indicator, name, text in compiled.match_eventlog(
        channel, event_id, fields, provider
    ):
        add(Match.of(indicator, text, field=name, **detail))
    process = PROCESS_RECORDS.get((channel.lower(), event_id))
    if process is None:
        return list(matches.values())
    for name in (*process.paths, *process.names):
        text = fields.get(name)
        if text and text != "-":
            for indicator in compiled.filenames.match(windows_path(text)):
                add(Match.of(indicator, text, field=name, **detail))
    for name in process.command_lines:
        text = fields.get(name)
        if not text:
            continue
        # A service's command line names its program's path (4697, 7045).
        program = commands(text)[:1]
        for indicator in compiled.filenames.match(
            windows_path(program[0].program) if program else ""
        ):
            add(Match.of(indicator, program[0].program, field=name, **detail))
        for hit in compiled.match_commandline(text):
            add(Match.of(hit.indicator, hit.value, field=name, **hit.detail, **detail))
    if process.hashes:
        for hash_type, value in _hashes(fields.get(process.hashes) or ""):
            for indicator in compiled.match_hash(hash_type, value):
                add(Match.of(indicator, value, field=process.hashes, **detail))
    return list(matches.values())


def windows_path(text: str) -> str:
    r"""A program path as filename indicators take it: `\`-separated, no drive,
    no NT prefix; a bare name gets a leading `\`."""
    path = text.strip().strip('"')
    for prefix in _NT_PREFIXES:
        path = path.removeprefix(prefix)
    if len(path) >= 2 and path[1] == ":":
        path = path[2:]
    return path if path.startswith("\\") else "\\" + path


def _hashes(text: str) -> list[tuple[str, str]]:
    """Sysmon's Hashes field: `SHA1=…,MD5=…,SHA256=…,IMPHASH=…`."""
    found = []
    for part in text.split(","):
        name, _, value = part.partition("=")
        hash_type = name.strip().lower()
        if hash_type in ("md5", "sha1", "sha256", "imphash") and value.strip():
            found.append((hash_type, value.strip().lower()))
    return found


def _time(trace: Trace) -> int | None:
    return trace.timestamp.timestamp if trace.timestamp is not None else None


def _mark_attempts(traces: list[Trace], programs: set[str]) -> None:
    """Says on a command run through a wrapper (cmd.exe /c wce …) whether the
    log also holds the tool's own process record: without it, the record shows
    an attempt, not a run."""
    for trace in traces:
        for match in trace.matches:
            detail = dict(match.detail)
            if match.kind != "commandline" or "via" not in detail:
                continue
            name = re.split(r"[\\/]", detail["program"])[-1].lower()
            names = {name, name + ".exe"}
            seen = "present" if names & programs else "absent"
            trace.attributes["execution"] = (
                f"attempted via {detail['via']}; the tool's own process record is "
                f"{seen} in this log"
            )
            break


def event_data(xml_text: str) -> dict[str, str]:
    """The named fields of a record's EventData or UserData; unnamed Data
    elements are param1, param2, … as Windows numbers them."""
    root = ElementTree.fromstring(xml_text)
    fields: dict[str, str] = {}
    data = root.find(f"{_NAMESPACE}EventData")
    if data is not None:
        for number, element in enumerate(data, start=1):
            name = element.get("Name") or f"param{number}"
            fields[name] = element.text or ""
    user = root.find(f"{_NAMESPACE}UserData")
    if user is not None:
        for container in user:
            for element in container:
                fields[element.tag.rpartition("}")[2]] = element.text or ""
    return fields


_ATTRIBUTE_NAMES = {
    "Image": "image",
    "NewProcessName": "image",
    "ImageLoaded": "image_loaded",
    "ParentImage": "parent_image",
    "ParentProcessName": "parent_image",
}


manager.register(
    manager.ParserDefinition(
        name="eventlog",
        evidence="executed",
        data_type=DATA_TYPE,
        description="Windows XML event logs (EVTX): records named by indicators",
        times={"creation_time": DESC_CREATION},
        report_fields=("channel", "provider", "event_id", "record_number"),
        indicator_sections=("eventlog",),
        paths=re.compile(r"\.evtx$", re.IGNORECASE),
        signatures=((0, b"ElfFile\x00"),),
        parse=lambda stream, source, compiled, _name: parse_eventlog(
            stream, source, compiled
        ),
    )
)
