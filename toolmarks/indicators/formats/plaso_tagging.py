"""A plaso tagging file: one label per tool and per match kind, over plain plaso events.

Every rule is bound to filestat events (fs:stat): plaso gives a file's
hashes and YARA matches to every event parsed out of that file, so an unbound
rule would tag each registry event of a hive that matched. It cannot tag what
`toolmarks tag` tags from prefetch, registry and event log events.
plaso ORs every rule of a label into one filter, and at about 500 rules its parser
recurses too deep, so a label with more rules is left out with a warning; large
hash sets belong in `toolmarks tag`, which looks hashes up in a dict.

A command-line indicator becomes a regex over the `CommandLine` field of
windows:evtx:record events' xml_string (Sysmon 1, Security 4688), which is only
an approximation of `toolmarks tag`'s reading (commandline_regex says how).
"""

from __future__ import annotations

import re
import sys

from toolmarks.indicators.compiler import rule_name
from toolmarks.indicators.model import Indicator, IndicatorSet

MAX_RULES_PER_LABEL = 400
_HASH_ATTRIBUTE = {"md5": "md5_hash", "sha1": "sha1_hash", "sha256": "sha256_hash"}
FILE_EVENT = "data_type is 'fs:stat'"
EVTX_EVENT = "data_type is 'windows:evtx:record'"
_FIELD = '<Data Name="CommandLine">'
_NAME_OUTSIDE = "\"'<\\\\/"  # what a program's file name cannot hold
_ARGS_START = "(?<=[\\s\"'])"
_ARGS_END = "(?=[\"']?\\s*(?:[<;&|]|$))"


def _string(value: str) -> str:
    """A quoted string for plaso's expression parser (escapes \\\\ and ')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def path_regex(regex: str) -> str:
    """Our \\-separated path regex, made to accept the / that plaso paths use."""
    out, index, in_class = [], 0, False
    while index < len(regex):
        char = regex[index]
        if char == "\\" and index + 1 < len(regex):
            pair = regex[index : index + 2]
            if pair == "\\\\":
                out.append("\\\\/" if in_class else "[\\\\/]")
            else:
                out.append(pair)
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class and out and out[-1] not in ("[", "[^"):
            in_class = False
        out.append(char)
        index += 1
    return "".join(out)


def rule(indicator: Indicator) -> str | None:
    """The plaso filter rule of one indicator, None where plaso has no such field."""
    if indicator.section == "hashes":
        attribute = _HASH_ATTRIBUTE.get(indicator.kind)
        if not attribute:
            return None
        condition = f"{attribute} is {_string(indicator.value)}"
    elif indicator.section == "strings":
        condition = f"yara_match contains {_string(rule_name(indicator.id))}"
    elif indicator.section == "filenames":
        condition = f"filename iregexp {_string(path_regex(indicator.value))}"
    elif indicator.section == "commandline":
        regex = commandline_regex(
            indicator.fields["program"], indicator.fields.get("arguments")
        )
        try:
            re.compile(regex)
        except re.error:
            return None  # e.g. global inline flags, which cannot be nested
        return f"{EVTX_EVENT} and xml_string iregexp {_string(regex)}"
    else:
        return None
    return f"{FILE_EVENT} and {condition}"


def _confined(
    regex: str, outside: str, dot: str, start: str = "", end: str = ""
) -> str:
    """The regex with `.`, `\\S` and negated classes kept off the characters in
    `outside`, and ^ and $ (outside classes) replaced by `start` and `end`."""
    out, index, in_class = [], 0, False
    while index < len(regex):
        char = regex[index]
        if char == "\\" and index + 1 < len(regex):
            pair = regex[index : index + 2]
            out.append(f"[^\\s{outside}]" if pair == "\\S" and not in_class else pair)
            index += 2
            continue
        if in_class:
            if char == "]" and out[-1] not in ("[", "[^"):
                in_class = False
            out.append(char)
        elif char == "[":
            in_class = True
            negated = regex.startswith("[^", index)
            out.append(f"[^{outside}" if negated else "[")
            index += 2 if negated else 1
            continue
        elif char == ".":
            out.append(dot)
        elif char == "^":
            out.append(start)
        elif char == "$":
            out.append(end)
        else:
            out.append(char)
        index += 1
    return "".join(out)


def commandline_regex(program: str, arguments: str | None) -> str:
    """A regex on an event record's XML for a command-line indicator.

    The program regex must match a whole token of the CommandLine field, after
    a path separator, a quote, a space or a command separator; the arguments
    regex is searched in what follows it up to the next &, | or ; (^ and $ in
    it become the start of a token and the end of that command). Unlike
    `toolmarks tag`, it also takes a tool's name in another program's
    arguments (`copy wce.exe x`) for the program, and reads no quoting rules.
    """
    name = _confined(program, _NAME_OUTSIDE, f"[^\\s{_NAME_OUTSIDE}]")
    regex = _FIELD + f"[^<]*?(?<=[>\\s\"'\\\\/;&|(])(?:{name})(?=[\\s\"'<;&|)])"
    if arguments:
        confined = _confined(arguments, "<", "[^<]", _ARGS_START, _ARGS_END)
        regex += f"[^<;&|]*?(?:{confined})"
    return regex


def export(indicator_set: IndicatorSet) -> str:
    labels: dict[str, list[str]] = {}
    for tool in indicator_set.tools.values():
        for ind in tool.indicators:
            text = rule(ind)
            if text:
                labels.setdefault(f"tool_{tool.id}", []).append(text)
                labels.setdefault(f"ioc_{ind.kind}", []).append(text)
    lines = [
        "# toolmarks tagging file for plaso's tagging analysis plugin:",
        "#   psort --analysis tagging --tagging-file THIS_FILE …",
        "# yara_match rules need log2timeline --yara_rules with toolmarks' YARA export.",
        f"# indicator set {indicator_set.version}",
        "",
    ]
    for label, rules in labels.items():
        if len(rules) > MAX_RULES_PER_LABEL:
            print(
                f"toolmarks: label {label} left out of the tagging file: "
                f"{len(rules)} rules, plaso handles at most about 500",
                file=sys.stderr,
            )
            continue
        lines.append(label)
        lines += [f"  {text}" for text in rules]
        lines.append("")
    return "\n".join(lines)
