"""File content: hashes, indicator strings and imphash from one chunked read.

The same chunks feed MD5 (always), SHA-1/SHA-256 (when the set uses them) and the
string matchers (Hyperscan for plain strings, YARA for `fullword` ones); chunks
overlap by the longest string so none is missed at a boundary. Memory stays
bounded whatever the file size.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from typing import BinaryIO

from toolmarks.evidence.model import ReadOnlyStream
from toolmarks.indicators.compiler import CompiledSet, rule_name
from toolmarks.indicators.model import Indicator
from toolmarks.parsers import manager

DATA_TYPE_FILE = "toolmarks:file:match"
DATA_TYPE_UNALLOCATED = "toolmarks:unallocated:match"

# 2 MiB: the fastest through TSK on raw and E01 alike (measured 1–16 MiB); larger
# reads cost more in copies than they save in calls.
CHUNK_SIZE = 2 * 1024 * 1024
# PE files up to this size are kept in memory for the imphash; larger ones are
# reported as not checked rather than held whole.
MAX_PE_SIZE = 64 * 1024 * 1024


@dataclasses.dataclass
class StringHit:
    indicator: Indicator
    rule: str
    offset: int  # of the first occurrence in the stream
    encoding: str  # ascii or wide, as found


@dataclasses.dataclass
class ContentResult:
    size: int = 0  # bytes read
    hashes: dict[str, str] = dataclasses.field(default_factory=dict)
    strings: list[StringHit] = dataclasses.field(default_factory=list)
    imphash: str | None = None
    error: str | None = None  # why the read stopped early, with the offset
    notes: list[str] = dataclasses.field(default_factory=list)  # checks not done


def _imphash(data: bytes) -> tuple[str | None, str | None]:
    """(imphash, problem) of PE bytes; pefile is only imported for PE files."""
    import pefile

    try:
        pe = pefile.PE(data=data, fast_load=True)
        pe.parse_data_directories(
            directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]]
        )
        value = pe.get_imphash()
        return (value or None), None
    except Exception as error:  # noqa: BLE001 - pefile raises many kinds on bad PEs
        return None, f"imphash: not a valid PE: {error}"


def scan_stream(
    file_object: BinaryIO,
    compiled: CompiledSet,
    *,
    chunk_size: int = CHUNK_SIZE,
) -> ContentResult:
    """Reads a stream once and returns its hashes, string hits and imphash."""
    result = ContentResult()
    digests = {"md5": hashlib.md5()}
    for name, make in _MORE_HASHES:
        if name in compiled.hash_types:
            digests[name] = make()
    strings = _StringScan(compiled)
    want_imphash = "imphash" in compiled.hash_types
    pe_chunks: list[bytes] | None = None
    offset = 0
    # A stream of known size is read to its end, without a last empty read.
    end = file_object.get_size() if isinstance(file_object, ReadOnlyStream) else -1
    # Chunks are views of one buffer where the stream fills it itself.
    view = _buffer(chunk_size) if getattr(file_object, "reads_into", False) else None
    try:
        while offset != end:
            try:
                if view is None:
                    chunk = file_object.read(chunk_size)
                else:
                    chunk = view[: file_object.readinto(view)]
            except Exception as error:  # noqa: BLE001 - any back end error
                result.error = f"read failed at offset {offset}: {error}"
                break
            if not chunk:
                break
            if offset == 0 and want_imphash and chunk[:2] == b"MZ":
                pe_chunks = []
            for digest in digests.values():
                digest.update(chunk)
            if pe_chunks is not None:
                if offset + len(chunk) <= MAX_PE_SIZE:
                    pe_chunks.append(bytes(chunk))
                else:
                    pe_chunks = None
                    result.notes.append(
                        f"imphash not computed: PE larger than {MAX_PE_SIZE} bytes"
                    )
            strings.feed(chunk, offset)
            offset += len(chunk)
    finally:
        result.strings = strings.close()
    result.size = offset
    result.hashes = {name: digest.hexdigest() for name, digest in digests.items()}
    if pe_chunks and result.error is None:
        result.imphash, problem = _imphash(b"".join(pe_chunks))
        if problem:
            result.notes.append(problem)
    return result


# Each thread's read buffers, by size: scans may run in threads of one process
# (each with its own compiled set), and a buffer is read into for every chunk.
_local = threading.local()


def _buffer(size: int) -> memoryview:
    """This thread's read buffer of size bytes: a new one for every file
    cost a page fault for every 4 KiB read."""
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    found = buffers.get(size)
    if found is None:
        found = buffers[size] = memoryview(bytearray(size))
    return found


# The constructors themselves: hashlib.new() goes through a Python wrapper
# that costs about as much as hashing a small file's last block.
_MORE_HASHES = (("sha1", hashlib.sha1), ("sha256", hashlib.sha256))


def scan_buffer(data: bytes, compiled: CompiledSet) -> list[StringHit]:
    """The string hits (first of each indicator) in one buffer that is no file:
    a piece of unallocated space has no stream to hash."""
    strings = _StringScan(compiled)
    strings.feed(data, 0)
    return strings.close()


def _is_word_byte(byte: int) -> bool:
    return 48 <= byte <= 57 or 65 <= byte <= 90 or 97 <= byte <= 122


class _StringScan:
    """The string indicators found in one stream, fed chunk by chunk.

    Chunks are matched whole, each after the last bytes of the one before, so a
    string that crosses a boundary is still seen once whole.
    """

    def __init__(self, compiled: CompiledSet) -> None:
        self._matcher = compiled.strings
        self._first: dict[int, int] = {}  # Hyperscan pattern id -> start offset
        self._pending: dict[int, int] = {}  # fullword hits at the buffer's end
        self._hits: dict[str, StringHit] = {}  # YARA rule -> hit
        self._tail = b""
        self._buffer = b""
        self._base = 0

    def _on_match(
        self, pattern: int, start: int, end: int, flags: int, context: object
    ) -> None:
        if pattern in self._first:
            return
        _, encoding, length, fullword = self._matcher.literals[pattern]
        start = end - length
        if fullword:
            # YARA's fullword: no letter or digit right before or after.
            width = 2 if encoding == "wide" else 1
            buffer = self._buffer
            if start >= width:
                before = buffer[start - width : start]
                if _is_word_byte(before[0]) and (width == 1 or before[1] == 0):
                    return
            elif self._base + start > 0:
                return  # seen whole in the previous buffer, with its context
            if end + width > len(buffer):
                # The next buffer holds it again with what follows; if none
                # comes, the stream ends here and the string stands alone.
                self._pending.setdefault(pattern, self._base + start)
                return
            after = buffer[end : end + width]
            if _is_word_byte(after[0]) and (width == 1 or after[1] == 0):
                return
        self._first[pattern] = self._base + start

    def feed(self, chunk: bytes | memoryview, offset: int) -> None:
        buffer = self._tail + chunk if self._tail else chunk
        self._base = offset - len(self._tail)
        self._buffer = buffer
        self._pending.clear()
        # Hyperscan's block mode, not its stream mode: streams freed by Python's
        # cycle collector after closing crashed the process (hyperscan 0.9.1).
        if self._matcher.database is not None:
            self._matcher.database.scan(buffer, match_event_handler=self._on_match)
        if self._matcher.rules is not None:
            for match in self._matcher.rules.match(data=bytes(buffer)):
                self._add_yara(match, self._base)
        overlap = self._matcher.overlap
        # Bytes of their own: a chunk may be a view of a buffer read into again.
        self._tail = bytes(buffer[-overlap:]) if overlap else b""

    def _add_yara(self, match, base: int) -> None:
        """Keeps the first occurrence of each rule; later chunks add new rules."""
        if match.rule in self._hits:
            return
        instances = [
            (base + instance.offset, instance.matched_data)
            for string in match.strings
            for instance in string.instances
        ]
        if not instances:
            return
        offset, data = min(instances)
        encoding = "wide" if len(data) > 1 and data[1:2] == b"\x00" else "ascii"
        indicator = self._matcher.rule_indicators[match.rule]
        self._hits[match.rule] = StringHit(indicator, match.rule, offset, encoding)

    def close(self) -> list[StringHit]:
        if not (self._first or self._pending or self._hits):
            return []  # most streams: nothing found
        hits = dict(self._hits)
        found = {**self._pending, **self._first}
        for pattern, start in found.items():
            indicator, encoding, _, _ = self._matcher.literals[pattern]
            rule = rule_name(indicator.id)
            hit = StringHit(indicator, rule, start, encoding)
            if rule not in hits or hit.offset < hits[rule].offset:
                hits[rule] = hit
        return sorted(hits.values(), key=lambda hit: hit.offset)


# The engine runs the content scan on every stream itself; these declare the
# data types it produces. File system times use plaso's filestat wording.
manager.register(
    manager.ParserDefinition(
        name="file",
        data_type=DATA_TYPE_FILE,
        description="files matched by hash, string, imphash or name",
        times={
            "creation_time": "Creation Time",
            "modification_time": "Content Modification Time",
            "access_time": "Last Access Time",
            "change_time": "Metadata Modification Time",
        },
        indicator_sections=("hashes", "strings", "filenames"),
    )
)
manager.register(
    manager.ParserDefinition(
        name="unallocated",
        evidence="remnant",
        data_type=DATA_TYPE_UNALLOCATED,
        description="indicator strings in unallocated clusters",
        times={},
        report_fields=("first_cluster", "last_cluster"),
        indicator_sections=("strings",),
    )
)
