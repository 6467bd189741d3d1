"""Findings: one answer per tool an image holds traces of. Which of the seed's
tools were here, did they run, when, and how sure we are: the events of each
tool grouped by the kind of evidence they are, with the first and last time,
the strongest kind and a plain statement of strength.

A finding's strength never rests on weak indicators alone (an API name, a
generic error message), and a dual-use tool's finding says that legitimate use
is possible. findings.json is deterministic: the same image and options give
the same bytes (the run's own time and duration stay in scan.json).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from toolmarks.events import Trace
from toolmarks.indicators.model import STAGES_JA, Tool
from toolmarks.output.timeline import iso_time
from toolmarks.parsers import content, eventlog, leads, manager, prefetch, registry

SCHEMA = "toolmarks-findings/1"

# Evidence kinds, strongest first, each with what it tells an examiner.
KINDS = {
    "executed": "the tool ran (prefetch, UserAssist, BAM, RunMRU, process and "
    "service-state records)",
    "installed": "installed as a service (service key, service-install record)",
    "scheduled": "a scheduled task runs it",
    "attempted": "a command line ran it through a wrapper, but no process record "
    "of the tool itself was found",
    "accepted": "its licence (EULA) was accepted by a user",
    "present": "the file is or was on disk (allocated, deleted, a stream, the "
    "Recycle Bin)",
    "listed": "the system listed the program (ShimCache, Amcache, MUICache): "
    "not proof that it ran",
    "configured": "registry keys or values the tool writes",
    "remnant": "remnants only: unallocated clusters, deleted registry keys, "
    "journal records",
}
_REGISTRY_KINDS = {
    "userassist": "executed",
    "bam": "executed",
    "runmru": "executed",
    "service": "installed",
    "task_cache": "scheduled",
    "eula": "accepted",
    "shimcache": "listed",
    "amcache": "listed",
    "muicache": "listed",
    "deleted_key": "remnant",
    "key": "configured",
}
_PHRASES = {
    "scheduled": "a scheduled task runs it",
    "accepted": "its EULA was accepted",
    "listed": "listed by the system (ShimCache, Amcache, MUICache), which is not "
    "proof that it ran",
    "configured": "registry keys it writes",
    "remnant": "remnants only (unallocated clusters, deleted keys, journal records)",
}
_SERVICE_INSTALLS = {("system", 7045), ("security", 4697)}
# The seed's stages in its order: findings are listed along them.
STAGE_ORDER = list(STAGES_JA.values())


def evidence_kind(trace: Trace) -> str:
    """The kind of evidence one event is (a key of KINDS)."""
    attributes = trace.attributes
    if trace.data_type == registry.DATA_TYPE:
        return _REGISTRY_KINDS.get(attributes.get("artefact", "key"), "configured")
    if trace.data_type == eventlog.DATA_TYPE:
        key = (str(attributes.get("channel", "")).lower(), attributes.get("event_id"))
        if key in _SERVICE_INSTALLS:
            return "installed"
        if "absent" in str(attributes.get("execution", "")):
            return "attempted"
        return "executed"
    if attributes.get("artefact") == "sdelete_wipe":
        return "executed"  # SDelete's renames in the journal: the tool at work
    definition = manager.by_data_type(trace.data_type)
    return definition.evidence if definition else "present"


@dataclasses.dataclass
class KindEvidence:
    """The events of one kind for one tool."""

    events: int = 0
    first: str | None = None
    last: str | None = None
    locations: list[str] = dataclasses.field(default_factory=list)
    weak_only: bool = True  # every event of this kind met weak indicators only

    def add(self, trace: Trace, weak: bool) -> None:
        self.events += 1
        when = iso_time(trace)
        if when is not None:
            self.first = min(self.first or when, when)
            self.last = max(self.last or when, when)
        if trace.source not in self.locations:
            self.locations.append(trace.source)
        self.weak_only = self.weak_only and weak


@dataclasses.dataclass
class Finding:
    tool: str
    title: str
    stages: list[str]
    dual_use: bool
    evidence: dict[str, KindEvidence]
    runs: int | None  # the highest run count a prefetch file of it holds
    on_disk: bool  # an allocated file of it was found

    @property
    def strongest(self) -> str | None:
        """The strongest kind backed by at least one indicator that is not weak."""
        return next(
            (k for k in KINDS if k in self.evidence and not self.evidence[k].weak_only),
            None,
        )

    @property
    def first(self) -> str | None:
        times = [e.first for e in self.evidence.values() if e.first]
        return min(times) if times else None

    @property
    def last(self) -> str | None:
        times = [e.last for e in self.evidence.values() if e.last]
        return max(times) if times else None

    @property
    def events(self) -> int:
        return sum(e.events for e in self.evidence.values())

    def statement(self) -> str:
        """How sure the examiner can be, in one sentence."""
        strongest = self.strongest
        if strongest is None:
            kinds = ", ".join(self.evidence)
            text = (
                f"weak: only indicators that alone do not name the tool ({kinds}); "
                "check by hand"
            )
        else:
            evidence = self.evidence[strongest]
            when = _between(evidence.first, evidence.last)
            if strongest == "executed":
                runs = f" {self.runs} times" if self.runs else ""
                text = f"executed{runs}{when}"
            elif strongest == "installed":
                text = f"installed as a service{when}"
                if set(self.evidence) <= {"installed", "configured", "remnant"}:
                    text += "; service record only: can be forged"
            elif strongest == "attempted":
                text = (
                    f"attempted through a wrapper (cmd.exe …){when}; no process "
                    "record of the tool itself: it may not have run"
                )
            elif strongest == "present":
                count = len(evidence.locations)
                text = f"on disk ({count} location{'s' if count > 1 else ''})"
            else:
                text = _PHRASES[strongest] + when
            if strongest not in ("executed", "attempted"):
                text += "; no trace of a run"
            if strongest != "present":
                text += "; binary on disk" if self.on_disk else "; binary not on disk"
        if self.dual_use:
            text += "; dual-use tool: legitimate use is possible"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "title": self.title,
            "stages": self.stages,
            "dual_use": self.dual_use,
            "strongest": self.strongest,
            "statement": self.statement(),
            "first": self.first,
            "last": self.last,
            "events": self.events,
            "evidence": {
                kind: dataclasses.asdict(self.evidence[kind])
                for kind in KINDS
                if kind in self.evidence
            },
        }


def findings(traces: Iterable[Trace], tools: dict[str, Tool]) -> list[Finding]:
    """One finding per tool with events, along the seed's stages."""
    by_tool: dict[str, Finding] = {}
    for trace in traces:
        if trace.data_type == leads.DATA_TYPE:
            continue  # never a finding by itself
        kind = evidence_kind(trace)
        for tool_id in dict.fromkeys(m.tool for m in trace.matches if m.tool):
            tool = tools.get(tool_id)
            finding = by_tool.get(tool_id)
            if finding is None:
                finding = by_tool[tool_id] = Finding(
                    tool=tool_id,
                    title=tool.title if tool else tool_id,
                    stages=list(tool.stages) if tool else [],
                    dual_use=bool(tool and tool.dual_use),
                    evidence={},
                    runs=None,
                    on_disk=False,
                )
            weak = all(m.weak for m in trace.matches if m.tool == tool_id)
            finding.evidence.setdefault(kind, KindEvidence()).add(trace, weak)
            if trace.data_type == prefetch.DATA_TYPE:
                runs = trace.attributes.get("run_count")
                if isinstance(runs, int):
                    finding.runs = max(finding.runs or 0, runs)
            if (
                trace.data_type == content.DATA_TYPE_FILE
                and trace.attributes.get("allocated")
                and not weak
            ):
                finding.on_disk = True
    for finding in by_tool.values():
        finding.evidence = {
            k: finding.evidence[k] for k in KINDS if k in finding.evidence
        }
        for evidence in finding.evidence.values():
            evidence.locations.sort()
    return sorted(by_tool.values(), key=_order)


def write_findings(
    path: Path, found: list[Finding], image: str, indicator_set_version: str
) -> None:
    document = {
        "schema": SCHEMA,
        "image": image,
        "indicator_set_version": indicator_set_version,
        "kinds": KINDS,
        "findings": [finding.as_dict() for finding in found],
    }
    path.write_text(
        json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n",
        encoding="utf-8",
    )


def summary_lines(found: list[Finding]) -> list[str]:
    """One line per tool, for the end of a scan."""
    return [f"{f.tool}: {f.statement()} ({f.events} events)" for f in found]


def _order(finding: Finding) -> tuple[int, str]:
    stages = [STAGE_ORDER.index(s) for s in finding.stages if s in STAGE_ORDER]
    return (min(stages) if stages else len(STAGE_ORDER), finding.tool)


def _between(first: str | None, last: str | None) -> str:
    if not first:
        return ""
    if first == last:
        return f" at {_readable(first)} UTC"
    return f" between {_readable(first)} and {_readable(last)} UTC"


def _readable(iso: str | None) -> str:
    """2021-02-14T02:22:57.123456+00:00 -> 2021-02-14 02:22:57."""
    return (iso or "")[:19].replace("T", " ")
