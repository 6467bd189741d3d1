"""Showing evidence text safely: names in an image are attacker-controlled."""

from __future__ import annotations


def printable(text: str) -> str:
    """Control, format and bidi characters escaped (\\x1b, \\u202e): on a terminal
    they would move the cursor or recolour it, in a report they would reorder a
    name (a right-to-left override can make `gpj.exe` read `exe.jpg`)."""
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode()
        for char in text
    )
