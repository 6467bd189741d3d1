"""MISP event JSON, both ways: one event per tool.

Attribute types are MISP's own (describeTypes.json, as shipped with PyMISP
2.5.34): md5, sha1, sha256 and imphash for hashes; filename for a plain file
name, filename-pattern for a regex; yara for a string, carrying its YARA rule;
stix2-pattern for a command line. MISP has no attribute type for a command-line
pattern: the `process` object's `command-line` is a text attribute that MISP
correlates as a literal command line, not a pattern over one, so the STIX form
(stix_patterns.py) is used. The tool's id, stages, aliases and dual use are
machine tags (`toolmarks:tool="wce"`); an indicator's id and provenance follow
its note in the attribute's comment, after a `-- toolmarks --` line, as JSON
values. The export is MISP's own multi-event form, {"response": [{"Event": …}]};
the import reads that, a single {"Event": …} or a bare event.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from toolmarks.indicators.compiler import yara_source
from toolmarks.indicators.formats import stix_patterns, yara_rules
from toolmarks.indicators.formats.common import (
    ImportProblem,
    ToolBuilder,
    checked_hash,
    name_regex,
    regex_name,
    slug,
)
from toolmarks.indicators.formats.stix import add, add_strings
from toolmarks.indicators.model import HASH_TYPES, Indicator, IndicatorSet

_NAMESPACE = uuid.UUID("0f4a5d0e-8c1b-4f4e-9a51-6b3c7e2d9f10")
# describeTypes' default category of each type we write.
CATEGORY = {
    **{kind: "Payload delivery" for kind in HASH_TYPES},
    "filename": "Payload delivery",
    "filename-pattern": "Payload installation",
    "yara": "Payload installation",
    "stix2-pattern": "Payload installation",
    "text": "Other",
}
_MARK = "-- toolmarks --"
_KEYS = ("indicator", "source", "confidence", "checked", "weak", "case_sensitive")
_DESCRIPTION = "toolmarks: tool description"
_TAG = re.compile(r'toolmarks:([a-z_-]+)="(.*)"')


def _tag(predicate: str, value: Any) -> dict[str, str]:
    return {"name": f'toolmarks:{predicate}="{value}"'}


def _comment(ind: Indicator) -> str:
    provenance = {
        "indicator": ind.id,
        "source": ind.source,
        "confidence": ind.confidence,
        **{k: ind.fields[k] for k in ("checked", "weak") if k in ind.fields},
    }
    if ind.fields.get("case_sensitive"):
        provenance["case_sensitive"] = True
    lines = [f"{key}: {json.dumps(value)}" for key, value in provenance.items()]
    return "\n".join([ind.fields.get("note", ""), _MARK, *lines])


def _attribute(ind: Indicator, tools: dict) -> dict[str, Any] | None:
    fields = ind.fields
    if ind.section == "hashes":
        kind, value = ind.kind, ind.value
    elif ind.section == "filenames":
        name = regex_name(fields["regex"])
        kind, value = ("filename", name) if name else ("filename-pattern", ind.value)
    elif ind.section == "strings":
        kind, value = "yara", yara_source([ind], tools)
    elif ind.section == "commandline":
        kind, value = "stix2-pattern", stix_patterns.pattern(ind)
    else:
        return None
    return {
        "uuid": str(uuid.uuid5(_NAMESPACE, ind.id)),
        "type": kind,
        "category": CATEGORY[kind],
        "value": value,
        "to_ids": not ind.weak,
        "comment": _comment(ind),
    }


def export(indicator_set: IndicatorSet) -> str:
    today = datetime.now(UTC).date().isoformat()
    events = []
    left_out = 0
    for tool in indicator_set.tools.values():
        attributes = [
            {
                "uuid": str(uuid.uuid5(_NAMESPACE, f"{tool.id} description")),
                "type": "text",
                "category": CATEGORY["text"],
                "value": tool.data["description"],
                "to_ids": False,
                "comment": _DESCRIPTION,
            }
        ]
        for ind in tool.indicators:
            attribute = _attribute(ind, indicator_set.tools)
            if attribute is None:
                left_out += 1
            else:
                attributes.append(attribute)
        tags = [_tag("tool", tool.id)]
        tags += [_tag("stage", stage) for stage in tool.stages]
        tags += [_tag("alias", alias) for alias in tool.data.get("aliases", [])]
        if tool.dual_use:
            tags.append(_tag("dual-use", "true"))
        events.append(
            {
                "Event": {
                    "uuid": str(uuid.uuid5(_NAMESPACE, tool.id)),
                    "info": tool.title,
                    "date": today,
                    "threat_level_id": "4",  # undefined: dual-use tools are here too
                    "analysis": "2",
                    "distribution": "0",
                    "published": False,
                    "Tag": tags,
                    "Attribute": attributes,
                }
            }
        )
    if left_out:
        print(
            f"toolmarks: {left_out} registry, prefetch and event-log indicators "
            "have no MISP form and are left out",
            file=sys.stderr,
        )
    return json.dumps({"response": events}, indent=2, ensure_ascii=False) + "\n"


def _attributes(event: dict):
    yield from event.get("Attribute", []) or []
    for obj in event.get("Object", []) or []:
        yield from obj.get("Attribute", []) or []


def _events(data: Any) -> list[dict] | None:
    if isinstance(data, dict) and isinstance(data.get("response"), list):
        data = data["response"]
    items = data if isinstance(data, list) else [data]
    events = []
    for item in items:
        event = item.get("Event", item) if isinstance(item, dict) else None
        if not isinstance(event, dict) or (
            "Attribute" not in event and "Object" not in event
        ):
            return None
        events.append(event)
    return events or None


def _provenance(comment: str) -> tuple[str | None, dict[str, Any]]:
    """The note and toolmarks' fields of an attribute comment."""
    note, mark, block = comment.partition("\n" + _MARK + "\n")
    if not mark:
        return comment or None, {}
    found: dict[str, Any] = {}
    for line in block.splitlines():
        key, _, value = line.partition(": ")
        if key in _KEYS:
            try:
                found[key] = json.loads(value)
            except json.JSONDecodeError:
                continue
    return note or None, found


