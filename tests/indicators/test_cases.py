"""Per-tool golden cases: tests/indicators/cases/<tool>.yaml, run against the
shipped indicator set.

Each case is one artefact from a documented trace (or a decoy), handed to the
matcher the scanner uses for its kind, and the exact indicator ids and labels it
must give. The format is described in tests/indicators/cases/README.md.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from toolmarks.events import Match, labels
from toolmarks.indicators import compiler, loader
from toolmarks.parsers import content

CASES_DIR = Path(__file__).resolve().parent / "cases"

# Artefact kind of a case -> the indicator section its matcher reads.
ARTEFACT_SECTIONS = {
    "path": "filenames",
    "content": "strings",
    "registry": "registry",
    "prefetch": "prefetch",
    "eventlog": "eventlog",
    "commandline": "commandline",
}
CASE_FIELDS = {"name", "source", "note", "indicators", "labels", *ARTEFACT_SECTIONS}
CONTENT_PARTS = {"ascii", "wide", "hex"}
REGISTRY_FIELDS = {"hive", "key", "value", "data"}
PREFETCH_FIELDS = {"executable", "referenced"}
EVENTLOG_FIELDS = {"channel", "event_id", "provider", "fields"}


@functools.cache
def _shipped() -> compiler.CompiledSet:
    return compiler.compile_set(loader.load())


def _case_files() -> list[Path]:
    return sorted(CASES_DIR.glob("*.yaml"))


def _read(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and set(data) == {"tool", "cases"}, path.name
    assert isinstance(data["cases"], list) and data["cases"], path.name
    return data


def _all_cases() -> list[Any]:
    params = []
    for path in _case_files():
        for index, case in enumerate(_read(path)["cases"]):
            name = case.get("name", index) if isinstance(case, dict) else index
            params.append(pytest.param(path.stem, case, id=f"{path.stem}:{name}"))
    return params


# --- the matchers, as the parsers call them -------------------------------------


def _content_bytes(spec: Any) -> bytes:
    parts = spec if isinstance(spec, list) else [spec]
    out = b""
    for part in parts:
        assert isinstance(part, dict) and len(part) == 1, part
        ((kind, text),) = part.items()
        assert kind in CONTENT_PARTS, kind
        if kind == "ascii":
            out += text.encode("utf-8")
        elif kind == "wide":
            out += text.encode("utf-16-le")
        else:
            out += bytes.fromhex(text)
    return out


def _content_matches(spec: Any, compiled: compiler.CompiledSet) -> list[Match]:
    """Hashes, imphash and strings of one stream, as the engine matches a file."""
    found = content.scan_stream(io.BytesIO(_content_bytes(spec)), compiled)
    assert found.error is None, found.error
    matches = [
        Match.of(ind, value)
        for name, value in found.hashes.items()
        for ind in compiled.match_hash(name, value)
    ]
    if found.imphash:
        matches += [
            Match.of(ind, found.imphash)
            for ind in compiled.match_hash("imphash", found.imphash)
        ]
    matches += [
        Match.of(hit.indicator, hit.indicator.fields["value"], offset=hit.offset)
        for hit in found.strings
    ]
    return matches


def _registry_matches(spec: dict, compiled: compiler.CompiledSet) -> list[Match]:
    assert set(spec) <= REGISTRY_FIELDS and {"hive", "key"} <= set(spec), spec
    data = spec.get("data")
    hits = compiled.match_registry(
        spec["hive"],
        spec["key"],
        spec.get("value"),
        None if data is None else str(data),
    )
    return [Match.of(ind, spec["key"], kind="registry") for ind in hits]


def _prefetch_matches(spec: dict, compiled: compiler.CompiledSet) -> list[Match]:
    assert set(spec) <= PREFETCH_FIELDS and "executable" in spec, spec
    hits = compiled.match_prefetch(spec["executable"], spec.get("referenced", []))
    return [
        Match.of(ind, spec["executable"], kind="prefetch", referenced=tuple(files))
        for ind, files in hits
    ]


def _eventlog_matches(spec: dict, compiled: compiler.CompiledSet) -> list[Match]:
    assert set(spec) <= EVENTLOG_FIELDS, spec
    assert {"channel", "event_id", "fields"} <= set(spec), spec
    fields = {name: str(text) for name, text in spec["fields"].items()}
    hits = compiled.match_eventlog(
        spec["channel"], spec["event_id"], fields, spec.get("provider")
    )
    return [Match.of(ind, text, field=name) for ind, name, text in hits]


def _commandline_matches(text: str, compiled: compiler.CompiledSet) -> list[Match]:
    return [
        Match.of(hit.indicator, hit.value, **hit.detail)
        for hit in compiled.match_commandline(text)
    ]


def run_case(case: dict, compiled: compiler.CompiledSet) -> list[Match]:
    """The matches one case's artefact gives."""
    (kind,) = [k for k in ARTEFACT_SECTIONS if k in case]
    spec = case[kind]
    if kind == "path":
        return [Match.of(ind, spec) for ind in compiled.filenames.match(spec)]
    if kind == "content":
        return _content_matches(spec, compiled)
    if kind == "registry":
        return _registry_matches(spec, compiled)
    if kind == "prefetch":
        return _prefetch_matches(spec, compiled)
    if kind == "eventlog":
        return _eventlog_matches(spec, compiled)
    return _commandline_matches(spec, compiled)


