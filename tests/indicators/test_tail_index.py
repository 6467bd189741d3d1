"""The path matchers' tail index: the same answers as trying every regex.

FilenameMatcher and parser_for rule most regexes out by a dict look-up of the
path's extension or last name (compiler.TailIndex); these tests check, on a
varied set of paths, that what they return is exactly what searching with
each regex in turn gives, in the same order.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
import yaml

from toolmarks.indicators import compiler, loader
from toolmarks.indicators.model import Indicator
from toolmarks.parsers import manager

CASES_DIR = Path(__file__).resolve().parent / "cases"

# Names that end in what the shipped regexes look for, in several cases and
# places, and names that nearly do.
NAMES = [
    "wce.exe",
    "WCE.EXE",
    "Wce.Exe",
    "wce_ccache",
    "WCE_KRBTKTS",
    "wce_ccache.bak",
    "getmail.exe",
    "mapiget.exe",
    "mail.txt",
    "5-mail.txt",
    "1234-attach.doc",
    "12-attach.doc",
    "pwdump.exe",
    "PwDump7",
    "pwhashes.txt",
    "x-PWHashes.txt.Obfuscated",
    "x-ErrorLog.txt",
    "2013-01-02-03-04-05.fgdump-log",
    "host.pwdump",
    "test.pwd",
    "SAM-1234.dmp",
    "SAM-1.dmp.LOG2",
    "SAM-1.dmp{01234567-89ab-cdef-0123-456789abcdef}.TM.blf",
    "SDELTEMP",
    "sdeltemp1",
    "SDELMFT000001",
    "AAAAAAAAAAAAAAAAAAAA.AAA",
    "ZZZZZZZZZZZZZZZZZZZZ.ZZZ",
    "report.aaa",
    "dictionary.alcatel-lucent.AAA",
    "g64-x.exe",
    "gse.exe",
    "htran.exe",
    "HTran2.4.exe",
    "Dbgv.sys",
    "dbgview64a.exe",
    "sdelete64.exe",
    "f000001.bin",
    "notes.txt",
    "README",
    "",
    ".exe",
    "exe",
    "wce.exe.",
    "$I1234.txt",
    "INFO2",
    "NTUSER.DAT",
    "SYSTEM",
    "Amcache.hve",
    "foo.evtx",
    "CMD.EXE-4A81B364.pf",
]
FOLDERS = [
    "",
    "Windows\\Temp",
    "Users\\alice\\AppData\\Local\\Temp",
    "Windows\\System32",
    "Windows\\System32\\drivers",
    "ProgramData\\Microsoft\\Windows\\WER\\ReportQueue\\AppCrash_wce.exe_1f2e",
    "a\\b\\c\\d\\e\\f\\g\\h\\i\\j\\k\\l\\m\\n",
    "fgdump",
    "Windows\\Prefetch",
    "$Recycle.Bin\\S-1-5-21-1",
    "RECYCLER\\S-1-5-21-1",
    "Windows\\System32\\config",
    "Windows\\System32\\Tasks",
    "Windows\\Tasks",
    "$Extend",
]
# Where a fast look-up would go wrong: case variants outside ASCII (under
# IGNORECASE `s` matches `ſ` and `k` the Kelvin sign), newlines (which `$`
# matches before), alternate data streams, separators at the end.
ODD = [
    "\\ſdelete.exe",
    "\\ſdeltemp",
    "\\Windows\\System32\\drivers\\Dbgv.ſys",
    "\\wce.ſys",
    "\\x.ln\u212a",
    "\\Users\\José\\wce.exe",
    "\\日本語\\getmail.exe",
    "\\wce.\u212a",
    "\\wce.exe\n",
    "\\wce.exe\n\\x",
    "\\x\n\\SDELTEMP",
    "\\wce.exe:Zone.Identifier",
    "\\notes.txt:wce.exe",
    "\\Temp\\",
    "\\",
    "wce.exe",
    "SDELTEMP",
    "C:\\SDELTEMP",
    "c:\\sdelmft123456",
    "\\dictionary.alcatel-lucent.aaa",
    "\\$Extend\\$UsnJrnl:$J",
]


def varied_paths(seed: int = 12) -> list[str]:
    """Every folder with every name, the odd ones, the golden cases' paths,
    and names cut, joined and re-cased at random."""
    paths = [
        f"{folder}\\{name}" if folder else f"\\{name}"
        for folder in FOLDERS
        for name in NAMES
    ]
    paths += ODD
    for case_file in sorted(CASES_DIR.glob("*.yaml")):
        for case in yaml.safe_load(case_file.read_text())["cases"]:
            if "path" in case:
                paths.append(case["path"])
    rng = random.Random(seed)
    extras = ["", "ſ", "é", "\u212a", "\n", ":", ".", "-", "64", "\\", "İ"]
    for _ in range(3000):
        name = rng.choice(NAMES)
        cut = rng.randrange(len(name) + 1)
        name = name[:cut] + rng.choice(extras) + name[cut:]
        name = "".join(c.upper() if rng.random() < 0.3 else c for c in name)
        paths.append(f"\\{rng.choice(FOLDERS)}\\{name}")
    return paths


def tricky_indicators() -> list[Indicator]:
    """Regexes the index must read right or leave alone."""
    regexes = [
        (r"\\wce\.exe$", False),
        (r"\\WCE\.EXE$", True),  # case-sensitive: only this case
        (r"(?i)\\getmail\.exe$", True),  # inline global flag: no alternation
        (r"\\ſdelete\.exe$", False),  # non-ASCII literal, not in the dot's reach
        (r"\\\u212ace\.exe$", False),
        (r"\\wce\.\u212a$", False),  # non-ASCII before the dot: no index
        (r"\\(wce|getmail)(64)?\.(exe|dll)$", False),
        (r"(^|\\)sdeltemp1?$", False),
        (r"\\[ab]c\.txt$", False),
        (r"\\wce\.sys$", False),  # `ſys` matches too
        (r"\\x\.lnk$", False),  # and `ln\u212a`
        (r"\\notes\.txt:wce\.exe$", False),
        (r"\\x\.$", False),  # an empty extension
        (r"\\$", False),  # an empty name
        (r"\\(\w)\1\.txt$", False),  # a backreference stands alone
        (r"(?<!x)\.aaa$", False),
        (r"\.txt(?=$)", False),  # lookahead: no index
        (r"wce", False),  # anywhere
        (r"(?m)^sdeltemp$", False),
        (r"(?x) \\ wce \. exe $", False),
    ]
    return [
        Indicator(
            f"probe.filename.r{number}",
            "probe",
            "filenames",
            {"regex": regex, "case_sensitive": case_sensitive},
            f"test:{number}",
        )
        for number, (regex, case_sensitive) in enumerate(regexes)
    ]


def expected(indicators: list[Indicator], path: str) -> list[str]:
    """What searching with each regex gives, regexes with backreferences last
    (the order FilenameMatcher has always given)."""
    alone = [i for i in indicators if compiler._BACKREFERENCE.search(i.fields["regex"])]
    rest = [i for i in indicators if i not in alone]
    found = []
    for ind in rest + alone:
        flags = 0 if ind.fields.get("case_sensitive") else re.IGNORECASE
        if re.search(ind.fields["regex"], path, flags):
            found.append(ind.id)
    return found


@pytest.mark.parametrize("which", ["shipped", "tricky", "tricky_nested"])
def test_filename_matcher_gives_what_every_regex_gives(which: str) -> None:
    if which == "shipped":
        indicators = loader.load([], shipped=True).indicators("filenames")
    else:
        indicators = tricky_indicators()
    if which == "tricky_nested":
        # Without global inline flags the regexes go into one alternation.
        indicators = [i for i in indicators if not i.fields["regex"].startswith("(?")]
    matcher = compiler.FilenameMatcher(indicators)
    paths = varied_paths()
    hits = 0
    for path in paths:
        want = expected(indicators, path)
        assert [ind.id for ind in matcher.match(path)] == want, path
        hits += bool(want)
    # The set is varied enough to hit often and miss often.
    assert 200 < hits < len(paths) - 200


def test_parser_for_gives_the_first_parser_that_takes_the_path() -> None:
    parsers = manager.file_parsers()
    paths = [path.replace("\\", "/") for path in varied_paths(seed=5)]
    paths += ["/$Extend/$UsnJrnl:$J", "/$Extend/$UsnJrnl:$Max", "/Windows/Tasks/a.job"]
    taken = 0
    for path in paths:
        want = next((d for d in parsers if d.paths.search(path)), None)
        assert manager.parser_for(path) is want, path
        taken += want is not None
    assert taken > 100


@pytest.mark.parametrize(
    ("regex", "tails"),
    [
        (r"\\wce\.exe$", {".exe"}),
        (r"\\(?i:wce)(64)?\.(exe|DLL)$", {".exe", ".dll"}),
        (r"-PWHashes\.txt(\.Obfuscated)?$", {".txt", ".obfuscated"}),
        (r"(^|/)(system|ntuser\.dat)$", {"system", ".dat"}),
        (r"(^|/)(sam)$|(^|/)config/default$", {"sam", "default"}),
        (r"^/\$Extend/\$UsnJrnl:\$J$", {"$usnjrnl:$j"}),
        (r"(?<!x)\.(AAA|ZZZ)$", {".aaa", ".zzz"}),
        (r"\\[Aa]b\.[Cc]$", {".c"}),
        (r"\\pwdump[^\\]*$", None),
        (r"\\pwhashes", None),
        (r"\\SAM-\d+\.dmp\.LOG\d*$", None),
        (r"\\wce\.\u212a$", None),
        (r"\.txt(?=$)", None),
        (r"\\x(?:a|b)+\.txt$", {".txt"}),
        (r"\\x(?:a|b)+$", None),
    ],
)
def test_regex_tails(regex: str, tails: set[str] | None) -> None:
    sep = "/" if "/" in regex else "\\"
    assert compiler.regex_tails(re.compile(regex, re.IGNORECASE), sep) == tails
