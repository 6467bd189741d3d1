"""Which labels an event gets: one answer for every front.

toolmarks' own event data carries its matches; plaso's own event data (file
system, prefetch, registry and event log events) is matched by EventMatcher.
The timeliner hook of `toolmarks log2timeline`, the psort analysis plugin and
`toolmarks tag` all ask here.
"""

from __future__ import annotations

import json
from typing import Any

from plaso.containers import events as plaso_events

from toolmarks.events import Match, labels
from toolmarks.indicators.compiler import CompiledSet
from toolmarks.plugins.event_matcher import EventMatcher
from toolmarks.plugins.store import STREAM_ATTRIBUTES

OWN_PREFIX = "toolmarks:"


class Tagger:
    """Labels of events, for one compiled indicator set."""

    def __init__(self, compiled: CompiledSet) -> None:
        self.compiled = compiled
        self.matcher = EventMatcher(compiled)

    def matches(self, data_type: str, values: dict[str, Any]) -> list[Match]:
        if data_type.startswith(OWN_PREFIX):
            return own_matches(values)
        return self.matcher.match(data_type, values)

    def labels(self, data_type: str, values: dict[str, Any]) -> list[str]:
        """The documented labels of the event, as plaso accepts them; [] if none."""
        found = self.matches(data_type, values)
        if not found:
            return []
        return list(
            dict.fromkeys(
                plaso_events.EventTag.CopyTextToLabel(label)
                for label in labels(found, self.compiled.tools)
            )
        )


def own_matches(values: dict[str, Any]) -> list[Match]:
    """The matches toolmarks' event data stores as JSON (plaso_storage)."""
    try:
        stored = json.loads(values.get("matches") or "[]")
    except (TypeError, ValueError):
        return []
    return [
        Match(
            tool=item["tool"],
            indicator=item["indicator"],
            kind=item["kind"],
            value=item["value"],
            weak=bool(item.get("weak")),
            detail=tuple(sorted((item.get("detail") or {}).items())),
        )
        for item in stored
        if isinstance(item, dict)
        and {"tool", "indicator", "kind", "value"} <= set(item)
    ]


def plaso_values(event_data: Any, event_data_stream: Any | None) -> dict[str, Any]:
    """The values Tagger takes, from plaso's event data and its stream."""
    values = dict(event_data.GetAttributes())
    if event_data_stream is not None:
        for name in STREAM_ATTRIBUTES:
            value = getattr(event_data_stream, name, None)
            if value is not None:
                values[name] = value
    return values
