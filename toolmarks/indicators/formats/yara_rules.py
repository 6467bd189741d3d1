"""Text strings back out of YARA rules (STIX `pattern_type: yara`, MISP `yara`).

yara-python compiles a rule but does not hand its strings back, so they are
read here from the source after yara-python has accepted it. Only what a string
indicator can hold comes back: text strings with ascii/wide/nocase/fullword and
hex strings of plain bytes that decode as UTF-8 or UTF-16LE text (the form
toolmarks writes non-ASCII strings in); regexes, wildcards, jumps, xor and
base64 strings are reported as skipped.
"""

from __future__ import annotations

import dataclasses
import re

import yara

_SPACE = re.compile(r"(?:\s+|//[^\n]*|/\*.*?\*/)*", re.DOTALL)
_WORD = re.compile(r"[A-Za-z_][\w]*")
_META_VALUE = re.compile(r"-?[\w.]*")  # a number, true or false
_TEXT_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", '"': b'"', "\\": b"\\"}
_MODIFIERS = {"ascii", "wide", "nocase", "fullword", "private"}
# Conditions under which each string alone makes the rule match.
_ANY = re.compile(r"(any|1)\s+of\s+(them|\(\s*\$\*?\s*\))", re.IGNORECASE)
MIN_LENGTH = 4  # the schema's shortest string


class RuleProblem(Exception):
    """The YARA source does not compile."""


@dataclasses.dataclass
class YaraString:
    """One string indicator read from a rule."""

    rule: str
    value: str
    encodings: list[str]
    nocase: bool = False
    fullword: bool = False
    alone: bool = True  # False: the rule's condition needs more than this string


@dataclasses.dataclass
class Rule:
    name: str
    meta: dict[str, str]
    strings: list[YaraString]


