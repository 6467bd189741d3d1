r"""Deleted keys of a hive: key cells (nk) left in its free space.

Windows frees the cells of a deleted key but leaves their bytes until the space
is reused, so a service key removed after use (WCE's WCESERVICE, PWDumpX's) is
often still there: its name, its last written time, its parent (from which its
path is rebuilt) and, when their cells were not reused either, its values.
Only free cells are searched: a live key is the walk's.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator

BASE_BLOCK_SIZE = 4096
_BIN_HEADER_SIZE = 32
_NK = struct.Struct("<2sHQ4xI4x4x4x4xII4x4x4x4x4x4x4xHH")
_VK = struct.Struct("<2sHIIIH2x")
_KEY_ROOT = 0x0004  # KEY_HIVE_ENTRY
_KEY_COMP_NAME = 0x0020  # the name is Latin-1, not UTF-16LE
_VALUE_COMP_NAME = 0x0001
_MAX_DEPTH = 512
_MAX_VALUES = 1024
_MAX_DATA = 16 * 1024
_FILETIME_MAX = 0x01F0_0000_0000_0000  # beyond the year 2600: not a time
_TEXT_TYPES = (1, 2, 7)  # REG_SZ, REG_EXPAND_SZ, REG_MULTI_SZ
_DWORD_TYPES = (4, 5)  # REG_DWORD, REG_DWORD_BIG_ENDIAN


@dataclasses.dataclass
class DeletedKey:
    path: str  # below the root key, "\" separated, as the walk spells it
    offset: int  # of its nk cell, from the first hive bin
    last_written: int  # FILETIME; 0 when unset
    values: list[tuple[str, str | None]]  # (name, data as text) that were readable


def deleted_keys(data: bytes) -> Iterator[DeletedKey]:
    """Every key cell in free space whose path can be rebuilt to the root."""
    for start, end in free_cells(data):
        # A free cell may hold several old cells; each began 8-byte aligned.
        position = start
        while True:
            position = data.find(b"nk", position, end)
            if position < 0:
                break
            cell = position - 4
            if (cell - BASE_BLOCK_SIZE) % 8 == 0:
                key = _deleted_key(data, cell)
                if key is not None:
                    yield key
            position += 2


def free_cells(data: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each free cell, bin by bin; stops at the first bad bin."""
    position = BASE_BLOCK_SIZE
    while position + _BIN_HEADER_SIZE <= len(data):
        if data[position : position + 4] != b"hbin":
            return
        (size,) = struct.unpack_from("<I", data, position + 8)
        if size < _BIN_HEADER_SIZE or size % 4096 or position + size > len(data):
            return
        cell, end = position + _BIN_HEADER_SIZE, position + size
        while cell + 4 <= end:
            (length,) = struct.unpack_from("<i", data, cell)
            span = abs(length)
            if span < 8 or span % 8 or cell + span > end:
                break  # a damaged bin: its other cells are not guessed at
            if length > 0:
                yield cell + 4, cell + span
            cell += span
        position = end


def _record(data: bytes, offset: int, signature: bytes) -> int | None:
    """The position of a record with `signature` in the cell at hive `offset`."""
    cell = BASE_BLOCK_SIZE + offset
    if offset < 0 or cell + 6 > len(data) or offset % 8:
        return None
    if data[cell + 4 : cell + 6] != signature:
        return None
    return cell + 4


def _key_name(data: bytes, record: int) -> tuple[str, int, int, int, int] | None:
    """(name, flags, last written, parent offset, values (count, list offset))."""
    if record + _NK.size > len(data):
        return None
    (_, flags, written, parent, values, value_list, name_length, _) = _NK.unpack_from(
        data, record
    )
    raw = data[record + _NK.size : record + _NK.size + name_length]
    if not name_length or len(raw) != name_length:
        return None
    try:
        name = raw.decode("latin-1" if flags & _KEY_COMP_NAME else "utf-16-le")
    except UnicodeDecodeError:
        return None
    if "\\" in name or not name.isprintable() or written > _FILETIME_MAX:
        return None
    return name, flags, written, parent, (values << 32) | value_list


def _deleted_key(data: bytes, cell: int) -> DeletedKey | None:
    parsed = _key_name(data, cell + 4)
    if parsed is None:
        return None
    name, flags, written, parent, packed = parsed
    if flags & _KEY_ROOT:
        return None
    parts = [name]
    seen = {cell}
    offset = parent
    for _ in range(_MAX_DEPTH):
        record = _record(data, offset, b"nk")
        if record is None or record - 4 in seen:
            return None  # the parent is gone or overwritten: no path
        seen.add(record - 4)
        up = _key_name(data, record)
        if up is None:
            return None
        if up[1] & _KEY_ROOT:
            return DeletedKey(
                "\\".join(reversed(parts)),
                cell - BASE_BLOCK_SIZE,
                written,
                _values(data, packed >> 32, packed & 0xFFFFFFFF),
            )
        parts.append(up[0])
        offset = up[3]
    return None


def _values(data: bytes, count: int, list_offset: int) -> list[tuple[str, str | None]]:
    """The values of a deleted key whose cells still hold value records."""
    if not count or count > _MAX_VALUES:
        return []
    start = BASE_BLOCK_SIZE + list_offset + 4
    if list_offset % 8 or start + 4 * count > len(data):
        return []
    values = []
    for (offset,) in struct.iter_unpack("<I", data[start : start + 4 * count]):
        record = _record(data, offset, b"vk")
        if record is None or record + _VK.size > len(data):
            continue
        _, name_length, size, data_offset, kind, flags = _VK.unpack_from(data, record)
        raw = data[record + _VK.size : record + _VK.size + name_length]
        try:
            name = raw.decode("latin-1" if flags & _VALUE_COMP_NAME else "utf-16-le")
        except UnicodeDecodeError:
            continue
        values.append((name, _value_text(data, kind, size, data_offset)))
    return values


def _value_text(data: bytes, kind: int, size: int, offset: int) -> str | None:
    if size & 0x80000000:  # up to 4 bytes kept in the offset field itself
        raw = struct.pack("<I", offset)[: size & 0x7FFFFFFF]
    else:
        start = BASE_BLOCK_SIZE + offset + 4
        if size > _MAX_DATA or offset % 8 or start + size > len(data):
            return None
        raw = data[start : start + size]
    if kind in _TEXT_TYPES:
        text = raw.decode("utf-16-le", errors="replace").rstrip("\x00")
        return text.replace("\x00", "\n") if kind == 7 else text
    if kind in _DWORD_TYPES and len(raw) == 4:
        return str(struct.unpack("<I" if kind == 4 else ">I", raw)[0])
    return None
