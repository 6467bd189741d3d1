"""STIX 2.1 patterns of hash, file-name and command-line indicators, both ways.

Shared by the STIX bundle and the MISP event formats (MISP's `stix2-pattern`
attribute). A command-line indicator is written
`[process:image_ref.name MATCHES '(?i)^(?:PROGRAM)$' AND
process:command_line MATCHES '(?i)ARGUMENTS']`: a STIX consumer reads both on one
process record, while toolmarks reads them on every program of the command line
(through cmd.exe /c and the other wrappers, the arguments being that program's
own), so outside toolmarks the pattern misses a tool started through cmd.exe /c
and an ARGUMENTS regex anchored with ^ matches less.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from stix2.pattern_visitor import create_pattern_object
from stix2patterns.validator import validate

from toolmarks.indicators.commandline import commands
from toolmarks.indicators.formats.common import name_regex, regex_name
from toolmarks.indicators.model import Indicator

STIX_HASH = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256"}
_HASH_STIX = {name.lower(): kind for kind, name in STIX_HASH.items()}
_IMPHASH_PATH = ["extensions", "windows-pebinary-ext", "imphash"]
_CASELESS = "(?i)"
_OUR_PROGRAM = re.compile(r"\(\?i\)\^\(\?:(.*)\)\$", re.DOTALL)


class PatternProblem(Exception):
    """The pattern is not valid STIX 2.1."""


@dataclasses.dataclass
class Found:
    """An indicator read from a pattern: its section and schema fields."""

    section: str
    fields: dict[str, Any]


def quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def unescape(body: str) -> str:
    """A STIX string literal's content (without its quotes) as text."""
    out, index = [], 0
    while index < len(body):
        if body[index] == "\\" and index + 1 < len(body):
            index += 1
        out.append(body[index])
        index += 1
    return "".join(out)


def pattern(indicator: Indicator) -> str | None:
    """The STIX pattern of a hash, file-name or command-line indicator."""
    fields = indicator.fields
    if indicator.section == "hashes":
        if indicator.kind == "imphash":
            path = "file:extensions.'windows-pebinary-ext'.imphash"
        else:
            path = f"file:hashes.'{STIX_HASH[indicator.kind]}'"
        return f"[{path} = {quote(indicator.value)}]"
    if indicator.section == "filenames":
        name = regex_name(fields["regex"])
        if name and not fields.get("case_sensitive"):
            return f"[file:name = {quote(name)}]"
        # STIX's MATCHES is case-sensitive; ours is not unless told.
        flags = "" if fields.get("case_sensitive") else _CASELESS
        return f"[file:name MATCHES {quote(flags + fields['regex'])}]"
    if indicator.section == "commandline":
        program = f"{_CASELESS}^(?:{fields['program']})$"
        text = f"[process:image_ref.name MATCHES {quote(program)}"
        if fields.get("arguments"):
            arguments = _CASELESS + fields["arguments"]
            text += f" AND process:command_line MATCHES {quote(arguments)}"
        return text + "]"
    return None


def read(text: str) -> tuple[list[Found], list[str]]:
    """The indicators a pattern holds, and the comparisons it holds that have
    no toolmarks form (each described for a warning)."""
    valid, errors = validate(text, ret_errs=True, print_errs=False)
    if not valid:
        raise PatternProblem("; ".join(errors))
    try:
        tree = create_pattern_object(text)
    except Exception as error:  # stix2 raises ValueError, TypeError, its own …
        raise PatternProblem(str(error)) from error
    found: list[Found] = []
    skipped: list[str] = []
    for group in _groups(tree):
        _read_group(group, found, skipped)
    return found, skipped


def _groups(node: Any) -> list[list[Any]]:
    """Comparisons that must hold together: the direct comparisons of an AND
    (or one comparison alone); every other comparison is a group of its own."""
    if _is_comparison(node):
        return [[node]]
    operator = getattr(node, "operator", None)
    operands = getattr(node, "operands", None)
    if operands is None:  # an observation: [ … ], possibly qualified
        inner = getattr(node, "operand", None)
        return _groups(inner) if inner is not None else []
    groups: list[list[Any]] = []
    together = [o for o in operands if _is_comparison(o)]
    if operator == "AND" and together:
        groups.append(together)
    else:
        groups += [[o] for o in together]
    for operand in operands:
        if not _is_comparison(operand):
            groups += _groups(operand)
    return groups


def _is_comparison(node: Any) -> bool:
    return hasattr(node, "lhs") and hasattr(node, "rhs")


def _path(comparison: Any) -> tuple[str, list[str]]:
    lhs = comparison.lhs
    return lhs.object_type_name, [
        str(getattr(part, "property_name", getattr(part, "index", "")))
        for part in lhs.property_path
    ]


def _value(comparison: Any) -> str | None:
    value = getattr(comparison.rhs, "value", None)
    return unescape(value) if isinstance(value, str) else None


def _read_group(group: list[Any], found: list[Found], skipped: list[str]) -> None:
    program: str | None = None
    arguments: str | None = None
    process: list[str] = []
    for comparison in group:
        kind, path = _path(comparison)
        operator = comparison.operator
        value = _value(comparison)
        described = f"{kind}:{'.'.join(path)} {operator}"
        if comparison.negated or value is None:
            skipped.append(described + (" (negated)" if comparison.negated else ""))
            continue
        if kind == "file":
            item = _file(path, operator, value)
            if item:
                found.append(item)
            else:
                skipped.append(described)
        elif kind == "process" and path == ["image_ref", "name"] and not program:
            if operator == "=":
                program = re.escape(value)
            elif operator == "MATCHES":
                ours = _OUR_PROGRAM.fullmatch(value)
                # Their regex is searched; ours must match the whole name.
                program = ours.group(1) if ours else f".*(?:{_caseless(value)}).*"
            else:
                skipped.append(described)
                continue
            process.append(described)
        elif kind == "process" and path == ["command_line"] and not arguments:
            if operator == "MATCHES":
                arguments = _caseless(value)
            elif operator == "=" and commands(value):
                # A whole command line: its program and exactly its arguments.
                first = commands(value)[0]
                program = program or re.escape(first.name)
                arguments = f"^{re.escape(first.arguments)}$"
            else:
                skipped.append(described)
                continue
            process.append(described)
        else:
            skipped.append(described)
    if program or arguments:
        # A command-line regex alone is searched in every program's arguments:
        # all but the outer program's own, which is as close as the schema gets.
        fields = {"program": program or ".+"}
        if arguments:
            fields["arguments"] = arguments
        found.append(Found("commandline", fields))


def _caseless(regex: str) -> str:
    return regex.removeprefix(_CASELESS)


def _file(path: list[str], operator: str, value: str) -> Found | None:
    if operator == "=" and len(path) == 2 and path[0] == "hashes":
        kind = _HASH_STIX.get(path[1].lower())
        return Found("hashes", {"type": kind, "value": value}) if kind else None
    if operator == "=" and path == _IMPHASH_PATH:
        return Found("hashes", {"type": "imphash", "value": value})
    if path == ["name"] and operator == "=":
        return Found("filenames", {"regex": name_regex(value)})
    if path == ["name"] and operator == "MATCHES":
        if value.startswith(_CASELESS):
            return Found("filenames", {"regex": _caseless(value)})
        return Found("filenames", {"regex": value, "case_sensitive": True})
    return None
