"""The report: one self-contained HTML page an examiner reads offline and hands on.

In order: the findings (one row per tool, its strongest evidence and a plain
statement), a timeline chart (inline SVG, one lane per tool, marks coloured by
evidence kind), every piece of evidence per tool and where it was found, the
leads apart from the hits, and the provenance a second examiner needs to
reproduce the scan. No script and no external resource: a
Content-Security-Policy forbids both, and every text from the evidence is
escaped, control and bidi characters shown as escapes.

The page depends only on the traces as timeline.jsonl holds them and the
summary as scan.json holds it (both are read back through JSON here), so
`toolmarks report OUTDIR` renders the same bytes a scan wrote.
"""

from __future__ import annotations

import datetime
import hashlib
import html
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from toolmarks.events import CAVEATS, LEAD_PREFIX, Match, Trace
from toolmarks.indicators.model import STAGES_JA, Indicator, IndicatorSet, Tool
from toolmarks.output import findings as findings_module
from toolmarks.output.findings import KINDS, Finding, evidence_kind
from toolmarks.output.text import printable
from toolmarks.output.timeline import iso_time, micros, read_jsonl, row, trace_of_row
from toolmarks.parsers import leads as leads_module
from toolmarks.parsers import manager

_FONTS = (
    'system-ui, "Noto Sans", "DejaVu Sans", "Noto Sans CJK JP", "Noto Sans JP", '
    '"Hiragino Sans", "Yu Gothic", Meiryo, "Source Han Sans", sans-serif'
)
_MONO = '"DejaVu Sans Mono", "Noto Sans Mono", "Noto Sans Mono CJK JP", monospace'
# Evidence kinds' colours, strongest first as in findings.KINDS; told apart by
# colour-blind readers too (hue and lightness differ), and named in the legend.
_COLOURS = {
    "executed": "#c0392b",
    "installed": "#e67e22",
    "scheduled": "#8e44ad",
    "attempted": "#e84393",
    "accepted": "#b7950b",
    "present": "#2471a3",
    "listed": "#17a589",
    "configured": "#7f8c8d",
    "remnant": "#6e4b2a",
}
_STYLE = f"""
body {{ font: 14px/1.4 {_FONTS}; margin: 1.5em auto; max-width: 80em;
  padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.5em; margin-bottom: 0.2em; }}
h2 {{ font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }}
h3 {{ font-size: 1em; margin: 1.2em 0 0.3em; font-family: {_MONO};
  word-break: break-all; }}
table {{ border-collapse: collapse; margin: 0.3em 0 0.8em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left;
  vertical-align: top; }}
th {{ background: #f2f2f2; }}
code, .mono {{ font-family: {_MONO}; word-break: break-all; }}
.alert {{ border: 2px solid #b00; background: #fee; padding: 0.5em 1em; }}
.note {{ color: #555; }}
.tag {{ display: inline-block; background: #eef; border-radius: 3px;
  padding: 0 0.3em; margin-right: 0.2em; font-size: 0.9em; }}
.dual {{ background: #ffe9b3; }} .weak {{ color: #a60; }} .caveat {{ color: #b00; }}
.kind {{ display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.3em;
  border-radius: 2px; vertical-align: baseline; }}
.findings td.statement {{ max-width: 34em; }}
.legend span {{ margin-right: 1em; white-space: nowrap; }}
svg.chart {{ display: block; max-width: 100%; height: auto; }}
svg.chart text {{ font: 11px {_FONTS}; fill: #333; }}
svg.chart .lane {{ fill: #f6f6f6; }}
svg.chart .grid {{ stroke: #ddd; }}
"""
_POLICY = "default-src 'none'; style-src 'unsafe-inline'"
_FILE_FACTS = (
    ("size", "size (bytes)"),
    ("inode", "inode / MFT entry"),
    ("md5_hash", "MD5"),
    ("sha1_hash", "SHA-1"),
    ("sha256_hash", "SHA-256"),
    ("imphash", "imphash"),
)
_STAGE_JA = {english: japanese for japanese, english in STAGES_JA.items()}

