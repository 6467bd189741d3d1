"""The in-memory form of an indicator set: tools and their indicators."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

# The sections of an indicator file, in file order, and the match kind each gives.
SECTIONS = (
    "hashes",
    "strings",
    "filenames",
    "registry",
    "prefetch",
    "eventlog",
    "commandline",
)
SECTION_KIND = {
    "strings": "string",
    "filenames": "filename",
    "registry": "registry",
    "prefetch": "prefetch",
    "eventlog": "eventlog",
    "commandline": "commandline",
}
HASH_TYPES = ("md5", "sha1", "sha256", "imphash")
HASH_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "imphash": 32}
_HEX = re.compile(r"[0-9a-f]+")
STAGES_JA = {
    "初期の侵入段階": "initial_compromise",
    "攻撃": "attack",
    "情報窃取": "data_exfiltration",
    "潜伏活動": "lateral_movement",
    "情報探索": "asset_discovery",
    "隠滅": "evidence_destruction",
}


def normalise_hash(value: str) -> str:
    """Lower-case hex without a 0x prefix or spaces; the seed writes both."""
    value = value.strip().lower()
    return value.removeprefix("0x")


def hash_problem(hash_type: str, value: str) -> str | None:
    """What is wrong with a normalised hash value, or None."""
    length = HASH_LENGTHS[hash_type]
    if not _HEX.fullmatch(value):
        return f"{hash_type} {value!r} is not hexadecimal"
    if len(value) != length:
        return f"{hash_type} {value!r} has {len(value)} hex digits, not {length}"
    return None


@dataclasses.dataclass(frozen=True)
class Indicator:
    """One indicator of one tool; `fields` holds its YAML mapping as given."""

    id: str
    tool_id: str
    section: str
    fields: dict[str, Any]
    origin: str  # "file:line" of the indicator in its YAML file

    @property
    def kind(self) -> str:
        """The match kind: md5, sha1, sha256, imphash, string, filename, …"""
        if self.section == "hashes":
            return self.fields["type"]
        return SECTION_KIND[self.section]

    @property
    def value(self) -> str:
        """The value an examiner reads: the hash, string, regex or pattern."""
        f = self.fields
        if self.section == "commandline":
            return f"{f['program']} {f.get('arguments', '')}".strip()
        for name in ("value", "regex", "executable", "referenced", "pattern", "key"):
            if name in f:
                return str(f[name])
        return ""

    @property
    def source(self) -> str:
        return self.fields["source"]

    @property
    def confidence(self) -> str:
        return self.fields["confidence"]

    @property
    def weak(self) -> bool:
        return bool(self.fields.get("weak", False))


@dataclasses.dataclass
class Tool:
    """A tool of the set with its metadata and indicators."""

    id: str
    title: str
    stages: list[str]
    dual_use: bool
    data: dict[str, Any]  # the whole YAML mapping, for `show` and exports
    path: str
    indicators: list[Indicator] = dataclasses.field(default_factory=list)

    def labels(self) -> list[str]:
        """The plaso labels every event of this tool carries."""
        labels = ["toolmarks", f"tool_{self.id}"]
        labels += [f"stage_{stage}" for stage in self.stages]
        if self.dual_use:
            labels.append("dual_use")
        return labels


@dataclasses.dataclass
class IndicatorSet:
    """All tools loaded from one or more indicator files or folders."""

    tools: dict[str, Tool] = dataclasses.field(default_factory=dict)
    sources: list[str] = dataclasses.field(default_factory=list)

    def indicators(self, section: str | None = None) -> list[Indicator]:
        return [
            ind
            for tool in self.tools.values()
            for ind in tool.indicators
            if section is None or ind.section == section
        ]

    def indicator(self, indicator_id: str) -> Indicator:
        for ind in self.indicators():
            if ind.id == indicator_id:
                return ind
        raise KeyError(indicator_id)

    @property
    def version(self) -> str:
        """A short digest of the set's content, to record which set a scan used."""
        digest = hashlib.sha256()
        for tool_id in sorted(self.tools):
            digest.update(json.dumps(self.tools[tool_id].data, sort_keys=True).encode())
        return digest.hexdigest()[:16]