def import_(
    text: str, source: str, tool_id: str | None, title: str | None
) -> list[dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportProblem(f"{source}:{error.lineno}: invalid JSON: {error.msg}")
    events = _events(data)
    if events is None:
        raise ImportProblem(f"{source}: not a MISP event (no Event with Attribute)")
    problems: list[str] = []
    skipped: dict[str, int] = {}
    tools = []
    for event in events:
        builder = _builder(event, source, tool_id if len(events) == 1 else None, title)
        for attribute in _attributes(event):
            try:
                _read(attribute, builder, source, skipped)
            except ImportProblem as error:
                problems.append(str(error))
        if not builder.empty():
            tools.append(builder.data)
    if problems:
        raise ImportProblem("\n".join(problems))
    other = ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))
    if not tools:
        raise ImportProblem(
            f"{source}: no hash, file name, YARA or STIX pattern attributes"
            + (f" ({other})" if other else "")
        )
    if other:
        print(f"toolmarks: attributes not imported: {other}", file=sys.stderr)
    return tools


def _builder(
    event: dict, source: str, tool_id: str | None, title: str | None
) -> ToolBuilder:
    info = str(event.get("info") or "MISP event")
    tags: dict[str, list[str]] = {}
    for tag in event.get("Tag", []) or []:
        found = (
            _TAG.fullmatch(str(tag.get("name", ""))) if isinstance(tag, dict) else None
        )
        if found:
            tags.setdefault(found.group(1), []).append(found.group(2))
    description = next(
        (
            str(a.get("value"))
            for a in event.get("Attribute", []) or []
            if a.get("type") == "text" and a.get("comment") == _DESCRIPTION
        ),
        None,
    )
    builder = ToolBuilder(
        tool_id or (tags.get("tool") or [slug(info)])[0],
        title or info,
        source,
        references=[f"{source} (MISP event {event.get('uuid', '?')})"],
        description=description,
        stages=tags.get("stage", []),
        dual_use=tags.get("dual-use") == ["true"],
    )
    if tags.get("alias"):
        builder.data["aliases"] = tags["alias"]
    return builder


def _read(
    attribute: dict, builder: ToolBuilder, source: str, skipped: dict[str, int]
) -> None:
    kind, value = attribute.get("type", ""), str(attribute.get("value", ""))
    where = f"{source}: attribute {attribute.get('uuid', attribute.get('id', '?'))}"
    note, ours = _provenance(str(attribute.get("comment") or ""))
    extra = {
        "indicator_id": ours.get("indicator"),
        "source": ours.get("source") or where,
        "confidence": ours.get("confidence") or "primary",
        "note": note,
        "checked": ours.get("checked"),
        "weak": ours.get("weak"),
    }
    case_sensitive = bool(ours.get("case_sensitive"))
    base, _, digest_type = kind.partition("|")
    if kind in HASH_TYPES:
        builder.add_hash(*checked_hash(kind, value, where), **extra)
    elif kind == "filename":
        builder.add_filename(name_regex(value), **extra, case_sensitive=case_sensitive)
    elif kind == "filename-pattern":
        try:
            re.compile(value)
        except re.error as error:
            raise ImportProblem(f"{where}: filename-pattern {value!r}: {error}")
        builder.add_filename(value, **extra, case_sensitive=case_sensitive)
    elif base == "filename" and digest_type in HASH_TYPES:
        name, _, digest = value.rpartition("|")
        builder.add_filename(name_regex(name), **extra)
        builder.add_hash(*checked_hash(digest_type, digest, where), **extra)
    elif kind == "yara":
        try:
            rules, unknown = yara_rules.read(value)
        except yara_rules.RuleProblem as error:
            raise ImportProblem(f"{where}: invalid YARA rule: {error}")
        _report(where, unknown)
        add_strings(
            builder,
            rules,
            {
                **extra,
                "source": ours.get("source"),
                "confidence": ours.get("confidence"),
            },
            where,
        )
    elif kind == "stix2-pattern":
        try:
            found, unknown = stix_patterns.read(value)
        except stix_patterns.PatternProblem as error:
            raise ImportProblem(f"{where}: invalid STIX pattern: {error}")
        _report(where, unknown)
        add(builder, found, extra, where)
    elif not (kind == "text" and attribute.get("comment") == _DESCRIPTION):
        skipped[kind] = skipped.get(kind, 0) + 1


def _report(where: str, unknown: list[str]) -> None:
    for what in unknown:
        print(f"toolmarks: not imported: {where}: {what}", file=sys.stderr)
