"""Reference listings from The Sleuth Kit's `fls -r -p`, to check walks against."""

from __future__ import annotations

import collections
import re
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from toolmarks.evidence import FileItem

# "r/r * 68-128-2(realloc):\tUsers/bob/x.bin"
_LINE = re.compile(
    r"^(?P<types>\S+/\S+)\s+(?P<deleted>\*\s+)?(?P<addr>[0-9]+(?:-[0-9]+-[0-9]+)?)"
    r"(?P<realloc>\(realloc\))?:\t(?P<path>.*)$"
)


def run_fls(images: Sequence[Path], sector_offset: int | None = None) -> list[str]:
    """Lines of `fls -r -p` over the image (all segment files in order)."""
    command = ["fls", "-r", "-p"]
    if sector_offset is not None:
        command += ["-o", str(sector_offset)]
    command += [str(image) for image in images]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return [line for line in result.stdout.splitlines() if line.strip()]


Listing = tuple[collections.Counter, collections.Counter]


def parse_fls(lines: Iterable[str]) -> Listing:
    """(entries, streams): Counters of ("/path", deleted) and ("/path", stream, deleted).

    fls prints an NTFS file once per $DATA attribute ("name" for the default
    one, "name:stream" for named ones) and once per named index ("$Secure:$SDH");
    every file entry is counted once, named $DATA attributes as streams.
    """
    plain: collections.Counter = collections.Counter()
    only_named: collections.Counter = collections.Counter()
    streams: collections.Counter = collections.Counter()
    for line in lines:
        match = _LINE.match(line)
        if match is None:
            raise AssertionError(f"unexpected fls line: {line!r}")
        path = "/" + match["path"]
        deleted = bool(match["deleted"])
        parts = match["addr"].split("-")
        attr_type = int(parts[1]) if len(parts) == 3 else None
        head, _, last = path.rpartition("/")
        if attr_type is not None and ":" in last:
            name, _, stream = last.partition(":")
            base = f"{head}/{name}"
            if attr_type == 128:
                streams[(base, stream, deleted)] += 1
            only_named[(base, deleted)] += 1
            continue
        plain[(path, deleted)] += 1
    entries = collections.Counter(plain)
    for key in only_named:
        if key not in plain:
            entries[key] += 1
    return entries, streams


def walk_listing(items: Iterable[FileItem]) -> Listing:
    """The same two Counters made from a walk (root directory streams left out)."""
    entries: collections.Counter = collections.Counter()
    streams: collections.Counter = collections.Counter()
    for item in items:
        if item.stream:
            if item.path != "/":
                streams[(item.path, item.stream, not item.allocated)] += 1
        else:
            entries[(item.path, not item.allocated)] += 1
    return entries, streams
