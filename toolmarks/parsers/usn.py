"""NTFS USN change journal ($Extend/$UsnJrnl:$J) detection core: $J in, traces out.

The journal is read as a stream in bounded chunks; its sparse ranges, often
gigabytes, are not read at all when the stream tells them (data runs, SEEK_DATA)
and cost one comparison per chunk when it does not. Records are USN_RECORD_V2 and
V3 (V4 range records are counted and skipped). As libfsntfs reads them, records
sit in 4096-byte journal blocks, never across one, and a zero length means the
rest of the block is padding.

Two kinds of traces come out:

- the records of one file (MFT reference) under one name whose name matches a
  filename indicator, folded into one trace per operation: the run of records
  up to the CLOSE record, with the union of their reason flags (so "created"
  and "deleted" are two events, not the eight records Windows writes);
- SDelete's wipe: a file renamed through names of one repeated letter
  (AAA.AAA … ZZZ.ZZZ; sdeleAAAAAAAAAAAAAAAAAAAA.AAA …) and then deleted, once
  per wiped file, with the name it had before and the time of the deletion.

The journal holds a name and its parent's MFT reference only, not a path: names
are matched as `\\NAME` when the parent is the root directory (MFT entry 5) and
as `\\<MFT entry-sequence>\\NAME` otherwise, so indicators anchored on a folder
cannot match here. Bad input never raises: it ends as a warning with the offset.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
import os
import re
import struct
from typing import Any, BinaryIO

from dfdatetime import filetime as dfdatetime_filetime

from toolmarks.events import NOT_A_TIME, Match, Trace
from toolmarks.indicators.compiler import CompiledSet
from toolmarks.indicators.model import Indicator
from toolmarks.parsers import manager, reading

DATA_TYPE = "toolmarks:usn:trace"

# plaso's wording: fs:ntfs:usn_change update_time, and its deletion time.
DESC_UPDATE = "Metadata Modification Time"
DESC_DELETION = "Content Deletion Time"

BLOCK_SIZE = 4096  # libfsntfs journal block size; a record never crosses one
CHUNK_SIZE = 1024 * 1024  # a multiple of BLOCK_SIZE
ROOT_ENTRY = 5  # MFT entry of the root directory
MAX_WARNINGS = 20  # then one line counts the rest

_V2 = struct.Struct("<IHHQQqqIIIIHH")  # USN_RECORD_V2, name at 60
_V3 = struct.Struct("<IHHQQQQqqIIIIHH")  # USN_RECORD_V3 (128-bit references)
_HEAD = struct.Struct("<IH")
_FILETIME_EPOCH = datetime.datetime(1601, 1, 1)
# What _dull needs of a V2 record: file and parent references, reasons, name
# length and offset.
_V2_DULL = struct.Struct("<8xQQ16xI12xHH")
_ZERO_CHUNK = bytes(CHUNK_SIZE)

REASON_CLOSE = 0x80000000
REASON_FILE_DELETE = 0x00000200
REASON_RENAME_OLD_NAME = 0x00001000
REASON_RENAME_NEW_NAME = 0x00002000

# USN_REASON_* of winioctl.h without the prefix, as plaso's formatter lists them.
REASONS = {
    0x00000001: "DATA_OVERWRITE",
    0x00000002: "DATA_EXTEND",
    0x00000004: "DATA_TRUNCATION",
    0x00000010: "NAMED_DATA_OVERWRITE",
    0x00000020: "NAMED_DATA_EXTEND",
    0x00000040: "NAMED_DATA_TRUNCATION",
    0x00000100: "FILE_CREATE",
    0x00000200: "FILE_DELETE",
    0x00000400: "EA_CHANGE",
    0x00000800: "SECURITY_CHANGE",
    0x00001000: "RENAME_OLD_NAME",
    0x00002000: "RENAME_NEW_NAME",
    0x00004000: "INDEXABLE_CHANGE",
    0x00008000: "BASIC_INFO_CHANGE",
    0x00010000: "HARD_LINK_CHANGE",
    0x00020000: "COMPRESSION_CHANGE",
    0x00040000: "ENCRYPTION_CHANGE",
    0x00080000: "OBJECT_ID_CHANGE",
    0x00100000: "REPARSE_POINT_CHANGE",
    0x00200000: "STREAM_CHANGE",
    0x00400000: "TRANSACTED_CHANGE",
    0x00800000: "INTEGRITY_CHANGE",
    0x01000000: "DESIRED_STORAGE_CLASS_CHANGE",
    0x80000000: "CLOSE",
}
# FILE_ATTRIBUTE_* of winnt.h without the prefix.
FILE_ATTRIBUTES = {
    0x00000001: "READONLY",
    0x00000002: "HIDDEN",
    0x00000004: "SYSTEM",
    0x00000010: "DIRECTORY",
    0x00000020: "ARCHIVE",
    0x00000040: "DEVICE",
    0x00000080: "NORMAL",
    0x00000100: "TEMPORARY",
    0x00000200: "SPARSE_FILE",
    0x00000400: "REPARSE_POINT",
    0x00000800: "COMPRESSED",
    0x00001000: "OFFLINE",
    0x00002000: "NOT_CONTENT_INDEXED",
    0x00004000: "ENCRYPTED",
    0x00008000: "INTEGRITY_STREAM",
    0x00010000: "VIRTUAL",
    0x00020000: "NO_SCRUB_DATA",
    0x00040000: "RECALL_ON_OPEN",
    0x00080000: "PINNED",
    0x00100000: "UNPINNED",
    0x00400000: "RECALL_ON_DATA_ACCESS",
}

# The filename indicators whose names are SDelete's letter names: a file renamed
# through them and deleted is a wipe (sdelete.yaml cites the v1.51 source and
# JPCERT). Matched by id because the schema has no kind for a rename sequence.
WIPE_INDICATORS = (
    "sdelete.filename.wipe_rename",
    "sdelete.filename.wipe_rename_jpcert",
)
# SDelete v1.51 renames 26 times; two renames through two letters tell a wipe
# from one file that happens to be called AAAA (or whose other renames the
# journal no longer holds).
WIPE_MIN_LETTERS = 2
KIND_WIPE = "usn_wipe"
# Old names of recent renames kept to name a wiped file; Windows writes the
# RENAME_OLD_NAME record right before the RENAME_NEW_NAME one.
_RECENT_OLD_NAMES = 4096
_NAME_CACHE = 65536
_HIT_IN_ROOT, _HIT_ELSEWHERE = 1, 2
# Names are grouped in numpy by 4-byte words, in widths of up to 8, 16 … 128
# words (16 to 256 UTF-16 characters; a name has 255 at most): each name is
# compared over the narrowest width that holds it.
_NAME_WORDS = (8, 16, 32, 64, 128)


@functools.cache
def _numpy() -> Any:
    """numpy, imported on the first journal: it costs a scan's start-up ~80 ms."""
    import numpy

    return numpy


