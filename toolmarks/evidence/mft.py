"""Walking an NTFS volume in $MFT record order, listing what TSK's walk lists.

TSK 4.15 builds an NTFS directory listing from the directory's $I30 index
entries plus every MFT entry whose $FILE_NAME names the directory at its
sequence number (ntfs_dent.cpp), and lists the deleted entries no name reaches
under $OrphanFiles. This walk reads each $MFT record once, in order, with
libfsntfs and builds the same paths from the parent references; a pass over
the directories' raw $I30 adds the names only an index holds. The directories
are read first (MftWalker.plan), so the records can be walked in ranges, each
by the scan worker that reads their files (engine.scan): the main process of a
scan of 100,000 small files in 1,000 folders reads those folders only. TSK's
listing of one directory also grows with the square of its entries.

TSK still reads, entry by entry, what TSKWalker knows how to list: entries
with alternate data streams or an attribute list, data runs TSK may refuse,
names only an index holds, and $OrphanFiles. Where the volume leaves the
answer open (a record libfsntfs refuses, a tree deeper than TSK walks, a
directory only an index names), TSKWalker walks the whole volume instead.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
import struct
from collections.abc import Iterator
from typing import Any

import pytsk3
from dfdatetime import definitions as dfdatetime_definitions
from dfvfs.lib import tsk_time

from toolmarks.evidence import fsntfs, ntfs_orphans, tsk
from toolmarks.evidence.model import FileItem, LazyTimes, Volume

ROOT = 5
_FILE_NAME = 0x30
_ATTRIBUTE_LIST = 0x20
_INDEX_ROOT = 0x90
_INDEX_ALLOCATION = 0xA0
_DOS = 2  # $FILE_NAME name space: the 8.3 name only
_WIN_DOS = 3  # one name for both
_INDEX = 0xFFFFFFFFFFFF  # of a file reference (the rest is a sequence number)
# TSK's walk stops at 128 levels and at paths of 4,096 bytes.
_MAX_DEPTH = 128
_MAX_PATH = 4096
_NAME_DIR = int(pytsk3.TSK_FS_NAME_TYPE_DIR)
_NAME_REG = int(pytsk3.TSK_FS_NAME_TYPE_REG)
_NAME_VIRT_DIR = int(pytsk3.TSK_FS_NAME_TYPE_VIRT_DIR)
_ATTRS_LOADED = 1  # TSK_FS_META_ATTR_STUDIED, as in tsk.py
_PRECISION = dfdatetime_definitions.PRECISION_100_NANOSECONDS
_1601_TO_1970 = 116_444_736_000_000_000  # FILETIME of the POSIX epoch
_TIME_KEYS = ("creation", "modification", "access", "change")
_RECORD_NAME_BYTES = 256  # the name TSK copies from an MFT record's $FILE_NAME
_RECORDS_A_READ = 4096
# MFT record header flags (offset 22): bit 1 marks a directory.
_DIRECTORY_FLAG = bytes(int(bool(flags & 2)) for flags in range(256))

_u16 = struct.Struct("<H").unpack_from
_u32 = struct.Struct("<I").unpack_from
_u64 = struct.Struct("<Q").unpack_from
# An index entry's file reference, length, content length and, after 4 bytes
# of flags, its $FILE_NAME's parent reference.
_ENTRY_HEAD = struct.Struct("<QHH4xQ").unpack_from


class Doubt(Exception):
    """This walk cannot tell TSK's answer for sure: TSK walks the volume."""


class FileTimes(LazyTimes):
    """An entry's $STANDARD_INFORMATION times as TSK reports them (TSKTime),
    made when first read."""

    __slots__ = ("_filetimes",)

    def __init__(self, filetimes: tuple[int, int, int, int]) -> None:
        super().__init__()
        self._filetimes = filetimes

    def _make(self) -> dict[str, Any]:
        values = {}
        for key, filetime in zip(_TIME_KEYS, self._filetimes, strict=True):
            # TSK's nt2unixtime (0 before 1970 and past 2106) and nt2nano.
            seconds = max(0, filetime - _1601_TO_1970) // 10_000_000
            if seconds > 0xFFFFFFFF:
                seconds = 0
            fraction = filetime % 10_000_000 * 100
            if seconds or fraction:
                values[key] = tsk_time.TSKTime(
                    fraction_of_second=fraction, precision=_PRECISION, timestamp=seconds
                )
        return values


