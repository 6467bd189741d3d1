"""Writes traces into a plaso storage file, tagged, for pinfo and psort.

Only plaso's own containers and storage writer are used, so the file is what
log2timeline would write: a session, event data (with an event data stream for
file hashes), events and event tags, plus the counters pinfo prints.
"""

from __future__ import annotations

import collections
import copy
import functools
import json
import math
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dfdatetime import interface as dfdatetime_interface
from dfdatetime import semantic_time as dfdatetime_semantic_time
from dfvfs.lib import definitions as dfvfs_definitions
from dfvfs.path import path_spec as dfvfs_path_spec
from plaso.containers import artifacts, counts, events, reports, sessions
from plaso.lib import definitions
from plaso.storage.sqlite import sqlite_file

# plaso.storage.sqlite.writer, not plaso.storage.factory: the factory imports
# the Redis store and redis (~60 ms of every scan) for a format never written.
from plaso.storage.sqlite import writer as sqlite_writer

from toolmarks.events import Trace, describe_matches
from toolmarks.indicators.model import Tool
from toolmarks.parsers import manager
from toolmarks.parsers.content import DATA_TYPE_FILE

_DATA = Path(__file__).resolve().parents[1] / "data"
FORMATTERS_PATH = str(_DATA / "formatters.yaml")

PRODUCT_NAME = manager.PRODUCT
HASH_ATTRIBUTES = {"md5": "md5_hash", "sha1": "sha1_hash", "sha256": "sha256_hash"}

# Event data attributes toolmarks sets itself, and names plaso gives a meaning
# in its output; a trace attribute of such a name is kept as `trace_<name>`.
RENAMED_PREFIX = "trace_"
OWN_ATTRIBUTES = frozenset(
    {
        "data_type",
        "display_name",
        "indicator_set_version",
        "indicators",
        "match_kinds",
        "match_summary",
        "matched_values",
        "matches",
        "source_location",
        "tool",
    }
)
_PLASO_NAMES = frozenset(
    {
        "date_time",
        "datetime",
        "message",
        "parser",
        "path_spec",
        "source",
        "source_long",
        "tag",
        "timestamp",
        "timestamp_desc",
        *HASH_ATTRIBUTES.values(),
    }
)
_NON_NAME = re.compile(r"[^A-Za-z0-9_]")
# Matches shown in a message; the `matches` attribute always has all of them.


@functools.cache
def time_attributes() -> dict[str, dict[str, str]]:
    """Per data type, the event data attribute of each time description.

    From the parser registry, whose timeliner definitions plaso's timeliner
    reads in the plaso front: the attributes write_plaso sets are the ones a
    log2timeline run would turn into the same events.
    """
    return {
        d.data_type: {description: name for name, description in d.times.items()}
        for d in manager.definitions()
    }


def _parser_name(data_type: str) -> str:
    """The parser chain of a data type: psort prints it as `parser`, pinfo
    counts events per parser by it."""
    definition = manager.by_data_type(data_type)
    return definition.parser_name if definition else PRODUCT_NAME


def write_plaso(
    path: str,
    traces: Iterable[Trace],
    tools: dict[str, Tool],
    *,
    source_path: str,
    command_line: str,
    toolmarks_version: str,
    indicator_set_version: str,
    source_type: str | None = None,
) -> int:
    """Writes the traces as one session of a plaso storage file.

    A new file is created; an existing plaso file (e.g. from log2timeline) gets
    a new session appended, with its counters updated. Any other existing file
    is refused. Returns the number of events written. If reading the traces
    fails, what was written is kept, the session is marked aborted and the
    error is raised.
    """
    writer = _open_writer(path)
    session = sessions.Session()
    session.product_name = PRODUCT_NAME
    session.product_version = toolmarks_version
    session.command_line_arguments = command_line
    session.enabled_parser_names = [d.parser_name for d in manager.definitions()]
    session.preferred_time_zone = "UTC"
    writer.AddAttributeContainer(session)
    writer.AddAttributeContainer(
        artifacts.SourceConfigurationArtifact(
            path=source_path, source_type=source_type or _source_type(source_path)
        )
    )
    state = _State(indicator_set_version)
    aborted = True
    try:
        for trace in traces:
            _write_trace(writer, state, trace, tools)
        aborted = False
    finally:
        # Counters first: pinfo reads them, not the events, so they must match
        # what was written even when the session ends early.
        _write_counters(writer, state)
        writer.AddAttributeContainer(
            _report(state, source_path, toolmarks_version, aborted)
        )
        session.aborted = aborted
        session.completion_time = int(time.time() * 1_000_000)
        writer.UpdateAttributeContainer(session)
        writer.Close()
    return state.number_of_events