# The chart: label column, plot width (one mark column per unit) and lane height.
_LABEL_WIDTH = 190
_PLOT_WIDTH = 900
_LANE_HEIGHT = 26
_AXIS_HEIGHT = 40
_MARK_WIDTH = 3
# Tick steps, finest first: seconds, then calendar months.
_SECOND_STEPS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600)
_SECOND_STEPS += (12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400)
_MONTH_STEPS = (1, 2, 3, 6, 12, 24, 60, 120, 240)
_MAX_TICKS = 8


def _text(value: Any) -> str:
    return html.escape(printable(str(value)))


def _code(value: Any) -> str:
    return f"<code>{_text(value)}</code>"


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], css: str = "") -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{_text(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows
    )
    klass = f' class="{css}"' if css else ""
    return f"<table{klass}><tr>{head}</tr>{body}</table>"


def _readable(iso: str | None) -> str:
    """2021-02-14T02:22:57.123456+00:00 -> 2021-02-14 02:22:57.123456."""
    return (iso or "").replace("T", " ").removesuffix("+00:00")


def _swatch(kind: str | None) -> str:
    if kind is None:
        return ""
    colour = _COLOURS.get(kind, "#999")
    return f'<span class="kind" style="background:{colour}"></span>{_text(kind)}'


def _stages(stages: Iterable[str]) -> str:
    return ", ".join(
        _text(f"{s} {_STAGE_JA[s]}" if s in _STAGE_JA else s) for s in stages
    )


def _is_lead(trace: Trace) -> bool:
    return trace.data_type == leads_module.DATA_TYPE or any(
        m.indicator.startswith(LEAD_PREFIX) for m in trace.matches
    )


def _lead_kind(trace: Trace) -> str:
    kind = str(trace.attributes.get("lead") or "")
    if not kind:
        kind = next((m.indicator for m in trace.matches), "")
    return kind.removeprefix(LEAD_PREFIX)


def _plain(traces: Iterable[Trace], tools: dict[str, Tool]) -> list[Trace]:
    """The traces as timeline.jsonl gives them back: a report from a scan and
    one rendered again from its OUTDIR then show the same values."""
    return [
        trace_of_row(json.loads(json.dumps(row(t, tools), default=str))) for t in traces
    ]


def _detail(match: Match) -> str:
    return ", ".join(f"{_text(key)} {_code(value)}" for key, value in match.detail)


def _report_fields(data_type: str) -> tuple[str, ...]:
    """What tells one event of a hive, prefetch file or log from the next."""
    definition = manager.by_data_type(data_type)
    return definition.report_fields if definition else ()


def _indicator_cell(match: Match, indicator: Indicator | None) -> str:
    text = _code(match.indicator)
    if indicator is not None:
        text += (
            f'<br><span class="note">confidence {_text(indicator.confidence)}; '
            f"source: {_text(indicator.source)}</span>"
        )
    if match.weak:
        text += '<br><span class="weak">weak: common on its own, corroborate</span>'
    return text


# The findings table.


def _findings_table(found: list[Finding]) -> str:
    if not found:
        return "<p>No indicator of the set was met: no tool of the set was found.</p>"
    rows = []
    for f in found:
        tool = f'<a href="#tool-{_text(f.tool)}">{_text(f.title)}</a>'
        tool += f"<br>{_code(f.tool)}"
        if f.dual_use:
            tool += '<br><span class="tag dual">dual use</span>'
        rows.append(
            (
                tool,
                _stages(f.stages),
                _swatch(f.strongest) or '<span class="weak">weak only</span>',
                _text(f.statement()),
                _text(_readable(f.first) or "no time"),
                _text(_readable(f.last) or "no time"),
                _text(f.events),
            )
        )
    return _table(
        (
            "tool",
            "stages",
            "strongest evidence",
            "statement",
            "first (UTC)",
            "last (UTC)",
            "events",
        ),
        rows,
        "findings",
    )


# The timeline chart.


def _utc(value: int) -> datetime.datetime:
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return epoch + datetime.timedelta(microseconds=value)


def _add_months(moment: datetime.datetime, months: int) -> datetime.datetime:
    total = moment.year * 12 + moment.month - 1 + months
    return moment.replace(year=total // 12, month=total % 12 + 1)


def _ticks(start: int, end: int) -> list[tuple[int, str]]:
    """Round times between start and end (microseconds), at most _MAX_TICKS."""
    span = (end - start) / 1e6
    first, last = _utc(start), _utc(end)
    for step in _SECOND_STEPS:
        if span / step <= _MAX_TICKS:
            whole = math.ceil(start / (step * 1_000_000)) * step * 1_000_000
            form = "%Y-%m-%d" if step >= 86400 else "%Y-%m-%d %H:%M"
            if step < 60:
                form = "%H:%M:%S"
            out = []
            while whole <= end:
                out.append((whole, _utc(whole).strftime(form)))
                whole += step * 1_000_000
            return out
    for months in _MONTH_STEPS:
        if span / (months * 30.4 * 86400) <= _MAX_TICKS or months == _MONTH_STEPS[-1]:
            moment = first.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            index = moment.year * 12 + moment.month - 1
            moment = _add_months(moment, -(index % months))
            if moment < first:
                moment = _add_months(moment, months)
            out = []
            while moment <= last:
                value = round((moment - _utc(0)).total_seconds() * 1_000_000)
                out.append((value, moment.strftime("%Y" if months >= 12 else "%Y-%m")))
                moment = _add_months(moment, months)
            return out
    return []


def _chart(found: list[Finding], by_tool: dict[str, list[Trace]]) -> str:
    """One lane per finding, one mark per event: events that fall into the same
    pixel column of a lane with the same kind share a mark, which counts them
    (data-events, its title) and is the more opaque the more it holds."""
    timed = [
        (f.tool, micros(t), evidence_kind(t), t)
        for f in found
        for t in by_tool.get(f.tool, [])
        if micros(t) is not None
    ]
    if not found:
        return ""
    if not timed:
        return '<p class="note">No event of a tool has a time: no chart.</p>'
    start = min(when for _, when, _, _ in timed)
    end = max(when for _, when, _, _ in timed)
    span = max(end - start, 1)
    buckets: dict[tuple[str, int, str], list[int]] = {}
    for tool, when, kind, _ in timed:
        column = (when - start) * (_PLOT_WIDTH - _MARK_WIDTH) // span
        bucket = buckets.setdefault((tool, column, kind), [0, when, when])
        bucket[0] += 1
        bucket[1] = min(bucket[1], when)
        bucket[2] = max(bucket[2], when)
    lanes = {f.tool: index for index, f in enumerate(found)}
    titles = {f.tool: f.title for f in found}
    height = len(found) * _LANE_HEIGHT + _AXIS_HEIGHT
    width = _LABEL_WIDTH + _PLOT_WIDTH + 10
    parts = [
        (
            f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
            'aria-labelledby="chart-title">'
            '<title id="chart-title">Events per tool over time, coloured by '
            "evidence kind</title>"
        )
    ]
    for f in found:
        y = lanes[f.tool] * _LANE_HEIGHT
        untimed = sum(1 for t in by_tool.get(f.tool, []) if micros(t) is None)
        label = f.title if len(f.title) <= 26 else f.title[:25] + "…"
        parts.append(
            f'<rect class="lane" x="{_LABEL_WIDTH}" y="{y + 1}" '
            f'width="{_PLOT_WIDTH}" height="{_LANE_HEIGHT - 2}"/>'
            f'<text x="{_LABEL_WIDTH - 6}" y="{y + 17}" text-anchor="end">'
            f"<title>{_text(f.title)} ({_text(f.tool)})"
            + (f"; {untimed} events without a time" if untimed else "")
            + f"</title>{_text(label)}</text>"
        )
    bottom = len(found) * _LANE_HEIGHT
    for value, label in _ticks(start, end):
        x = _LABEL_WIDTH + (value - start) * (_PLOT_WIDTH - _MARK_WIDTH) / span
        parts.append(
            f'<line class="grid" x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{bottom + 4}"/>'
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">'
            f"{_text(label)}</text>"
        )
    parts.append(
        f'<text x="{_LABEL_WIDTH}" y="{bottom + 32}">'
        f"{_text(_readable(_iso(start)))} UTC"
        f'</text><text x="{_LABEL_WIDTH + _PLOT_WIDTH}" y="{bottom + 32}" '
        f'text-anchor="end">{_text(_readable(_iso(end)))} UTC</text>'
    )
    # Weakest kinds first, so a stronger kind's mark is drawn on top.
    order = {kind: index for index, kind in enumerate(reversed(list(KINDS)))}
    for (tool, column, kind), (count, first, last) in sorted(
        buckets.items(), key=lambda item: (order.get(item[0][2], -1), item[0][:2])
    ):
        y = lanes[tool] * _LANE_HEIGHT
        opacity = 0.5 + 0.5 * min(1.0, math.log2(1 + count) / 5)
        when = _readable(_iso(first))
        if last != first:
            when += f" to {_readable(_iso(last))}"
        parts.append(
            f'<rect class="mark" data-tool="{_text(tool)}" data-kind="{_text(kind)}" '
            f'data-events="{count}" x="{_LABEL_WIDTH + column}" y="{y + 4}" '
            f'width="{_MARK_WIDTH}" height="{_LANE_HEIGHT - 8}" '
            f'fill="{_COLOURS.get(kind, "#999")}" fill-opacity="{opacity:.2f}">'
            f"<title>{_text(titles[tool])}: {count} {_text(kind)} "
            f"event{'s' if count > 1 else ''}, {_text(when)} UTC</title></rect>"
        )
    parts.append("</svg>")
    legend = "".join(
        f"<span>{_swatch(kind)}: {_text(meaning)}</span> "
        for kind, meaning in KINDS.items()
    )
    untimed = sum(
        1 for f in found for t in by_tool.get(f.tool, []) if micros(t) is None
    )
    note = (
        f"{len(timed)} events with a time in {len(found)} "
        f"lane{'s' if len(found) != 1 else ''}, from "
        f"{_readable(_iso(start))} to {_readable(_iso(end))} UTC"
        + (f"; {untimed} events without a time are not drawn" if untimed else "")
        + ". A mark stands for the events of one kind in one pixel column; its "
        "tooltip counts them, and darker marks hold more events."
    )
    return (
        "".join(parts)
        + f'<p class="note">{_text(note)}</p><p class="legend note">{legend}</p>'
    )


def _iso(value: int) -> str:
    return _utc(value).isoformat()


# Per-tool detail.


def _evidence_table(finding: Finding) -> str:
    rows = [
        (
            _swatch(kind),
            _text(KINDS.get(kind, "")),
            _text(evidence.events)
            + (
                ' <span class="weak">(weak indicators only)</span>'
                if evidence.weak_only
                else ""
            ),
            _text(_readable(evidence.first) or "no time"),
            _text(_readable(evidence.last) or "no time"),
            "<br>".join(_code(location) for location in evidence.locations),
        )
        for kind, evidence in finding.evidence.items()
    ]
    return _table(
        ("evidence", "what it tells", "events", "first (UTC)", "last (UTC)", "where"),
        rows,
    )


def _location(
    source: str, traces: list[Trace], tool_id: str, indicators: dict[str, Indicator]
) -> str:
    out = [f"<h3>{_text(source)}</h3>"]
    first = traces[0].attributes
    for name, label in CAVEATS:
        if name in first:
            out.append(f'<p class="caveat">{label}: {_text(first[name])}</p>')
    # One row per match, though every event of a file repeats its matches.
    matches: dict[str, Match] = {}
    for trace in traces:
        for match in trace.matches:
            if match.tool == tool_id:
                matches.setdefault(repr(match), match)
    out.append(
        _table(
            ("indicator", "kind", "matched value", "where in the source"),
            (
                (
                    _indicator_cell(m, indicators.get(m.indicator)),
                    _text(m.kind),
                    _code(m.value),
                    _detail(m),
                )
                for m in matches.values()
            ),
        )
    )
    facts = [
        (_text(label), _code(first[key]))
        for key, label in _FILE_FACTS
        if first.get(key) not in (None, "")
    ]
    if "allocated" in first:
        facts.append(
            ("allocated", _text("yes" if first["allocated"] else "no (deleted)"))
        )
    for key in ("stream", "volume"):
        if first.get(key):
            facts.insert(0, (key, _code(first[key])))
    if facts:
        out.append(_table(("fact", "value"), facts))
    events = [
        (
            _text(_readable(iso_time(t)) or "no time"),
            _text(t.timestamp_desc),
            _swatch(evidence_kind(t)),
            _text(t.data_type),
            "<br>".join(
                f"{_text(key)}: {_code(t.attributes[key])}"
                for key in _report_fields(t.data_type)
                if t.attributes.get(key) not in (None, "", [])
            ),
        )
        for t in traces
    ]
    out.append(
        _table(
            ("time (UTC)", "what the time means", "evidence", "event type", "detail"),
            events,
        )
    )
    return "".join(out)


def _tool_detail(
    finding: Finding,
    tool: Tool | None,
    traces: list[Trace],
    indicators: dict[str, Indicator],
) -> str:
    out = [
        (
            f'<h2 id="tool-{_text(finding.tool)}">{_text(finding.title)} '
            f"({_code(finding.tool)})</h2>"
        )
    ]
    tags = "".join(
        f'<span class="tag">{_text(s)}</span>'
        for s in (f"{x} {_STAGE_JA.get(x, '')}".strip() for x in finding.stages)
    )
    if finding.dual_use:
        tags += (
            '<span class="tag dual">dual use: legitimate uses exist, '
            "not proof of compromise</span>"
        )
    out.append(f"<p>{tags}</p>")
    out.append(f"<p><b>{_text(finding.statement())}</b></p>")
    if tool is not None and tool.data.get("description_ja"):
        out.append(
            f'<p class="note" lang="ja">{_text(tool.data["description_ja"])}</p>'
        )
    out.append(_evidence_table(finding))
    sources: dict[str, list[Trace]] = {}
    for trace in traces:
        sources.setdefault(trace.source, []).append(trace)
    for source, source_traces in sorted(sources.items()):
        out.append(_location(source, source_traces, finding.tool, indicators))
    return "".join(out)


# Leads.


def _leads(traces: list[Trace]) -> str:
    out = ['<h2 id="leads">Leads (' + str(len(traces)) + ")</h2>"]
    out.append(
        '<p class="note">Heuristics, not indicator hits: no indicator names these, '
        "and none of them is a finding by itself. Each says why it was raised; "
        "look at each by hand.</p>"
    )
    if not traces:
        out.append("<p>No lead was raised.</p>")
        return "".join(out)
    kinds = sorted({_lead_kind(t) for t in traces})
    out.append(
        _table(
            ("lead", "what it is"),
            ((_code(kind), _text(leads_module.KINDS.get(kind, ""))) for kind in kinds),
        )
    )
    rows = []
    for trace in traces:
        match = trace.matches[0] if trace.matches else None
        where = _code(trace.source)
        volume = trace.attributes.get("volume")
        if volume:
            where += f"<br>volume {_code(volume)}"
        rows.append(
            (
                _code(match.indicator if match else _lead_kind(trace)),
                _code(match.value if match else ""),
                _text(
                    trace.attributes.get("reason")
                    or dict(match.detail if match else ()).get("reason", "")
                ),
                where,
                _text(_readable(iso_time(trace)) or "no time"),
                _text(trace.timestamp_desc),
            )
        )
    out.append(
        _table(
            (
                "lead",
                "value",
                "why it was raised",
                "where",
                "time (UTC)",
                "what the time means",
            ),
            rows,
        )
    )
    return "".join(out)


# Provenance.


def _verification(image: dict[str, Any]) -> str:
    check = image.get("verification")
    if not check:
        return ""
    if check.get("computed_md5"):
        md5 = f"computed {_code(check['computed_md5'])}"
    else:
        md5 = "not computed (<code>--verify-md5</code> computes it)"
    if check.get("ok"):
        if check.get("computed_md5"):
            return (
                f"<p>EWF verification: OK (computed MD5 {_code(check['computed_md5'])} "
                "equals the one stored at acquisition).</p>"
            )
        return (
            f"<p>EWF verification: OK (all {_text(check.get('chunks'))} chunks "
            f"passed their checksum as the scan decoded them; the MD5 was {md5}).</p>"
        )
    if check.get("ok") is None:
        problem = _text(check.get("problem"))
        return f'<p class="alert">EWF image not verified: {problem}</p>'
    out = [
        '<div class="alert"><p><b>EWF verification FAILED</b>: '
        + f"{_text(check.get('problem'))}; "
        + f"stored MD5 {_code(check.get('stored_md5'))}, {md5}.</p>"
    ]
    if check.get("bad_sectors"):
        ranges = ", ".join(f"{a}-{b}" for a, b in check["bad_sectors"])
        out.append(
            f"<p>Checksum errors in sectors {_text(ranges)}: data read there is zeros "
            "or garbage, so hits and misses in the streams below are unreliable.</p>"
        )
        out.append(
            _table(
                ("stream with data on the bad sectors", "its damaged bytes"),
                (
                    (
                        _code(d["location"]),
                        _text(", ".join(f"{a}-{b}" for a, b in d["stream_ranges"])),
                    )
                    for d in check.get("damaged_streams", [])
                ),
            )
        )
        for note in check.get("damage_notes", []):
            out.append(f"<p>{_text(note)}</p>")
    out.append("</div>")
    return "".join(out)


def _problems(summary: dict[str, Any]) -> str:
    out = []
    sections = (
        ("warnings", "Warnings"),
        ("unreadable", "Not readable"),
        ("skipped", "Skipped"),
        ("not_checked", "Checks not done"),
    )
    fields = ("location", "message")
    for key, title in sections:
        items = summary.get(key) or []
        out.append(f"<h3>{title} ({len(items)})</h3>")
        if items:
            out.append(
                _table(fields, ([_text(i.get(f, "")) for f in fields] for i in items))
            )
    return "".join(out)


def _provenance(summary: dict[str, Any], indicator_set: IndicatorSet) -> str:
    image = summary.get("image") or {}
    used = summary.get("indicator_set") or {}
    facts = [
        ("image", _code(image.get("path", ""))),
        ("format", _text(image.get("format", ""))),
        ("size (bytes)", _text(image.get("media_size") or image.get("size") or "")),
    ]
    if image.get("segments"):
        facts.append(("segments", "<br>".join(_code(s) for s in image["segments"])))
    for key in ("md5", "sha1", "sha256"):
        if image.get(key):
            facts.append((f"{key.upper()} stored at acquisition", _code(image[key])))
    check = image.get("verification") or {}
    if check.get("computed_md5"):
        facts.append(("MD5 computed (ewfverify)", _code(check["computed_md5"])))
    volumes = summary.get("volumes") or []
    if volumes:
        facts.append(
            (
                "volumes",
                "<br>".join(
                    _text(
                        f"{v.get('label') or '(whole image)'} "
                        f"{v.get('file_system', '')} at offset {v.get('offset', '')}, "
                        f"{v.get('size', '')} bytes"
                    )
                    for v in volumes
                ),
            )
        )
    facts.append(("toolmarks version", _text(summary.get("toolmarks_version", ""))))
    version = used.get("version", "")
    set_text = f"version {version}"
    if used.get("tools") is not None:
        set_text += f": {used.get('tools')} tools, {used.get('indicators')} indicators"
    facts.append(("indicator set", _text(set_text)))
    if version == indicator_set.version:
        facts.append(("indicator set SHA-256", _code(_set_checksum(indicator_set))))
    elif version:
        facts.append(
            (
                "indicator set of this page",
                '<span class="caveat">'
                + _text(
                    f"titles, stages and indicator sources shown are of set "
                    f"{indicator_set.version}, not the set {version} the scan used"
                )
                + "</span>",
            )
        )
    if used.get("sources"):
        facts.append(
            ("indicator files", "<br>".join(_code(s) for s in used["sources"]))
        )
    facts.append(("command line", _code(summary.get("command_line", ""))))
    options = summary.get("options")
    if options:
        facts.append(
            (
                "options",
                "<br>".join(
                    f"{_text(k)}: {_code(json.dumps(v, ensure_ascii=False))}"
                    for k, v in options.items()
                ),
            )
        )
    for key, label in (("started", "scan started"), ("seconds", "seconds")):
        if summary.get(key) not in (None, ""):
            facts.append((label, _text(summary[key])))
    if summary.get("store"):
        facts.append(("rendered from the plaso store", _code(summary["store"])))
    counts = summary.get("counts") or {}
    facts += [(_text(k.replace("_", " ")), _text(v)) for k, v in counts.items()]
    return (
        '<h2 id="provenance">Provenance</h2>'
        + _verification(image)
        + _table(("", ""), (fact for fact in facts if fact[1]))
        + _problems(summary)
    )


def _set_checksum(indicator_set: IndicatorSet) -> str:
    """The whole SHA-256 of which IndicatorSet.version is the start."""
    digest = hashlib.sha256()
    for tool_id in sorted(indicator_set.tools):
        digest.update(
            json.dumps(indicator_set.tools[tool_id].data, sort_keys=True).encode()
        )
    return digest.hexdigest()


# The page.


def render(
    traces: list[Trace], indicator_set: IndicatorSet, summary: dict[str, Any]
) -> str:
    """The report page of one scan: its traces and its scan.json summary."""
    tools = indicator_set.tools
    indicators = {ind.id: ind for ind in indicator_set.indicators()}
    summary = json.loads(json.dumps(summary, default=str))
    plain = _plain(traces, tools)
    lead_traces = [t for t in plain if _is_lead(t)]
    hits = [t for t in plain if not _is_lead(t)]
    found = [f for f in findings_module.findings(hits, tools) if f.tool]
    by_tool: dict[str, list[Trace]] = {}
    for trace in hits:
        for tool_id in dict.fromkeys(m.tool for m in trace.matches):
            by_tool.setdefault(tool_id, []).append(trace)
    image_path = (summary.get("image") or {}).get("path", "")

    tool_count = f"{len(found)} tool{'s' if len(found) != 1 else ''}"
    body = [
        f"<h1>toolmarks report: {_text(image_path)}</h1>",
        (
            f'<p class="note">{_text(tool_count)} of the indicator set found, '
            f'{len(hits)} events; <a href="#leads">{len(lead_traces)} leads</a>; '
            '<a href="#provenance">provenance</a>. Every event met at least one '
            "indicator of the tool named; the detail says which, how and by what "
            "value. Check every hit by hand before relying on it. Times are UTC, "
            "as the file system or artefact records them.</p>"
        ),
        _verification(summary.get("image") or {}),
        '<h2 id="findings">Findings</h2>',
        _findings_table(found),
        '<h2 id="timeline">Timeline</h2>' if found else "",
        _chart(found, by_tool),
    ]
    for finding in found:
        body.append(
            _tool_detail(
                finding,
                tools.get(finding.tool),
                by_tool.get(finding.tool, []),
                indicators,
            )
        )
    body.append(_leads(lead_traces))
    body.append(_provenance(summary, indicator_set))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>toolmarks report: {_text(image_path)}</title>"
        f"<style>{_STYLE}</style></head><body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )


def write_report(
    path: str, traces: list[Trace], indicator_set: IndicatorSet, summary: dict
) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render(traces, indicator_set, summary))


def write_atomically(path: Path, page: str) -> None:
    """Writes the page beside its final name and renames it: a failed run never
    leaves half a report in place of a complete one."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


class ReportInputError(ValueError):
    """A scan's outputs that cannot be rendered again; str() names the file."""


def render_outdir(outdir: Path, indicator_set: IndicatorSet) -> str:
    """The report of a scan's OUTDIR again, from its timeline.jsonl and scan.json
    (e.g. after a new toolmarks version); raises OSError or ValueError (with
    the file named: ReportInputError, TimelineError) when they cannot be read."""
    summary_path = outdir / "scan.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ReportInputError(f"{summary_path}: not JSON: {error}") from None
    if not isinstance(summary, dict):
        raise ReportInputError(f"{summary_path}: not a toolmarks scan.json")
    traces = list(read_jsonl(str(outdir / "timeline.jsonl")))
    return render(traces, indicator_set, summary)
