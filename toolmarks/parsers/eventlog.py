"""Windows event log (EVTX) detection core: one .evtx file in, traces out.

libevtx (pyevtx) reads the records, and the recovered ones a dirty or cut log
still holds in its free space. Only records whose channel and event ID some
indicator names are turned into XML; their EventData (or UserData) fields are
matched against the indicators' field patterns, and each matching record becomes
one Trace at its TimeCreated. Bad input never raises: it ends as a warning.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, BinaryIO
from xml.etree import ElementTree

import pyevtx
from dfdatetime import filetime as dfdatetime_filetime

from toolmarks.events import NOT_A_TIME, Match, Trace
from toolmarks.indicators.compiler import CompiledSet
from toolmarks.parsers import manager

DATA_TYPE = "toolmarks:eventlog:trace"

DESC_CREATION = "Creation Time"
_NAMESPACE = "{http://schemas.microsoft.com/win/2004/08/events/event}"
_MAX_ERROR_TEXT = 400


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
        result.warn(f"internal error: {_describe(error)}")
        result.traces = []
    return result


def _parse_into(
    result: EventLogResult, file_object: BinaryIO, compiled: CompiledSet
) -> None:
    evtx_file = pyevtx.file()
    try:
        evtx_file.open_file_object(file_object)
    except Exception as error:  # noqa: BLE001
        result.warn(f"libevtx cannot open it: {_describe(error)}")
        return
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
                    trace = _match(get(index), recovered, compiled, result.source)
                except Exception as error:  # noqa: BLE001 - a damaged record
                    failed += 1
                    first_error = first_error or f"{index}: {_describe(error)}"
                    continue
                if trace is not None:
                    result.traces.append(trace)
            if failed:
                kind = "recovered records" if recovered else "records"
                result.warn(
                    f"{failed} of {count} {kind} unreadable (first: {first_error})"
                )
    finally:
        evtx_file.close()


def _match(
    record: Any, recovered: bool, compiled: CompiledSet, source: str
) -> Trace | None:
    channel = record.channel_name or ""
    event_id = record.event_identifier
    if (channel.lower(), event_id) not in compiled.eventlog:
        return None
    fields = event_data(record.xml_string)
    provider = record.source_name or ""
    hits = compiled.match_eventlog(channel, event_id, fields, provider)
    if not hits:
        return None
    created = record.get_creation_time_as_integer()
    return Trace(
        DATA_TYPE,
        dfdatetime_filetime.Filetime(timestamp=created) if created else None,
        DESC_CREATION if created else NOT_A_TIME,
        source,
        [Match.of(indicator, text, field=name) for indicator, name, text in hits],
        {
            "channel": channel,
            "provider": provider,
            "event_id": event_id,
            "record_number": record.identifier,
            "recovered": recovered,
            "computer_name": record.computer_name,
            "event_data": fields,
        },
    )


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


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "…"


manager.register(
    manager.ParserDefinition(
        name="eventlog",
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
