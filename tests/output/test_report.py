"""The HTML report: complete, self-contained, safe to open, and read by a real
browser (Debian's chromium, headless) without console errors."""

from __future__ import annotations

import hashlib
import html.parser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dfdatetime import posix_time

from toolmarks.events import Match, Trace
from toolmarks.indicators import loader
from toolmarks.indicators.model import IndicatorSet, Tool
from toolmarks.output import report
from toolmarks.parsers.content import DATA_TYPE_FILE

LEAD_DATA_TYPE = "toolmarks:lead"
SCRIPT_NAME = "<script>alert(1)</script>.exe"
FORMULA_NAME = "=cmd|' /C calc'!A0.exe"
# What chromium logs for a console message (errors, CSP violations) with
# --enable-logging=stderr --v=0.
CONSOLE = re.compile(r":CONSOLE[:(]")


class _Page(html.parser.HTMLParser):
    """The tags, attributes and text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs) -> None:
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
    assert policies == ["default-src 'none'; style-src 'unsafe-inline'"]


def toolmarks(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "toolmarks", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


# The browser.


def chromium(page: Path, work: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    """Headless chromium on a file, console messages logged to stderr."""
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("chromium is not installed (scripts/setup.sh --test installs it)")
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # root in CI; the page runs no script anyway
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={work / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,1000",
            *mode,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def browser_dom(page: Path, work: Path) -> str:
    """The page's DOM as chromium built it; fails on any console message."""
    done = chromium(page, work, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if CONSOLE.search(line)]
    assert not console, console
    assert "</html>" in done.stdout
    return done.stdout