@functools.cache
def _word_masks(width: int) -> Any:
    """Row n: the bytes of each of width words that a name of n bytes fills."""
    np = _numpy()
    filled = np.arange(4 * width + 1)[:, None] - 4 * np.arange(width)
    return (
        (np.uint64(1) << (8 * np.clip(filled, 0, 4)).astype(np.uint64)) - np.uint64(1)
    ).astype(np.uint32)


@functools.cache
def _name_hash() -> Any:
    """Odd 64-bit multipliers of the words of a name (golden-ratio multiples)."""
    np = _numpy()
    return np.arange(1, 256, 2, dtype=np.uint64) * np.uint64(
        0x9E3779B97F4A7C15
    ) | np.uint64(1)


def words(flags: int, names: dict[int, str]) -> list[str]:
    """The names of the set bits, unknown ones as hex."""
    out = [name for bit, name in names.items() if flags & bit]
    unknown = flags & ~sum(names)
    if unknown:
        out.append(f"0x{unknown:08x}")
    return out


def reference(value: int) -> str:
    """An NTFS file reference as plaso prints it: MFT entry-sequence."""
    return f"{value & 0xFFFFFFFFFFFF}-{value >> 48}"


def _time(filetime: int) -> dfdatetime_filetime.Filetime | None:
    return dfdatetime_filetime.Filetime(timestamp=filetime) if filetime > 0 else None


def _iso(filetime: int) -> str | None:
    """As dfdatetime's CopyToDateTimeStringISO8601, which walks the days of
    every year since 1601 and was most of the cost of a journal's traces."""
    if filetime <= 0:
        return None
    seconds, fraction = divmod(filetime, 10_000_000)
    try:
        moment = _FILETIME_EPOCH + datetime.timedelta(seconds=seconds)
    except OverflowError:  # past datetime's year 9999
        value = _time(filetime)
        return value.CopyToDateTimeStringISO8601() if value else None
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{fraction:07d}+00:00"


