"""What the parsers produce: traces in time, each with the matches that explain it.

A Trace becomes one timeline event; its matches say which indicators of which
tools it met and with what value, so an examiner can check every hit by hand.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dfdatetime import interface as dfdatetime_interface

from toolmarks.indicators.model import Indicator, Tool

DATA_TYPE_FILE = "toolmarks:file:match"
DATA_TYPE_PREFETCH = "toolmarks:prefetch:execution"
DATA_TYPE_REGISTRY = "toolmarks:registry:trace"
DATA_TYPE_EVENTLOG = "toolmarks:eventlog:trace"


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
        out = dataclasses.asdict(self)
        out["detail"] = dict(self.detail)
        return out


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
        """The documented labels: toolmarks, tool_<id>, stage_<s>, ioc_<kind>, dual_use."""
        labels = ["toolmarks"]
        for match in self.matches:
            tool = tools.get(match.tool)
            for label in tool.labels() if tool else ["toolmarks", f"tool_{match.tool}"]:
                if label not in labels:
                    labels.append(label)
            kind_label = f"ioc_{match.kind}"
            if kind_label not in labels:
                labels.append(kind_label)
        return labels
