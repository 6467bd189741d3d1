"""JSONL and CSV timelines: Timesketch's fields, and cells Excel cannot run."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from dfdatetime import filetime

from toolmarks.events import Match, Trace
from toolmarks.indicators import loader
from toolmarks.output import timeline
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
    assert [row["source"] for row in rows] == ["'" + name for name in hostile]
    for row in rows:
        for cell in row.values():
            assert cell[:1] not in ("=", "+", "-", "@", "\t")