@dataclasses.dataclass
class Record:
    """One USN record, as far as the parser needs it."""

    offset: int
    version: int
    file_reference: int
    parent_reference: int
    usn: int
    timestamp: int  # FILETIME
    reasons: int
    source_info: int
    file_attributes: int
    name: str
    path: str  # what filename indicators were matched against
    indicators: list[Indicator]


@dataclasses.dataclass
class _Operation:
    """The records of one file under one name up to its CLOSE record."""

    first: Record
    last: Record
    path: str
    indicators: list[Indicator]
    reasons: int = 0
    records: int = 0
    closed: bool = False

    def add(self, record: Record) -> None:
        self.last = record
        self.reasons |= record.reasons
        self.records += 1
        self.closed = bool(record.reasons & REASON_CLOSE)


@dataclasses.dataclass
class _Wipe:
    """A file seen renamed into letter names: a wipe if it is then deleted."""

    original: Record | None  # the RENAME_OLD_NAME record before the first letter
    first: Record
    last: Record
    letters: list[str] = dataclasses.field(default_factory=list)
    renames: int = 0
    indicators: dict[str, Indicator] = dataclasses.field(default_factory=dict)
    deletion: Record | None = None

    @property
    def is_wipe(self) -> bool:
        return self.deletion is not None and len(set(self.letters)) >= (
            WIPE_MIN_LETTERS
        )


@dataclasses.dataclass
class UsnResult:
    """The outcome of one $J: traces, warnings and what was read."""

    source: str
    traces: list[Trace] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    records: int = 0  # V2 and V3 records read
    range_records: int = 0  # V4 records, skipped
    bytes_read: int = 0
    zero_bytes: int = 0  # in chunks that held nothing but zeros
    hole_bytes: int = 0  # sparse ranges of the stream, never read
    problems: int = 0

    def warn(self, problem: str) -> None:
        self.problems += 1
        if self.problems <= MAX_WARNINGS:
            self.warnings.append(f"{self.source}: usn journal: {problem}")


def parse_usn(file_object: BinaryIO, source: str, compiled: CompiledSet) -> UsnResult:
    """Parses one $J stream and returns its traces; never raises on bad input."""
    result = UsnResult(source=source)
    try:
        _Parser(result, compiled).run(file_object)
    except Exception as error:  # noqa: BLE001 - one odd file never ends a scan
        result.warn(f"internal error: {type(error).__name__}: {error}")
        result.traces = []
    if result.problems > MAX_WARNINGS:
        result.warnings.append(
            f"{source}: usn journal: {result.problems - MAX_WARNINGS} more problems "
            "not listed"
        )
    return result


def read_records(
    file_object: BinaryIO, source: str, compiled: CompiledSet
) -> tuple[list[Record], UsnResult]:
    """Every V2/V3 record of a $J, for inspection (tests, benchmarks)."""
    result = UsnResult(source=source)
    parser = _Parser(result, compiled, keep=True)
    parser.run(file_object)
    return parser.kept, result


