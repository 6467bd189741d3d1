"""scan.json: what was scanned, how, with which indicator set, what it found
in numbers, and every warning and item not read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from toolmarks.outcome import ScanOutcome
from toolmarks.parsers import manager


def scan_summary(outcome: ScanOutcome, outputs: list[str]) -> dict[str, Any]:
    indicator_set = outcome.indicator_set
    counts = outcome.counts
    by_tool: dict[str, set[str]] = {}
    for trace in outcome.traces:
        for match in trace.matches:
            by_tool.setdefault(match.tool, set()).add(trace.source)
    return {
        "toolmarks_version": outcome.toolmarks_version,
        "indicator_set": {
            "version": indicator_set.version,
            "tools": len(indicator_set.tools),
            "indicators": len(indicator_set.indicators()),
            "sources": indicator_set.sources,
        },
        "command_line": outcome.command_line,
        "options": outcome.options,
        "started": outcome.started.isoformat(),
        "seconds": outcome.seconds,
        "image": {"path": outcome.image, **outcome.image_info},
        "volumes": [
            {
                "label": v.label,
                "file_system": v.fs_type,
                "offset": v.offset,
                "size": v.size,
            }
            for v in outcome.volumes
        ],
        "counts": {
            "files": counts.get("files", 0),
            "directories": counts.get("directories", 0),
            "bytes": counts.get("bytes", 0),
            "unallocated_bytes": counts.get("unallocated_bytes", 0),
            "matched_locations": len({t.source for t in outcome.traces}),
            "events": len(outcome.traces),
            **{
                f"{parser.name}_files": counts.get(f"{parser.name}_files", 0)
                for parser in manager.file_parsers()
            },
            **{name: len(notes) for name, notes in outcome.problems.items()},
            "metadata_files_not_content_scanned": counts.get(
                "metadata_files_not_content_scanned", 0
            ),
        },
        "matches_by_tool": {
            tool: len(sources) for tool, sources in sorted(by_tool.items())
        },
        "parser_seconds": {k: round(v, 3) for k, v in outcome.parser_seconds.items()},
        **{
            name: [note.as_dict() for note in notes]
            for name, notes in outcome.problems.items()
        },
        "outputs": outputs,
    }


def write_scan_json(outcome: ScanOutcome, path: Path, outputs: list[str]) -> None:
    text = json.dumps(
        scan_summary(outcome, outputs), indent=2, default=str, ensure_ascii=False
    )
    path.write_text(text + "\n", encoding="utf-8")
