"""The parser registry: every toolmarks parser declares itself here, once.

Each parser module ends with `manager.register(ParserDefinition(...))`, as
plaso's parser modules end with `manager.ParsersManager.RegisterParser`. The
engine routes file entries with it; the plaso storage writer, the timeliner
definitions, the report and scan.json take names, data types, time
descriptions and report fields from it; the plaso front wraps each definition
in a plaso parser. Nothing else lists parsers.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import BinaryIO, Protocol

from toolmarks.events import Trace
from toolmarks.indicators.compiler import CompiledSet, TailIndex

PRODUCT = "toolmarks"


class Parsed(Protocol):
    """What a parse function returns: traces, and warnings naming the source."""

    traces: list[Trace]
    warnings: list[str]


# (stream, source, compiled set, file name) -> traces and warnings; never raises.
ParseFunction = Callable[[BinaryIO, str, CompiledSet, str], Parsed]


@dataclasses.dataclass(frozen=True)
class ParserDefinition:
    """One parser: what it takes, what it produces, how its events read."""

    name: str  # short name: "prefetch"; its plaso parser is "toolmarks_prefetch"
    data_type: str  # of the traces it produces
    description: str
    # Event data attribute -> what its time means, as plaso's timeliner.yaml.
    times: Mapping[str, str]
    # Trace attributes that tell one of its events from the next, in reports.
    report_fields: tuple[str, ...] = ()
    # Sections of the indicator set it matches against.
    indicator_sections: tuple[str, ...] = ()
    # The file entries it parses: a regex searched in the entry's path within
    # its volume ("/"-separated; a named stream's as "<path>:<stream>"); None
    # for producers not fed by file entries.
    paths: re.Pattern[str] | None = None
    # (offset, bytes) signatures plaso's signature scanner recognises it by.
    signatures: tuple[tuple[int, bytes], ...] = ()
    parse: ParseFunction | None = None
    # What its events show of a tool, as findings name it (output.findings
    # KINDS); the registry and event log parsers' events say more per event.
    evidence: str = "present"

    @property
    def parser_name(self) -> str:
        """Its name in plaso: parser chains, --parsers, pinfo's parser counts."""
        return f"{PRODUCT}_{self.name}"

    def takes(self, path: str) -> bool:
        """True if a file entry at this path (in its volume) is for this parser."""
        return self.paths is not None and self.paths.search(path) is not None


_definitions: dict[str, ParserDefinition] = {}
# parser_for's file parsers and index of their paths, made on first use, and
# its plans by TailIndex key: (one pattern of the candidates' paths, the
# candidates in order).
_lookup: tuple[list[ParserDefinition], TailIndex] | None = None
_plans: dict[str | None, tuple[re.Pattern[str], list[ParserDefinition]]] = {}
_INLINE_FLAGS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"))


def register(definition: ParserDefinition) -> None:
    """Adds a parser; names and data types are unique."""
    for known in _definitions.values():
        if definition.name == known.name or definition.data_type == known.data_type:
            raise KeyError(f"parser {definition.name} already registered")
    _definitions[definition.name] = definition
    global _lookup
    _lookup = None
    _plans.clear()


def definitions() -> list[ParserDefinition]:
    """Every registered parser, by name."""
    return [_definitions[name] for name in sorted(_definitions)]


def file_parsers() -> list[ParserDefinition]:
    """The parsers fed by file entries."""
    return [d for d in definitions() if d.parse is not None and d.paths is not None]


def parser_for(path: str) -> ParserDefinition | None:
    """The parser that takes a file entry at this path, if any."""
    global _lookup
    if _lookup is None:
        parsers = file_parsers()
        paths = [d.paths for d in parsers if d.paths is not None]
        _lookup = (parsers, TailIndex(paths, "/"))
    parsers, index = _lookup
    # Most paths' extension or name rules out every parser but a few; one
    # search of those few tells most of the rest apart, and the parsers' own
    # patterns then pick the first that takes it, in their order.
    key = index.key(path)
    plan = _plans.get(key)
    if plan is None:
        chosen = [parsers[n] for n in index.candidates(key)]
        either = "|".join(_scoped(d.paths) for d in chosen if d.paths is not None)
        plan = _plans[key] = (re.compile(either or r"(?!)"), chosen)
    anyone, chosen = plan
    if anyone.search(path) is None:
        return None
    return next((d for d in chosen if d.takes(path)), None)


def _scoped(pattern: re.Pattern[str]) -> str:
    """The pattern as a group that keeps its own flags inside an alternation."""
    flags = "".join(letter for flag, letter in _INLINE_FLAGS if pattern.flags & flag)
    if pattern.flags & re.VERBOSE:
        raise ValueError(f"verbose path pattern not supported: {pattern.pattern}")
    return f"(?{flags}:{pattern.pattern})"


def by_data_type(data_type: str) -> ParserDefinition | None:
    return next((d for d in _definitions.values() if d.data_type == data_type), None)


def timeliner_definitions() -> list[dict]:
    """plaso's timeliner.yaml entries of every data type, for its timeliner."""
    return [
        {
            "data_type": d.data_type,
            "attribute_mappings": [
                {"name": name, "description": description}
                for name, description in sorted(d.times.items())
            ],
            # A tool found on disk matters even when no time is known.
            "place_holder_event": True,
        }
        for d in definitions()
    ]
