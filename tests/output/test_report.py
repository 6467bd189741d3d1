"""The HTML findings report: complete, self-contained, and safe to open."""

from __future__ import annotations

import html.parser
import json
import subprocess
import sys
from pathlib import Path

from toolmarks.events import Match, Trace
from toolmarks.indicators import loader
from toolmarks.output import report
from toolmarks.parsers.content import DATA_TYPE_FILE


class _Page(html.parser.HTMLParser):
    """The tags, attributes and text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data) -> None:
        self.text.append(data)


def parse(page: str) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    return parsed


def assert_self_contained(page: _Page) -> None:
    names = {tag for tag, _ in page.tags}
    assert not names & {"script", "link", "img", "iframe", "object", "embed", "form"}
    for _, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), name
            if name in ("href", "src"):
                assert value and value.startswith("#"), value
    policies = [
        attrs["content"]
        for tag, attrs in page.tags
        if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"
    ]
    assert policies and policies[0].startswith("default-src 'none'")


def test_report_of_a_real_scan_names_every_hit(tmp_path: Path, traces_images) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "toolmarks", "scan", str(traces_images["raw"])]
        + ["-o", str(out), "--workers", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "report.html" in json.loads((out / "scan.json").read_text())["outputs"]
    page_text = (out / "report.html").read_text(encoding="utf-8")
    page = parse(page_text)
    assert_self_contained(page)
    text = "".join(page.text)
    rows = [json.loads(line) for line in (out / "timeline.jsonl").open()]
    assert rows
    anchors = {attrs.get("id") for _, attrs in page.tags}
    for row in rows:
        assert row["source"] in text
        for match in row["matches"]:
            assert match["indicator"] in text
            assert f"tool-{match['tool']}" in anchors
        assert row["timestamp_desc"] in text
    # SDelete is dual use, WCE is not: their headings say so.
    for tool, dual in (("sdelete", True), ("wce", False)):
        start = page_text.index(f'<h2 id="tool-{tool}">')
        heading = page_text[start : page_text.index("<h3>", start)]
        assert ("dual use" in heading) is dual, heading
    assert "Windows Credential Editor" in text and "WCESERVICE" in text


def test_names_from_the_evidence_are_escaped(tmp_path: Path) -> None:
    indicator_set = loader.load([], shipped=True)
    indicator = indicator_set.indicator("getmail.filename.attach_doc")
    hostile = '/Temp/<script>alert(1)</script>"\u202egpj.exe\x1b[31m'
    trace = Trace(
        DATA_TYPE_FILE,
        None,
        "Not a time",
        hostile,
        [Match.of(indicator, hostile)],
        {"path": hostile, "size": 3, "allocated": False},
    )
    page_text = report.render([trace], indicator_set, {"image": {"path": hostile}})
    page = parse(page_text)
    assert_self_contained(page)
    assert "<script" not in page_text
    text = "".join(page.text)
    assert '/Temp/<script>alert(1)</script>"\\u202egpj.exe\\x1b[31m' in text
    assert "\u202e" not in text and "\x1b" not in text
    assert "no (deleted)" in text