def screenshot(page: Path, work: Path) -> bytes:
    shot = work / f"{page.stem}.png"
    done = chromium(page, work, f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return data


def marks(dom: _Page) -> list[dict[str, str | None]]:
    return [a for tag, a in dom.tags if tag == "rect" and a.get("class") == "mark"]


def test_the_console_check_sees_a_violation(tmp_path: Path) -> None:
    """The console check is real: a page breaking the report's policy logs."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'\"></head><body><script>console.error(1)"
        "</script></body></html>"
    )
    done = chromium(page, tmp_path, "--dump-dom")
    assert any(CONSOLE.search(line) for line in done.stderr.splitlines())


# A real scan of the traces scenario.


@pytest.fixture(scope="module")
def scan_out(traces_images, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "out"
    done = toolmarks(
        "scan", str(traces_images["raw"]), "-o", str(out), "--workers", "1"
    )
    assert done.returncode == 0, done.stderr
    return out


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "timeline.jsonl").open()]


def test_report_of_a_real_scan_names_every_hit(scan_out: Path) -> None:
    assert "report.html" in json.loads((scan_out / "scan.json").read_text())["outputs"]
    page_text = (scan_out / "report.html").read_text(encoding="utf-8")
    page = parse(page_text)
    assert_self_contained(page)
    text = "".join(page.text)
    rows = rows_of(scan_out)
    assert rows
    anchors = {attrs.get("id") for _, attrs in page.tags}
    for row in rows:
        assert row["source"] in text
        assert row["timestamp_desc"] in text
        for match in row["matches"]:
            assert match["indicator"] in text
            if match["tool"]:
                assert f"tool-{match['tool']}" in anchors
    # SDelete is dual use, WCE is not: their headings say so.
    for tool, dual in (("sdelete", True), ("wce", False)):
        start = page_text.index(f'<h2 id="tool-{tool}">')
        heading = page_text[start : page_text.index("<h3>", start)]
        assert ("dual use" in heading) is dual, heading
    assert "Windows Credential Editor" in text and "WCESERVICE" in text
    # MANIFEST: SDELETE.EXE-D6B20984.pf, run count 5, last run 02:38:08.922573.
    assert "executed 5 times" in text
    # The seed's Japanese stage names and description, as UTF-8.
    assert "潜伏活動" in text and "隠滅" in text
    assert 'charset="utf-8"' in page_text and "Noto Sans CJK JP" in page_text


def test_sections_come_in_order(scan_out: Path) -> None:
    page_text = (scan_out / "report.html").read_text(encoding="utf-8")
    order = [
        page_text.index(marker)
        for marker in (
            '<table class="findings">',
            '<svg class="chart"',
            '<h2 id="tool-',
            '<h2 id="leads">',
            '<h2 id="provenance">',
        )
    ]
    assert order == sorted(order)


def test_browser_reads_the_report_and_its_chart(scan_out: Path, tmp_path) -> None:
    dom = parse(browser_dom(scan_out / "report.html", tmp_path))
    assert not [tag for tag, _ in dom.tags if tag == "script"]
    # One lane per tool of findings.json, one mark per timed event of that tool
    # (marks sharing a pixel column count their events in data-events).
    found = json.loads((scan_out / "findings.json").read_text())["findings"]
    tools = [f["tool"] for f in found if f["tool"]]
    assert {"sdelete", "wce", "pwdump", "dbgview"} <= set(tools)
    lanes = [a for tag, a in dom.tags if tag == "rect" and a.get("class") == "lane"]
    assert len(lanes) == len(tools)
    expected: dict[str, int] = {}
    for row in rows_of(scan_out):
        if row["data_type"] == LEAD_DATA_TYPE or row["timestamp"] is None:
            continue
        for tool in dict.fromkeys(m["tool"] for m in row["matches"]):
            expected[tool] = expected.get(tool, 0) + 1
    drawn: dict[str, int] = {}
    for mark in marks(dom):
        drawn[mark["data-tool"]] = drawn.get(mark["data-tool"], 0) + int(
            mark["data-events"]
        )
    assert drawn == expected
    assert screenshot(scan_out / "report.html", tmp_path)


def test_report_renders_again_identically(scan_out: Path, tmp_path: Path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(scan_out, copy)
    (copy / "report.html").unlink()
    done = toolmarks("report", str(copy))
    assert done.returncode == 0, done.stderr
    assert (copy / "report.html").read_bytes() == (
        scan_out / "report.html"
    ).read_bytes()


def _findings_table(page: str) -> str:
    found = re.search(r'<table class="findings">.*?</table>', page, re.DOTALL)
    assert found, "no findings table"
    return found.group(0)


def test_report_from_the_plaso_store_has_the_same_findings(
    scan_out: Path, tmp_path: Path
) -> None:
    # Kept read-only as evidence often is: read, never written.
    store = tmp_path / "timeline.plaso"
    shutil.copy(scan_out / "timeline.plaso", store)
    store.chmod(0o444)
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    done = toolmarks("report", str(store))
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before
    page = (tmp_path / "timeline.report.html").read_text(encoding="utf-8")
    assert_self_contained(parse(page))
    scanned = (scan_out / "report.html").read_text(encoding="utf-8")
    assert _findings_table(page) == _findings_table(scanned)
    assert "sdelete" in _findings_table(page)


def test_report_of_a_missing_outdir_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "scan.json").write_text("{}")
    (tmp_path / "timeline.jsonl").write_text('{"no": "event"}\n')
    done = toolmarks("report", str(tmp_path))
    assert done.returncode == 2
    assert "timeline.jsonl:1: not a toolmarks event" in done.stderr
    done = toolmarks("report", str(tmp_path / "nothing.plaso"))
    assert done.returncode == 2 and "no such file" in done.stderr


# Hand-made traces: hostile names, thousands of events, leads.


def _file_trace(indicator, path: str, when: int | None) -> Trace:
    return Trace(
        DATA_TYPE_FILE,
        None if when is None else posix_time.PosixTimeInMicroseconds(timestamp=when),
        "Creation Time" if when is not None else "Not a time",
        path,
        [Match.of(indicator, path.rsplit("/", 1)[-1], kind="filename")],
        {"path": path, "size": 3, "allocated": False, "inode": 42},
    )


def test_hostile_names_are_text_only(tmp_path: Path) -> None:
    indicator_set = loader.load([], shipped=True)
    indicator = indicator_set.indicator("getmail.filename.attach_doc")
    # A tool of the user's own set can carry a hostile title: it is drawn in
    # the chart's lane label and the marks' SVG titles.
    hostile_tool = Tool(
        id="case42",
        title="</title><script>alert(2)</script>",
        stages=[],
        dual_use=False,
        data={},
        path="case42.yaml",
    )
    tools = {**indicator_set.tools, "case42": hostile_tool}
    own = IndicatorSet(tools=tools, sources=indicator_set.sources)
    bidi = '/Temp/"\u202egpj.exe\x1b[31m'
    traces = [
        _file_trace(indicator, "/Temp/" + SCRIPT_NAME, 1_613_270_288_000_000),
        _file_trace(indicator, "/Temp/" + FORMULA_NAME, 1_613_270_300_000_000),
        _file_trace(indicator, bidi, None),
        Trace(
            DATA_TYPE_FILE,
            posix_time.PosixTimeInMicroseconds(timestamp=1_613_270_400_000_000),
            "Creation Time",
            "/Temp/x.exe",
            [Match("case42", "case42.name", "filename", SCRIPT_NAME)],
            {"allocated": True},
        ),
    ]
    page_path = tmp_path / "report.html"
    page_path.write_text(
        report.render(traces, own, {"image": {"path": SCRIPT_NAME}}),
        encoding="utf-8",
    )
    source = page_path.read_text(encoding="utf-8")
    assert "<script" not in source
    assert_self_contained(parse(source))
    dom_text = browser_dom(page_path, tmp_path)
    dom = parse(dom_text)
    assert_self_contained(dom)
    # Only elements the report makes: nothing came from a name.
    made = {tag for tag, _ in dom.tags}
    assert made <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p",
        "a", "b", "br", "span", "table", "tbody", "tr", "th", "td", "code", "svg",
        "rect", "text", "line",
    }, made  # fmt: skip
    text = "".join(dom.text)
    for name in (SCRIPT_NAME, FORMULA_NAME, "</title><script>alert(2)</script>"):
        assert name in text
    assert '/Temp/"\\u202egpj.exe\\x1b[31m' in text
    assert "\u202e" not in text and "\x1b" not in text
    assert "no (deleted)" in text
    svg_titles = re.findall(r"<title>(.*?)</title>", dom_text, re.DOTALL)
    assert any("&lt;script&gt;alert(2)" in title for title in svg_titles)


def test_thousands_of_events_stay_readable(tmp_path: Path) -> None:
    indicator_set = loader.load([], shipped=True)
    indicator = indicator_set.indicator("getmail.filename.attach_doc")
    start, step = 1_613_270_288_000_000, 37_000_000
    traces = [
        _file_trace(indicator, f"/Temp/{n}.exe", start + n * step) for n in range(4000)
    ]
    page_path = tmp_path / "report.html"
    page_path.write_text(
        report.render(traces, indicator_set, {"image": {"path": "big.E01"}}),
        encoding="utf-8",
    )
    dom = parse(browser_dom(page_path, tmp_path))
    drawn = marks(dom)
    # One pixel column each at most: a mark per column, all events counted.
    assert len(drawn) <= 900
    assert sum(int(m["data-events"]) for m in drawn) == 4000
    assert screenshot(page_path, tmp_path)


def test_leads_have_their_own_section_and_no_finding(tmp_path: Path) -> None:
    indicator_set = loader.load([], shipped=True)
    reason = "a short random-looking name in a user-writable folder"
    lead = Trace(
        LEAD_DATA_TYPE,
        posix_time.PosixTimeInMicroseconds(timestamp=1_613_270_288_000_000),
        "Creation Time",
        "/Users/bob/AppData/Local/Temp/xzz.exe",
        [Match("", "lead.odd_name", "lead", "xzz.exe", weak=True)],
        {"lead": "odd_name", "reason": reason},
    )
    page = report.render([lead], indicator_set, {"image": {"path": "x.raw"}})
    assert_self_contained(parse(page))
    assert '<table class="findings">' not in page
    leads = page[page.index('<h2 id="leads">') : page.index('<h2 id="provenance">')]
    assert "Leads (1)" in leads
    assert "xzz.exe" in leads and reason in leads and "odd_name" in leads
