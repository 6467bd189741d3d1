"""Shared helpers of the importers: building a valid tool mapping from found values."""

from __future__ import annotations

import json
import re
from typing import Any

from toolmarks.indicators.model import hash_problem, normalise_hash

HASH_BY_LENGTH = {32: "md5", 40: "sha1", 64: "sha256"}


class ImportProblem(Exception):
    """The input cannot be imported; the message names the place and the problem."""


def slug(text: str, default: str = "imported") -> str:
    """A tool id from free text: lower-case letters, digits and _."""
    value = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not value or not value[0].isalpha():
        value = f"{default}_{value}".strip("_")
    return value[:40]


def name_regex(name: str) -> str:
    """The filename regex that matches exactly this file name in any folder."""
    return r"(^|\\)" + re.escape(name) + "$"


def regex_name(regex: str) -> str | None:
    """The file name back from name_regex(), or None for another regex."""
    prefix = r"(^|\\)"
    if not (regex.startswith(prefix) and regex.endswith("$")):
        return None
    body = regex[len(prefix) : -1]
    plain = re.sub(r"\\(.)", r"\1", body)
    return plain if re.escape(plain) == body else None


def checked_hash(hash_type: str | None, value: str, where: str) -> tuple[str, str]:
    """(type, normalised value) or ImportProblem naming `where`."""
    value = normalise_hash(value)
    hash_type = hash_type or HASH_BY_LENGTH.get(len(value))
    if hash_type is None:
        raise ImportProblem(f"{where}: {value!r} is not an md5, sha1 or sha256 hash")
    problem = hash_problem(hash_type, value)
    if problem:
        raise ImportProblem(f"{where}: {problem}")
    return hash_type, value


class ToolBuilder:
    """Collects imported indicators of one tool and numbers their ids."""

    def __init__(self, tool_id: str, title: str, source: str, **extra: Any) -> None:
        self.tool_id = tool_id
        self.data: dict[str, Any] = {
            "id": tool_id,
            "title": title,
            "description": extra.pop("description", None) or f"Imported from {source}",
            "stages": extra.pop("stages", []),
            "dual_use": extra.pop("dual_use", False),
            "references": extra.pop("references", None) or [source],
            **extra,
        }
        self.source = source
        self._seen: set[tuple[str, str]] = set()
        self._count: dict[str, int] = {}

    def _id(self, kind: str) -> str:
        self._count[kind] = self._count.get(kind, 0) + 1
        return f"{self.tool_id}.{kind}.imported_{self._count[kind]}"

    def _add(
        self,
        section: str,
        kind: str,
        fields: dict[str, Any],
        indicator_id: str | None,
        source: str | None,
        confidence: str,
        **optional: Any,
    ) -> None:
        key = (section, json.dumps(fields, sort_keys=True))
        if key in self._seen:
            return
        self._seen.add(key)
        item = {
            "id": indicator_id or self._id(kind),
            **fields,
            "source": source or self.source,
            "confidence": confidence,
        }
        item.update({name: value for name, value in optional.items() if value})
        self.data.setdefault(section, []).append(item)

    def add_hash(
        self,
        hash_type: str,
        value: str,
        indicator_id: str | None = None,
        source: str | None = None,
        confidence: str = "primary",
        **optional: Any,
    ) -> None:
        """Adds a hash; optional fields (note, checked, weak) are kept when set."""
        self._add(
            "hashes",
            hash_type,
            {"type": hash_type, "value": value},
            indicator_id,
            source,
            confidence,
            **optional,
        )

    def add_filename(
        self,
        regex: str,
        indicator_id: str | None = None,
        source: str | None = None,
        confidence: str = "primary",
        **optional: Any,
    ) -> None:
        self._add(
            "filenames",
            "filename",
            {"regex": regex},
            indicator_id,
            source,
            confidence,
            **optional,
        )

    def add_string(
        self,
        value: str,
        encodings: list[str],
        nocase: bool = False,
        fullword: bool = False,
        indicator_id: str | None = None,
        source: str | None = None,
        confidence: str = "primary",
        **optional: Any,
    ) -> None:
        fields: dict[str, Any] = {"value": value, "encodings": encodings}
        fields.update({"nocase": True} if nocase else {})
        fields.update({"fullword": True} if fullword else {})
        self._add(
            "strings", "string", fields, indicator_id, source, confidence, **optional
        )

    def add_commandline(
        self,
        program: str,
        arguments: str | None = None,
        indicator_id: str | None = None,
        source: str | None = None,
        confidence: str = "primary",
        **optional: Any,
    ) -> None:
        fields = {"program": program}
        fields.update({"arguments": arguments} if arguments else {})
        self._add(
            "commandline",
            "commandline",
            fields,
            indicator_id,
            source,
            confidence,
            **optional,
        )

    def empty(self) -> bool:
        return not any(
            self.data.get(section)
            for section in ("hashes", "strings", "filenames", "commandline")
        )
