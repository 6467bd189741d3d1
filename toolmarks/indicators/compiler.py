"""Compiles an indicator set into the matchers the parsers use.

Hashes become one dict per hash type (O(1) per file whatever the set size), all
strings one YARA ruleset, all filename regexes one prefilter plus the single
regexes, and the trace indicators lists of compiled regexes by hive or channel.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

try:
    import hyperscan
except ImportError:  # YARA alone does the job, more slowly
    hyperscan = None
try:  # Python's own regex parser (3.11+); without it no regex is indexed
    from re import _constants as _sre
    from re import _parser as _sre_parser
except ImportError:
    _sre = _sre_parser = None

from toolmarks.indicators import cache
from toolmarks.indicators.commandline import commands
from toolmarks.indicators.model import HASH_TYPES, Indicator, IndicatorSet

RULE_PREFIX = "toolmarks_"


def rule_name(indicator_id: str) -> str:
    """The YARA rule name of a string indicator (dots are not allowed there)."""
    return RULE_PREFIX + indicator_id.replace(".", "__")


def _yara_text(value: str) -> str:
    out = []
    for char in value:
        if char in '\\"':
            out.append("\\" + char)
        elif " " <= char <= "~":
            out.append(char)
        else:
            out.append("".join(f"\\x{b:02x}" for b in char.encode("utf-8")))
    return '"' + "".join(out) + '"'


def _yara_hex(data: bytes) -> str:
    return "{ " + " ".join(f"{b:02x}" for b in data) + " }"


def yara_strings(indicator: Indicator) -> list[str]:
    """The YARA string definitions ($s0, $s1 …) of one string indicator."""
    fields = indicator.fields
    value: str = fields["value"]
    encodings = fields["encodings"]
    flags = []
    if fields.get("nocase"):
        flags.append("nocase")
    if fields.get("fullword"):
        flags.append("fullword")
    if value.isascii():
        modifiers = " ".join(encodings + flags)
        return [f"$s0 = {_yara_text(value)} {modifiers}"]
    # YARA's `wide` only interleaves zero bytes, which is wrong past ASCII, so
    # non-ASCII strings are written as hex of their real encodings.
    forms = {"ascii": value.encode("utf-8"), "wide": value.encode("utf-16-le")}
    return [f"$s{i} = {_yara_hex(forms[enc])}" for i, enc in enumerate(encodings)]


def yara_source(indicators: list[Indicator], tools: dict) -> str:
    """One YARA rule per string indicator, with the indicator's provenance as meta."""
    rules = []
    for ind in indicators:
        tool = tools[ind.tool_id]
        meta = {
            "tool": tool.id,
            "indicator": ind.id,
            "source": ind.source,
            "confidence": ind.confidence,
            "weak": "true" if ind.weak else "false",
            "dual_use": "true" if tool.dual_use else "false",
        }
        meta_lines = "\n".join(
            f"    {key} = {_yara_text(str(val))}" for key, val in meta.items()
        )
        strings = "\n".join(f"    {s}" for s in yara_strings(ind))
        rules.append(
            f"rule {rule_name(ind.id)}\n{{\n  meta:\n{meta_lines}\n"
            f"  strings:\n{strings}\n  condition:\n    any of them\n}}\n"
        )
    return "\n".join(rules)


@dataclasses.dataclass(frozen=True)
class RegexIndicator:
    """An indicator with its regexes compiled; absent parts are None.

    `main` and `value` are full-matched (key path, executable, value name),
    `data` is searched (value data, referenced file, event field).
    """

    indicator: Indicator
    main: re.Pattern[str] | None
    value: re.Pattern[str] | None = None
    data: re.Pattern[str] | None = None


def _compile(regex: str | None, case_sensitive: bool = False) -> re.Pattern[str] | None:
    if regex is None:
        return None
    return re.compile(regex, 0 if case_sensitive else re.IGNORECASE)