# --- the cases ------------------------------------------------------------------


@pytest.mark.parametrize("tool_id, case", _all_cases())
def test_case(tool_id: str, case: dict) -> None:
    assert isinstance(case, dict) and str(case.get("name", "")).strip(), "no name"
    assert set(case) <= CASE_FIELDS, set(case) - CASE_FIELDS
    assert [k for k in ARTEFACT_SECTIONS if k in case], "no artefact"
    assert len([k for k in ARTEFACT_SECTIONS if k in case]) == 1, "two artefacts"
    assert str(case.get("source", "")).strip(), "no source"
    expected_ids = case["indicators"]
    expected_labels = case["labels"]
    assert len(set(expected_ids)) == len(expected_ids), "duplicate indicator"
    assert len(set(expected_labels)) == len(expected_labels), "duplicate label"
    if expected_ids:
        # A positive case belongs in the file of a tool it names.
        assert any(i.startswith(f"{tool_id}.") for i in expected_ids), tool_id

    compiled = _shipped()
    matches = run_case(case, compiled)
    assert sorted({m.indicator for m in matches}) == sorted(expected_ids)
    # No match, no event: a decoy carries no labels at all.
    found_labels = labels(matches, compiled.tools) if matches else []
    assert sorted(found_labels) == sorted(expected_labels)


def test_every_shipped_tool_has_a_case_file() -> None:
    shipped = set(loader.load().tools)
    named = {path.stem for path in _case_files()}
    assert shipped - named == set(), "tools without a case file"
    assert named - shipped == set(), "case files of no shipped tool"
    for path in _case_files():
        assert _read(path)["tool"] == path.stem, path.name


@pytest.mark.parametrize("path", _case_files(), ids=lambda p: p.stem)
def test_case_file_covers_its_tool(path: Path) -> None:
    """A positive case per indicator section the tool has (hashes are checked in
    test_shipped.py and the content tests), at least one decoy, unique names."""
    tool = loader.load().tools[path.stem]
    cases = _read(path)["cases"]
    names = [case["name"] for case in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    assert any(case["indicators"] == [] for case in cases), "no decoy"
    sections = {ind.section for ind in tool.indicators} - {"hashes"}
    met = set()
    for case in cases:
        (kind,) = [k for k in ARTEFACT_SECTIONS if k in case]
        ids = set(case["indicators"])
        met |= {
            ind.section
            for ind in tool.indicators
            if ind.id in ids and ind.section == ARTEFACT_SECTIONS[kind]
        }
    assert sections - met == set(), "sections without a positive case"
