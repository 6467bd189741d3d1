"""MISP event JSON: md5/sha1/sha256/filename and filename|<hash> attributes."""

from __future__ import annotations

import json

from toolmarks.indicators.formats.common import (
    ImportProblem,
    ToolBuilder,
    checked_hash,
    name_regex,
    slug,
)

_HASHES = ("md5", "sha1", "sha256")


def _attributes(event: dict):
    yield from event.get("Attribute", []) or []
    for obj in event.get("Object", []) or []:
        yield from obj.get("Attribute", []) or []


def import_(
    text: str, source: str, tool_id: str | None, title: str | None
) -> list[dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportProblem(f"{source}:{error.lineno}: invalid JSON: {error.msg}")
    event = data.get("Event", data) if isinstance(data, dict) else None
    if (
        not isinstance(event, dict)
        or "Attribute" not in event
        and "Object" not in event
    ):
        raise ImportProblem(f"{source}: not a MISP event (no Event with Attribute)")
    info = str(event.get("info") or "MISP event")
    builder = ToolBuilder(
        tool_id or slug(info),
        title or info,
        source,
        references=[f"{source} (MISP event {event.get('uuid', '?')})"],
    )
    problems, skipped = [], 0
    for attribute in _attributes(event):
        kind, value = attribute.get("type", ""), str(attribute.get("value", ""))
        where = f"{source}: attribute {attribute.get('uuid', attribute.get('id', '?'))}"
        extra = {"source": where, "note": attribute.get("comment") or None}
        try:
            if kind in _HASHES:
                builder.add_hash(*checked_hash(kind, value, where), **extra)
            elif kind == "filename":
                builder.add_filename(name_regex(value), **extra)
            elif kind.startswith("filename|") and kind[9:] in _HASHES:
                name, _, digest = value.rpartition("|")
                builder.add_filename(name_regex(name), **extra)
                builder.add_hash(*checked_hash(kind[9:], digest, where), **extra)
            else:
                skipped += 1
        except ImportProblem as error:
            problems.append(str(error))
    if problems:
        raise ImportProblem("\n".join(problems))
    if builder.empty():
        raise ImportProblem(
            f"{source}: no md5/sha1/sha256/filename attributes "
            f"({skipped} of other types)"
        )
    return [builder.data]