class TailIndex:
    """Which of many path regexes can match a path, told by one dict look-up
    of the path's extension or last name instead of a search with each.

    A regex anchored at the end (`$`) whose match must end in literal text
    reaching back to a "." (an extension: `\\.exe$`) or to the separator or
    the start (a whole name: `(^|/)system$`) can only match a path with one of
    those tails; every other regex is a candidate for every path. Paths where
    the look-up would not be exact get every regex: those not in ASCII (under
    IGNORECASE `s` matches `ſ`) and those holding a newline (which `$` and
    `^` treat apart).
    """

    def __init__(self, patterns: Sequence[re.Pattern[str]], separator: str) -> None:
        self._separator = separator
        self._count = len(patterns)
        self._always: list[int] = []
        self._by_tail: dict[str, list[int]] = defaultdict(list)
        for number, pattern in enumerate(patterns):
            tails = regex_tails(pattern, separator)
            if tails is None:
                self._always.append(number)
            for tail in tails or ():
                self._by_tail[tail].append(number)

    def key(self, path: str) -> str | None:
        """The path's indexed tail ("" if none is), or None when every regex
        must be tried."""
        if "\n" in path or not path.isascii():
            return None
        dot = path.rfind(".")
        cut = path.rfind(self._separator)
        # The extension if the last name has a ".", else that name: an
        # extension starts with "." and a name has none, so they never meet.
        tail = (path[dot:] if dot > cut else path[cut + 1 :]).lower()
        return tail if tail in self._by_tail else ""

    def candidates(self, key: str | None) -> list[int]:
        """The numbers of the regexes that can match a path of this key, in
        their order."""
        if key is None:
            return list(range(self._count))
        return sorted({*self._always, *self._by_tail.get(key, ())})


# More tails than this and a regex is simply tried on every path.
_MAX_TAILS = 64


def regex_tails(pattern: re.Pattern[str], separator: str) -> set[str] | None:
    """The lower-cased tails (".exe", or a whole last name: "system"), one of
    which a path has if the regex is found in it; None when the regex does
    not fix them (not end-anchored, or ending in a class, repeat, lookaround).

    Only ASCII literals count: other characters have case variants across
    the ASCII boundary (`K`, `ſ`).
    """
    tails: set[str] = set()
    try:
        parsed = _sre_parser.parse(pattern.pattern, pattern.flags)
        if not _ends(list(parsed.data), separator, tails):
            return None
    except Exception:  # noqa: BLE001 - a private module: any change, no index
        return None
    return tails if len(tails) <= _MAX_TAILS else None


def _ends(items: list, separator: str, tails: set[str]) -> bool:
    """Adds the tails of a whole regex (or one of its top alternatives)."""
    if items and items[-1] == (_sre.AT, _sre.AT_END):
        pending = _tails(items[:-1], {""}, separator, tails)
        return pending is not None and not pending
    if len(items) == 1 and items[0][0] is _sre.BRANCH:
        return all(_ends(list(alt.data), separator, tails) for alt in items[0][1][1])
    if len(items) == 1 and items[0][0] is _sre.SUBPATTERN:
        return _ends(list(items[0][1][-1].data), separator, tails)
    return False