class _Record:
    """What one base MFT record says, read once."""

    __slots__ = (
        "alloc",
        "data_loads",
        "entry",
        "is_dir",
        "location",
        "names",
        "seq",
        "size",
        "times",
        "whole",
    )

    seq: int
    alloc: bool
    is_dir: bool
    names: list[tuple[int, int, str]]  # parent, its sequence number, name
    size: int
    times: tuple[int, int, int, int] | None
    location: int | None
    # Whether TSK loads the default $DATA attribute: it has one, its data
    # runs within the volume.
    data_loads: bool
    entry: Any  # the libfsntfs entry, while its items are made
    # False when TSK lists the entry's items (alternate data streams, an
    # attribute list, data runs TSK may refuse).
    whole: bool


@dataclasses.dataclass
class MftPlan:
    """What a walk reads before the records (MftWalker.plan): the number of
    MFT entries, the directories and the paths they give."""

    entries: int
    paths: _Paths


# The names directories' indexes hold (MftWalker.index_names), by the entry
# they name: (directory, its path, name).
IndexNames = dict[int, list[tuple[int, str, "_Name"]]]


@dataclasses.dataclass
class Seen:
    """What a walk of a range of entries notes for the rest of the walk: the
    entries it listed, and the (entry, directory, name) its records'
    $FILE_NAMEs give in the directories of the named tree."""

    known: list[int] = dataclasses.field(default_factory=list)
    names: list[tuple[int, int, str]] = dataclasses.field(default_factory=list)


def tsk_name(name: str, limit: int | None = None) -> str:
    """A name as TSK spells it: its lenient UTF-16 to UTF-8, cut to limit
    bytes (TSK lists the names of an MFT record's $FILE_NAMEs in 256 bytes,
    those of an index in full)."""
    if name.isascii() and "\x00" not in name:
        return name[:limit]
    raw = ntfs_orphans.tsk_utf8(name.encode("utf-16-le", "surrogatepass"))
    return raw.split(b"\x00", 1)[0][:limit].decode("utf-8", "backslashreplace")


