"""STIX 2.1 bundles: a Tool object per tool, Indicators on file hashes and names."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import stix2
from stix2patterns.pattern import Pattern
from stix2patterns.validator import validate

from toolmarks.indicators.formats.common import (
    ImportProblem,
    ToolBuilder,
    checked_hash,
    name_regex,
    regex_name,
    slug,
)
from toolmarks.indicators.model import IndicatorSet

# Ids derived from indicator ids keep exports of the same set identical.
_NAMESPACE = uuid.UUID("5b0c6c43-31f4-4f0e-9f0b-54a3b1d9a7e1")
_STIX_HASH = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256"}
_HASH_STIX = {name.lower(): kind for kind, name in _STIX_HASH.items()}


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _unquote(value: str) -> str:
    body = value[1:-1]
    out, index = [], 0
    while index < len(body):
        if body[index] == "\\" and index + 1 < len(body):
            index += 1
        out.append(body[index])
        index += 1
    return "".join(out)


def _sid(kind: str, name: str) -> str:
    return f"{kind}--{uuid.uuid5(_NAMESPACE, name)}"


def export(indicator_set: IndicatorSet) -> str:
    objects = []
    now = datetime.now(UTC)
    for tool in indicator_set.tools.values():
        tool_sdo = stix2.Tool(
            id=_sid("tool", tool.id),
            name=tool.title,
            created=now,
            modified=now,
            description=tool.data["description"],
            aliases=tool.data.get("aliases") or None,
            tool_types=["unknown"],
            custom_properties={
                "x_toolmarks_tool_id": tool.id,
                "x_toolmarks_stages": tool.stages,
                "x_toolmarks_dual_use": tool.dual_use,
            },
        )
        objects.append(tool_sdo)
        for ind in tool.indicators:
            if ind.section == "hashes" and ind.kind in _STIX_HASH:
                pattern = (
                    f"[file:hashes.'{_STIX_HASH[ind.kind]}' = {_quote(ind.value)}]"
                )
            elif ind.section == "filenames":
                name = regex_name(ind.value)
                pattern = (
                    f"[file:name = {_quote(name)}]"
                    if name
                    else f"[file:name MATCHES {_quote(ind.value)}]"
                )
            else:
                continue
            indicator = stix2.Indicator(
                id=_sid("indicator", ind.id),
                name=ind.id,
                pattern=pattern,
                pattern_type="stix",
                valid_from=now,
                created=now,
                modified=now,
                indicator_types=["malicious-activity"],
                description=ind.fields.get("note") or f"{tool.title} {ind.kind}",
                custom_properties={
                    "x_toolmarks_indicator_id": ind.id,
                    "x_toolmarks_source": ind.source,
                    "x_toolmarks_confidence": ind.confidence,
                    **{
                        f"x_toolmarks_{name}": ind.fields[name]
                        for name in ("note", "checked", "weak")
                        if name in ind.fields
                    },
                },
            )
            relation = stix2.Relationship(
                id=_sid("relationship", ind.id),
                relationship_type="indicates",
                source_ref=indicator.id,
                target_ref=tool_sdo.id,
                created=now,
                modified=now,
            )
            objects += [indicator, relation]
    bundle = stix2.Bundle(objects=objects, allow_custom=True)
    return bundle.serialize(pretty=True) + "\n"


def import_(text: str, source: str, tool_id: str, title: str) -> list[dict]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportProblem(f"{source}:{error.lineno}: invalid JSON: {error.msg}")
    if not isinstance(data, dict) or data.get("type") != "bundle":
        raise ImportProblem(f"{source}: not a STIX bundle (no type 'bundle')")
    objects = [o for o in data.get("objects", []) if isinstance(o, dict)]
    tools = {o["id"]: o for o in objects if o.get("type") == "tool" and "id" in o}
    owner = {
        o.get("source_ref"): o.get("target_ref")
        for o in objects
        if o.get("type") == "relationship" and o.get("relationship_type") == "indicates"
    }
    builders: dict[str, ToolBuilder] = {}

    def builder_for(indicator: dict) -> ToolBuilder:
        tool = tools.get(owner.get(indicator.get("id")))
        key = tool["id"] if tool else ""
        if key not in builders:
            if tool:
                builders[key] = ToolBuilder(
                    tool.get("x_toolmarks_tool_id") or slug(tool.get("name", "")),
                    tool.get("name") or title,
                    source,
                    description=tool.get("description"),
                    stages=tool.get("x_toolmarks_stages", []),
                    dual_use=bool(tool.get("x_toolmarks_dual_use", False)),
                )
                if tool.get("aliases"):
                    builders[key].data["aliases"] = list(tool["aliases"])
            else:
                builders[key] = ToolBuilder(tool_id, title, source)
        return builders[key]

    problems = []
    for obj in objects:
        if obj.get("type") != "indicator" or obj.get("pattern_type", "stix") != "stix":
            continue
        where = f"{source}: {obj.get('id', '?')}"
        pattern = obj.get("pattern", "")
        errors = validate(pattern, ret_errs=True, print_errs=False)
        if not errors[0]:
            problems.append(f"{where}: invalid STIX pattern: {'; '.join(errors[1])}")
            continue
        builder = builder_for(obj)
        ind_id = obj.get("x_toolmarks_indicator_id")
        extra = {
            "indicator_id": ind_id,
            "source": obj.get("x_toolmarks_source") or where,
            "confidence": obj.get("x_toolmarks_confidence", "primary"),
            **{
                name: obj.get(f"x_toolmarks_{name}")
                for name in ("note", "checked", "weak")
            },
        }
        comparisons = Pattern(pattern).inspect().comparisons.get("file", [])
        for path, operator, value in comparisons:
            try:
                if path[0] == "hashes" and operator == "=":
                    kind = _HASH_STIX.get(str(path[1]).lower())
                    if kind:
                        kind, found = checked_hash(kind, _unquote(value), where)
                        builder.add_hash(kind, found, **extra)
                elif path == ["name"] and operator == "=":
                    builder.add_filename(name_regex(_unquote(value)), **extra)
                elif path == ["name"] and operator == "MATCHES":
                    builder.add_filename(_unquote(value), **extra)
            except ImportProblem as error:
                problems.append(str(error))
    if problems:
        raise ImportProblem("\n".join(problems))
    found = [b.data for b in builders.values() if not b.empty()]
    if not found:
        raise ImportProblem(f"{source}: no file hash or file name indicators found")
    return found
