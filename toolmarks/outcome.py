"""What a scan of one image found and could not read: the engine's answer,
which every output (toolmarks.output.writers) writes."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from toolmarks.events import Trace
from toolmarks.evidence.model import Volume
from toolmarks.indicators.model import IndicatorSet


@dataclasses.dataclass(frozen=True)
class Note:
    """What an examiner must know about one location: a warning, or an item
    that could not be read, was skipped or could not be checked."""

    location: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"location": self.location, "message": self.message}


@dataclasses.dataclass
class ScanOutcome:
    """One scan: its traces in timeline order and everything needed to
    reproduce and judge it."""

    image: str
    # Format, sizes and stored hashes; `verification` for an E01.
    image_info: dict[str, Any]
    volumes: list[Volume]
    traces: list[Trace]
    indicator_set: IndicatorSet
    options: dict[str, Any]
    counts: dict[str, int]
    parser_seconds: dict[str, float]
    warnings: list[Note]
    unreadable: list[Note]
    skipped: list[Note]
    not_checked: list[Note]
    command_line: str
    toolmarks_version: str
    started: datetime.datetime
    seconds: float = 0.0

    @property
    def problems(self) -> dict[str, list[Note]]:
        """Every note, by what it says about its location."""
        return {
            "warnings": self.warnings,
            "unreadable": self.unreadable,
            "skipped": self.skipped,
            "not_checked": self.not_checked,
        }