class MftWalker:
    """Walks every name of an NTFS volume TSK opened, as TSKWalker does."""

    def __init__(self, fs: tsk.TSKFileSystem, volume: Volume, warn: tsk.Warn) -> None:
        self._fs = fs
        self._volume = volume
        self._warn = warn
        # TSK's walk after a doubt warns again of what this walk warned of.
        self._warned: set[tuple[str, str]] = set()
        self._tsk = tsk.TSKWalker(fs, volume, self._warn_once)
        self._volume_bytes = int(fs.fs_info.info.block_count) * fs.block_size
        # Why TSKWalker walked the volume instead, once walk() began.
        self.doubt: str | None = None

    def walk(self) -> Iterator[FileItem]:
        """The whole walk in one process: plan, index names, the entries in
        order, the rest."""
        # What was yielded before a doubt stopped this walk: TSK's walk then
        # lists the rest.
        yielded: set[tuple[str, str, int | None]] = set()
        try:
            plan = self.plan()
            waiting = self.index_names(plan)
            seen = Seen()
            for item in itertools.chain(
                self.root_streams(),
                self.entries(plan, 0, plan.entries, seen),
                self.rest(plan, waiting, [seen]),
            ):
                yielded.add((item.path, item.stream, item.inode))
                yield item
        except (Doubt, *fsntfs.ERRORS) as why:
            self.doubt = fsntfs.short(why)
            for item in self._tsk.walk():
                if (item.path, item.stream, item.inode) not in yielded:
                    yield item

    def root_streams(self) -> Iterator[FileItem]:
        """The root directory's own ADS, which no directory lists."""
        return self._tsk.root_streams()

    def _warn_once(self, location: str, message: str) -> None:
        if (location, message) not in self._warned:
            self._warned.add((location, message))
            self._warn(location, message)

    def plan(self) -> MftPlan:
        """The directories and their paths, read before the records: then each
        entry's items go out as soon as its record is read (by this walk or a
        scan worker's, for a range of records).

        Raises:
          Doubt: TSK's walk must walk the volume.
        """
        fs = self._fs
        if fs.fallback is None or not fs.is_ntfs:
            raise Doubt("not an NTFS volume libfsntfs reads")
        try:
            volume = fs.fallback.volume()
            flagged = _flagged_directories(fs.fallback)
            dirs = {index: self._read(volume, index) for index in flagged}
            paths = _Paths(dirs)
            for index, record in dirs.items():
                # Where TSK's walk would not go (too deep, a directory it
                # cannot load), said before any item goes out.
                if record is None or not record.is_dir or record.whole:
                    paths.dir_path(index)
                elif paths.dir_path(index) is not None:
                    meta = fs.fs_info.open_meta(inode=index).info.meta
                    if int(meta.attr_state) != _ATTRS_LOADED:
                        raise Doubt(f"directory {index} is not loaded whole by TSK")
        except fsntfs.ERRORS as error:
            raise Doubt(fsntfs.short(error)) from None
        return MftPlan(volume.number_of_file_entries, paths)

    def index_names(self, plan: MftPlan) -> IndexNames:
        """The names the $I30 of the directories of the named tree hold. Those
        naming a directory its own $FILE_NAMEs do not give are a doubt: TSK's
        walk goes into a directory under the first name it meets.

        Raises:
          Doubt: TSK's walk must walk the volume.
        """
        assert self._fs.fallback is not None
        try:
            return self._index_names(self._fs.fallback.volume(), plan.paths)
        except fsntfs.ERRORS as error:
            raise Doubt(fsntfs.short(error)) from None

    def entries(
        self,
        plan: MftPlan,
        first: int,
        last: int,
        seen: Seen,
    ) -> Iterator[FileItem]:
        """The items of the MFT entries first .. last - 1, in entry order;
        notes in seen what the rest of the walk needs of them.

        Raises:
          Doubt: TSK's walk must walk the volume.
        """
        fs = self._fs
        assert fs.fallback is not None
        volume = fs.fallback.volume()
        paths = plan.paths
        noted = seen.names
        for index in range(first, last):
            record = self._read(volume, index, keep=True)
            if record is None:
                continue
            if record.is_dir and paths.dirs.get(index) is None:
                raise Doubt(f"MFT entry {index}: a directory without the flag")
            for parent, seq, name in record.names:
                if paths.parent_holds(parent, seq):
                    noted.append((index, parent, name))
            if index != ROOT:
                found = paths.paths(record)
                if found:
                    seen.known.append(index)
                    yield from self._listed(index, record, found)
            record.entry = None

    def rest(
        self, plan: MftPlan, waiting: IndexNames, seen: list[Seen]
    ) -> Iterator[FileItem]:
        """What follows the entries: the names only an index holds (waiting:
        index_names()), and $OrphanFiles (seen: what the walks of all the
        entries noted)."""
        fs = self._fs
        names = ntfs_orphans.NamedEntries(int(fs.fs_info.info.last_inum))
        given: set[tuple[int, int, str]] = set()
        for part in seen:
            for index in part.known:
                names.known[index] = 1
            given.update(part.names)
        # TSK lists an index name its entry's $FILE_NAMEs do not give as well.
        extra = [
            (dir_path, name)
            for index, left in waiting.items()
            for parent, dir_path, name in left
            if (index, parent, name.name) not in given
        ]
        for dir_path, name in extra:
            entry = self._tsk.entry(
                _join(dir_path, name.name),
                name.alloc,
                name.addr,
                name.seq,
                _NAME_DIR if name.is_dir else _NAME_REG,
            )
            if entry.meta is not None:
                names.note(entry.meta_addr, entry.meta_seq, entry.meta, True)
            yield from self._entry_items(entry)
        names.orphan_dir = self._tsk.entry(
            "/$OrphanFiles", True, names.orphan_inum, 0, _NAME_VIRT_DIR
        )
        visited = {fs.root_inum, *plan.paths.listed_dirs()}
        yield from self._tsk.orphans(names, visited)

    def _index_names(self, volume: Any, paths: _Paths) -> IndexNames:
        reader = _IndexReader(volume, self._fs.fallback)
        waiting: IndexNames = {}
        for index, record in paths.dirs.items():
            if record is None or not record.is_dir:
                continue
            dir_path = paths.dir_path(index)
            if dir_path is None:
                continue
            seen: set[tuple[int, str]] = set()
            for name in reader.names(index, not record.alloc):
                key = (name.addr, name.name)
                if name.name in (".", "..") or key in seen:
                    continue
                seen.add(key)
                target = paths.dirs.get(name.addr)
                if target is not None and self._walks_into(index, name, target, paths):
                    path = _join(dir_path, name.name)
                    raise Doubt(f"{path}: a directory only an index names")
                waiting.setdefault(name.addr, []).append((index, dir_path, name))
        return waiting

    @staticmethod
    def _walks_into(parent: int, name: _Name, target: _Record, paths: _Paths) -> bool:
        """Whether an index name of a directory entry is one its $FILE_NAMEs
        do not give, and TSK's walk would go into the directory under it (its
        name not one of a reused entry)."""
        if any(
            p == parent and n == name.name and paths.parent_holds(p, s)
            for p, s, n in target.names
        ):
            return False
        if name.alloc:
            return True
        return not target.alloc and ((target.seq - name.seq) & 0xFFFF) <= 1

    def _read(self, volume: Any, index: int, keep: bool = False) -> _Record | None:
        """What MFT entry index says; None if it is unused or an extension.
        keep: with its libfsntfs entry, which its opener then reads through (a
        scan worker reading a range of entries opens none of them again)."""
        try:
            entry = volume.get_file_entry(index)
            count = entry.number_of_attributes
            if not count or entry.base_record_file_reference:
                return None
            record = self._record(entry, count)
        except fsntfs.ERRORS as error:
            raise Doubt(f"MFT entry {index}: {fsntfs.short(error)}") from None
        record.entry = entry if keep else None
        return record

    def _listed(
        self, index: int, record: _Record, found: list[str]
    ) -> Iterator[FileItem]:
        """The items of an entry TSK's walk of the named tree lists under the
        paths its parent references give."""
        refused = False
        if not record.whole:
            try:
                self._fs.fs_info.open_meta(inode=index)
            except OSError:
                # TSK's listing keeps such an entry half-loaded only when its
                # name is allocated, and never walks into it.
                if not record.alloc or record.is_dir:
                    raise Doubt(f"TSK cannot open MFT entry {index}") from None
                refused = True
        for path in found:
            if record.whole or refused:
                item = self._item(index, record, path)
                if refused:
                    yield from self._tsk.through_libfsntfs(item, record.data_loads)
                else:
                    yield item
                continue
            # The name TSK makes of a parent reference: the entry's own
            # sequence number, less one once deleted.
            seq = record.seq if record.alloc else (record.seq - 1) & 0xFFFF
            kind = _NAME_DIR if record.is_dir else _NAME_REG
            entry = self._tsk.entry(path, record.alloc, index, seq, kind)
            yield from self._entry_items(entry)

    def _entry_items(self, entry: tsk.Entry) -> Iterator[FileItem]:
        try:
            yield from self._tsk.items(entry)
        except tsk.ENTRY_ERRORS as exception:
            self._warn(self._volume.where(entry.path), f"unreadable entry: {exception}")

    def _item(self, index: int, record: _Record, path: str) -> FileItem:
        """The item of the default stream of an entry this walk read."""
        fs = self._fs
        volume = self._volume
        is_file = not record.is_dir
        size = record.size if is_file else 0
        item = FileItem(
            volume,
            path,
            "",
            index,
            size,
            record.alloc,
            is_file,
            FileTimes(record.times) if record.times else {},
            functools.partial(tsk.make_path_spec, volume, index, path, None),
            record.is_dir,
        )
        if is_file:
            if record.entry is not None:
                item._opener = functools.partial(
                    fs.fallback.stream,
                    record.entry,
                    "",
                    record.entry,
                    size,
                    item.display_path,
                )
            else:
                item._opener = functools.partial(
                    fs.content, index, "", None, None, size, item.display_path
                )
            item.reopen = ("tsk", None, None)
            item.location = record.location
        return item

    def _record(self, entry: Any, count: int) -> _Record:
        record = _Record()
        record.names = names = []
        whole = True
        get_attribute = entry.get_attribute
        for number in range(count):
            attribute = get_attribute(number)
            kind = attribute.attribute_type
            if kind != _FILE_NAME:
                if kind == _ATTRIBUTE_LIST:
                    whole = False
                # A record's own attributes are sorted by type.
                elif kind > _FILE_NAME and whole:
                    break
                continue
            if attribute.name_space == _DOS:
                continue
            parent = attribute.parent_file_reference
            name = tsk_name(attribute.name or "", _RECORD_NAME_BYTES)
            names.append((parent & _INDEX, parent >> 48, name))
        record.seq = entry.file_reference >> 48
        record.alloc = entry.is_allocated()
        record.is_dir = is_dir = entry.has_directory_entries_index()
        times = (
            entry.get_creation_time_as_integer(),
            entry.get_modification_time_as_integer(),
            entry.get_access_time_as_integer(),
            entry.get_entry_modification_time_as_integer(),
        )
        record.times = None if None in times else times
        record.size = 0
        record.location = None
        record.data_loads = False
        if entry.number_of_alternate_data_streams or record.times is None:
            whole = False
        if not is_dir and entry.has_default_data_stream():
            record.size = size = entry.size
            limit = self._volume_bytes
            # TSK refuses data runs past the end of the volume (and so any
            # sparse file larger than it): TSKWalker says what it does then.
            loads = size <= limit
            for number in range(entry.number_of_extents):
                offset, length, _ = entry.get_extent(number)
                if not number:
                    record.location = offset
                if offset + length > limit:
                    loads = False
            record.data_loads = loads
            whole = whole and loads
        record.whole = whole
        return record


