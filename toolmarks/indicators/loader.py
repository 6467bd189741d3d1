"""Loads indicator YAML files strictly; every problem is `file:line: field: what`."""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from toolmarks.indicators.model import (
    HASH_LENGTHS,
    SECTIONS,
    Indicator,
    IndicatorSet,
    Tool,
)

# Larger files are not indicator files; refusing them keeps a stray disk image or
# log from eating memory in the YAML parser.
MAX_FILE_SIZE = 4 * 1024 * 1024
SUFFIXES = (".yaml", ".yml")
_HEX = re.compile(r"[0-9a-f]+")
_REGEX_FIELDS = {
    "filenames": ("regex",),
    "registry": ("key", "value", "data"),
    "prefetch": ("executable", "referenced"),
    "eventlog": ("pattern",),
}


class IndicatorError(Exception):
    """One or more problems in indicator files; `problems` lists them all."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def shipped_path() -> Path:
    """The folder of the indicator files that ship with toolmarks."""
    return Path(str(importlib.resources.files("toolmarks.indicators") / "tools"))


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    text = (Path(__file__).parent / "schema.yaml").read_text(encoding="utf-8")
    return jsonschema.Draft202012Validator(yaml.safe_load(text))


def normalise_hash(value: str) -> str:
    """Lower-case hex without a 0x prefix or spaces; the seed writes both."""
    value = value.strip().lower()
    return value[2:] if value.startswith("0x") else value


def hash_problem(hash_type: str, value: str) -> str | None:
    """What is wrong with a normalised hash value, or None."""
    length = HASH_LENGTHS[hash_type]
    if not _HEX.fullmatch(value):
        return f"{hash_type} {value!r} is not hexadecimal"
    if len(value) != length:
        return f"{hash_type} {value!r} has {len(value)} hex digits, not {length}"
    return None


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, and the *.yaml/*.yml files of folders, recursively."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES)
        else:
            files.append(path)
    return files


class _Lines:
    """Line numbers of the nodes of one YAML document, by JSON path."""

    def __init__(self, node: yaml.Node) -> None:
        self._lines: dict[tuple[Any, ...], int] = {}
        self._walk(node, ())

    def _walk(self, node: yaml.Node, path: tuple[Any, ...]) -> None:
        self._lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                self._walk(value, (*path, key.value))
                # The key's own line reads better than its value's for errors.
                self._lines[(*path, key.value)] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index))

    def line(self, path: Iterable[Any]) -> int:
        path = tuple(path)
        while path not in self._lines and path:
            path = path[:-1]
        return self._lines.get(path, 1)


def _field_name(path: Iterable[Any]) -> str:
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else part
    return name or "(file)"


def _read_document(path: Path) -> tuple[Any, _Lines]:
    """Parses one file into (data, line map); raises IndicatorError."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise IndicatorError([f"{path}:0: (file): cannot read: {error.strerror}"])
    if size > MAX_FILE_SIZE:
        raise IndicatorError(
            [f"{path}:0: (file): {size} bytes, larger than {MAX_FILE_SIZE}: "
             "not an indicator file"]
        )
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise IndicatorError([f"{path}:0: (file): binary data, not YAML text"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise IndicatorError(
            [f"{path}:0: (file): not UTF-8 text (byte {error.start})"]
        )
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        problem = getattr(error, "problem", None) or str(error)
        raise IndicatorError([f"{path}:{line}: (file): invalid YAML: {problem}"])
    if node is None or data is None:
        raise IndicatorError([f"{path}:1: (file): empty file"])
    return data, _Lines(node)


def _check_semantics(data: dict[str, Any], where: _Lines, path: Path) -> list[str]:
    """Checks the schema cannot express: hash formats, regexes, inferred facts."""
    problems = []
    for section in SECTIONS:
        for index, item in enumerate(data.get(section, [])):
            at = (section, index)
            if section == "hashes":
                value = normalise_hash(item["value"])
                problem = hash_problem(item["type"], value)
                if problem:
                    line = where.line((*at, "value"))
                    problems.append(f"{path}:{line}: {_field_name((*at, 'value'))}: "
                                    f"{problem}")
                item["value"] = value
            for name in _REGEX_FIELDS.get(section, ()):
                if name not in item:
                    continue
                try:
                    re.compile(item[name])
                except re.error as error:
                    line = where.line((*at, name))
                    problems.append(
                        f"{path}:{line}: {_field_name((*at, name))}: "
                        f"invalid regex {item[name]!r}: {error}"
                    )
    return problems


def load_file(path: Path) -> Tool:
    """Loads and checks one indicator file; raises IndicatorError with all problems."""
    data, where = _read_document(path)
    if not isinstance(data, dict):
        raise IndicatorError(
            [f"{path}:1: (file): a mapping of tool fields is expected, "
             f"not a {type(data).__name__}"]
        )
    problems = []
    for error in sorted(_validator().iter_errors(data), key=lambda e: e.path):
        line = where.line(error.absolute_path)
        problems.append(f"{path}:{line}: {_field_name(error.absolute_path)}: "
                        f"{error.message}")
    if problems:
        raise IndicatorError(problems)
    problems = _check_semantics(data, where, path)
    if problems:
        raise IndicatorError(problems)
    tool = Tool(
        id=data["id"],
        title=data["title"],
        stages=list(data["stages"]),
        dual_use=data["dual_use"],
        data=data,
        path=str(path),
    )
    for section in SECTIONS:
        for index, item in enumerate(data.get(section, [])):
            origin = f"{path}:{where.line((section, index))}"
            tool.indicators.append(
                Indicator(item["id"], tool.id, section, item, origin)
            )
    return tool


def load(
    paths: Iterable[str | os.PathLike[str]] | None = None,
    *,
    shipped: bool = True,
) -> IndicatorSet:
    """Loads the shipped set and/or the given files and folders, all or nothing.

    Raises IndicatorError listing every problem of every file; a set is never
    returned half-loaded.
    """
    files = expand_paths([shipped_path()] if shipped else [])
    files += expand_paths(paths or [])
    problems: list[str] = []
    indicator_set = IndicatorSet(sources=[str(f) for f in files])
    if not files:
        raise IndicatorError(["(no indicator files given)"])
    seen_ids: dict[str, str] = {}
    seen_hashes: dict[tuple[str, str], str] = {}
    for path in files:
        try:
            tool = load_file(path)
        except IndicatorError as error:
            problems += error.problems
            continue
        if tool.id in indicator_set.tools:
            other = indicator_set.tools[tool.id].path
            problems.append(f"{path}:1: id: tool id {tool.id!r} already used in {other}")
            continue
        indicator_set.tools[tool.id] = tool
        for ind in tool.indicators:
            if ind.id in seen_ids:
                problems.append(f"{ind.origin}: id: indicator id {ind.id!r} already "
                                f"used at {seen_ids[ind.id]}")
            seen_ids.setdefault(ind.id, ind.origin)
            if ind.section == "hashes":
                key = (ind.kind, ind.value)
                if key in seen_hashes:
                    problems.append(f"{ind.origin}: value: {ind.kind} {ind.value} "
                                    f"already listed at {seen_hashes[key]}")
                seen_hashes.setdefault(key, ind.origin)
    if problems:
        raise IndicatorError(problems)
    return indicator_set
