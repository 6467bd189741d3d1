"""JSONL (Timesketch's import form) and CSV (safe to open in Excel) timelines,
and JSONL read back into traces (to render a report again)."""

from __future__ import annotations

import csv
import datetime
import json
from collections.abc import Iterable, Iterator
from typing import Any

from dfdatetime import posix_time

from toolmarks.events import CAVEATS, Match, Trace, describe_matches
from toolmarks.indicators.model import Tool
from toolmarks.output.text import printable

CSV_FIELDS = (
    "datetime",
    "timestamp_desc",
    "data_type",
    "tools",
    "indicators",
    "match_kinds",
    "matched_values",
    "source",
    "message",
    "tags",
)
# A cell that starts with one of these is a formula to Excel and LibreOffice;
# file names are attacker-controlled, so such cells get a leading quote.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\x00")


def iso_time(trace: Trace) -> str | None:
    value = micros(trace)
    if value is None:
        return None
    moment = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (moment + datetime.timedelta(microseconds=value)).isoformat()


def micros(trace: Trace) -> int | None:
    if trace.timestamp is None:
        return None
    # plaso's own timestamp: microseconds since 1970, what Timesketch expects too.
    return trace.timestamp.GetPlasoTimestamp()


def message(trace: Trace, tools: dict[str, Tool]) -> str:
    text = f"{describe_matches(trace.matches, tools)} in {trace.source}"
    for name, label in CAVEATS:
        if name in trace.attributes:
            text += f"; {label}: {trace.attributes[name]}"
    return text


def row(trace: Trace, tools: dict[str, Tool]) -> dict[str, Any]:
    """The flat record of one event, as JSONL and CSV write it."""
    return {
        "message": message(trace, tools),
        "datetime": iso_time(trace),
        "timestamp": micros(trace),
        "timestamp_desc": trace.timestamp_desc,
        "data_type": trace.data_type,
        "tag": trace.labels(tools),
        "tools": sorted({m.tool for m in trace.matches if m.tool}),
        "indicators": [m.indicator for m in trace.matches],
        "match_kinds": sorted({m.kind for m in trace.matches}),
        "matched_values": [m.value for m in trace.matches],
        "matches": [m.as_dict() for m in trace.matches],
        "source": trace.source,
        **{
            key: value
            for key, value in trace.attributes.items()
            if key not in ("message", "tag")
        },
    }


def sort_key(trace: Trace) -> tuple[int, str, str, str, str, str]:
    """Time, then where and what: events of one time and file keep one order
    however the scan's units were cut (a live and a deleted entry of a path,
    two records of one log)."""
    value = micros(trace)
    return (
        value if value is not None else -(2**62),
        trace.source,
        trace.data_type,
        trace.timestamp_desc,
        ",".join(m.indicator for m in trace.matches),
        repr(sorted(trace.attributes.items(), key=lambda item: str(item[0]))),
    )


# Keys row() sets itself; every other key of a row is a trace attribute.
ROW_KEYS = frozenset(
    (
        "message",
        "datetime",
        "timestamp",
        "timestamp_desc",
        "data_type",
        "tag",
        "tools",
        "indicators",
        "match_kinds",
        "matched_values",
        "matches",
        "source",
    )
)


class TimelineError(ValueError):
    """A JSONL line that is not a toolmarks event; str() names file and line."""


def trace_of_row(record: dict[str, Any]) -> Trace:
    """The trace a JSONL row was written from, its attributes as JSON gives them
    back (tuples as lists, other objects as text); raises KeyError, TypeError or
    ValueError on a row that is not one."""
    value = record["timestamp"]
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"timestamp {value!r} is not an integer")
    matches = [
        Match(
            tool=str(item["tool"]),
            indicator=str(item["indicator"]),
            kind=str(item["kind"]),
            value=str(item["value"]),
            weak=bool(item.get("weak")),
            detail=tuple(sorted(dict(item.get("detail") or {}).items())),
        )
        for item in record["matches"]
    ]
    return Trace(
        data_type=str(record["data_type"]),
        timestamp=None
        if value is None
        else posix_time.PosixTimeInMicroseconds(timestamp=value),
        timestamp_desc=str(record["timestamp_desc"]),
        source=str(record["source"]),
        matches=matches,
        attributes={k: v for k, v in record.items() if k not in ROW_KEYS},
    )


def read_jsonl(path: str) -> Iterator[Trace]:
    """The traces of a timeline.jsonl, in its order; raises TimelineError at the
    first line that is not a toolmarks event."""
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise TypeError("not a JSON object")
                yield trace_of_row(record)
            except (KeyError, TypeError, ValueError) as error:
                problem = f"missing {error}" if isinstance(error, KeyError) else error
                raise TimelineError(
                    f"{path}:{number}: not a toolmarks event: {problem}"
                ) from None


def write_jsonl(path: str, traces: Iterable[Trace], tools: dict[str, Tool]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for trace in traces:
            out.write(json.dumps(row(trace, tools), ensure_ascii=False, default=str))
            out.write("\n")


def excel_safe(value: Any) -> str:
    """The cell as text: control and bidi characters escaped as in the terminal
    and report.html (printable: reversible, \\x1b and \\u202e), then a
    quote before what a spreadsheet would take for a formula."""
    text = printable("" if value is None else str(value))
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def write_csv(path: str, traces: Iterable[Trace], tools: dict[str, Tool]) -> None:
    # utf-8-sig: Excel reads a BOM-less UTF-8 CSV as the local code page.
    with open(path, "w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_FIELDS)
        for trace in traces:
            record = row(trace, tools)
            values = {
                **record,
                "tools": " ".join(record["tools"]),
                "indicators": " ".join(record["indicators"]),
                "match_kinds": " ".join(record["match_kinds"]),
                "matched_values": " | ".join(record["matched_values"]),
                "tags": " ".join(record["tag"]),
            }
            writer.writerow([excel_safe(values.get(name)) for name in CSV_FIELDS])
