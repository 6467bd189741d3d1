"""What the parsers produce: traces in time, each with the matches that explain it.

A Trace becomes one timeline event; its matches say which indicators of which
tools it met and with what value, so an examiner can check every hit by hand.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dfdatetime import interface as dfdatetime_interface

from toolmarks.indicators.model import Indicator, Tool

# plaso's description of an event whose event data holds no time.
NOT_A_TIME = "Not a time"

# Attributes that say a trace's source bytes may not be what the file held, and
# how a message names them: data on sectors that failed the E01's checksums, and
# a deleted stream's clusters that another entry owns now.
CAVEATS = (("damaged", "DAMAGED"), ("reused_clusters", "CLUSTERS REUSED"))

# The indicator ids of leads (toolmarks.parsers.leads): heuristics, not hits.
LEAD_PREFIX = "lead."

# A message names this many matches; the `matches` attribute always has them all.
MESSAGE_MATCHES = 5
LIST_ITEMS_SHOWN = 3


@dataclasses.dataclass(frozen=True)
class Match:
    """One indicator met: which one, how, by what value, and where in the source."""

    tool: str
    indicator: str
    kind: str  # md5, sha1, sha256, imphash, string, filename, prefetch, registry…
    value: str  # the value that matched: a hash, the string, a path, data text
    weak: bool = False
    detail: tuple[tuple[str, Any], ...] = ()  # e.g. (("offset", 1234),)

    @classmethod
    def of(
        cls, indicator: Indicator, value: str, kind: str | None = None, **detail: Any
    ) -> Match:
        return cls(
            tool=indicator.tool_id,
            indicator=indicator.id,
            kind=kind or indicator.kind,
            value=value,
            weak=indicator.weak,
            detail=tuple(sorted(detail.items())),
        )

    def as_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy was most of the cost of writing
        # the outputs of a scan with thousands of hits.
        return {
            "tool": self.tool,
            "indicator": self.indicator,
            "kind": self.kind,
            "value": self.value,
            "weak": self.weak,
            "detail": dict(self.detail),
        }


@dataclasses.dataclass
class Trace:
    """One event to be: a time, what the time means, where, and why it matters."""

    data_type: str
    timestamp: dfdatetime_interface.DateTimeValues | None
    timestamp_desc: str
    source: str  # where: "<volume>:<path in image>" of the file, hive or prefetch file
    matches: list[Match]
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)

    def labels(self, tools: dict[str, Tool]) -> list[str]:
        return labels(self.matches, tools)


def labels(matches: list[Match], tools: dict[str, Tool]) -> list[str]:
    """The documented labels: toolmarks, tool_<id>, stage_<s>, ioc_<kind>,
    dual_use; a lead's lead_<kind> alone."""
    out = ["toolmarks"]
    for match in matches:
        if match.indicator.startswith(LEAD_PREFIX):
            label = "lead_" + match.indicator.removeprefix(LEAD_PREFIX)
            if label not in out:
                out.append(label)
            continue
        tool = tools.get(match.tool)
        for label in tool.labels() if tool else ["toolmarks", f"tool_{match.tool}"]:
            if label not in out:
                out.append(label)
        kind_label = f"ioc_{match.kind}"
        if kind_label not in out:
            out.append(kind_label)
    return out


def describe_matches(matches: list[Match], tools: dict[str, Tool]) -> str:
    """One readable line: per match the tool, indicator, kind, value and detail."""
    parts = [_describe(match, tools) for match in matches[:MESSAGE_MATCHES]]
    if len(matches) > MESSAGE_MATCHES:
        parts.append(f"(+{len(matches) - MESSAGE_MATCHES} more matches)")
    return "; ".join(parts)


def _describe(match: Match, tools: dict[str, Tool]) -> str:
    if match.indicator.startswith(LEAD_PREFIX):
        reason = dict(match.detail).get("reason", "")
        return f'{match.indicator} "{match.value}": {reason}'
    tool = tools.get(match.tool)
    title = tool.title if tool else match.tool
    text = f"{title} (tool {match.tool}) indicator {match.indicator}"
    text += f' {match.kind} "{match.value}"'
    for key, value in match.detail:
        if key == "offset":
            text += f" at offset {value}"
        elif key == "volume_offset":
            text += f" at volume offset {value}"
        elif key == "encoding":
            text += " (UTF-16LE)" if value == "wide" else ""
        elif isinstance(value, (list, tuple)):
            shown = ", ".join(str(item) for item in value[:LIST_ITEMS_SHOWN])
            more = len(value) - LIST_ITEMS_SHOWN
            text += f" {key} {shown}" + (f" (+{more} more)" if more > 0 else "")
        else:
            text += f" {key} {value}"
    if match.weak:
        text += " [weak alone]"
    if tool and tool.dual_use:
        text += " [dual-use tool]"
    return text
