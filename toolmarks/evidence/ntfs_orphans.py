"""NTFS orphan files as TSK lists them in $OrphanFiles, without its second walk.

Opening TSK's virtual $OrphanFiles directory makes TSK walk the whole tree
again to learn which deleted MFT entries some name points to
(tsk_fs_dir_load_inum_named: one random $MFT read per name, a quarter of the
walk of 100,000 small files), then list the unallocated, used entries no name
points to (tsk_fs_dir_find_orphans). The walk already meets every name, so it
notes here what TSK's own walk would (NamedEntries) and list_orphans() does the
rest the way TSK does, reading only the MFT entries the walk did not account for.

TSK's rules copied here (sleuthkit tsk/fs/fs_dir.c and ntfs.c):
- a name accounts for an unallocated entry when TSK loads the entry for it:
  the name's sequence number is the entry's minus one (NTFS bumps it on
  delete), or the entry cannot be loaded whole (TSK keeps it half-loaded);
- TSK's walk goes into a directory name whose entry it loaded as a directory,
  allocated name or both deleted, never into a directory twice on one path,
  nor past 128 levels or 4,096 bytes of path;
- an orphan is a base MFT record (no base reference) without the in-use flag,
  with attributes, that no such name accounts for, in entry order; it is named
  by its first non-DOS $FILE_NAME (at most 256 UTF-8 bytes) or OrphanFile-N;
- the deleted names below an orphan directory (up to the first that points at
  an allocated entry or one already seen) are not listed at the top again:
  later entries are skipped, earlier ones removed by moving the last one into
  their place.
Where the image leaves TSK's answer open to doubt (an entry it cannot load, a
tree deeper than its limits) list_orphans() says why, and the caller lets TSK
list $OrphanFiles itself.
"""

from __future__ import annotations

import re
import struct
from typing import Any

import pytsk3

_T = pytsk3
_META_ALLOC = int(_T.TSK_FS_META_FLAG_ALLOC)
_META_UNALLOC = int(_T.TSK_FS_META_FLAG_UNALLOC)
_META_USED = int(_T.TSK_FS_META_FLAG_USED)
_META_DIR = int(_T.TSK_FS_META_TYPE_DIR)
_META_DIRS = (_META_DIR, int(_T.TSK_FS_META_TYPE_VIRT_DIR))
_NAME_ALLOC = int(_T.TSK_FS_NAME_FLAG_ALLOC)
# Name types TSK's walk goes into (TSK_FS_IS_DIR_NAME, or not known).
_NAME_DIRS = (
    int(_T.TSK_FS_NAME_TYPE_DIR),
    int(_T.TSK_FS_NAME_TYPE_VIRT_DIR),
    int(_T.TSK_FS_NAME_TYPE_UNDEF),
)
_ATTR_DATA = int(_T.TSK_FS_ATTR_TYPE_NTFS_DATA)
_ATTR_FNAME = int(_T.TSK_FS_ATTR_TYPE_NTFS_FNAME)
_READ_RAW = int(_T.TSK_FS_FILE_READ_FLAG_SLACK)  # past $MFT's initialized size too
_ATTRS_LOADED = 1  # TSK_FS_META_ATTR_STUDIED, as in tsk.py
_DOTS = (b".", b"..", ".", "..")

# tsk_fs_dir_walk's limits (fs_dir.c MAX_DEPTH, DIR_STRSZ).
_MAX_DEPTH = 128
_MAX_PATH = 4096
_UPDATE_STRIDE = 512  # NTFS_UPDATE_SEQ_STRIDE
_MFT_IN_USE = 0x0001
_FNAME_DOS = 2
_NAME2_SIZE = 512  # TSK_FS_META_NAME_LIST_NSIZE
_ORPHAN_NAME_SIZE = 256  # the name buffer tsk_fs_dir_find_orphans copies into
_RECORDS_A_READ = 256

_ENTRY_ERRORS = (OSError, RuntimeError, ValueError, AttributeError, TypeError)


class _Unsure(Exception):
    """TSK's answer cannot be told for sure: let TSK list $OrphanFiles."""


def tsk_keeps(name_seq: int, meta: Any) -> bool:
    """Whether TSK's directory walk keeps an entry it loads for a name
    (ntfs_inode_lookup): same sequence number, one less for a deleted entry,
    or an entry it could not load whole."""
    if int(meta.attr_state) != _ATTRS_LOADED:
        return True
    seq = int(meta.seq)
    if int(meta.flags) & _META_UNALLOC and seq > 0:
        seq -= 1
    return name_seq == seq


def tsk_goes_into(
    name: bytes | str, name_alloc: bool, name_type: int, meta: Any, orphan_inum: int
) -> bool:
    """Whether tsk_fs_dir_walk goes into a name whose entry it kept (meta)."""
    return (
        meta is not None
        and name_type in _NAME_DIRS
        and int(meta.type) in _META_DIRS
        and (name_alloc or bool(int(meta.flags) & _META_UNALLOC))
        and name not in _DOTS
        and int(meta.addr) != orphan_inum
    )


