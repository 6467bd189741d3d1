"""A repaired in-memory copy of a damaged hive, so libregf can read what is left.

libregf reads every hive-bin header when it opens a hive and refuses the whole
file if one is wrong or missing, and it drops every cell of a bin that holds
one impossible cell size; a truncated or partly overwritten hive then loses all
or most of its keys. The repair rebuilds the chain of hive-bin headers, cuts
the hive at the last readable bin, turns each impossible cell size into free
space reaching to the next sound cell, finds the root key if its offset is
wrong and rewrites the base block checksum. Nothing else is changed: keys whose
cells were lost fail one by one, which the parser reports.
"""

from __future__ import annotations

import struct

BASE_BLOCK_SIZE = 4096
_BIN_SIGNATURE = b"hbin"
_BIN_ALIGNMENT = 4096
_ROOT_FLAG = 0x0004  # KEY_HIVE_ENTRY: the root key's nk cell
_MAX_BIN_SIZE = 64 * 1024 * 1024
_CELL_SIGNATURES = {b"nk", b"vk", b"lf", b"lh", b"li", b"ri", b"sk"}


def checksum(base_block: bytes | bytearray) -> int:
    """The base block checksum: XOR of its first 127 dwords, never 0 or -1."""
    value = 0
    for (dword,) in struct.iter_unpack("<I", bytes(base_block[:508])):
        value ^= dword
    if value == 0xFFFFFFFF:
        return 0xFFFFFFFE
    return value or 1


def _bin_at(data: bytes | bytearray, pos: int) -> int | None:
    """The size of a sound hive bin at `pos`, or None."""
    if data[pos : pos + 4] != _BIN_SIGNATURE or pos + 12 > len(data):
        return None
    offset, size = struct.unpack_from("<II", data, pos + 4)
    if offset != pos - BASE_BLOCK_SIZE or size < _BIN_ALIGNMENT:
        return None
    if size % _BIN_ALIGNMENT or size > _MAX_BIN_SIZE:
        return None
    return size


def _next_bin(data: bytes | bytearray, pos: int, end: int) -> int | None:
    """The next sound hive bin after `pos`, searching 4 KiB boundaries."""
    candidate = data.find(_BIN_SIGNATURE, pos + _BIN_ALIGNMENT, end)
    while candidate != -1:
        if candidate % _BIN_ALIGNMENT == 0 and _bin_at(data, candidate):
            return candidate
        candidate = data.find(_BIN_SIGNATURE, candidate + 1, end)
    return None


def _cell_at(data: bytes | bytearray, pos: int, end: int) -> bool:
    """Whether an allocated key, value, list or security cell starts at `pos`."""
    (size,) = struct.unpack_from("<i", data, pos)
    return (
        size < 0
        and -size % 8 == 0
        and pos - size <= end
        and bytes(data[pos + 4 : pos + 6]) in _CELL_SIGNATURES
    )


def _repair_cells(data: bytearray, start: int, end: int) -> int:
    """Makes the cells of one hive bin a sound chain again; returns the fixes.

    libregf rejects a whole bin when one cell size is wrong. A wrong size is
    replaced by one free cell reaching to the next cell that looks sound, so
    the cells after the damage are found again; only the damaged ones are lost.
    """
    pos = start + 32
    fixes = 0
    while pos + 8 <= end:
        (size,) = struct.unpack_from("<i", data, pos)
        length = abs(size)
        if length >= 8 and length % 8 == 0 and pos + length <= end:
            pos += length
            continue
        following = next(
            (q for q in range(pos + 8, end - 8, 8) if _cell_at(data, q, end)), end
        )
        struct.pack_into("<i", data, pos, following - pos)
        fixes += 1
        pos = following
    return fixes


def _find_root(data: bytes | bytearray, end: int) -> int | None:
    """The hive-bins offset of the first allocated nk cell flagged as the root."""
    pos = data.find(b"nk", BASE_BLOCK_SIZE, end)
    while pos != -1:
        if pos >= BASE_BLOCK_SIZE + 4:
            (cell_size,) = struct.unpack_from("<i", data, pos - 4)
            (flags,) = struct.unpack_from("<H", data, pos + 2)
            if cell_size < 0 and flags & _ROOT_FLAG:
                return pos - 4 - BASE_BLOCK_SIZE
        pos = data.find(b"nk", pos + 2, end)
    return None


def repair(data: bytes) -> tuple[bytes, list[str]] | None:
    """A copy of a hive libregf can open, and what was changed; None if hopeless."""
    if len(data) < BASE_BLOCK_SIZE + 32 or data[:4] != b"regf":
        return None
    out = bytearray(data)
    del data  # the caller keeps no reference: at most two copies at a time
    notes: list[str] = []
    (declared,) = struct.unpack_from("<I", out, 0x28)
    end = len(out)
    if BASE_BLOCK_SIZE + declared <= end and declared % _BIN_ALIGNMENT == 0:
        end = BASE_BLOCK_SIZE + declared
    pos = BASE_BLOCK_SIZE
    rebuilt = cells = 0
    while pos + 32 <= end:
        size = _bin_at(out, pos)
        if size is None or pos + size > end:
            following = _next_bin(out, pos, end)
            if following is not None:
                # A damaged header between two sound bins: span the gap.
                size = following - pos
                out[pos : pos + 12] = _BIN_SIGNATURE + struct.pack(
                    "<II", pos - BASE_BLOCK_SIZE, size
                )
                rebuilt += 1
            elif size is not None:
                # The last bin is cut short: keep its whole 4 KiB pages.
                size = (end - pos) // _BIN_ALIGNMENT * _BIN_ALIGNMENT
                if not size:
                    break
                struct.pack_into("<I", out, pos + 8, size)
                notes.append(f"last hive bin at offset {pos} cut to {size} bytes")
            else:
                break
        cells += _repair_cells(out, pos, pos + size)
        pos += size
    if rebuilt:
        notes.append(f"{rebuilt} damaged hive-bin headers rebuilt")
    if cells:
        notes.append(f"{cells} damaged cell sizes replaced by free cells")
    if pos < BASE_BLOCK_SIZE + declared:
        notes.append(
            f"hive bins end at offset {pos}, not {BASE_BLOCK_SIZE + declared}: "
            "the rest is missing or unreadable"
        )
    if pos <= BASE_BLOCK_SIZE:
        return None
    del out[pos:]
    struct.pack_into("<I", out, 0x28, pos - BASE_BLOCK_SIZE)
    (root,) = struct.unpack_from("<I", out, 0x24)
    cell = BASE_BLOCK_SIZE + root + 4
    if out[cell : cell + 2] != b"nk" or cell + 4 > pos:
        found = _find_root(out, pos)
        if found is None:
            return None
        struct.pack_into("<I", out, 0x24, found)
        notes.append(f"root key offset {root} is wrong; root key found at {found}")
    struct.pack_into("<I", out, 0x1FC, checksum(out))
    return bytes(out), notes