class _Parser:
    def __init__(
        self, result: UsnResult, compiled: CompiledSet, keep: bool = False
    ) -> None:
        self.result = result
        self.compiled = compiled
        self.kept: list[Record] | None = [] if keep else None
        self.wipe_ids = {
            ind.id
            for ind in compiled.indicator_set.indicators("filenames")
            if ind.id in WIPE_INDICATORS
        }
        self.names: dict[tuple[bytes, int], tuple[str, str, list[Indicator]]] = {}
        # Raw name -> _HIT_IN_ROOT | _HIT_ELSEWHERE: whether some indicator can
        # meet it as a file of the root folder, of another folder.
        self.name_hits: dict[bytes, int] = {}
        self.open: dict[int, _Operation] = {}
        self.done: list[_Operation] = []
        self.old_names: dict[int, Record] = {}
        self.wipes: dict[int, _Wipe] = {}

    def run(self, file_object: BinaryIO) -> None:
        ranges = reading.data_ranges(file_object)
        if ranges is None:
            self._read(file_object, 0, None)
        else:
            position = 0
            for start, end in _blocks(ranges):
                # Holes of a sparse $J (often gigabytes) are zeros: never read.
                self.result.hole_bytes += start - position
                if not self._read(file_object, start, end):
                    break
                position = end
        for operation in self.open.values():
            self.done.append(operation)
        self._traces()

    def _read(self, file_object: BinaryIO, offset: int, end: int | None) -> bool:
        """Reads and walks [offset, end) (to the end of the stream if end is
        None); False once the stream cannot be read further."""
        try:
            file_object.seek(offset, os.SEEK_SET)
        except (OSError, io.UnsupportedOperation):
            if offset:
                self.result.warn(f"cannot seek to offset {offset}")
                return False
            # A stream that cannot seek is read from where it stands.
        while end is None or offset < end:
            size = CHUNK_SIZE if end is None else min(CHUNK_SIZE, end - offset)
            try:
                chunk = file_object.read(size)
            except OSError as error:
                self.result.warn(f"read error at offset {offset}: {error}")
                return False
            if not chunk:
                return end is None
            self.result.bytes_read += len(chunk)
            if chunk == _ZERO_CHUNK[: len(chunk)]:
                self.result.zero_bytes += len(chunk)
            elif not self._fast_chunk(chunk, offset):
                self._chunk(chunk, offset)
            offset += len(chunk)
            if len(chunk) < size:
                # Short reads only at the end: the stream object loops itself.
                return False
        return True

    def _fast_chunk(self, data: bytes, base: int) -> bool:
        """Walks a chunk of well-formed V2 records with numpy, all blocks at
        once, and hands only the records that matter to _record/_track. False
        (nothing done) when the chunk holds anything else: bad lengths, other
        versions, names out of bounds, so _chunk reads it and warns."""
        np = _numpy()
        size = len(data)
        if self.kept is not None or size % 8 or base % BLOCK_SIZE:
            return False
        u8 = np.frombuffer(data, np.uint8)
        u16, u32, u64 = u8.view("<u2"), u8.view("<u4"), u8.view("<u8")
        position = np.arange(0, size, BLOCK_SIZE, dtype=np.int64)
        end = np.minimum(position + BLOCK_SIZE, size)
        found = []
        # One pass per record rank: the chain of lengths inside each block is
        # followed for every block together.
        while position.size:
            inside = position + 8 <= end
            position, end = position[inside], end[inside]
            length = u32[position >> 2].astype(np.int64)
            live = length != 0  # zero: the rest of the block is padding
            position, end, length = position[live], end[live], length[live]
            if (
                (length < _V2.size)
                | (length & 7 != 0)
                | (position + length > end)
                | (u16[(position >> 1) + 2] != 2)
            ).any():
                return False
            found.append(position)
            position = position + length
        if not found:
            return True
        # In rank order, not offset order: only the wanted few need sorting.
        at = np.concatenate(found)
        length = u32[at >> 2].astype(np.int64)
        name_length = u16[(at + 56) >> 1].astype(np.int64)
        name_offset = u16[(at + 58) >> 1].astype(np.int64)
        if ((name_offset < _V2.size) | (name_offset + name_length > length)).any():
            return False
        file_ref = u64[(at + 8) >> 3]
        parent_entry = u64[(at + 16) >> 3] & 0xFFFFFFFFFFFF
        reasons = u32[(at + 40) >> 2]
        codes = self._name_codes(data, u32, at + name_offset, name_length)
        root = parent_entry == ROOT_ENTRY
        hit = np.where(root, codes & _HIT_IN_ROOT, codes & _HIT_ELSEWHERE) != 0
        tracked = set(self.open) | set(self.wipes)
        tracked.update(file_ref[hit].tolist())
        wanted = hit | (reasons & REASON_RENAME_OLD_NAME != 0)
        if tracked:
            wanted |= np.isin(file_ref, np.fromiter(tracked, np.uint64))
        self.result.records += int(at.size - np.count_nonzero(wanted))
        chosen = np.sort(at[wanted])
        for position, size in zip(
            chosen.tolist(), u32[chosen >> 2].tolist(), strict=True
        ):
            record = self._record(data, position, size, 2, base + position)
            if record is not None:
                self.result.records += 1
                self._track(record)
        return True

    def _name_codes(self, data: bytes, u32: Any, start: Any, length: Any) -> Any:
        """The name_hits code of each name (start, length in bytes). Names at a
        word boundary are grouped in numpy (a hash of their words, then every
        name compared word by word with its group's first: exact), so Python
        sees one bytes object per distinct name, not one per record."""
        np = _numpy()
        codes = np.zeros(start.size, np.uint8)
        left = start & 3 == 0
        for width in _NAME_WORDS:
            chosen = np.flatnonzero(left & (length <= 4 * width))
            if chosen.size and self._group(
                data, u32, start, length, chosen, width, codes
            ):
                left[chosen] = False
        rest = np.flatnonzero(left | (start & 3 != 0))
        if rest.size:
            codes[rest] = [
                self._code(data[begin : begin + count])
                for begin, count in zip(
                    start[rest].tolist(), length[rest].tolist(), strict=True
                )
            ]
        return codes

    def _group(
        self,
        data: bytes,
        u32: Any,
        start: Any,
        length: Any,
        chosen: Any,
        width: int,
        codes: Any,
    ) -> bool:
        """Sets codes[chosen] through one Python look-up per distinct name; False
        on a hash collision (the caller looks each name up)."""
        np = _numpy()
        at, size = start[chosen], length[chosen]
        column = np.arange(width, dtype=np.int64)
        index = np.minimum((at >> 2)[:, None] + column, u32.size - 1)
        words = u32[index] & _word_masks(width)[size]
        key = (words.astype(np.uint64) * _name_hash()[:width]).sum(
            axis=1, dtype=np.uint64
        ) ^ size.astype(np.uint64)
        _, first, group = np.unique(key, return_index=True, return_inverse=True)
        leader = first[group]
        if not ((words == words[leader]).all() and (size == size[leader]).all()):
            return False
        distinct = [
            self._code(data[begin : begin + count])
            for begin, count in zip(
                at[first].tolist(), size[first].tolist(), strict=True
            )
        ]
        codes[chosen] = np.array(distinct, np.uint8)[group]
        return True

    def _code(self, raw: bytes) -> int:
        code = self.name_hits.get(raw)
        if code is None:
            if len(self.name_hits) >= _NAME_CACHE:
                self.name_hits.clear()
            code = self.name_hits[raw] = self._name_hit(raw)
        return code

    def _name_hit(self, raw: bytes) -> int:
        name = raw.decode("utf-16-le", errors="backslashreplace")
        return (_HIT_IN_ROOT if self._match(f"\\{name}") else 0) | (
            _HIT_ELSEWHERE if self._match(f"\\<MFT 0-0>\\{name}") else 0
        )

    def _chunk(self, data: bytes, base: int) -> None:
        size = len(data)
        for block in range(0, size, BLOCK_SIZE):
            end = min(block + BLOCK_SIZE, size)
            position = block
            while position + 8 <= end:
                length, version = _HEAD.unpack_from(data, position)
                if length == 0:
                    break  # the rest of the block is padding
                at = base + position
                if length < 8 or position + length > end:
                    where = "its block" if end - block == BLOCK_SIZE else "the journal"
                    self.result.warn(
                        f"record at offset {at}: length {length} points past the "
                        f"end of {where} (offset {base + end}); resumed at the "
                        "next block"
                    )
                    break
                if version == 4:
                    self.result.range_records += 1
                elif version == 2 and self._dull(data, position, length):
                    # Most records name no tool and touch no tracked file: only
                    # counted, without building a Record (the journal's cost).
                    self.result.records += 1
                elif version in (2, 3):
                    record = self._record(data, position, length, version, at)
                    if record is not None:
                        self.result.records += 1
                        self._track(record)
                        if self.kept is not None:
                            self.kept.append(record)
                else:
                    self.result.warn(
                        f"record at offset {at}: unknown major version {version}; "
                        "resumed at the next block"
                    )
                    break
                position += length

    def _dull(self, data: bytes, position: int, length: int) -> bool:
        """True if a V2 record is well formed and of no interest: its name meets
        no indicator, its file is neither followed nor renamed away."""
        if self.kept is not None or length < _V2.size:
            return False
        file_ref, parent_ref, reasons, name_length, name_offset = _V2_DULL.unpack_from(
            data, position
        )
        if name_offset < _V2.size or name_offset + name_length > length:
            return False  # the full read warns
        if file_ref in self.open or file_ref in self.wipes:
            return False
        if reasons & REASON_RENAME_OLD_NAME:
            return False
        start = position + name_offset
        code = self._code(data[start : start + name_length])
        root = parent_ref & 0xFFFFFFFFFFFF == ROOT_ENTRY
        return not code & (_HIT_IN_ROOT if root else _HIT_ELSEWHERE)

    def _record(
        self, data: bytes, position: int, length: int, version: int, at: int
    ) -> Record | None:
        layout = _V2 if version == 2 else _V3
        if length < layout.size:
            self.result.warn(
                f"record at offset {at}: length {length} is shorter than a "
                f"version {version} record ({layout.size} bytes); skipped"
            )
            return None
        fields = layout.unpack_from(data, position)
        if version == 2:
            file_ref, parent_ref = fields[3], fields[4]
        else:
            # 128-bit references: NTFS keeps the 64-bit one in the low half.
            file_ref, parent_ref = fields[3], fields[5]
        usn, stamp, reasons, source_info, _, attributes, name_length, name_offset = (
            fields[-8:]
        )
        if name_offset < layout.size or name_offset + name_length > length:
            self.result.warn(
                f"record at offset {at}: name at {name_offset}, {name_length} bytes, "
                f"is not inside the record's {length} bytes; skipped"
            )
            return None
        start = position + name_offset
        raw = data[start : start + name_length]
        parent_entry = parent_ref & 0xFFFFFFFFFFFF
        key = (raw, parent_ref if parent_entry != ROOT_ENTRY else ROOT_ENTRY)
        known = self.names.get(key)
        if known is None:
            name = raw.decode("utf-16-le", errors="backslashreplace")
            path = (
                f"\\{name}"
                if parent_entry == ROOT_ENTRY
                else f"\\<MFT {reference(parent_ref)}>\\{name}"
            )
            if len(self.names) >= _NAME_CACHE:
                self.names.clear()
            known = self.names[key] = (name, path, self._match(path))
        record = Record(
            at,
            version,
            file_ref,
            parent_ref,
            usn,
            stamp,
            reasons,
            source_info,
            attributes,
            *known,
        )
        return record

    def _match(self, path: str) -> list[Indicator]:
        return self.compiled.filenames.match(path)

    def _track(self, record: Record) -> None:
        ref = record.file_reference
        indicators = record.indicators
        operation = self.open.get(ref)
        if operation is not None and (
            operation.first.name != record.name
            or operation.first.parent_reference != record.parent_reference
        ):
            self.done.append(self.open.pop(ref))
            operation = None
        if operation is None and indicators:
            operation = _Operation(record, record, record.path, indicators)
            self.open[ref] = operation
        if operation is not None:
            operation.add(record)
            if operation.closed:
                self.done.append(self.open.pop(ref))
        self._track_wipe(record, indicators)

    def _track_wipe(self, record: Record, indicators: list[Indicator]) -> None:
        ref = record.file_reference
        letter = [ind for ind in indicators if ind.id in self.wipe_ids]
        if letter and record.reasons & REASON_RENAME_NEW_NAME:
            wipe = self.wipes.get(ref)
            if wipe is None:
                wipe = self.wipes[ref] = _Wipe(self.old_names.get(ref), record, record)
            if wipe.renames == 0 or wipe.last.name != record.name:
                # One rename writes RENAME_NEW_NAME, then with CLOSE: count it once.
                wipe.renames += 1
                wipe.letters.append(record.name.replace(".", "")[-1:])
            wipe.last = record
            for ind in letter:
                wipe.indicators.setdefault(ind.id, ind)
        elif record.reasons & REASON_RENAME_OLD_NAME and not letter:
            self.old_names.pop(ref, None)
            if len(self.old_names) >= _RECENT_OLD_NAMES:
                del self.old_names[next(iter(self.old_names))]
            self.old_names[ref] = record
        if record.reasons & REASON_FILE_DELETE and ref in self.wipes:
            self.wipes[ref].deletion = record

    def _traces(self) -> None:
        wiped = {ref for ref, wipe in self.wipes.items() if wipe.is_wipe}
        traces: list[tuple[int, Trace]] = []
        for operation in self.done:
            ref = operation.first.file_reference
            if ref in wiped and any(
                ind.id in self.wipe_ids for ind in operation.indicators
            ):
                continue  # a letter name of a wiped file: the wipe trace says it
            traces.append((operation.first.offset, self._operation_trace(operation)))
        for ref in wiped:
            wipe = self.wipes[ref]
            traces.append((wipe.first.offset, self._wipe_trace(wipe)))
        self.result.traces = [trace for _, trace in sorted(traces, key=_first)]

    def _operation_trace(self, operation: _Operation) -> Trace:
        first, last = operation.first, operation.last
        matches = [
            Match.of(ind, operation.path, parent=reference(first.parent_reference))
            for ind in operation.indicators
        ]
        stamp = _time(first.timestamp)
        return Trace(
            DATA_TYPE,
            stamp,
            DESC_UPDATE if stamp else NOT_A_TIME,
            self.result.source,
            matches,
            {
                "artefact": "usn_record",
                "file_name": first.name,
                "matched_path": operation.path,
                "file_reference": reference(first.file_reference),
                "parent_file_reference": reference(first.parent_reference),
                "reasons": words(operation.reasons, REASONS),
                "reason_flags": operation.reasons,
                "file_attributes": words(last.file_attributes, FILE_ATTRIBUTES),
                "record_count": operation.records,
                "closed": operation.closed,
                "first_time": _iso(first.timestamp),
                "last_time": _iso(last.timestamp),
                "usn": first.usn,
                "last_usn": last.usn,
                "offset": first.offset,
                "last_offset": last.offset,
                "record_version": first.version,
                **_source_info(first),
            },
        )

    def _wipe_trace(self, wipe: _Wipe) -> Trace:
        deletion = wipe.deletion
        assert deletion is not None
        original = wipe.original.name if wipe.original else None
        letters = "".join(dict.fromkeys(wipe.letters))
        detail: dict[str, Any] = {
            "original_name": original or "unknown (not in the journal)",
            "renames": wipe.renames,
            "letters": f"{wipe.letters[0]}-{wipe.letters[-1]}",
            "last_name": wipe.last.name,
            "deleted": True,
        }
        matches = [
            Match.of(ind, wipe.first.name, kind=KIND_WIPE, **detail)
            for ind in wipe.indicators.values()
        ]
        stamp = _time(deletion.timestamp)
        return Trace(
            DATA_TYPE,
            stamp,
            DESC_DELETION if stamp else NOT_A_TIME,
            self.result.source,
            matches,
            {
                "artefact": "sdelete_wipe",
                "file_name": original,
                "original_name": original,
                "original_time": _iso(wipe.original.timestamp)
                if wipe.original
                else None,
                "first_letter_name": wipe.first.name,
                "last_letter_name": wipe.last.name,
                "letters": letters,
                "renames": wipe.renames,
                "file_reference": reference(wipe.first.file_reference),
                "parent_file_reference": reference(wipe.first.parent_reference),
                "reasons": words(deletion.reasons, REASONS),
                "wipe_start_time": _iso(wipe.first.timestamp),
                "first_time": _iso(wipe.first.timestamp),
                "last_time": _iso(deletion.timestamp),
                "usn": wipe.first.usn,
                "last_usn": deletion.usn,
                "offset": (wipe.original or wipe.first).offset,
                "last_offset": deletion.offset,
                "deleted": True,
            },
        )


def _blocks(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Data ranges widened to whole journal blocks and merged: clusters can be
    smaller than a block, and a block is walked from its start, once."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        start -= start % BLOCK_SIZE
        end += -end % BLOCK_SIZE
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


def _first(item: tuple[int, Trace]) -> int:
    return item[0]


def _source_info(record: Record) -> dict[str, Any]:
    # Set by replication or data management (not the user); rare, so only shown
    # when there.
    if not record.source_info:
        return {}
    return {"source_info": f"0x{record.source_info:08x}"}


_PATH = re.compile(r"^/\$Extend/\$UsnJrnl:\$J$")

manager.register(
    manager.ParserDefinition(
        name="usn",
        evidence="remnant",
        data_type=DATA_TYPE,
        description="NTFS USN change journal ($UsnJrnl:$J): tool names, SDelete wipes",
        times={"update_time": DESC_UPDATE, "deletion_time": DESC_DELETION},
        report_fields=("file_name", "file_reference", "reasons", "usn"),
        indicator_sections=("filenames",),
        paths=_PATH,
        parse=lambda stream, source, compiled, _name: parse_usn(
            stream, source, compiled
        ),
    )
)