def _tails(
    items: list, pending: set[str], separator: str, tails: set[str]
) -> set[str] | None:
    """Walks the items back from the end: `pending` are the literal texts seen
    so far that reach neither a "." nor the separator yet; texts that do go to
    `tails`. Returns what is still pending, None where the walk cannot go on."""
    for op, av in reversed(items):
        if not pending:
            return pending
        if op is _sre.LITERAL:
            chars = [av]
        elif op is _sre.IN:
            chars = [value for kind, value in av if kind is _sre.LITERAL]
            if len(chars) != len(av) or len(chars) > 8:
                return None
        elif op is _sre.SUBPATTERN or (
            op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) and av[:2] in ((0, 1), (1, 1))
        ):
            # A group, or an optional one: the texts with it (and without).
            found = _tails(list(av[-1].data), set(pending), separator, tails)
            if found is None:
                return None
            optional = op is not _sre.SUBPATTERN and av[0] == 0
            pending = pending | found if optional else found
            continue
        elif op is _sre.BRANCH:
            merged: set[str] = set()
            for alt in av[1]:
                found = _tails(list(alt.data), set(pending), separator, tails)
                if found is None:
                    return None
                merged |= found
            pending = merged
            continue
        elif op is _sre.AT and av is _sre.AT_BEGINNING:
            tails.update(pending)
            return set()
        else:
            return None
        following: set[str] = set()
        for text in pending:
            for code in chars:
                char = chr(code)
                if not char.isascii():
                    return None
                if char == separator:
                    tails.add(text)
                elif char == ".":
                    tails.add("." + text)
                else:
                    following.add(char.lower() + text)
        if len(following) > _MAX_TAILS:
            return None
        pending = following
    return pending


class FilenameMatcher:
    """Matches a path against every filename indicator at the cost of about one."""

    def __init__(self, indicators: list[Indicator]) -> None:
        self._items = []
        # Regexes with backreferences stand alone: in one alternation their
        # group numbers would change.
        self._alone = []
        for ind in indicators:
            case_sensitive = ind.fields.get("case_sensitive", False)
            regex = _compile(ind.fields["regex"], case_sensitive)
            if _BACKREFERENCE.search(ind.fields["regex"]):
                self._alone.append((ind, regex))
            else:
                self._items.append((ind, regex))
        everything = self._items + self._alone
        self._index = TailIndex([regex for _, regex in everything], "\\")
        # TailIndex key -> (one alternation of the candidates or None, the
        # candidates, the candidates that stand alone), made on first use.
        self._plans: dict[Any, tuple[Any, list, list]] = {}

    def _plan(self, key: Any) -> tuple[Any, list, list]:
        chosen = set(self._index.candidates(key))
        items = [item for n, item in enumerate(self._items) if n in chosen]
        first_alone = len(self._items)
        alone = [item for n, item in enumerate(self._alone, first_alone) if n in chosen]
        parts = [
            f"(?{'' if ind.fields.get('case_sensitive', False) else 'i'}:"
            f"{ind.fields['regex']})"
            for ind, _ in items
        ]
        try:
            either = re.compile("|".join(parts)) if parts else None
        except re.error:
            # A regex with global inline flags cannot be nested; go one by one.
            either = re.compile("")
        plan = self._plans[key] = (either, items, alone)
        return plan

    def match(self, path: str) -> list[Indicator]:
        """Indicators whose regex is found in a `\\`-separated path."""
        key = self._index.key(path)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(key)
        either, items, alone = plan
        found = [ind for ind, regex in alone if regex.search(path)]
        if either is None or not either.search(path):
            return found
        return [ind for ind, regex in items if regex.search(path)] + found


_BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=")


def _encoded(indicator: Indicator, encoding: str) -> bytes:
    value = indicator.fields["value"]
    return value.encode("utf-8" if encoding == "ascii" else "utf-16-le")


class StringMatcher:
    """All string indicators as one Hyperscan database (YARA where Hyperscan is
    not installed). Both match whole buffers, so chunked scans overlap by the
    longest string, plus the character before it that `fullword` looks at.
    """

    def __init__(self, indicators: list[Indicator], tools: dict) -> None:
        fast = indicators if hyperscan else []
        # Pattern id -> (indicator, encoding, length in bytes, fullword).
        self.literals: list[tuple[Indicator, str, int, bool]] = []
        expressions, flags = [], []
        for ind in fast:
            fullword = bool(ind.fields.get("fullword"))
            for encoding in ind.fields["encodings"]:
                data = _encoded(ind, encoding)
                # Escaped bytes, not Hyperscan's literal mode: that mode gave
                # wrong end offsets for caseless UTF-16 strings (hyperscan 0.9.1).
                expressions.append(b"".join(b"\\x%02x" % byte for byte in data))
                # A fullword string needs every occurrence until one stands
                # alone; the others are reported once.
                flag = 0 if fullword else hyperscan.HS_FLAG_SINGLEMATCH
                if ind.fields.get("nocase"):
                    flag |= hyperscan.HS_FLAG_CASELESS
                flags.append(flag)
                self.literals.append((ind, encoding, len(data), fullword))
        self.database = _hyperscan_database(expressions, flags) if expressions else None
        slow = [] if hyperscan else indicators
        self.rule_indicators = {rule_name(ind.id): ind for ind in slow}
        self.rules = None
        if slow:
            import yara  # only without Hyperscan: its import costs start-up

            self.rules = yara.compile(source=yara_source(slow, tools))
        self.overlap = max(
            (len(_encoded(ind, "wide")) + 1 for ind in indicators), default=0
        )