class _Paths:
    """Directory paths by entry, from parent references, memoised."""

    def __init__(self, dirs: dict[int, _Record | None]) -> None:
        self.dirs = dirs
        self._memo: dict[int, str | None] = {ROOT: "/"}
        self._busy: set[int] = set()

    def parent_holds(self, parent: int, seq: int) -> bool:
        """Whether a name's parent reference is a directory TSK lists it in:
        NTFS bumps a record's sequence number when it frees it, and TSK lists
        a deleted directory's children by its sequence number less one."""
        record = self.dirs.get(parent)
        if record is None or not record.is_dir:
            return False
        return record.seq == (seq if record.alloc else seq + 1)

    def listed_dirs(self) -> list[int]:
        """The directories the named tree holds."""
        return [
            index
            for index, record in self.dirs.items()
            if record is not None and record.is_dir and self.dir_path(index)
        ]

    def dir_path(self, index: int) -> str | None:
        if index in self._memo:
            return self._memo[index]
        record = self.dirs.get(index)
        if record is None or index in self._busy:
            return None  # no directory, or a cycle of parent references
        self._busy.add(index)
        found = self.paths(record)
        self._busy.discard(index)
        path = found[0] if found else None
        self._memo[index] = path
        return path

    def paths(self, record: _Record) -> list[str]:
        """Every path of an entry in the named tree: one per non-DOS name
        whose parent holds."""
        found = []
        for parent, seq, name in record.names:
            if name in (".", "..") or not self.parent_holds(parent, seq):
                continue
            parent_path = self.dir_path(parent)
            if parent_path is None:
                continue
            path = _join(parent_path, name)
            if path.count("/") >= _MAX_DEPTH or len(path.encode()) >= _MAX_PATH:
                raise Doubt(f"{path}: deeper than TSK walks")
            found.append(path)
        # Two names in one directory differ only for hard links: keep order.
        return list(dict.fromkeys(found))


