"""Loads indicator YAML files strictly; every problem is `file:line: field: what`."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolmarks import __version__
from toolmarks.indicators import cache
from toolmarks.indicators.formats import hashes
from toolmarks.indicators.formats.common import ImportProblem, slug
from toolmarks.indicators.model import (
    HASH_LENGTHS,
    SECTIONS,
    Indicator,
    IndicatorSet,
    Tool,
    hash_problem,
    normalise_hash,
)

if TYPE_CHECKING:
    import jsonschema
    import yaml

# Larger files are not indicator files; refusing them keeps a stray disk image or
# log from eating memory in the YAML parser.
MAX_FILE_SIZE = 32 * 1024 * 1024
SUFFIXES = (".yaml", ".yml")
HASH_LIST_SUFFIXES = (".txt", ".hashes")
_ID_LINE = re.compile(r"""\s*-?\s*id:\s*['"]?([A-Za-z0-9_.]+)""")
_INDICATOR_ID = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")
_HASH_KEYS = {"id", "type", "value", "source", "confidence", "note"}
_HASH_KEYS_REQUIRED = {"id", "type", "value", "source", "confidence"}
_UNEXPECTED = re.compile(r"'([^']+)'(?= was unexpected|, '| were unexpected)")
_REGEX_FIELDS = {
    "filenames": ("regex",),
    "registry": ("key", "value", "data"),
    "prefetch": ("executable", "referenced"),
    "eventlog": ("pattern",),
    "commandline": ("program", "arguments"),
}


class IndicatorError(Exception):
    """One or more problems in indicator files; `problems` lists them all."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def shipped_path() -> Path:
    """The folder of the indicator files that ship with toolmarks."""
    return Path(__file__).resolve().parent / "tools"


# yaml and jsonschema are imported when a file is parsed: a cached set needs
# neither, and jsonschema alone costs ~60 ms of start-up.
def _yaml() -> Any:
    import yaml

    return yaml


def _safe_loader() -> Any:
    yaml = _yaml()
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema

    text = (Path(__file__).parent / "schema.yaml").read_text(encoding="utf-8")
    return jsonschema.Draft202012Validator(_yaml().safe_load(text))


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
        yaml = _yaml()
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


class _LazyLines:
    """A _Lines built only when a message needs a line: composing is slow."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._lines: _Lines | None = None

    def line(self, path: Iterable[Any]) -> int:
        if self._lines is None:
            self._lines = _Lines(_yaml().compose(self._text, Loader=_safe_loader()))
        return self._lines.line(path)


def _id_lines(text: str) -> dict[str, list[int]]:
    """Lines of `id:` entries by id, so indicator origins need no node tree."""
    lines: dict[str, list[int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _ID_LINE.match(line)
        if match:
            lines.setdefault(match.group(1), []).append(number)
    return lines


def _read_document(path: Path) -> tuple[Any, str]:
    """Parses one file into (data, text); raises IndicatorError."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise IndicatorError([f"{path}:0: (file): cannot read: {error.strerror}"])
    if size > MAX_FILE_SIZE:
        raise IndicatorError(
            [
                (
                    f"{path}:0: (file): {size} bytes, larger than {MAX_FILE_SIZE}: "
                    "not an indicator file"
                )
            ]
        )
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise IndicatorError([f"{path}:0: (file): binary data, not YAML text"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise IndicatorError([f"{path}:0: (file): not UTF-8 text (byte {error.start})"])
    yaml = _yaml()
    try:
        data = yaml.load(text, Loader=_safe_loader())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        problem = getattr(error, "problem", None) or str(error)
        raise IndicatorError([f"{path}:{line}: (file): invalid YAML: {problem}"])
    if data is None:
        raise IndicatorError([f"{path}:1: (file): empty file"])
    return data, text


def _plain_hash(item: Any) -> bool:
    """True for a hash item of the usual shape, which needs no jsonschema pass.

    Validating 100,000 hash items with jsonschema takes half a minute; items
    that fail this check still go through jsonschema for its exact message.
    """
    return (
        isinstance(item, dict)
        and _HASH_KEYS_REQUIRED <= item.keys() <= _HASH_KEYS
        and item["type"] in HASH_LENGTHS
        and item["confidence"] in ("primary", "rule")
        and all(isinstance(item[k], str) and item[k] for k in ("source", "value"))
        and isinstance(item.get("note", ""), str)
        and isinstance(item["id"], str)
        and _INDICATOR_ID.fullmatch(item["id"]) is not None
    )


def _schema_errors(data: dict[str, Any]):
    hashes = data.get("hashes")
    if isinstance(hashes, list) and all(_plain_hash(h) for h in hashes):
        data = {**data, "hashes": []}
    yield from _validator().iter_errors(data)


def _check_semantics(data: dict[str, Any], where: _LazyLines, path: Path) -> list[str]:
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
                    problems.append(
                        f"{path}:{line}: {_field_name((*at, 'value'))}: {problem}"
                    )
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


def load_hash_list(path: Path) -> Tool:
    """A plain hash list (*.txt) as a tool named after the file: the fast way
    to bring a list of 100,000 hashes, which as YAML would take seconds to parse."""
    if path.stat().st_size > MAX_FILE_SIZE:
        raise IndicatorError([f"{path}:0: (file): larger than {MAX_FILE_SIZE} bytes"])
    try:
        text = path.read_text(encoding="utf-8")
        (data,) = hashes.import_(text, str(path), slug(path.stem), path.stem)
    except UnicodeDecodeError as error:
        raise IndicatorError([f"{path}:0: (file): not UTF-8 text (byte {error.start})"])
    except ImportProblem as error:
        raise IndicatorError([f"{line}" for line in str(error).splitlines()])
    tool = Tool(data["id"], data["title"], [], False, data, str(path))
    for item in data["hashes"]:
        line = item["source"].rsplit(" ", 1)[-1]
        tool.indicators.append(
            Indicator(item["id"], tool.id, "hashes", item, f"{path}:{line}")
        )
    return tool


def load_file(path: Path) -> Tool:
    """Loads and checks one indicator file; raises IndicatorError with all problems."""
    if path.suffix in HASH_LIST_SUFFIXES:
        return load_hash_list(path)
    data, text = _read_document(path)
    where = _LazyLines(text)
    if not isinstance(data, dict):
        raise IndicatorError(
            [
                (
                    f"{path}:1: (file): a mapping of tool fields is expected, "
                    f"not a {type(data).__name__}"
                )
            ]
        )
    problems = []
    for error in sorted(_schema_errors(data), key=lambda e: e.path):
        at = list(error.absolute_path)
        unexpected = _UNEXPECTED.findall(error.message)
        if error.validator in ("additionalProperties", "unevaluatedProperties"):
            # Point at the unknown field itself, not at its parent mapping.
            for name in unexpected:
                problems.append(
                    f"{path}:{where.line([*at, name])}: "
                    f"{_field_name([*at, name])}: unknown field"
                )
            continue
        problems.append(f"{path}:{where.line(at)}: {_field_name(at)}: {error.message}")
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
    id_lines = _id_lines(text)
    for section in SECTIONS:
        for item in data.get(section, []):
            lines = id_lines.get(item["id"]) or [0]
            origin = f"{path}:{lines.pop(0) if len(lines) > 1 else lines[0]}"
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
    returned half-loaded. A set loaded before from files of the same paths and
    bytes comes from the user cache (see indicators/cache.py).
    """
    files = expand_paths([shipped_path()] if shipped else [])
    files += expand_paths(paths or [])
    key = _cache_key(files)
    if key is not None:
        cached = _from_cache(cache.read(CACHE_KIND, key))
        if cached is not None:
            return cached
    indicator_set = _load_files(files)
    if key is not None:
        payload = _to_cache(indicator_set)
        if payload is not None:
            cache.write(CACHE_KIND, key, payload)
    return indicator_set


def _load_files(files: list[Path]) -> IndicatorSet:
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
            problems.append(
                f"{path}:1: id: tool id {tool.id!r} already used in {other}"
            )
            continue
        indicator_set.tools[tool.id] = tool
        for ind in tool.indicators:
            if ind.id in seen_ids:
                problems.append(
                    f"{ind.origin}: id: indicator id {ind.id!r} already "
                    f"used at {seen_ids[ind.id]}"
                )
            seen_ids.setdefault(ind.id, ind.origin)
            if ind.section == "hashes":
                key = (ind.kind, ind.value)
                if key in seen_hashes:
                    problems.append(
                        f"{ind.origin}: value: {ind.kind} {ind.value} "
                        f"already listed at {seen_hashes[key]}"
                    )
                seen_hashes.setdefault(key, ind.origin)
    if problems:
        raise IndicatorError(problems)
    return indicator_set


# The cached set is valid for these files' paths and bytes read by this code.
CACHE_KIND = "indicator-set"
_CODE = (
    "loader.py",
    "model.py",
    "schema.yaml",
    "formats/hashes.py",
    "formats/common.py",
)


def _cache_key(files: list[Path]) -> bytes | None:
    """A digest of the code, paths and content a load depends on; None when a
    file cannot be read (the fresh load reports it)."""
    here = Path(__file__).parent
    # Python's version too: it decides which regexes compile; and the
    # versions of the libraries that parse and validate the files.
    parts: list[bytes | str] = [
        CACHE_KIND,
        __version__,
        sys.version,
        *(_library_version(name) for name in ("yaml", "jsonschema")),
    ]
    try:
        parts += [(here / name).read_bytes() for name in _CODE]
        for path in files:
            if path.stat().st_size > MAX_FILE_SIZE:
                return None
            parts += [str(path), path.read_bytes()]
    except OSError:
        return None
    return cache.digest(*parts)


def _library_version(name: str) -> str:
    """Where the module is installed and its file's size and time: changes with
    any upgrade, without importing it (or importlib.metadata, ~15 ms a run)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return f"{name} absent"
    try:
        stat = os.stat(spec.origin)
    except OSError:
        return f"{name} {spec.origin}"
    return f"{name} {spec.origin} {stat.st_size} {stat.st_mtime_ns}"


def _to_cache(indicator_set: IndicatorSet) -> bytes | None:
    """The set as JSON, or None unless it reads back equal to the set."""
    tools = []
    for tool in indicator_set.tools.values():
        where = {
            id(item): (section, index)
            for section, items in tool.data.items()
            if isinstance(items, list)
            for index, item in enumerate(items)
        }
        indicators = []
        for ind in tool.indicators:
            if id(ind.fields) not in where:
                return None
            section, index = where[id(ind.fields)]
            indicators.append([ind.id, ind.section, section, index, ind.origin])
        tools.append(
            {
                "id": tool.id,
                "title": tool.title,
                "stages": tool.stages,
                "dual_use": tool.dual_use,
                "data": tool.data,
                "path": tool.path,
                "indicators": indicators,
            }
        )
    try:
        payload = json.dumps(
            {"sources": indicator_set.sources, "tools": tools}, ensure_ascii=False
        ).encode("utf-8")
    except (TypeError, ValueError):  # a YAML value JSON cannot hold
        return None
    # JSON turns int keys into strings and tuples into lists; only a set that
    # survives the round trip unchanged is cached.
    return payload if _from_cache(payload) == indicator_set else None


def _from_cache(payload: bytes | None) -> IndicatorSet | None:
    if payload is None:
        return None
    try:
        document = json.loads(payload)
        indicator_set = IndicatorSet(sources=document["sources"])
        for item in document["tools"]:
            tool = Tool(
                id=item["id"],
                title=item["title"],
                stages=item["stages"],
                dual_use=item["dual_use"],
                data=item["data"],
                path=item["path"],
            )
            for ind_id, section, where, index, origin in item["indicators"]:
                fields = tool.data[where][index]
                tool.indicators.append(
                    Indicator(ind_id, tool.id, section, fields, origin)
                )
            indicator_set.tools[tool.id] = tool
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return indicator_set