def _hyperscan_database(expressions: list[bytes], flags: list[int]) -> Any:
    """The compiled database of the expressions, from the cache when an entry
    for exactly these expressions, flags and Hyperscan build is there."""
    mode = hyperscan.HS_MODE_BLOCK
    ids = list(range(len(expressions)))
    key = cache.digest(
        HYPERSCAN_CACHE_KIND,
        hyperscan.__version__,
        platform.machine(),
        str(mode),
        *expressions,
        ",".join(map(str, flags)),
    )
    payload = cache.read(HYPERSCAN_CACHE_KIND, key)
    if payload is not None:
        try:
            # Hyperscan checks the database's own CRC and that this CPU can run it.
            database = hyperscan.loadb(payload, mode)
            database.scratch = hyperscan.Scratch(database)
            return database
        except hyperscan.error:
            pass
    database = hyperscan.Database(mode=mode)
    database.compile(
        expressions=expressions, ids=ids, elements=len(expressions), flags=flags
    )
    cache.write(HYPERSCAN_CACHE_KIND, key, hyperscan.dumpb(database))
    return database


HYPERSCAN_CACHE_KIND = "hyperscan"


@dataclasses.dataclass(frozen=True)
class CommandLineHit:
    """A command-line indicator met by one program of a command line."""

    indicator: Indicator
    value: str  # that program's command as written: program and arguments
    # For Match.of: the program as written, the wrappers it ran through
    # ("cmd.exe"), the arguments text the indicator's `arguments` matched.
    detail: dict[str, str]


