"""STIX 2.1 bundles: a Tool object per tool and an Indicator per indicator, with
an `indicates` relationship between them.

Hashes (imphash as `file:extensions.'windows-pebinary-ext'.imphash`), file names
and command lines are STIX patterns (stix_patterns.py); a string is an Indicator
with `pattern_type: yara` carrying the string's YARA rule. Registry, prefetch and
event-log indicators have no STIX form here and are left out, with a count on
stderr. toolmarks' provenance (indicator id, source, confidence, note, checked,
weak) rides along as x_toolmarks_* properties; without them an import numbers
the indicators and takes the bundle as their source.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import stix2

from toolmarks.indicators.compiler import yara_source
from toolmarks.indicators.formats import stix_patterns, yara_rules
from toolmarks.indicators.formats.common import (
    ImportProblem,
    ToolBuilder,
    checked_hash,
    slug,
)
from toolmarks.indicators.model import IndicatorSet

# Ids derived from indicator ids keep exports of the same set identical.
_NAMESPACE = uuid.UUID("5b0c6c43-31f4-4f0e-9f0b-54a3b1d9a7e1")
PROVENANCE = ("note", "checked", "weak")


def _sid(kind: str, name: str) -> str:
    return f"{kind}--{uuid.uuid5(_NAMESPACE, name)}"


def export(indicator_set: IndicatorSet) -> str:
    objects = []
    now = datetime.now(UTC)
    left_out: Counter[str] = Counter()
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
            pattern_type = "stix"
            if ind.section == "strings":
                pattern_type = "yara"
                pattern = yara_source([ind], indicator_set.tools)
            else:
                pattern = stix_patterns.pattern(ind)
            if pattern is None:
                left_out[ind.section] += 1
                continue
            indicator = stix2.Indicator(
                id=_sid("indicator", ind.id),
                name=ind.id,
                pattern=pattern,
                pattern_type=pattern_type,
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
                        for name in (*PROVENANCE, "case_sensitive")
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
    if left_out:
        print(
            "toolmarks: no STIX form, left out: "
            + ", ".join(f"{n} {section}" for section, n in sorted(left_out.items())),
            file=sys.stderr,
        )
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

    problems: list[str] = []
    skipped: list[str] = []
    for obj in objects:
        if obj.get("type") != "indicator":
            continue
        where = f"{source}: {obj.get('id', '?')}"
        pattern_type = obj.get("pattern_type", "stix")
        if pattern_type not in ("stix", "yara"):
            skipped.append(f"{where}: pattern_type {pattern_type}")
            continue
        extra = {
            "indicator_id": obj.get("x_toolmarks_indicator_id"),
            "source": obj.get("x_toolmarks_source"),
            "confidence": obj.get("x_toolmarks_confidence"),
            **{name: obj.get(f"x_toolmarks_{name}") for name in PROVENANCE},
        }
        try:
            if pattern_type == "yara":
                _read_yara(obj, builder_for(obj), extra, where, skipped)
            else:
                _read_stix(obj, builder_for(obj), extra, where, skipped)
        except ImportProblem as error:
            problems.append(str(error))
    if problems:
        raise ImportProblem("\n".join(problems))
    for what in skipped:
        print(f"toolmarks: not imported: {what}", file=sys.stderr)
    found = [b.data for b in builders.values() if not b.empty()]
    if not found:
        raise ImportProblem(
            f"{source}: no hash, file name, string or command line indicators found"
        )
    return found


def _read_stix(
    obj: dict, builder: ToolBuilder, extra: dict[str, Any], where: str, skipped: list
) -> None:
    try:
        found, unknown = stix_patterns.read(str(obj.get("pattern", "")))
    except stix_patterns.PatternProblem as error:
        raise ImportProblem(f"{where}: invalid STIX pattern: {error}")
    skipped += [f"{where}: {text}" for text in unknown]
    add(builder, found, extra, where)


def add(
    builder: ToolBuilder,
    found: list[stix_patterns.Found],
    extra: dict[str, Any],
    where: str,
) -> None:
    """Adds what a pattern holds; an id given for the pattern goes to its first
    indicator only (ids are unique)."""
    for index, item in enumerate(found):
        these = {
            **extra,
            "source": extra.get("source") or where,
            "confidence": extra.get("confidence") or "primary",
        }
        if index:
            these["indicator_id"] = None
        fields = item.fields
        if item.section == "hashes":
            kind, value = checked_hash(fields["type"], fields["value"], where)
            builder.add_hash(kind, value, **these)
        elif item.section == "filenames":
            builder.add_filename(
                fields["regex"], **these, case_sensitive=fields.get("case_sensitive")
            )
        else:
            builder.add_commandline(fields["program"], fields.get("arguments"), **these)


def _read_yara(
    obj: dict, builder: ToolBuilder, extra: dict[str, Any], where: str, skipped: list
) -> None:
    try:
        rules, unknown = yara_rules.read(str(obj.get("pattern", "")))
    except yara_rules.RuleProblem as error:
        raise ImportProblem(f"{where}: invalid YARA rule: {error}")
    skipped += [f"{where}: {text}" for text in unknown]
    add_strings(builder, rules, extra, where)


def add_strings(
    builder: ToolBuilder,
    rules: list[yara_rules.Rule],
    extra: dict[str, Any],
    where: str,
) -> None:
    """Adds the strings of YARA rules; a string its rule's condition does not
    accept alone is marked weak and says so."""
    strings = [(rule, string) for rule in rules for string in rule.strings]
    for rule, string in strings:
        these = dict(extra)
        if len(strings) > 1 or not these.get("indicator_id"):
            these["indicator_id"] = None
            if len(strings) == 1:
                these["indicator_id"] = rule.meta.get("indicator")
        # toolmarks' own rules carry the provenance as meta too.
        these["source"] = extra.get("source") or rule.meta.get("source") or where
        these["confidence"] = (
            extra.get("confidence") or rule.meta.get("confidence") or "primary"
        )
        these["weak"] = these.get("weak") or rule.meta.get("weak") == "true"
        if not string.alone:
            these["weak"] = True
            these["note"] = (
                f"one string of YARA rule {rule.name}, whose condition needs more"
            )
        builder.add_string(
            string.value, string.encodings, string.nocase, string.fullword, **these
        )
