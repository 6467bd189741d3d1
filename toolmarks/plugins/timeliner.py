"""toolmarks in plaso's timeliner: our data types' times, and tags at birth.

plaso's EventDataTimeliner reads only its own timeliner.yaml, and drops event
data of a data type it does not know without a word; it has no registry to add
to. This extends the class once, on import: after its configuration file, it
adds the parser registry's timeliner definitions; and every event it makes is
tagged with toolmarks' labels when its event data (toolmarks' own, or plaso's
with hashes, YARA matches, names, runs, keys or records of a tool) calls for
them, as `toolmarks tag` would tag it afterwards.
"""

from __future__ import annotations

from typing import Any

from plaso.engine import timeliner

from toolmarks.parsers import manager
from toolmarks.plugins import indicator_set
from toolmarks.plugins.tagging import Tagger, plaso_values

_read_configuration = timeliner.EventDataTimeliner._ReadConfigurationFile
_process_event_data = timeliner.EventDataTimeliner.ProcessEventData
_add_event = timeliner.EventDataTimeliner._AddEvent


def _ReadConfigurationFile(self: Any) -> None:
    _read_configuration(self)
    for definition in manager.definitions():
        self._attribute_mappings[definition.data_type] = dict(definition.times)
        self._place_holder_event.add(definition.data_type)


def ProcessEventData(
    self: Any, storage_writer: Any, event_data: Any, event_data_stream: Any
) -> None:
    tagger = getattr(self, "_toolmarks_tagger", None)
    if tagger is None:
        tagger = self._toolmarks_tagger = Tagger(indicator_set.compiled())
    self._toolmarks_labels = tagger.labels(
        event_data.data_type or "", plaso_values(event_data, event_data_stream)
    )
    try:
        _process_event_data(self, storage_writer, event_data, event_data_stream)
    finally:
        self._toolmarks_labels = []


def _AddEvent(
    self: Any,
    storage_writer: Any,
    parser_name: Any,
    event_data: Any,
    event: Any,
    labels: list[str],
) -> None:
    extra = getattr(self, "_toolmarks_labels", None) or []
    _add_event(self, storage_writer, parser_name, event_data, event, labels + extra)


timeliner.EventDataTimeliner._ReadConfigurationFile = _ReadConfigurationFile
timeliner.EventDataTimeliner.ProcessEventData = ProcessEventData
timeliner.EventDataTimeliner._AddEvent = _AddEvent
