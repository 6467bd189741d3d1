"""Showing evidence text safely: names in an image are attacker-controlled."""

from __future__ import annotations

import re

# A literal backslash that reads like one of printable()'s escapes; Windows
# paths are full of backslashes, so only these are escaped (as \x5c).
_LOOKS_ESCAPED = re.compile(r"\\(?=x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """Control, format and bidi characters escaped (\\x1b, \\u202e): on a terminal
    they would move the cursor or recolour it, in a report they would reorder a
    name (a right-to-left override can make `gpj.exe` read `exe.jpg`).

    Reversible: \\xHH, \\uHHHH and \\UHHHHHHHH are the only escapes and every
    other backslash is literal. No short forms (\\n, \\t): `C:\\tools\\new`
    must not read as a tab and a newline. A literal backslash that would run
    into an escape, or that is followed by text looking like one, is itself
    written \\x5c: `\\x1b` typed into a name shows as `\\x5cx1b`, never as ESC,
    and a backslash before a real ESC as `\\x5c\\x1b`, never as `\\\\x1b`.
    """
    if text.isprintable() and not _LOOKS_ESCAPED.search(text):
        return text
    out = []
    escape_next = False
    # Right to left: whether a backslash is escaped depends on the next char.
    for index in range(len(text) - 1, -1, -1):
        char = text[index]
        escape = not char.isprintable() or (
            char == "\\"
            and (escape_next or _LOOKS_ESCAPED.match(text, index) is not None)
        )
        out.append(_escape(char) if escape else char)
        escape_next = escape
    return "".join(reversed(out))