def _flagged_directories(source: fsntfs.FsntfsVolume) -> set[int]:
    """The base MFT records whose header flags a directory, from $MFT read
    raw in large pieces: what TSK takes for directories, known before the
    records are read one by one."""
    volume = source.volume()
    mft = volume.get_file_entry(0)
    size = volume.mft_entry_size
    count = volume.number_of_file_entries
    # As the scan reads a large stream: straight from its extents where
    # libfsntfs reports them plain (100,000 records: 0.07 s through libfsntfs).
    reader = source.stream(mft, "", mft, int(mft.size), "$MFT")
    buffer = memoryview(bytearray(_RECORDS_A_READ * size))
    found = set()
    step = _RECORDS_A_READ
    for first in range(0, count, step):
        wanted = min(step, count - first) * size
        reader.seek(first * size)
        data = buffer[:wanted]
        if reader.readinto(data) != wanted:
            raise Doubt(f"$MFT: short read at record {first}")
        flags = bytes(data[22::size]).translate(_DIRECTORY_FLAG)
        for match in re.finditer(b"\x01", flags):
            at = match.start() * size
            if data[at : at + 4] == b"FILE" and not _u64(data, at + 32)[0] & _INDEX:
                found.add(first + match.start())
    return found


def _join(parent: str, name: str) -> str:
    return f"{parent}{name}" if parent.endswith("/") else f"{parent}/{name}"


