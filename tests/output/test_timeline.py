"""JSONL and CSV timelines: Timesketch's fields, cells Excel cannot run, and
names from an image shown escaped, not obeyed."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

from dfdatetime import filetime
from ntfs_support import plant_ntfs

from toolmarks.events import Match, Trace
from toolmarks.indicators import loader
from toolmarks.output import timeline
from toolmarks.output.text import printable
from toolmarks.parsers.content import DATA_TYPE_FILE


def make_trace(source: str) -> tuple[Trace, dict]:
    indicator_set = loader.load()
    indicator = indicator_set.indicator("getmail.filename.attach_doc")
    trace = Trace(
        DATA_TYPE_FILE,
        filetime.Filetime(timestamp=132578542889225730),
        "Creation Time",
        source,
        [Match.of(indicator, "\\=1234-attach.doc")],
        {"path": source, "allocated": True},
    )
    return trace, indicator_set.tools


def test_jsonl_has_timesketch_fields(tmp_path: Path) -> None:
    trace, tools = make_trace("/Users/a/1234-attach.doc")
    path = tmp_path / "t.jsonl"
    timeline.write_jsonl(str(path), [trace], tools)
    row = json.loads(path.read_text())
    assert row["datetime"] == "2021-02-15T09:18:08.922573+00:00"
    assert row["timestamp"] == 1613380688922573
    assert row["timestamp_desc"] == "Creation Time"
    assert row["tag"] == [
        "toolmarks",
        "tool_getmail",
        "stage_data_exfiltration",
        "ioc_filename",
    ]
    assert "getmail.filename.attach_doc" in row["message"]
    assert row["indicators"] == ["getmail.filename.attach_doc"]


def test_csv_cells_never_start_a_formula(tmp_path: Path) -> None:
    hostile = ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\tx"]
    traces, tools = [], {}
    for name in hostile:
        trace, tools = make_trace(name)
        traces.append(trace)
    path = tmp_path / "t.csv"
    timeline.write_csv(str(path), traces, tools)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # A tab is escaped first (\x09), so that cell no longer starts a formula.
    assert [row["source"] for row in rows] == ["'" + name for name in hostile[:-1]] + [
        "\\x09x"
    ]
    for row in rows:
        for cell in row.values():
            assert cell[:1] not in ("=", "+", "-", "@", "\t")


# The scheme as printable() documents it, written apart from its code: the
# three hex escapes, every other backslash literal.
_ESCAPE = re.compile(r"\\(?:x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))")


def unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(next(g for g in m.groups() if g), 16)), text)


def shown(char: str) -> bool:
    """Safe to show: not a control, format (bidi), separator or surrogate."""
    return char == " " or unicodedata.category(char)[0] not in "CZ"


TRICKY = [
    "\\Users\\bob\\wce.exe",
    "C:\\tools\\new\\run.exe",  # \t, \n, \r: not a tab, newline, return
    "\\\\server\\share\\x",
    "a\x1b[31m\x07b\u202egpj.exe",
    "\x00\x7f\x85\x9b\xa0\u200b\u2028\u2066\ufeff\U000e0001\udc80",
    "\\x1b",  # typed, not an ESC
    "\\\x1b",  # a backslash, then an ESC
    "\\\\x1b\\u202e\\U0001f600\\x5c",
    "\\xZZ\\u12\\",
    "",
]


def test_escapes_are_visible_and_reversible() -> None:
    for text in TRICKY:
        escaped = printable(text)
        assert all(shown(char) for char in escaped), repr(escaped)
        assert unescape(escaped) == text, repr(text)
    # Windows paths are left as they are; a typed escape is not read as one.
    assert printable(TRICKY[0]) == TRICKY[0]
    assert printable(TRICKY[1]) == TRICKY[1]
    assert printable(TRICKY[2]) == TRICKY[2]
    assert printable("\\x1b") == "\\x5cx1b"
    assert printable("\\\x1b") == "\\x5c\\x1b"
    assert printable("tab\tline\n") == "tab\\x09line\\x0a"


# Planted on a real NTFS volume: folder names with ESC, BEL, a right-to-left
# override, a first-strong isolate, a newline and a formula start, each
# holding a file GETMAIL names (its filename indicator 1234-attach.doc).
HOSTILE_FOLDERS = {
    "\x1b[31mred\x1b[0m": "\\x1b[31mred\\x1b[0m",
    "bell\x07\x07": "bell\\x07\\x07",
    "invoice\u202ecod.exe": "invoice\\u202ecod.exe",
    "iso\u2068late\u2069": "iso\\u2068late\\u2069",
    "=HYPERLINK(1)\n": "=HYPERLINK(1)\\x0a",
}


def test_csv_escapes_names_from_an_image(tmp_path: Path) -> None:
    image = tmp_path / "hostile.raw"
    plant_ntfs(image, list(HOSTILE_FOLDERS), tmp_path / "mnt")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "toolmarks", "scan", str(image), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    with (out / "timeline.csv").open(encoding="utf-8-sig", newline="") as handle:
        text = handle.read()
    # Nothing raw in the whole file but the CSV's own line ends.
    assert all(shown(char) for char in text.replace("\r\n", "")), [
        char for char in text.replace("\r\n", "") if not shown(char)
    ]
    with (out / "timeline.csv").open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # One event per time of each file; every planted file is there, escaped.
    assert {row["source"] for row in rows} == {
        f"/{escaped}/1234-attach.doc" for escaped in HOSTILE_FOLDERS.values()
    }
    for row in rows:
        folder = unescape(row["source"]).split("/")[1]
        assert folder in HOSTILE_FOLDERS
        assert row["matched_values"].endswith("1234-attach.doc")
        assert "getmail.filename.attach_doc" in row["indicators"]
        assert printable(f"/{folder}/1234-attach.doc") in row["message"]
