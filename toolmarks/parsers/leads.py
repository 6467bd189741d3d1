"""Leads: heuristics apart from indicator hits, for what an examiner should look
at although no indicator names it. The seed advises looking for odd executable
names (its example is `xzz.exe`); renamed or newer builds of a tool keep its
name but no known hash; a program that ran but is gone was maybe deleted.

A lead is never a finding by itself: its one Match has no tool, its indicator
id is `lead.<kind>`, its kind `lead`, and its event carries the label
`lead_<kind>` only (toolmarks.events.labels), with the reason it was raised.
"""

from __future__ import annotations

import itertools
import re

from toolmarks.events import LEAD_PREFIX as PREFIX
from toolmarks.events import Match
from toolmarks.indicators.model import Tool
from toolmarks.parsers import content, manager

DATA_TYPE = "toolmarks:lead"

ODD_NAME = "odd_name"
UNKNOWN_BUILD = "unknown_build"
MISSING_PROGRAM = "missing_program"
KINDS = {
    ODD_NAME: "an executable with a short or random-looking name in a place any "
    "user can write",
    UNKNOWN_BUILD: "an executable named like a tool whose hashes match no known "
    "build of it",
    MISSING_PROGRAM: "a program that ran (prefetch) but is not on disk any more",
}

_EXECUTABLE = re.compile(r"\.(exe|dll|scr|com|sys|cpl)$", re.IGNORECASE)
# Folders any user can write, as \-separated paths without a drive, and a
# volume's root.
_USER_WRITABLE = re.compile(
    r"^\\(?:users\\[^\\]+\\appdata\\|users\\public\\|windows\\temp\\|temp\\|tmp\\"
    r"|programdata\\|\$recycle\.bin\\|recycler\\|documents and settings\\[^\\]+\\"
    r"(?:local settings|application data)\\|[^\\]+$)",
    re.IGNORECASE,
)
_HEX_OR_GUID = re.compile(
    r"\{?[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}\}?|[0-9a-f]{8,}", re.IGNORECASE
)
_VOWELS = set("aeiouy")
_HASH_KINDS = {"md5", "sha1", "sha256", "imphash"}
# A prefetch path's volume: \VOLUME{serial-and-time}\ or \DEVICE\HARDDISKVOLUME1\.
_PREFETCH_VOLUME = re.compile(
    r"^\\(?:VOLUME\{[^}]*\}|DEVICE\\HARDDISKVOLUME\d+)", re.IGNORECASE
)


def lead(kind: str, value: str, reason: str) -> Match:
    return Match(
        tool="",
        indicator=PREFIX + kind,
        kind="lead",
        value=value,
        weak=True,
        detail=(("reason", reason),),
    )


def is_lead(match: Match) -> bool:
    return match.indicator.startswith(PREFIX)


def odd_name(stem: str) -> str | None:
    """Why a file name stem looks odd, or None."""
    if len(stem) <= 3:
        return f"its name {stem!r} has {len(stem)} characters"
    if _HEX_OR_GUID.fullmatch(stem):
        return f"its name {stem!r} is hexadecimal or a GUID"
    letters = [c for c in stem.lower() if c.isalpha()]
    if len(stem) >= 6 and len(letters) == len(stem):
        vowels = sum(c in _VOWELS for c in letters)
        if vowels / len(letters) < 0.15:
            return f"its name {stem!r} has almost no vowels"
    if len(stem) >= 8 and stem.isalnum():
        switches = sum(a.isdigit() != b.isdigit() for a, b in itertools.pairwise(stem))
        if switches >= 4:
            return f"its name {stem!r} mixes letters and digits at random"
    return None


def file_leads(path: str, matches: list[Match], tools: dict[str, Tool]) -> list[Match]:
    """The leads of a file at a \\-separated path, given its indicator matches."""
    name = path.rpartition("\\")[2]
    if not _EXECUTABLE.search(name):
        return []
    found = []
    stem = name.rsplit(".", 1)[0]
    why = odd_name(stem) if _USER_WRITABLE.match(path) else None
    if why:
        found.append(
            lead(ODD_NAME, path, f"executable in a folder any user can write; {why}")
        )
    hashed = {m.tool for m in matches if m.kind in _HASH_KINDS}
    for tool in tools.values():
        if tool.id in hashed or name.lower() not in _names(tool):
            continue
        found.append(
            lead(
                UNKNOWN_BUILD,
                path,
                f"named like {tool.title} (tool {tool.id}), but its hashes match "
                "no build the indicator set knows: a renamed program, a newer "
                "build, or another program of that name",
            )
        )
    return found


def program_path(recorded: str) -> str:
    """A program path a prefetch file records, without its volume prefix."""
    return _PREFETCH_VOLUME.sub("", recorded)


def _names(tool: Tool) -> set[str]:
    names = {f"{tool.id}.exe"}
    for alias in tool.data.get("aliases") or ():
        if _EXECUTABLE.search(alias):
            names.add(alias.lower())
        elif alias.isidentifier():  # a program's name written without .exe
            names.add(f"{alias.lower()}.exe")
    return names


manager.register(
    manager.ParserDefinition(
        name="leads",
        data_type=DATA_TYPE,
        description="leads: odd executable names, unknown builds of a tool, "
        "programs that ran but are gone",
        times={
            **manager.by_data_type(content.DATA_TYPE_FILE).times,
            "last_run_time": "Last Time Executed",
        },
        report_fields=("lead", "reason"),
    )
)