class _State:
    """What one write_plaso call has written so far."""

    def __init__(self, indicator_set_version: str) -> None:
        self.indicator_set_version = indicator_set_version
        self.number_of_events = 0
        self.data_types: collections.Counter[str] = collections.Counter()
        self.parsers: collections.Counter[str] = collections.Counter()
        self.labels: collections.Counter[str] = collections.Counter()
        self.tools: collections.Counter[str] = collections.Counter()
        # One event data stream per distinct file content and path.
        self.streams: dict[tuple[Any, ...], Any] = {}


def _open_writer(path: str) -> Any:
    if os.path.exists(path) and not sqlite_file.SQLiteStorageFile.CheckSupportedFormat(
        path
    ):
        raise ValueError(f"{path}: exists and is not a plaso storage file")
    # What StorageFactory.CreateStorageWriter(ForFile) returns for SQLite.
    writer = sqlite_writer.SQLiteStorageWriter()
    writer.Open(path=path)
    return writer


def _source_type(source_path: str) -> str:
    """dfVFS's source type, as log2timeline records it, guessed from the path."""
    if os.path.isdir(source_path):
        return dfvfs_definitions.SOURCE_TYPE_DIRECTORY
    return dfvfs_definitions.SOURCE_TYPE_STORAGE_MEDIA_IMAGE


def _write_trace(
    writer: Any, state: _State, trace: Trace, tools: dict[str, Tool]
) -> None:
    event_data = event_data_of(trace, tools, state.indicator_set_version)
    stream = None
    if trace.data_type == DATA_TYPE_FILE:
        stream = _stream(writer, state, trace.attributes)
        if stream is not None:
            event_data.SetEventDataStreamIdentifier(stream.GetIdentifier())
    # plaso's own digest of the values: psort drops an event as a duplicate
    # when another one at the same time has the same digest and description.
    event_data._event_values_hash = events.CalculateEventValuesHash(event_data, stream)
    writer.AddAttributeContainer(event_data)

    event = event_of(trace)
    event.SetEventDataIdentifier(event_data.GetIdentifier())
    writer.AddAttributeContainer(event)

    tag = events.EventTag()
    tag.SetEventIdentifier(event.GetIdentifier())
    tag.AddLabels(labels_of(trace, tools))  # raises ValueError on a bad label
    # The event is new, so it has no tag yet: plain add, no look-up per event
    # as AddOrUpdateEventTag would do.
    writer.AddAttributeContainer(tag)

    state.number_of_events += 1
    state.data_types[trace.data_type] += 1
    state.data_types["total"] += 1
    state.parsers[event_data._parser_chain] += 1
    state.parsers["total"] += 1
    for label in tag.labels:
        state.labels[label] += 1
        state.labels["total"] += 1
    for tool_id in dict.fromkeys(match.tool for match in trace.matches if match.tool):
        state.tools[tool_id] += 1


def labels_of(trace: Trace, tools: dict[str, Tool]) -> list[str]:
    """The trace's labels as plaso accepts them.

    A character plaso does not allow (letters, digits and `_` only) becomes `_`,
    as plaso's EventTag.CopyTextToLabel does for its own analysis plugins.
    """
    labels = [events.EventTag.CopyTextToLabel(label) for label in trace.labels(tools)]
    return list(dict.fromkeys(labels))


def event_of(trace: Trace) -> events.EventObject:
    """The event of a trace: its time in plaso's form, or plaso's "Not a time"."""
    event = events.EventObject()
    date_time = trace.timestamp
    description = trace.timestamp_desc
    if date_time is None:
        # What plaso's timeliner writes for event data without a time.
        date_time = dfdatetime_semantic_time.NotSet()
        description = definitions.TIME_DESCRIPTION_NOT_A_TIME
    timestamp = date_time.GetPlasoTimestamp()
    if timestamp is None or not -(2**63) <= timestamp < 2**63:
        # SQLite stores 64-bit integers only; plaso's timeliner does the same.
        date_time = dfdatetime_semantic_time.InvalidTime()
        timestamp = 0
    elif date_time.is_local_time:
        # plaso's timeliner reads a time without zone as UTC unless told a zone;
        # toolmarks has none to give.
        date_time = _copy_as_utc(date_time)
    event.date_time = date_time
    event.timestamp = timestamp
    event.timestamp_desc = description
    return event


def _copy_as_utc(
    date_time: dfdatetime_interface.DateTimeValues,
) -> dfdatetime_interface.DateTimeValues:
    utc = copy.deepcopy(date_time)  # the trace keeps its own value
    utc.is_local_time = False
    return utc