# -- the names only a directory's $I30 holds (TSK 4.15's ntfs_proc_idxentry) --

_FNAME_SIZE = 67  # sizeof(ntfs_attr_fname) in TSK
_NAME_BYTES = 512  # of a name TSK reads from an index entry
_NAME_DIR_FLAG = 0x10000000
# TSK keeps a name from index slack only if its times lie in 1970-2020 (is_time).
_1970 = (369 * 365 + 89) * 24 * 36  # seconds since 1601, in units of 100
_2020 = _1970 + (50 * 365 + 6) * 24 * 36


def _is_time(value: int) -> bool:
    value //= 1_000_000_000
    return bool(value) and _1970 <= value <= _2020


class _Name:
    __slots__ = ("addr", "alloc", "is_dir", "name", "seq")

    addr: int
    alloc: bool
    is_dir: bool
    name: str
    seq: int


def _index_name(raw: bytes) -> str:
    """An index entry's name as TSK spells it (tsk_utf8, 512 bytes at most);
    most names are plain UTF-16, decoded in one go."""
    try:
        text = raw.decode("utf-16-le")
    except UnicodeDecodeError:
        text = None
    if text is None or len(text) * 4 > _NAME_BYTES and len(text.encode()) > _NAME_BYTES:
        text = ntfs_orphans.tsk_utf8(raw).decode("utf-8", "backslashreplace")
    return text


def _index_entries(
    buf: bytes,
    start: int,
    length: int,
    used: int,
    dir_addr: int,
    is_del: bool,
    last_inum: int,
    out: list[_Name],
) -> None:
    """ntfs_proc_idxentry over buf[start:start + length]; used: its live part."""
    end = start + length
    end_alloc = start + used
    at = start
    stash: _Name | None = None
    parent = dir_addr.to_bytes(6, "little")
    while at + 16 + _FNAME_SIZE < end:
        reference, idxlen, strlen, parent_reference = _ENTRY_HEAD(buf, at)
        if parent_reference & _INDEX != dir_addr:
            # TSK steps 4 bytes at a time until an entry names this directory
            # as its parent: jump to the next such place.
            found = buf.find(parent, at + 17)
            while found != -1 and (found - 16 - at) % 4:
                found = buf.find(parent, found + 1)
            if found == -1:
                break
            at = found - 16
            continue
        ref = reference & _INDEX
        if ref > last_inum or idxlen <= strlen or idxlen % 4 or idxlen > length:
            at += 4
            continue
        fname = at + 16
        nlen, nspace = buf[fname + 64], buf[fname + 65]
        in_slack = strlen == 0 or at + idxlen > end_alloc
        if in_slack and (
            nspace > 3
            or _u64(buf, fname + 40)[0] < _u64(buf, fname + 48)[0]
            or nlen == 0
            or buf[fname + 66] == 0
            or not _is_time(_u64(buf, fname + 8)[0])
            or not _is_time(_u64(buf, fname + 32)[0])
            or not _is_time(_u64(buf, fname + 16)[0])
        ):
            at += 4
            continue
        if stash is not None:
            out.append(stash)
            stash = None
        if nspace != _DOS:
            name_end = fname + 66 + 2 * nlen
            if name_end < end:
                name = _Name()
                name.addr = ref
                name.seq = reference >> 48
                name.name = _index_name(buf[fname + 66 : name_end])
                name.is_dir = bool(_u64(buf, fname + 56)[0] & _NAME_DIR_FLAG)
                name.alloc = not (is_del or in_slack)
                if nspace == _WIN_DOS:
                    out.append(name)
                else:
                    stash = name
        if strlen == 0:
            at = (at + 16 + 66 + 2 * nlen + 3) // 4 * 4
        else:
            at += idxlen
    if stash is not None:
        out.append(stash)