class CompiledSet:
    """The matchers of one indicator set."""

    def __init__(self, indicator_set: IndicatorSet) -> None:
        self.indicator_set = indicator_set
        self.tools = indicator_set.tools
        self.hashes: dict[str, dict[str, list[Indicator]]] = {t: {} for t in HASH_TYPES}
        for ind in indicator_set.indicators("hashes"):
            self.hashes[ind.kind].setdefault(ind.value, []).append(ind)
        self.hash_types = {t for t, values in self.hashes.items() if values}

        strings = indicator_set.indicators("strings")
        if len({rule_name(ind.id) for ind in strings}) != len(strings):
            raise ValueError("two string indicator ids give the same YARA rule name")
        self.strings = StringMatcher(strings, self.tools)

        self.filenames = FilenameMatcher(indicator_set.indicators("filenames"))

        self.registry: dict[str, list[RegexIndicator]] = defaultdict(list)
        for ind in indicator_set.indicators("registry"):
            f = ind.fields
            self.registry[f["hive"]].append(
                RegexIndicator(
                    ind,
                    _compile(f["key"]),
                    _compile(f.get("value")),
                    _compile(f.get("data")),
                )
            )
        self.prefetch = [
            RegexIndicator(
                ind,
                _compile(ind.fields.get("executable")),
                data=_compile(ind.fields.get("referenced")),
            )
            for ind in indicator_set.indicators("prefetch")
        ]
        self.eventlog: dict[tuple[str, int], list[RegexIndicator]] = defaultdict(list)
        for ind in indicator_set.indicators("eventlog"):
            for event_id in ind.fields["event_ids"]:
                key = (ind.fields["channel"].lower(), event_id)
                self.eventlog[key].append(
                    RegexIndicator(ind, None, data=_compile(ind.fields["pattern"]))
                )

        self.commandline = [
            RegexIndicator(
                ind,
                _compile(ind.fields["program"]),
                data=_compile(ind.fields.get("arguments")),
            )
            for ind in indicator_set.indicators("commandline")
        ]
        self._any_program = _any_of([item.main for item in self.commandline])

    @functools.cached_property
    def yara_source(self) -> str:
        """The YARA rules of all string indicators, for export (scans use
        Hyperscan)."""
        return yara_source(self.indicator_set.indicators("strings"), self.tools)

    def match_hash(self, hash_type: str, value: str) -> list[Indicator]:
        return self.hashes[hash_type].get(value.lower(), [])

    def match_registry(
        self,
        hive: str,
        key_path: str,
        value_name: str | None = None,
        data: str | None = None,
    ) -> list[Indicator]:
        """Registry indicators of `hive` that a key (or one of its values) meets.

        With value_name None only indicators about the key itself can match.
        """
        hits = []
        for item in self.registry.get(hive, ()):
            if not item.main.fullmatch(key_path):
                continue
            if item.value is not None:
                if value_name is None or not item.value.fullmatch(value_name):
                    continue
            elif value_name is not None:
                continue
            if item.data is not None and (data is None or not item.data.search(data)):
                continue
            hits.append(item.indicator)
        return hits

    def match_prefetch(
        self, executable: str, referenced: list[str]
    ) -> list[tuple[Indicator, list[str]]]:
        """Prefetch indicators met, each with the referenced files that matched."""
        hits = []
        for item in self.prefetch:
            if item.main is not None and not item.main.fullmatch(executable):
                continue
            files = []
            if item.data is not None:
                files = [name for name in referenced if item.data.search(name)]
                if not files:
                    continue
            hits.append((item.indicator, files))
        return hits

    def match_eventlog(
        self,
        channel: str,
        event_id: int,
        fields: dict[str, str],
        provider: str | None = None,
    ) -> list[tuple[Indicator, str, str]]:
        """Event-log indicators met, each with the field name and text matched.

        An indicator that names a provider only matches that provider's events
        when the provider is given.
        """
        hits = []
        for item in self.eventlog.get((channel.lower(), event_id), ()):
            wanted = item.indicator.fields.get("provider")
            if wanted and provider is not None and wanted.lower() != provider.lower():
                continue
            name = item.indicator.fields["field"]
            text = fields.get(name)
            if text is not None and item.data.search(text):
                hits.append((item.indicator, name, text))
        return hits

    def match_commandline(self, command_line: str) -> list[CommandLineHit]:
        """Command-line indicators met by the programs the command line runs."""
        if self._any_program is None:
            return []
        hits = []
        for command in commands(command_line):
            name = command.name
            if not self._any_program.fullmatch(name):
                continue
            for item in self.commandline:
                if not item.main.fullmatch(name):
                    continue
                detail = {"program": command.program}
                if command.via:
                    detail["via"] = " > ".join(command.via)
                if item.data is not None:
                    found = item.data.search(command.arguments)
                    if not found:
                        continue
                    detail["arguments"] = found.group(0).strip()
                hits.append(CommandLineHit(item.indicator, command.text, detail))
        return hits


def _any_of(patterns: list[re.Pattern[str]]) -> re.Pattern[str] | None:
    """One case-insensitive alternation of the patterns, to rule out fast."""
    if not patterns:
        return None
    try:
        return re.compile("|".join(f"(?:{p.pattern})" for p in patterns), re.IGNORECASE)
    except re.error:
        # A regex with global inline flags cannot be nested; rule nothing out.
        return re.compile(".*", re.DOTALL)


def compile_set(indicator_set: IndicatorSet) -> CompiledSet:
    return CompiledSet(indicator_set)