def event_data_of(
    trace: Trace, tools: dict[str, Tool], indicator_set_version: str
) -> events.EventData:
    """The flat event data of a trace, as psort and plaso's filters read it."""
    event_data = events.EventData(data_type=trace.data_type)
    event_data._parser_chain = _parser_name(trace.data_type)
    time_names = time_attributes().get(trace.data_type, {})
    reserved = OWN_ATTRIBUTES | _PLASO_NAMES | set(time_names.values())
    for key, value in trace.attributes.items():
        if value is None:
            continue  # plaso leaves unset attributes out, too
        if trace.data_type == DATA_TYPE_FILE and _is_path_spec(value):
            continue  # it goes to the event data stream
        name = _NON_NAME.sub("_", str(key))
        if not name or name[0] == "_" or name[0].isdigit() or name in reserved:
            name = RENAMED_PREFIX + name
        setattr(event_data, name, _plain(value))

    event_data.tool = ",".join(dict.fromkeys(m.tool for m in trace.matches if m.tool))
    event_data.indicators = list(dict.fromkeys(m.indicator for m in trace.matches))
    event_data.match_kinds = list(dict.fromkeys(m.kind for m in trace.matches))
    event_data.matched_values = list(dict.fromkeys(m.value for m in trace.matches))
    event_data.matches = json.dumps(
        [m.as_dict() for m in trace.matches], ensure_ascii=False, default=str
    )
    event_data.match_summary = describe_matches(trace.matches, tools)
    event_data.source_location = trace.source
    # psort's display_name column would otherwise be "-": there is no path spec.
    event_data.display_name = trace.source
    event_data.indicator_set_version = indicator_set_version

    # The time again under the attribute timeliner.yaml maps its description to,
    # so this event data reads the same as one a log2timeline run would store.
    name = time_names.get(trace.timestamp_desc)
    if name and trace.timestamp is not None:
        setattr(
            event_data,
            name,
            [trace.timestamp] if name.endswith("_times") else trace.timestamp,
        )
    return event_data


def _plain(value: Any) -> Any:
    """A value plaso's event data serialiser and output modules take as is."""
    if isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [
            item if item is None or isinstance(item, (str, bool, int)) else _text(item)
            for item in items
        ]
    return _text(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dfdatetime_interface.DateTimeValues):
        # A string, not a date and time value: only the trace's own time is
        # meant to make an event if the timeliner ever reads this event data.
        return value.CopyToDateTimeStringISO8601() or str(value)
    if _is_path_spec(value):
        return value.comparable
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    return str(value)


def _is_path_spec(value: Any) -> bool:
    return isinstance(value, dfvfs_path_spec.PathSpec)


def _stream(writer: Any, state: _State, attributes: dict[str, Any]) -> Any | None:
    """The event data stream of a file match: its hashes and path spec, if any."""
    values: dict[str, Any] = {}
    for short, name in HASH_ATTRIBUTES.items():
        value = attributes.get(name) or attributes.get(short)
        if isinstance(value, str) and value:
            values[name] = value.strip().lower()
    path_spec = attributes.get("path_spec")
    if _is_path_spec(path_spec):
        values["path_spec"] = path_spec
    if not values:
        return None
    key = tuple(
        (name, value.comparable if _is_path_spec(value) else value)
        for name, value in sorted(values.items())
    )
    stream = state.streams.get(key)
    if stream is None:
        stream = events.EventDataStream()
        for name, value in values.items():
            setattr(stream, name, value)
        writer.AddAttributeContainer(stream)
        state.streams[key] = stream
    return stream


def _write_counters(writer: Any, state: _State) -> None:
    """Adds this session's counts to the stored ones, as pinfo reads them."""
    writer.UpdateDataTypesCounter(writer.GetDataTypesCounter(), state.data_types)
    writer.UpdateParsersCounter(writer.GetParsersCounter(), state.parsers)
    # Not StorageWriter.UpdateEventLabelsCounter: in this plaso version it
    # writes parser counts. This is what plaso's analysis engine does.
    stored = writer.GetEventLabelsCounter()
    for label, number in state.labels.items():
        count = stored.get(label)
        if count:
            count.number_of_events += number
            writer.UpdateAttributeContainer(count)
        else:
            writer.AddAttributeContainer(
                counts.EventLabelCount(label=label, number_of_events=number)
            )


def _report(
    state: _State, source_path: str, toolmarks_version: str, aborted: bool
) -> reports.AnalysisReport:
    """A short report pinfo prints: which indicator set, how many events."""
    per_tool = ", ".join(f"{tool} {n}" for tool, n in sorted(state.tools.items()))
    lines = [
        f"toolmarks {toolmarks_version}: {state.number_of_events} events"
        + (" (aborted)" if aborted else ""),
        f"indicator set: {state.indicator_set_version}",
        f"source: {source_path}",
        f"events per tool: {per_tool or 'none'}",
    ]
    # One line: pinfo's table view folds line breaks into spaces.
    report = reports.AnalysisReport(plugin_name=PRODUCT_NAME, text="; ".join(lines))
    report.time_compiled = int(time.time() * 1_000_000)
    return report