def read(source: str) -> tuple[list[Rule], list[str]]:
    """The rules of a YARA source with their string indicators, and the strings
    skipped (each described for a warning)."""
    try:
        yara.compile(source=source)
    except yara.Error as error:
        raise RuleProblem(str(error)) from error
    reader = _Reader(source)
    rules: list[Rule] = []
    skipped: list[str] = []
    while reader.find_rule():
        rules.append(reader.rule(skipped))
    return rules, skipped


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def space(self) -> None:
        self.pos = _SPACE.match(self.text, self.pos).end()

    def word(self) -> str:
        self.space()
        found = _WORD.match(self.text, self.pos)
        if not found:
            return ""
        self.pos = found.end()
        return found.group(0)

    def find_rule(self) -> bool:
        while self.pos < len(self.text):
            self.space()
            if self.text.startswith('"', self.pos):
                self.literal()
                continue
            word = self.word()
            if word == "rule":
                return True
            if not word:
                self.pos += 1
        return False

    def literal(self) -> bytes:
        """A "…" string at pos, unescaped to bytes."""
        out, index = bytearray(), self.pos + 1
        while index < len(self.text) and self.text[index] != '"':
            char = self.text[index]
            if char == "\\" and index + 1 < len(self.text):
                code = self.text[index + 1]
                if code == "x":
                    out.append(int(self.text[index + 2 : index + 4], 16))
                    index += 4
                    continue
                out += _TEXT_ESCAPES.get(code, code.encode())
                index += 2
                continue
            out += char.encode("utf-8")
            index += 1
        self.pos = index + 1
        return bytes(out)

    def until(self, end: str) -> str:
        start = self.pos
        stop = self.text.find(end, self.pos)
        self.pos = len(self.text) if stop < 0 else stop + len(end)
        return self.text[start : self.pos - len(end)]

    def rule(self, skipped: list[str]) -> Rule:
        name = self.word()
        self.until("{")
        meta: dict[str, str] = {}
        strings: list[YaraString] = []
        condition = ""
        while self.pos < len(self.text):
            section = self.word()
            if self.text.startswith(":", self.pos):
                self.pos += 1
            if section == "meta":
                self.meta(meta)
            elif section == "strings":
                self.strings(name, strings, skipped)
            elif section == "condition":
                condition = self.condition()
                break
            else:
                break
        alone = len(strings) <= 1 or bool(_ANY.fullmatch(" ".join(condition.split())))
        for string in strings:
            string.alone = alone
        return Rule(name, meta, _merged(strings))

    def meta(self, meta: dict[str, str]) -> None:
        while True:
            before = self.pos
            key = self.word()
            self.space()
            if not key or not self.text.startswith("=", self.pos):
                self.pos = before
                return
            self.pos += 1
            self.space()
            if self.text.startswith('"', self.pos):
                meta[key] = self.literal().decode("utf-8", "replace")
            else:
                found = _META_VALUE.match(self.text, self.pos)
                self.pos = found.end()
                meta[key] = found.group(0)

    def strings(self, rule: str, out: list[YaraString], skipped: list[str]) -> None:
        while True:
            self.space()
            if not self.text.startswith("$", self.pos):
                return
            self.pos += 1
            name = "$" + self.word()
            self.space()
            self.pos += 1  # =
            self.space()
            where = f"YARA rule {rule} string {name}"
            char = self.text[self.pos : self.pos + 1]
            if char == '"':
                data, kind = self.literal(), "text"
            elif char == "{":
                self.pos += 1
                data, kind = _hex(self.until("}")), "hex"
            else:  # a regex: /…/flags
                self.pos += 1
                while self.pos < len(self.text) and self.text[self.pos] != "/":
                    self.pos += 2 if self.text[self.pos] == "\\" else 1
                self.pos += 1
                data, kind = None, "regex"
            modifiers = self.modifiers()
            if data is None:
                skipped.append(f"{where}: a {kind} string")
                continue
            unknown = modifiers - _MODIFIERS
            if unknown:
                skipped.append(f"{where}: modifier {', '.join(sorted(unknown))}")
                continue
            string = _string(rule, data, kind, modifiers)
            if string is None:
                skipped.append(f"{where}: not text of {MIN_LENGTH}+ characters")
            else:
                out.append(string)

    def modifiers(self) -> set[str]:
        found = set()
        while True:
            before = self.pos
            word = self.word()
            if not word or word == "condition":
                self.pos = before
                return found
            if self.text.startswith("(", self.pos):
                self.until(")")
            found.add(word)

    def condition(self) -> str:
        start, index = self.pos, self.pos
        while index < len(self.text) and self.text[index] != "}":
            if self.text[index] == '"':
                self.pos = index
                self.literal()
                index = self.pos
                continue
            index += 1
        self.pos = index + 1
        return self.text[start:index]


def _hex(body: str) -> bytes | None:
    digits = "".join(_SPACE.sub(" ", body).split())
    if not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", digits):
        return None  # wildcards, jumps or alternatives
    return bytes.fromhex(digits)


def _string(
    rule: str, data: bytes, kind: str, modifiers: set[str]
) -> YaraString | None:
    nocase, fullword = "nocase" in modifiers, "fullword" in modifiers
    if kind == "text":
        encodings = [e for e in ("ascii", "wide") if e in modifiers] or ["ascii"]
        value = _decoded(data, "utf-8")
    else:
        value, encodings = _decoded(data, "utf-8"), ["ascii"]
        if (value is None or "\x00" in value) and len(data) % 2 == 0:
            value, encodings = _decoded(data, "utf-16-le"), ["wide"]
    if value is None or len(value) < MIN_LENGTH or "\x00" in value:
        return None
    return YaraString(rule, value, encodings, nocase, fullword)


def _decoded(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None


def _merged(strings: list[YaraString]) -> list[YaraString]:
    """One string per text: toolmarks writes a non-ASCII string's two encodings
    as two hex strings."""
    merged: dict[tuple[str, bool, bool], YaraString] = {}
    for string in strings:
        key = (string.value, string.nocase, string.fullword)
        if key in merged:
            encodings = merged[key].encodings
            encodings += [e for e in string.encodings if e not in encodings]
        else:
            merged[key] = string
    return list(merged.values())