class NamedEntries:
    """What the walk learns for the orphan listing: which MFT entries a name
    accounts for the way TSK's own walk would, or are known to be in use."""

    __slots__ = ("known", "orphan_dir", "orphan_inum", "problem", "walked")

    def __init__(self, orphan_inum: int) -> None:
        self.orphan_inum = orphan_inum
        # One byte an MFT entry: set when it is no orphan for sure (its record
        # says in use, or a name TSK's walk meets accounts for it).
        self.known = bytearray(orphan_inum + 1)
        # Directories TSK's walk would go into that this walk went into too.
        self.walked: set[int] = set()
        self.problem: str | None = None
        self.orphan_dir: Any = None  # the walk's entry of $OrphanFiles

    def note(self, meta_addr: int, name_seq: int, meta: Any, counted: bool) -> None:
        """One name and the entry the walk loaded for it; counted: TSK's walk
        meets this name too."""
        if int(meta.flags) & _META_ALLOC or (counted and tsk_keeps(name_seq, meta)):
            try:
                self.known[meta_addr] = 1
            except IndexError:
                self.doubt(f"a name points past the MFT (entry {meta_addr})")

    def doubt(self, why: str) -> None:
        if self.problem is None:
            self.problem = why


def list_orphans(fs_info: Any, named: NamedEntries) -> list[tuple[int, bytes]] | str:
    """(MFT entry, name) of each entry TSK lists in $OrphanFiles, in its order;
    or why TSK itself should list them."""
    if named.problem is not None:
        return named.problem
    try:
        return _Orphans(fs_info, named).find()
    except _Unsure as why:
        return str(why)
    except _ENTRY_ERRORS as error:
        return f"orphan listing failed: {error}"


class _Orphans:
    """tsk_fs_dir_find_orphans over the MFT entries the walk left unknown."""

    def __init__(self, fs_info: Any, named: NamedEntries) -> None:
        self._fs_info = fs_info
        self._named = named
        self._count = named.orphan_inum  # MFT entries: 0 .. count - 1
        self._seen: set[int] = set()  # TSK's orphan_subdir_list
        self._mft = fs_info.open_meta(inode=0)
        data = [
            attribute.info
            for attribute in self._mft
            if int(attribute.info.type) == _ATTR_DATA and not attribute.info.name
        ]
        if not data or not self._count:
            raise _Unsure("$MFT has no $DATA attribute")
        self._data_id = int(data[0].id)
        self._record = int(data[0].size) // self._count
        if (
            self._record < _UPDATE_STRIDE
            or self._record & (self._record - 1)
            or int(data[0].size) // self._record != self._count
        ):
            raise _Unsure(f"unexpected MFT record size {self._record}")

    def find(self) -> list[tuple[int, bytes]]:
        orphans: list[tuple[int, bytes]] = []
        unknown = bytes(self._named.known[: self._count])
        for run in re.finditer(b"\x00+", unknown):
            for first in range(run.start(), run.end(), _RECORDS_A_READ):
                last = min(first + _RECORDS_A_READ, run.end())
                self._check(first, last, orphans)
        # Entries listed before an orphan directory that holds them go, the
        # last one moved into their place and not checked itself (as TSK).
        index = 0
        while index < len(orphans):
            if orphans[index][0] in self._seen:
                orphans[index] = orphans[-1]
                orphans.pop()
            index += 1
        return orphans

    def _check(self, first: int, last: int, orphans: list[tuple[int, bytes]]) -> None:
        """TSK's inode walk callback over the entries first .. last - 1."""
        size = self._record
        wanted = (last - first) * size
        try:
            data = self._mft.read_random(
                first * size, wanted, _ATTR_DATA, self._data_id, _READ_RAW
            )
        except OSError as error:
            raise _Unsure(f"MFT entries {first}-{last - 1}: {error}") from None
        if len(data) != wanted:
            raise _Unsure(f"MFT entries {first}-{last - 1}: short read")
        for inum in range(first, last):
            offset = (inum - first) * size
            # Both fields lie before the first update sequence number.
            flags, base = struct.unpack_from("<H8xQ", data, offset + 22)
            if base & 0xFFFFFFFFFFFF or flags & _MFT_IN_USE:
                continue  # an extension record, or allocated
            if inum in self._seen or not _fixups_hold(data, offset, size):
                continue  # in an orphan directory, or corrupt
            try:
                tsk_file = self._fs_info.open_meta(inode=inum)
            except OSError as error:
                raise _Unsure(f"MFT entry {inum}: {error}") from None
            meta = tsk_file.info.meta
            if meta is None or not int(meta.flags) & _META_USED:
                continue
            if not int(meta.flags) & _META_UNALLOC:
                raise _Unsure(f"MFT entry {inum}: TSK reads it as allocated")
            orphans.append((inum, _orphan_name(tsk_file, inum)))
            if int(meta.type) == _META_DIR:
                self._mark(inum, 0, 0, [])

    def _mark(self, inum: int, depth: int, path_size: int, up: list[int]) -> bool:
        """tsk_fs_dir_walk of an orphan directory with load_orphan_dir_walk_cb:
        notes the entries of its deleted names; False when TSK stops."""
        try:
            directory = self._fs_info.open_dir(inode=inum)
        except (OSError, RuntimeError):
            return True  # TSK goes on with the next entry
        try:
            files = list(directory)
        except (OSError, RuntimeError) as error:
            raise _Unsure(f"directory {inum}: {error}") from None
        for tsk_file in files:
            name_info = tsk_file.info.name
            name = name_info.name
            name_alloc = bool(int(name_info.flags) & _NAME_ALLOC)
            meta = self._kept_meta(tsk_file, name_alloc)
            if meta is not None and not name_alloc and name not in _DOTS:
                addr = int(meta.addr)
                if int(meta.flags) & _META_ALLOC or addr in self._seen:
                    return False
                self._seen.add(addr)
            if not tsk_goes_into(
                name, name_alloc, int(name_info.type), meta, self._named.orphan_inum
            ):
                continue
            child = int(name_info.meta_addr)
            if child in up:
                continue
            size = len(name)
            if depth >= _MAX_DEPTH or path_size + size >= _MAX_PATH:
                raise _Unsure(f"directory {inum}: deeper than TSK walks")
            up.append(child)
            if not self._mark(child, depth + 1, path_size + size + 1, up):
                return False
            up.pop()
        return True

    def _kept_meta(self, tsk_file: Any, name_alloc: bool) -> Any:
        """The entry TSK's walk keeps for a name, or None."""
        name_info = tsk_file.info.name
        addr = int(name_info.meta_addr)
        if not addr and not name_alloc:
            return None
        meta = tsk_file.info.meta
        if meta is None:
            try:
                meta = self._fs_info.open_meta(inode=addr).info.meta
            except OSError as error:
                # TSK keeps what it loaded of such an entry, or nothing.
                raise _Unsure(f"MFT entry {addr}: {error}") from None
        if meta is None or not tsk_keeps(int(name_info.meta_seq), meta):
            return None
        return meta


