"""The findings report: one self-contained HTML page, read offline.

Per tool, every location it was found at, with each indicator met (kind, matched
value, where in the file, the indicator's confidence and source), the file's
facts and every time recorded for it; then what could not be read. No script
and no external resource: a Content-Security-Policy forbids both, and every text
from the evidence is escaped, control and bidi characters shown as escapes.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from toolmarks.events import CAVEATS, Match, Trace
from toolmarks.indicators.model import Indicator, IndicatorSet, Tool
from toolmarks.output.text import printable
from toolmarks.output.timeline import iso_time
from toolmarks.parsers import manager

_STYLE = """
body { font: 14px/1.4 sans-serif; margin: 1.5em auto; max-width: 75em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; margin-top: 2em; }
h3 { font-size: 1em; margin: 1.2em 0 0.3em; font-family: monospace; }
table { border-collapse: collapse; margin: 0.3em 0 0.8em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left;
  vertical-align: top; }
th { background: #f2f2f2; }
code, .mono { font-family: monospace; word-break: break-all; }
.alert { border: 2px solid #b00; background: #fee; padding: 0.5em 1em; }
.note { color: #555; }
.tag { display: inline-block; background: #eef; border-radius: 3px;
  padding: 0 0.3em; margin-right: 0.2em; font-size: 0.9em; }
.dual { background: #ffe9b3; } .weak { color: #a60; } .caveat { color: #b00; }
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


def _report_fields(data_type: str) -> tuple[str, ...]:
    """What tells one event of a hive, prefetch file or log from the next."""
    definition = manager.by_data_type(data_type)
    return definition.report_fields if definition else ()


def _text(value: Any) -> str:
    return html.escape(printable(str(value)))


def _code(value: Any) -> str:
    return f"<code>{_text(value)}</code>"


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{_text(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _detail(match: Match) -> str:
    parts = []
    for key, value in match.detail:
        parts.append(f"{_text(key)} {_code(value)}")
    return ", ".join(parts)


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


def _tool_heading(tool: Tool | None, tool_id: str) -> str:
    title = tool.title if tool else tool_id
    tags = ""
    if tool is not None:
        tags = "".join(f'<span class="tag">{_text(s)}</span>' for s in tool.stages)
        if tool.dual_use:
            tags += (
                '<span class="tag dual">dual use: legitimate uses exist, '
                "not proof of compromise</span>"
            )
    return (
        f'<h2 id="tool-{_text(tool_id)}">{_text(title)} ({_code(tool_id)})</h2>{tags}'
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
            _text(iso_time(t) or "no time"),
            _text(t.timestamp_desc),
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
        _table(("time (UTC)", "what the time means", "event type", "detail"), events)
    )
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
        out.append(f"<h2>{title} ({len(items)})</h2>")
        if items:
            out.append(
                _table(fields, ([_text(i.get(f, "")) for f in fields] for i in items))
            )
    return "".join(out)


def _verification(image: dict[str, Any]) -> str:
    check = image.get("verification")
    if not check:
        return ""
    if check.get("ok"):
        return (
            f"<p>EWF verification: OK (MD5 {_code(check.get('computed_md5'))} "
            "equals the one stored at acquisition).</p>"
        )
    if check.get("ok") is None:
        problem = _text(check.get("problem"))
        return f'<p class="alert">EWF image not verified: {problem}</p>'
    out = [
        '<div class="alert"><p><b>EWF verification FAILED</b>: '
        + f"{_text(check.get('problem'))}; "
        + f"stored MD5 {_code(check.get('stored_md5'))}, "
        + f"computed {_code(check.get('computed_md5'))}.</p>"
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


def render(
    traces: list[Trace], indicator_set: IndicatorSet, summary: dict[str, Any]
) -> str:
    """The report page for one scan: its traces and its scan.json summary."""
    tools = indicator_set.tools
    indicators = {ind.id: ind for ind in indicator_set.indicators()}
    image = summary.get("image", {})
    counts = summary.get("counts", {})
    by_tool: dict[str, dict[str, list[Trace]]] = {}
    for trace in traces:
        for tool_id in dict.fromkeys(m.tool for m in trace.matches):
            by_tool.setdefault(tool_id, {}).setdefault(trace.source, []).append(trace)

    facts = [
        ("image", _code(image.get("path", ""))),
        ("format", _text(image.get("format", ""))),
        ("media size (bytes)", _text(image.get("media_size") or image.get("size", ""))),
    ]
    for key in ("md5", "sha1"):
        if image.get(key):
            facts.append((f"{key.upper()} stored at acquisition", _code(image[key])))
    facts += [
        (
            "volumes",
            _text(
                ", ".join(
                    f"{v['label'] or '(whole image)'} {v['file_system']}"
                    for v in summary.get("volumes", [])
                )
            ),
        ),
        ("scan started", _text(summary.get("started", ""))),
        ("seconds", _text(summary.get("seconds", ""))),
        ("command line", _code(summary.get("command_line", ""))),
        ("toolmarks", _text(summary.get("toolmarks_version", ""))),
        (
            "indicator set",
            _text(
                f"version {indicator_set.version}: {len(tools)} tools, "
                f"{len(indicators)} indicators"
            ),
        ),
    ]
    facts += [(_text(k.replace("_", " ")), _text(v)) for k, v in counts.items()]

    overview = []
    for tool_id, sources in sorted(by_tool.items()):
        tool = tools.get(tool_id)
        kinds = sorted(
            {
                m.kind
                for ts in sources.values()
                for t in ts
                for m in t.matches
                if m.tool == tool_id
            }
        )
        title = _text(tool.title if tool else tool_id)
        overview.append(
            (
                f'<a href="#tool-{_text(tool_id)}">{title}</a>',
                _text(", ".join(tool.stages) if tool else ""),
                "yes" if tool and tool.dual_use else "",
                _text(len(sources)),
                _text(", ".join(kinds)),
            )
        )

    body = [
        f"<h1>toolmarks findings: {_text(image.get('path', ''))}</h1>",
        (
            '<p class="note">Every location below met at least one indicator of the '
            "tool named; each row says which indicator, how, and by what value. "
            "Check every hit by hand before relying on it. Times are as the file "
            "system or artefact records them, in UTC.</p>"
        ),
        _verification(image),
        _table(("", ""), facts),
        "<h2>Tools found</h2>",
        _table(("tool", "stages", "dual use", "locations", "match kinds"), overview)
        if overview
        else "<p>No indicator of the set was met.</p>",
    ]
    for tool_id, sources in sorted(by_tool.items()):
        body.append(_tool_heading(tools.get(tool_id), tool_id))
        for source, source_traces in sorted(sources.items()):
            body.append(_location(source, source_traces, tool_id, indicators))
    body.append(_problems(summary))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
        f"<title>toolmarks findings: {_text(image.get('path', ''))}</title>"
        f"<style>{_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_report(
    path: str, traces: list[Trace], indicator_set: IndicatorSet, summary: dict
) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render(traces, indicator_set, summary))
