"""The case view across the images of a batch: which tools on which host, first
and last time per host, the cross-host order of the findings, and one combined
Timesketch JSONL.

It is built from each image folder's own outputs (scan.json, findings.json,
timeline.jsonl), never from a run's memory, so an image skipped on a rerun
counts the same as one scanned now, and the same folders give the same bytes.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import os
import re
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toolmarks.output.findings import KINDS, STAGE_ORDER
from toolmarks.output.report import (
    _POLICY,
    _STYLE,
    _readable,
    _stages,
    _swatch,
    _table,
    _text,
)

SCHEMA = "toolmarks-case/1"
CASE_JSON, CASE_HTML, CASE_JSONL = "case.json", "case.html", "case.jsonl"
CASE_FILES = (CASE_JSON, CASE_HTML, CASE_JSONL)
# Fields each case.jsonl row gets; `image` is taken (a process record's image).
IMAGE_FIELD, HOST_FIELD = "case_image", "case_host"
# A host's own event logs; a log copied elsewhere may come from another machine.
_OWN_LOGS = re.compile(r"(?i)(^|[/\\:])windows[/\\]system32[/\\]winevt[/\\]logs[/\\]")
_NO_TIME = -(2**62)  # where timeline.sort_key puts events without a time


@dataclasses.dataclass
class CaseImage:
    """One image of a batch: its folder under the case folder, the path it was
    given as, and whether it was scanned (now or by an earlier run)."""

    name: str
    path: str
    status: str  # "ok" or "failed"
    error: str | None = None
    skipped: bool = False  # outputs of an earlier run with the same settings
    seconds: float = 0.0
    warnings: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseImage:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


class CaseInputError(ValueError):
    """An image folder whose outputs cannot be read; str() names the file."""


def _host(rows: Iterator[dict[str, Any]], name: str) -> tuple[str, str, dict]:
    """The host name (the computer name most of the host's own event log
    records carry, else the image's folder name), where it came from, and
    every computer name seen with its number of events."""
    own: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for row in rows:
        computer = row.get("computer_name")
        if not isinstance(computer, str) or not computer:
            continue
        seen[computer] += 1
        if _OWN_LOGS.search(str(row.get("source", ""))):
            own[computer] += 1
    names = dict(sorted(seen.items()))
    if not own:
        return name, "image name", names
    best = min(own.items(), key=lambda item: (-item[1], item[0]))[0]
    return best, "computer name in the host's event logs", names


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise CaseInputError(f"{path}:{number}: not JSON: {error}") from None
            if not isinstance(row, dict):
                raise CaseInputError(f"{path}:{number}: not a JSON object")
            yield row


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CaseInputError(f"{path}: {error}") from None
    if not isinstance(data, dict):
        raise CaseInputError(f"{path}: not a JSON object")
    return data


def _image_entry(case_dir: Path, image: CaseImage) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": image.name,
        "path": image.path,
        "status": image.status,
        "error": image.error,
    }
    if image.status != "ok":
        return {**entry, "host": None, "findings": []}
    folder = case_dir / image.name
    try:
        scan = _load_json(folder / "scan.json")
        found = _load_json(folder / "findings.json")
        host, host_from, computers = _host(_rows(folder / "timeline.jsonl"), image.name)
    except (CaseInputError, OSError) as error:
        message = f"outputs unreadable: {error}"
        failed = {"status": "failed", "error": message, "host": None}
        return {**entry, **failed, "findings": []}
    indicator_set = scan.get("indicator_set") or {}
    return {
        **entry,
        "host": host,
        "host_from": host_from,
        "computer_names": computers,
        "toolmarks_version": scan.get("toolmarks_version"),
        "indicator_set_version": indicator_set.get("version"),
        "counts": scan.get("counts", {}),
        "findings": found.get("findings", []),
    }


def _strongest(kinds: list[str | None]) -> str | None:
    return next((k for k in KINDS if k in kinds), None)


def _stage_key(stages: list[str], tool: str) -> tuple[int, str]:
    known = [STAGE_ORDER.index(s) for s in stages if s in STAGE_ORDER]
    return (min(known) if known else len(STAGE_ORDER), tool)


def _time_key(first: str | None, last: str | None, *rest: str) -> tuple:
    # Findings without any time go last: they cannot be placed in the order.
    return (first is None, first or "", last or "", *rest)


def case_view(case_dir: Path, images: list[CaseImage]) -> dict[str, Any]:
    """case.json's document: per image, per tool and the cross-host order."""
    entries = [
        _image_entry(case_dir, image) for image in sorted(images, key=lambda i: i.name)
    ]
    tools: dict[str, dict[str, Any]] = {}
    order = []
    for entry in entries:
        for finding in entry["findings"]:
            tool = tools.setdefault(
                finding["tool"],
                {
                    "title": finding.get("title"),
                    "stages": finding.get("stages", []),
                    "dual_use": finding.get("dual_use", False),
                    "hosts": {},
                },
            )
            first, last = finding.get("first"), finding.get("last")
            host = tool["hosts"].setdefault(
                entry["host"],
                {"images": [], "first": None, "last": None, "kinds": [], "events": 0},
            )
            host["images"].append(entry["name"])
            host["first"] = min(filter(None, (host["first"], first)), default=None)
            host["last"] = max(filter(None, (host["last"], last)), default=None)
            host["kinds"].append(finding.get("strongest"))
            host["events"] += int(finding.get("events") or 0)
            order.append(
                {
                    "first": first,
                    "last": last,
                    "host": entry["host"],
                    "image": entry["name"],
                    "tool": finding["tool"],
                    "strongest": finding.get("strongest"),
                    "events": finding.get("events"),
                    "statement": finding.get("statement"),
                }
            )
    by_tool = {}
    for tool_id in sorted(tools, key=lambda t: _stage_key(tools[t]["stages"], t)):
        tool = tools[tool_id]
        hosts = [
            {
                "host": name,
                "images": host["images"],
                "first": host["first"],
                "last": host["last"],
                "strongest": _strongest(host["kinds"]),
                "events": host["events"],
            }
            for name, host in tool["hosts"].items()
        ]
        hosts.sort(key=lambda h: _time_key(h["first"], h["last"], h["host"]))
        by_tool[tool_id] = {**tool, "hosts": hosts}
    order.sort(key=lambda o: _time_key(o["first"], o["last"], o["host"], o["tool"]))
    host_images: dict[str, list[str]] = {}
    for entry in entries:
        if entry["status"] == "ok":
            host_images.setdefault(entry["host"], []).append(entry["name"])
    failed = [e["name"] for e in entries if e["status"] != "ok"]
    return {
        "schema": SCHEMA,
        "images_total": len(entries),
        "images_failed": failed,
        "kinds": KINDS,
        "hosts": [
            {"host": host, "images": names}
            for host, names in sorted(host_images.items())
        ],
        "tools": by_tool,
        "order": order,
        "images": entries,
    }


def combined_rows(case_dir: Path, view: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every timeline row of the scanned images, each naming its image and host,
    in time order (events without a time first, as in each timeline; ties in
    image order, then each timeline's own order). Each timeline.jsonl is sorted
    already, so they are merged as streams, not held in memory."""

    def keyed(index: int, entry: dict[str, Any]) -> Iterator[tuple]:
        rows = _rows(case_dir / entry["name"] / "timeline.jsonl")
        for number, row in enumerate(rows):
            stamp = row.get("timestamp")
            stamp = stamp if isinstance(stamp, int) else _NO_TIME
            row[IMAGE_FIELD] = entry["name"]
            row[HOST_FIELD] = entry["host"]
            yield (stamp, index, number), row

    streams = [
        keyed(index, entry)
        for index, entry in enumerate(view["images"])
        if entry["status"] == "ok"
    ]
    for _key, row in heapq.merge(*streams, key=lambda item: item[0]):
        yield row


def _atomic(path: Path, write: Any) -> None:
    """Writes beside the final name and renames: a killed run leaves either the
    previous file or the complete new one, never half of one."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "w", encoding="utf-8") as out:
            write(out)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_case(case_dir: Path, images: list[CaseImage]) -> dict[str, Any]:
    """Writes case.jsonl, case.html and case.json (last) into case_dir; returns
    case.json's document."""
    view = case_view(case_dir, images)

    def jsonl(out: Any) -> None:
        for row in combined_rows(case_dir, view):
            out.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")

    _atomic(case_dir / CASE_JSONL, jsonl)
    _atomic(case_dir / CASE_HTML, lambda out: out.write(render(view)))
    _atomic(
        case_dir / CASE_JSON,
        lambda out: out.write(json.dumps(view, indent=2, ensure_ascii=False) + "\n"),
    )
    return view


# The page.


def _when(first: str | None, last: str | None) -> str:
    if not first:
        return '<span class="note">no time</span>'
    if first == last:
        return _text(_readable(first))
    return f"{_text(_readable(first))} –<br>{_text(_readable(last))}"


def _link(name: str) -> str:
    href = urllib.parse.quote(name) + "/report.html"
    return f'<a href="{_text(href)}"><code>{_text(name)}</code></a>'


def _matrix(view: dict[str, Any]) -> str:
    hosts = [h["host"] for h in view["hosts"]]
    rows = []
    for tool_id, tool in view["tools"].items():
        seen = {h["host"]: h for h in tool["hosts"]}
        label = f"<code>{_text(tool_id)}</code>"
        if tool.get("dual_use"):
            label += ' <span class="tag dual">dual-use</span>'
        cells = [label, _stages(tool.get("stages", []))]
        for host in hosts:
            item = seen.get(host)
            cells.append(
                f"{_swatch(item['strongest'])}<br>{_when(item['first'], item['last'])}"
                if item
                else ""
            )
        rows.append(cells)
    if not rows:
        return '<p class="note">No tool of the indicator set found on any image.</p>'
    return _table(["tool", "stages", *hosts], rows, "findings")


def _order_table(view: dict[str, Any]) -> str:
    rows = [
        [
            _text(_readable(item["first"])) if item["first"] else "no time",
            _text(_readable(item["last"])) if item["last"] else "",
            _text(item["host"]),
            f"<code>{_text(item['tool'])}</code>",
            _swatch(item["strongest"]),
            _text(item["statement"] or ""),
        ]
        for item in view["order"]
    ]
    if not rows:
        return ""
    headers = ["first (UTC)", "last (UTC)", "host", "tool", "strongest", "statement"]
    return _table(headers, rows)


def _images_table(view: dict[str, Any]) -> str:
    rows = []
    for entry in view["images"]:
        ok = entry["status"] == "ok"
        counts = entry.get("counts", {})
        rows.append(
            [
                _link(entry["name"]) if ok else f"<code>{_text(entry['name'])}</code>",
                f"<code>{_text(entry['path'])}</code>",
                _text(entry["host"] or ""),
                _text(entry["status"])
                if ok
                else f'<span class="caveat">{_text(entry["status"])}: '
                f"{_text(entry['error'])}</span>",
                _text(counts.get("events", "")),
                _text(counts.get("warnings", "")),
                _text(", ".join(f["tool"] for f in entry["findings"])),
            ]
        )
    headers = ["folder", "image", "host", "status", "events", "warnings", "tools"]
    return _table(headers, rows)


def render(view: dict[str, Any]) -> str:
    """case.html: offline, no script; every text from the evidence escaped."""
    total, failed = view["images_total"], view["images_failed"]
    alert = ""
    if failed:
        alert = (
            f'<p class="alert">{len(failed)} of {total} images could not be '
            "scanned: " + ", ".join(_code_name(n) for n in failed) + "</p>"
        )
    body = [
        "<h1>toolmarks case</h1>",
        (
            f'<p class="note">{total} images, {len(view["hosts"])} hosts, '
            f"{len(view['tools'])} tools of the indicator set found. The host is the "
            "computer name the host's own event logs carry, else the image's folder "
            "name. Times are UTC, as each image's artefacts record them: clocks of "
            "different hosts may disagree. Check every hit in its image's report.</p>"
        ),
        alert,
        '<h2 id="tools">Tools on hosts</h2>',
        (
            '<p class="legend note">Each cell: the strongest kind of evidence of '
            "the tool on that host, and its first and last time.</p>"
        ),
        _matrix(view),
        '<h2 id="order">Cross-host order</h2>',
        (
            '<p class="note">Every finding of every image by its first time: the '
            "order in which the tools appeared across the hosts.</p>"
        ),
        _order_table(view),
        '<h2 id="images">Images</h2>',
        _images_table(view),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>toolmarks case</title><style>{_STYLE}</style></head><body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )


def _code_name(name: str) -> str:
    return f"<code>{_text(name)}</code>"