def _fixup(record: bytearray, length: int) -> bool:
    upd_off, upd_cnt = _u16(record, 4)[0], _u16(record, 6)[0]
    if (upd_cnt - 1) * 512 > length or upd_off > length or length - upd_off < 4:
        return False
    value = record[upd_off : upd_off + 2]
    for index in range(1, upd_cnt):
        at = index * 512 - 2
        if record[at : at + 2] != value:
            return False
        record[at : at + 2] = record[upd_off + 2 * index : upd_off + 2 * index + 2]
    return True


def _runs(record: bytes, at: int) -> list[tuple[int, int]]:
    """(first cluster, count; -1 for sparse) of a non-resident attribute's runs."""
    runs = []
    lcn = 0
    while at < len(record) and record[at]:
        header = record[at]
        size_len, off_len = header & 0xF, header >> 4
        count = int.from_bytes(record[at + 1 : at + 1 + size_len], "little")
        delta = int.from_bytes(
            record[at + 1 + size_len : at + 1 + size_len + off_len],
            "little",
            signed=True,
        )
        at += 1 + size_len + off_len
        if off_len:
            lcn += delta
            runs.append((lcn, count))
        else:
            runs.append((-1, count))
    return runs


class _IndexReader:
    """Raw $I30 of directories: libfsntfs does not hand out index slack."""

    def __init__(self, volume: Any, source: fsntfs.FsntfsVolume) -> None:
        self._mft = volume.get_file_entry(0)
        self._record_size = volume.mft_entry_size
        self._cluster = volume.cluster_block_size
        self._source = source
        self._last_inum = volume.number_of_file_entries

    def names(self, index: int, is_del: bool) -> list[_Name]:
        size = self._record_size
        record = bytearray(self._mft.read_buffer_at_offset(size, index * size))
        if record[:4] != b"FILE" or not _fixup(record, size):
            raise Doubt(f"MFT entry {index}: bad record")
        root = allocation = None
        at = _u16(record, 20)[0]
        while at + 16 <= size:
            kind, length = _u32(record, at)[0], _u32(record, at + 4)[0]
            if kind == 0xFFFFFFFF or not length:
                break
            name_len, name_off = record[at + 9], _u16(record, at + 10)[0]
            name = record[at + name_off : at + name_off + 2 * name_len]
            if kind == _ATTRIBUTE_LIST:
                raise Doubt(f"directory {index}: an attribute list")
            if name == "$I30".encode("utf-16-le"):
                if kind == _INDEX_ROOT:
                    content = at + _u16(record, at + 20)[0]
                    root = bytes(record[content : content + _u32(record, at + 16)[0]])
                elif kind == _INDEX_ALLOCATION:
                    allocation = (
                        _runs(record, at + _u16(record, at + 32)[0]),
                        _u64(record, at + 40)[0],
                    )
            at += length
        out: list[_Name] = []
        if root is None or len(root) < 32:
            return out
        begin, used, end = _u32(root, 16)[0], _u32(root, 20)[0], _u32(root, 24)[0]
        if end < used or 16 + end > len(root):
            return out
        _index_entries(
            root, 16 + begin, end - begin, used - begin, index, is_del,
            self._last_inum, out,
        )  # fmt: skip
        if allocation is not None:
            self._allocation(index, *allocation, is_del, out)
        return out

    def _allocation(
        self,
        index: int,
        runs: list[tuple[int, int]],
        allocated: int,
        is_del: bool,
        out: list[_Name],
    ) -> None:
        cluster = self._cluster
        chunks = [
            bytes(count * cluster)
            if first < 0
            else self._source.read_at(first * cluster, count * cluster)
            for first, count in runs
        ]
        buf = b"".join(chunks)[:allocated]
        starts = [
            at for at in range(0, len(buf) - 40, cluster) if buf[at : at + 4] == b"INDX"
        ]
        for start, stop in zip(starts, [*starts[1:], len(buf)], strict=True):
            length = stop - start
            record = bytearray(buf[start:stop])
            if not _fixup(record, length):
                raise Doubt(f"directory {index}: an index record fails its fixups")
            begin, used = _u32(record, 24)[0], _u32(record, 28)[0]
            first = 24 + begin
            if first > length or 24 + used > length:
                raise Doubt(f"directory {index}: index list offsets past the record")
            _index_entries(
                bytes(record), first, length - first, used - begin, index, is_del,
                self._last_inum, out,
            )  # fmt: skip