def _fixups_hold(data: bytes, offset: int, size: int) -> bool:
    """ntfs_dinode_lookup's checks of a record's update sequence."""
    upd_off, upd_cnt = struct.unpack_from("<HH", data, offset + 4)
    if upd_cnt > 0 and (upd_cnt - 1) * _UPDATE_STRIDE > size:
        return False
    if upd_off + 3 > size:
        return False
    signature = data[offset + upd_off : offset + upd_off + 2]
    for index in range(1, upd_cnt):
        at = index * _UPDATE_STRIDE - 2
        if at + 2 > size:
            return False
        if data[offset + at : offset + at + 2] != signature:
            return False
    return True


def _orphan_name(tsk_file: Any, inum: int) -> bytes:
    """The name TSK gives an orphan: its first non-DOS $FILE_NAME, cut to 256
    UTF-8 bytes, or OrphanFile-N."""
    name = b""
    for attribute in tsk_file:
        info = attribute.info
        if int(info.type) != _ATTR_FNAME:
            continue
        content = tsk_file.read_random(0, int(info.size), _ATTR_FNAME, int(info.id))
        if len(content) < 0x42:
            raise _Unsure(f"MFT entry {inum}: short $FILE_NAME")
        length, namespace = content[0x40], content[0x41]
        if namespace == _FNAME_DOS:
            continue
        if 0x42 + 2 * length > len(content):
            # TSK reads on past the attribute, into the record.
            raise _Unsure(f"MFT entry {inum}: $FILE_NAME longer than its attribute")
        name = tsk_utf8(content[0x42 : 0x42 + 2 * length])
        name = name.split(b"\x00", 1)[0][:_ORPHAN_NAME_SIZE]
        break
    return name or f"OrphanFile-{inum}".encode()


def tsk_utf8(utf16le: bytes) -> bytes:
    """UTF-16LE to UTF-8 as TSK's lenient tsk_UTF16toUTF8 into a $FILE_NAME
    buffer: a lone surrogate (and the unit after a lone high one) becomes ^, a
    high surrogate at the end or a character past 512 bytes ends the name."""
    units = struct.unpack(f"<{len(utf16le) // 2}H", utf16le[: len(utf16le) // 2 * 2])
    out = bytearray()
    index = 0
    while index < len(units):
        unit = units[index]
        index += 1
        if 0xD800 <= unit <= 0xDBFF:
            if index >= len(units):
                break
            low = units[index]
            index += 1
            if 0xDC00 <= low <= 0xDFFF:
                unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
            else:
                unit = 0x5E
        elif 0xDC00 <= unit <= 0xDFFF:
            unit = 0x5E
        encoded = chr(unit).encode("utf-8")
        if len(out) + len(encoded) > _NAME2_SIZE:
            break
        out += encoded
    return bytes(out)
