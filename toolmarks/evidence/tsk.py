"""Walking and reading file systems with The Sleuth Kit (pytsk3).

TSK is used instead of dfvfs' own back ends because it lists deleted names
(directory slack, orphan entries) and NTFS alternate data streams. The walk
talks to pytsk3 directly: building a dfvfs file entry per name would cost
several extra look-ups for every entry. NTFS volumes are walked in $MFT order
by mft.MftWalker, which lists what TSKWalker lists and has it read the entries
that need TSK (entry, items, orphans). The data runs of a stream and NTFS'
$Bitmap tell where its bytes lie and which clusters are free (unallocated space,
a deleted file's reused clusters, the files on a damaged E01 chunk).

NTFS content is read through libfsntfs (fsntfs.py; TSKFileSystem.content),
which reads the bytes asked for where TSK reads 64 KiB of the image for each
small file. Where TSK gives up on an NTFS entry (it leaves it half-loaded: a
data run it refuses, such as any sparse file larger than the volume) or on the
attribute list of a file with hundreds of streams, libfsntfs lists its streams
too and a warning says why.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import pytsk3
from dfdatetime import definitions as dfdatetime_definitions
from dfvfs.lib import tsk_time
from dfvfs.path import factory as path_spec_factory

from toolmarks.evidence import fsntfs, ntfs_orphans
from toolmarks.evidence.model import FileItem, LazyTimes, ReadOnlyStream, Volume

Warn = Callable[[str, str], None]

_T = pytsk3  # short alias for the many enum look-ups below

# pytsk3 enums are unhashable, so every look-up goes through int().
FS_TYPE_NAMES = {
    int(_T.TSK_FS_TYPE_NTFS): "NTFS",
    int(_T.TSK_FS_TYPE_FAT12): "FAT",
    int(_T.TSK_FS_TYPE_FAT16): "FAT",
    int(_T.TSK_FS_TYPE_FAT32): "FAT",
    int(_T.TSK_FS_TYPE_EXFAT): "EXFAT",
    int(_T.TSK_FS_TYPE_EXT2): "EXT",
    int(_T.TSK_FS_TYPE_EXT3): "EXT",
    int(_T.TSK_FS_TYPE_EXT4): "EXT",
    int(_T.TSK_FS_TYPE_HFS): "HFS",
    int(_T.TSK_FS_TYPE_ISO9660): "ISO9660",
    int(_T.TSK_FS_TYPE_FFS1): "UFS",
    int(_T.TSK_FS_TYPE_FFS1B): "UFS",
    int(_T.TSK_FS_TYPE_FFS2): "UFS",
    int(_T.TSK_FS_TYPE_YAFFS2): "YAFFS2",
    int(_T.TSK_FS_TYPE_APFS): "APFS",
}

_NAME_ALLOC = int(_T.TSK_FS_NAME_FLAG_ALLOC)
_META_ALLOC = int(_T.TSK_FS_META_FLAG_ALLOC)
_META_REG = int(_T.TSK_FS_META_TYPE_REG)
_META_DIRS = (int(_T.TSK_FS_META_TYPE_DIR), int(_T.TSK_FS_META_TYPE_VIRT_DIR))
_NAME_REG = int(_T.TSK_FS_NAME_TYPE_REG)
_NAME_UNDEF = int(_T.TSK_FS_NAME_TYPE_UNDEF)
_NAME_DIRS = (int(_T.TSK_FS_NAME_TYPE_DIR), int(_T.TSK_FS_NAME_TYPE_VIRT_DIR))
_ATTR_NTFS_DATA = int(_T.TSK_FS_ATTR_TYPE_NTFS_DATA)
_ATTR_NTFS_ATTRLIST = int(_T.TSK_FS_ATTR_TYPE_NTFS_ATTRLIST)
_ATTR_NONRESIDENT = int(pytsk3.TSK_FS_ATTR_NONRES)
# TSK_FS_META_ATTR_STUDIED (pytsk3 exports no name for it): every attribute of
# the entry was loaded. TSK leaves an entry whose attributes it gave up on
# half-loaded, still listed, without saying so anywhere else.
_ATTRS_LOADED = 1
_META_VIRTUAL = (int(_T.TSK_FS_META_TYPE_VIRT), int(_T.TSK_FS_META_TYPE_VIRT_DIR))
# The attribute holding a file's content: NTFS $DATA, and TSK's default for FAT
# and ext.
_DEFAULT_DATA = {_ATTR_NTFS_DATA, int(_T.TSK_FS_ATTR_TYPE_DEFAULT)}
_NTFS_BITMAP_ENTRY = 6  # $Bitmap
# Runs with no clusters behind them: sparse, and TSK's filler for runs it has
# not seen yet.
_RUN_NOT_ON_DISK = int(pytsk3.TSK_FS_ATTR_RUN_FLAG_SPARSE) | int(
    pytsk3.TSK_FS_ATTR_RUN_FLAG_FILLER
)

# TSK's attribute list parser (ntfs_proc_attrlist) keeps a table of 256
# extension MFT entries and one of 256 distinct attributes, whose last slot each
# further attribute overwrites: past these it drops attributes or hands out one
# attribute's content under another's name.
TSK_ATTRLIST_ENTRIES = 256
TSK_ATTRLIST_ATTRIBUTES = 255

# What pytsk3 raises on damaged entries; anything else is a bug and surfaces.
ENTRY_ERRORS = (OSError, RuntimeError, ValueError, AttributeError, TypeError)

# Which time stamps a file system really has, as dfvfs' TSKFileEntry decides;
# TSK fills the others with 0.
_EXT = {int(_T.TSK_FS_TYPE_EXT2), int(_T.TSK_FS_TYPE_EXT3), int(_T.TSK_FS_TYPE_EXT4)}
_FAT = {
    int(_T.TSK_FS_TYPE_FAT12),
    int(_T.TSK_FS_TYPE_FAT16),
    int(_T.TSK_FS_TYPE_FAT32),
    int(_T.TSK_FS_TYPE_EXFAT),
}
_NTFS = int(_T.TSK_FS_TYPE_NTFS)
_HFS = int(_T.TSK_FS_TYPE_HFS)
_UFS = {int(_T.TSK_FS_TYPE_FFS1), int(_T.TSK_FS_TYPE_FFS1B), int(_T.TSK_FS_TYPE_FFS2)}
_ISO = int(_T.TSK_FS_TYPE_ISO9660)
_YAFFS = int(_T.TSK_FS_TYPE_YAFFS2)
_HAS_NANO = {
    int(_T.TSK_FS_TYPE_EXFAT),
    int(_T.TSK_FS_TYPE_EXT4),
    int(_T.TSK_FS_TYPE_FFS2),
    _HFS,
    _NTFS,
}


def _time_fields(ftype: int) -> tuple[tuple[str, str], ...]:
    """(our key, TSK meta attribute) pairs of the times ftype records."""
    fields = []
    if ftype in _FAT or ftype in (int(_T.TSK_FS_TYPE_EXT4), _NTFS, _HFS, _ISO):
        fields.append(("creation", "crtime"))
    if (
        ftype in _EXT
        or ftype in _FAT
        or ftype in _UFS
        or ftype in (_NTFS, _HFS, _YAFFS)
    ):
        fields.append(("modification", "mtime"))
        fields.append(("access", "atime"))
    if ftype in _EXT or ftype in _UFS or ftype in (_NTFS, _HFS, _YAFFS):
        fields.append(("change", "ctime"))
    return tuple(fields)


class TSKStream(ReadOnlyStream):
    """Read-only file-like object over one TSK attribute (data stream)."""

    def __init__(
        self,
        tsk_file: Any,
        size: int,
        attr_type: int | None,
        attr_id: int | None,
        name: str,
    ) -> None:
        super().__init__(size, name)
        self._file = tsk_file
        self._attr_type = attr_type
        self._attr_id = attr_id

    def _read_at(self, offset: int, size: int) -> bytes:
        chunks = []
        wanted = size
        # TSK may return short reads (sparse runs, end of a run); loop so the
        # caller gets exactly what it asked for up to the end of the stream.
        while wanted > 0:
            try:
                if self._attr_type is None:
                    data = self._file.read_random(offset, wanted)
                else:
                    data = self._file.read_random(
                        offset, wanted, self._attr_type, self._attr_id
                    )
            except OSError as exception:
                raise OSError(
                    f"{self.name}: read error at offset {offset}: {exception}"
                ) from exception
            if not data:
                # TSK returns nothing past an attribute's initialized size
                # (e.g. $BadClus:$Bad); NTFS defines those bytes as zeros.
                data = bytes(wanted)
            chunks.append(data)
            offset += len(data)
            wanted -= len(data)
        return b"".join(chunks)

    def data_ranges(self) -> list[tuple[int, int]] | None:
        """(start, end) byte ranges of the stream held in data runs; the rest
        (sparse runs) reads as zeros. None when TSK cannot tell."""
        if self._attr_type is None:
            return None
        try:
            for attribute in self._file:
                info = attribute.info
                if int(info.type) != self._attr_type or int(info.id) != self._attr_id:
                    continue
                if not int(info.flags) & _ATTR_NONRESIDENT:
                    return [(0, self._size)]
                block = int(self._file.info.fs_info.block_size)
                ranges: list[tuple[int, int]] = []
                for run in attribute:
                    if int(run.flags) & _RUN_NOT_ON_DISK:
                        continue
                    start = int(run.offset) * block
                    end = min(start + int(run.len) * block, self._size)
                    if start >= end:
                        continue
                    if ranges and ranges[-1][1] == start:
                        ranges[-1] = (ranges[-1][0], end)
                    else:
                        ranges.append((start, end))
                return ranges
        except (OSError, RuntimeError):
            return None
        return None


class Times(LazyTimes):
    """An entry's times as TSK reports them, made when first read."""

    __slots__ = ("_fs", "_meta")

    def __init__(self, fs: TSKFileSystem, meta: Any) -> None:
        super().__init__()
        self._fs: TSKFileSystem | None = fs
        # The entry's TSK metadata, or its inode when the entry is opened only
        # if its times are read (an item made again in a scan worker).
        self._meta = meta

    def _make(self) -> dict[str, Any]:
        assert self._fs is not None
        meta = self._meta
        if isinstance(meta, int):
            try:
                meta = self._fs.fs_info.open_meta(inode=meta).info.meta
            except OSError:
                meta = None
        values = self._fs.times(meta) if meta is not None else {}
        self._fs = self._meta = None
        return values


class TSKFileSystem:
    """An open TSK file system of one volume."""

    def run_offset(self, attribute: Any) -> int | None:
        """Byte offset of an attribute's first data run (None if resident)."""
        if not int(attribute.info.flags) & _ATTR_NONRESIDENT:
            return None
        try:
            for run in attribute:
                return int(run.addr) * self.block_size
        except (OSError, RuntimeError):
            return None
        return None

    def first_run_offset(self, attributes: Iterable[Any]) -> int | None:
        """Byte offset of the default data stream's first run, if known, from
        an entry's attributes (its TSK file, or a list of them)."""
        try:
            for attribute in attributes:
                info = attribute.info
                if int(info.type) in _DEFAULT_DATA and not info.name:
                    return self.run_offset(attribute)
        except (OSError, RuntimeError):
            return None
        return None

    def load_error(self, inode: int) -> str | None:
        """TSK's reason for refusing MFT entry inode, None if it loads it.

        A directory walk keeps an entry whose attributes TSK failed to load,
        minus the failed ones and without the error; loading the entry again
        brings the error out.
        """
        try:
            self.fs_info.open_meta(inode=inode)
        except OSError as error:
            text = str(error).replace("\n", " ")
            return text.split("Unable to open file: ", 1)[-1].strip()
        return None

    def stream_runs(self, inode: int, stream: str) -> list[tuple[int, int, int]]:
        """(offset in the stream, offset in the volume, length) in bytes of each
        data run of one stream ("" the default one); sparse runs left out.

        Raises:
          OSError: the entry cannot be opened.
        """
        try:
            for attribute in self.fs_info.open_meta(inode=inode):
                info = attribute.info
                if stream:
                    wanted = int(info.type) == _ATTR_NTFS_DATA and (
                        _decode(info.name) == stream
                    )
                else:
                    wanted = int(info.type) in _DEFAULT_DATA and not info.name
                if not wanted:
                    continue
                if not int(info.flags) & _ATTR_NONRESIDENT:
                    return []
                size = self.block_size
                return [
                    (int(run.offset) * size, int(run.addr) * size, int(run.len) * size)
                    for run in attribute
                    if not int(run.flags) & _RUN_NOT_ON_DISK
                ]
        except ENTRY_ERRORS as exception:
            raise OSError(f"entry {inode}: {exception}") from None
        return []

    def reused_ranges(
        self, inode: int, stream: str, size: int
    ) -> list[tuple[int, int]] | None:
        """(first, last) byte ranges of a deleted NTFS stream whose clusters
        $Bitmap marks allocated now, i.e. to some other entry: what is read there
        may be that entry's content. None when it cannot be told: not NTFS, or
        the entry itself is allocated (its clusters are its own)."""
        if not self.is_ntfs:
            return None
        try:
            meta = self.fs_info.open_meta(inode=inode).info.meta
        except ENTRY_ERRORS:
            return None
        if meta is None or int(meta.flags) & _META_ALLOC:
            return None
        bitmap = self._cluster_bitmap()
        if bitmap is None:
            return None
        out: list[tuple[int, int]] = []
        for offset, where, length in self.stream_runs(inode, stream):
            first_cluster = where // self.block_size
            for index in range(length // self.block_size):
                cluster = first_cluster + index
                if cluster // 8 >= len(bitmap):
                    continue
                if not bitmap[cluster // 8] >> (cluster % 8) & 1:
                    continue
                low = offset + index * self.block_size
                if low >= size:
                    continue  # slack after the stream's end
                high = min(low + self.block_size, size) - 1
                if out and out[-1][1] + 1 == low:
                    out[-1] = (out[-1][0], high)
                else:
                    out.append((low, high))
        return out

    def free_extents(self) -> list[tuple[int, int]] | None:
        """(offset, length) in volume bytes of each run of clusters NTFS'
        $Bitmap marks free; None when there is no bitmap to read (not NTFS)."""
        if not self.is_ntfs:
            return None
        bitmap = self._cluster_bitmap()
        if bitmap is None:
            return None
        clusters = int(self.fs_info.info.block_count)
        extents: list[list[int]] = []

        def add(first: int, count: int) -> None:
            count = min(count, clusters - first)
            if count <= 0:
                return
            if extents and extents[-1][0] + extents[-1][1] == first:
                extents[-1][1] += count
            else:
                extents.append([first, count])

        # Whole free bytes by regex, mixed bytes bit by bit: an empty 1 TB
        # volume is 32 MiB of zero bytes, too many for a loop over bits.
        for match in re.finditer(rb"\x00+|[^\x00\xff]", bitmap):
            start, end = match.span()
            byte = bitmap[start]
            if byte == 0:
                add(start * 8, (end - start) * 8)
                continue
            for bit in range(8):
                if not byte >> bit & 1:
                    add(start * 8 + bit, 1)
        size = self.block_size
        return [(first * size, count * size) for first, count in extents]

    def _cluster_bitmap(self) -> bytes | None:
        """NTFS $Bitmap (one bit per cluster, set when allocated), read once."""
        if self._bitmap is None:
            try:
                meta = self.fs_info.open_meta(inode=_NTFS_BITMAP_ENTRY).info.meta
                size = int(meta.size)
                stream = self.open_stream(
                    _NTFS_BITMAP_ENTRY, None, None, size, "$Bitmap"
                )
                self._bitmap = stream.read()
            except (*ENTRY_ERRORS, OSError):
                self._bitmap = b""
        return self._bitmap or None

    def __init__(
        self,
        fs_info: Any,
        keep_alive: Any = None,
        open_volume: Callable[[], Any] | None = None,
    ) -> None:
        self.fs_info = fs_info
        self._bitmap: bytes | None = None
        # The dfvfs file system object owns the image file object TSK reads
        # through; dropping it would close the image under TSK's feet.
        self._keep_alive = keep_alive
        self.ftype = int(fs_info.info.ftype)
        self.fs_type = FS_TYPE_NAMES.get(self.ftype, "TSK")
        self.is_ntfs = self.ftype == _NTFS
        self.root_inum = int(fs_info.info.root_inum)
        self.block_size = int(fs_info.info.block_size)
        self._time_fields = _time_fields(self.ftype)
        self._precision = None
        if self.ftype in (int(_T.TSK_FS_TYPE_EXT2), int(_T.TSK_FS_TYPE_EXT3)):
            self._precision = dfdatetime_definitions.PRECISION_1_SECOND
        elif self.ftype == _NTFS:
            self._precision = dfdatetime_definitions.PRECISION_100_NANOSECONDS
        self._has_nano = self.ftype in _HAS_NANO
        self._is_fat = self.ftype in _FAT
        # libfsntfs, for the NTFS entries TSK cannot load (opened on first use).
        self.fallback: fsntfs.FsntfsVolume | None = None
        if self.is_ntfs and open_volume is not None:
            self.fallback = fsntfs.FsntfsVolume(open_volume)

    def times(self, meta: Any) -> dict[str, Any]:
        """dfdatetime values of the times this file system records."""
        result = {}
        for key, field in self._time_fields:
            timestamp = getattr(meta, field, None)
            if timestamp is None:
                continue
            fraction = getattr(meta, f"{field}_nano", None) if self._has_nano else None
            # TSK reports 0 for times an entry does not have (ext4 crtime of
            # old inodes, $OrphanFiles, FAT entries without a date).
            if timestamp == 0 and not fraction:
                continue
            precision = self._precision
            if self._is_fat:
                precision = (
                    dfdatetime_definitions.PRECISION_1_DAY
                    if field == "atime"
                    else dfdatetime_definitions.PRECISION_2_SECONDS
                )
            value = tsk_time.TSKTime(
                fraction_of_second=fraction, precision=precision, timestamp=timestamp
            )
            # TSK converts FAT's local date and time as if it were UTC.
            value.is_local_time = self._is_fat
            result[key] = value
        return result

    def open_stream(
        self,
        inode: int,
        attr_type: int | None,
        attr_id: int | None,
        size: int,
        name: str,
    ) -> TSKStream:
        """Opens one data stream of the metadata entry inode."""
        try:
            tsk_file = self.fs_info.open_meta(inode=inode)
        except OSError as exception:
            raise OSError(f"{name}: cannot open entry {inode}: {exception}") from None
        return TSKStream(tsk_file, size, attr_type, attr_id, name)

    def content(
        self,
        inode: int,
        stream: str,
        attr_type: int | None,
        attr_id: int | None,
        size: int,
        name: str,
        tsk_file: Any = None,
    ) -> ReadOnlyStream:
        """Opens one data stream of an entry the walk listed (tsk_file: the
        walk's own TSK file, if at hand).

        NTFS content is read through libfsntfs, the reader plaso uses: it reads
        the bytes asked for, where TSK's image cache reads 64 KiB for every
        small file and every MFT entry it opens (6 GiB copied to read 100,000
        small files, half the time of their read). TSK reads what libfsntfs
        cannot open or sizes differently, and every other file system.
        """
        fallback = self.fallback
        if fallback is not None:
            try:
                source = fallback.source(inode, stream)
                if int(source.size) == size:
                    entry = fallback.entry(inode)
                    return fallback.stream(entry, stream, source, size, name)
            except (OSError, *fsntfs.ERRORS):
                pass
        if tsk_file is None:
            return self.open_stream(inode, attr_type, attr_id, size, name)
        return TSKStream(tsk_file, size, attr_type, attr_id, name)

    def opener(
        self,
        inode: int,
        attr_type: int | None,
        attr_id: int | None,
        size: int,
        name: str,
    ) -> Callable[[], TSKStream]:
        """A no-argument callable that opens the stream (for FileItem.open)."""
        # partial is cheaper than a closure, which matters once per entry.
        return functools.partial(
            self.open_stream, inode, attr_type, attr_id, size, name
        )


def _decode(name: bytes | str | None) -> str:
    if name is None:
        return ""
    if isinstance(name, str):
        return name
    # TSK hands out UTF-8; keep undecodable bytes visible instead of failing.
    return name.decode("utf-8", "backslashreplace")


def _join(parent: str, name: str) -> str:
    return f"{parent}{name}" if parent.endswith("/") else f"{parent}/{name}"


class Entry:
    """What the walk learnt about one directory entry."""

    __slots__ = (
        "meta",
        "meta_addr",
        "meta_seq",
        "name_alloc",
        "name_type",
        "path",
        "realloc",
        "tsk_file",
    )


def make_path_spec(
    volume: Volume, inode: int | None, path: str, stream: str | None
) -> Any:
    kwargs: dict[str, Any] = {"location": path, "parent": volume.path_spec}
    if inode is not None:
        kwargs["inode"] = inode
    if stream:
        kwargs["data_stream"] = stream
    return path_spec_factory.Factory.NewPathSpec("TSK", **kwargs)


def _make_ntfs_path_spec(
    volume: Volume, inode: int, path: str, stream: str | None
) -> Any:
    """dfvfs' libfsntfs path spec, for items read through libfsntfs: what
    resolves the item again once its opener is gone (past a process)."""
    kwargs: dict[str, Any] = {
        "location": path.replace("/", "\\"),
        "mft_entry": inode,
        "parent": volume.path_spec,
    }
    if stream:
        kwargs["data_stream"] = stream
    return path_spec_factory.Factory.NewPathSpec("NTFS", **kwargs)


class TSKWalker:
    """Walks every name of a TSK file system, deleted ones included."""

    def __init__(self, fs: TSKFileSystem, volume: Volume, warn: Warn) -> None:
        self._fs = fs
        self._volume = volume
        self._warn = warn

    def _open_dir(self, inode: int, path: str) -> Iterator[Any] | None:
        try:
            return iter(self._fs.fs_info.open_dir(inode=inode))
        except (OSError, RuntimeError) as exception:
            self._warn(self._volume.where(path), f"cannot read directory: {exception}")
            return None

    def walk(self) -> Iterator[FileItem]:
        fs = self._fs
        yield from self.root_streams()
        root = fs.root_inum
        visited = {root}
        first = self._open_dir(root, "/")
        if first is None:
            return
        if not fs.is_ntfs:
            yield from self._walk_tree([(first, "/", None)], visited, None)
            return
        # Opening TSK's $OrphanFiles makes it walk the whole tree again (a
        # quarter of the walk of 100,000 small files): the walk notes what
        # that walk would learn and lists the orphans itself at the end.
        names = ntfs_orphans.NamedEntries(int(fs.fs_info.info.last_inum))
        yield from self._walk_tree([(first, "/", 0)], visited, names)
        yield from self.orphans(names, visited)

    def root_streams(self) -> Iterator[FileItem]:
        """The root directory's own ADS, which no directory lists."""
        fs = self._fs
        try:
            root_file = fs.fs_info.open_meta(inode=fs.root_inum)
            if fs.is_ntfs:
                yield from self._named_streams(
                    root_file, root_file.info.meta, "/", True
                )
        except ENTRY_ERRORS as exception:
            self._warn(self._volume.where("/"), f"cannot read root entry: {exception}")

    def orphans(
        self, names: ntfs_orphans.NamedEntries, visited: set[int]
    ) -> Iterator[FileItem]:
        """$OrphanFiles and what it holds, once the named tree was walked and
        noted in names (visited: the directories walked)."""
        entry = names.orphan_dir
        if entry is None:
            return
        orphans = ntfs_orphans.list_orphans(self._fs.fs_info, names)
        try:
            yield from self.items(entry)
        except ENTRY_ERRORS as exception:
            self._warn(self._volume.where(entry.path), f"unreadable entry: {exception}")
        visited.add(entry.meta_addr)
        sub: Iterator[Any] | None
        if isinstance(orphans, str):
            # TSK's answer cannot be told for sure: TSK lists them itself.
            sub = self._open_dir(entry.meta_addr, entry.path)
        else:
            sub = self._orphan_entries(orphans, entry.path)
        if sub is not None:
            yield from self._walk_tree([(sub, entry.path, None)], visited, None)

    def _walk_tree(
        self,
        stack: list[tuple[Iterator[Any], str, int | None]],
        visited: set[int],
        names: ntfs_orphans.NamedEntries | None,
    ) -> Iterator[FileItem]:
        """Pre-order walk from the directories on the stack, each with the
        depth TSK's own walk of the tree meets it at (None where it does not;
        noted in names, on NTFS)."""
        # An explicit stack keeps deep trees off Python's recursion limit and
        # gives the same pre-order as `fls -r`.
        while stack:
            directory, dir_path, depth = stack[-1]
            try:
                tsk_file = next(directory)
            except StopIteration:
                stack.pop()
                continue
            except (OSError, RuntimeError) as exception:
                self._warn(
                    self._volume.where(dir_path),
                    f"directory listing cut short: {exception}",
                )
                if names is not None and depth is not None:
                    names.doubt(f"{dir_path}: listing cut short")
                stack.pop()
                continue
            try:
                if isinstance(tsk_file, Entry):
                    entry: Entry | None = tsk_file
                else:
                    entry = self._entry(tsk_file, dir_path)
            except ENTRY_ERRORS as exception:
                self._warn(
                    self._volume.where(dir_path), f"unreadable entry: {exception}"
                )
                if names is not None and depth is not None:
                    names.doubt(f"{dir_path}: unreadable entry")
                continue
            if entry is None:
                if names is not None and depth is not None:
                    self._note_dot(tsk_file, names)
                continue
            meta = entry.meta
            if names is not None:
                if entry.meta_addr == names.orphan_inum and dir_path == "/":
                    names.orphan_dir = entry  # listed after the named tree
                    continue
                if meta is not None:
                    names.note(entry.meta_addr, entry.meta_seq, meta, depth is not None)
            try:
                yield from self.items(entry)
            except ENTRY_ERRORS as exception:
                # Still descend below: a directory whose streams cannot be
                # listed may well have readable children.
                self._warn(
                    self._volume.where(entry.path), f"unreadable entry: {exception}"
                )
            if meta is None or int(meta.type) not in _META_DIRS:
                continue
            descend = not entry.realloc and int(meta.addr) not in visited
            child = None
            if names is not None and depth is not None:
                child = self._tsk_goes_into(entry, depth, descend, names)
            if descend:
                visited.add(int(meta.addr))
                sub = self._open_dir(int(meta.addr), entry.path)
                if sub is not None:
                    stack.append((sub, entry.path, child))

    @staticmethod
    def _tsk_goes_into(
        entry: Entry, depth: int, descend: bool, names: ntfs_orphans.NamedEntries
    ) -> int | None:
        """The depth TSK's own walk goes into a directory entry at, None if it
        does not; notes where this walk cannot follow it."""
        meta = entry.meta
        if not ntfs_orphans.tsk_keeps(entry.meta_seq, meta) or not (
            ntfs_orphans.tsk_goes_into(
                "", entry.name_alloc, entry.name_type, meta, names.orphan_inum
            )
        ):
            return None
        if int(meta.attr_state) != _ATTRS_LOADED:
            return None  # TSK cannot open it as a directory either
        addr = int(meta.addr)
        if not descend:
            if addr not in names.walked:
                names.doubt(f"{entry.path}: walked first where TSK's walk does not")
            return None
        if depth >= 128 or len(entry.path.encode("utf-8")) - 1 >= 4096:
            names.doubt(f"{entry.path}: deeper than TSK walks")
        names.walked.add(addr)
        return depth + 1

    def _note_dot(self, tsk_file: Any, names: ntfs_orphans.NamedEntries) -> None:
        """A "." or ".." name still accounts for its entry in TSK's walk."""
        name_info = tsk_file.info.name
        addr = int(name_info.meta_addr)
        if not addr and not int(name_info.flags) & _NAME_ALLOC:
            return
        meta = tsk_file.info.meta
        if meta is None:
            try:
                meta = self._fs.fs_info.open_meta(inode=addr).info.meta
            except OSError:
                return  # its entry is checked again if it matters
        if meta is not None:
            names.note(addr, int(name_info.meta_seq), meta, True)

    def _orphan_entries(
        self, orphans: list[tuple[int, bytes]], dir_path: str
    ) -> Iterator[Entry]:
        """The entries of $OrphanFiles as the walk reads TSK's listing: a
        deleted name of unknown type, its MFT entry loaded again."""
        for inum, name in orphans:
            if name in (b".", b".."):
                continue
            entry = Entry()
            entry.path = _join(dir_path, _decode(name))
            entry.name_alloc = False
            entry.meta_addr = inum
            entry.meta_seq = 0
            entry.name_type = _NAME_UNDEF
            entry.realloc = False
            try:
                entry.tsk_file = self._fs.fs_info.open_meta(inode=inum)
                entry.meta = entry.tsk_file.info.meta
            except OSError:
                entry.tsk_file = None
                entry.meta = None
            yield entry

    def _entry(self, tsk_file: Any, dir_path: str) -> Entry | None:
        info = tsk_file.info
        name_info = info.name
        raw_name = name_info.name
        if raw_name in (b".", b"..", ".", ".."):
            return None
        return self.entry(
            _join(dir_path, _decode(raw_name)),
            bool(int(name_info.flags) & _NAME_ALLOC),
            int(name_info.meta_addr),
            int(name_info.meta_seq),
            int(name_info.type),
            tsk_file,
            info.meta,
        )

    def entry(
        self,
        path: str,
        name_alloc: bool,
        meta_addr: int,
        meta_seq: int,
        name_type: int,
        tsk_file: Any = None,
        meta: Any = None,
    ) -> Entry:
        """The entry of one name (TSK's file of it, if listed by TSK)."""
        entry = Entry()
        entry.path = path
        entry.name_alloc = name_alloc
        entry.meta_addr = meta_addr
        entry.meta_seq = meta_seq
        entry.name_type = name_type
        entry.tsk_file = tsk_file
        # pytsk3 leaves meta empty for most deleted names; load it ourselves,
        # as fls does. Inode 0 means "no inode" except on NTFS ($MFT), whose
        # $MFT entry is always allocated: TSK's listing has its meta, a name
        # read from an index (MftWalker) has it loaded here.
        if meta is None and (meta_addr or (name_alloc and tsk_file is None)):
            try:
                entry.tsk_file = self._fs.fs_info.open_meta(inode=meta_addr)
                meta = entry.tsk_file.info.meta
            except OSError:
                meta = None
        entry.meta = meta
        entry.realloc = False
        if meta is not None and not name_alloc:
            if int(meta.flags) & _META_ALLOC:
                entry.realloc = True
            elif self._fs.is_ntfs:
                # NTFS bumps an entry's sequence number when it is freed; a
                # larger gap means the entry was reused by another file since.
                gap = (int(meta.seq) - meta_seq) & 0xFFFF
                entry.realloc = gap > 1
        return entry

    def items(self, entry: Entry) -> Iterator[FileItem]:
        fs = self._fs
        meta = entry.meta
        name_type = entry.name_type
        if meta is None:
            is_dir = name_type in _NAME_DIRS
            is_file = name_type == _NAME_REG
            inode = entry.meta_addr or None
            yield FileItem(
                volume=self._volume,
                path=entry.path,
                stream="",
                inode=inode,
                size=0,
                allocated=entry.name_alloc,
                is_file=is_file,
                times={},
                path_spec=functools.partial(
                    make_path_spec, self._volume, inode, entry.path, None
                ),
                is_dir=is_dir,
                has_metadata=False,
            )
            return
        meta_type = int(meta.type)
        inode = int(meta.addr)
        is_dir = meta_type in _META_DIRS
        is_file = meta_type == _META_REG
        allocated = entry.name_alloc and bool(int(meta.flags) & _META_ALLOC)
        times = Times(fs, meta)
        size = int(meta.size) if is_file else 0
        item = FileItem(
            volume=self._volume,
            path=entry.path,
            stream="",
            inode=inode,
            size=size,
            allocated=allocated,
            is_file=is_file,
            times=times,
            path_spec=functools.partial(
                make_path_spec, self._volume, inode, entry.path, None
            ),
            is_dir=is_dir,
            reallocated=entry.realloc,
        )
        if (
            fs.fallback is not None
            and int(meta.attr_state) != _ATTRS_LOADED
            and meta_type not in _META_VIRTUAL
            and not entry.realloc  # another file's entry, read under its name
        ):
            # TSK cannot open this entry again to read it: libfsntfs reads it all.
            try:
                tsk_has_data = any(
                    int(a.info.type) == _ATTR_NTFS_DATA and not a.info.name
                    for a in entry.tsk_file
                )
            except ENTRY_ERRORS:
                tsk_has_data = False
            yield from self.through_libfsntfs(item, tsk_has_data)
            return
        # One pass over the attributes for the location and the named streams:
        # each pass makes a Python object per attribute (2 µs a file).
        attributes: list[Any] | Exception = []
        if is_file or fs.is_ntfs:
            try:
                attributes = list(entry.tsk_file)
            except (OSError, RuntimeError) as error:
                attributes = error
        if is_file:
            # The walk's own TSK file, for what libfsntfs does not read: opening
            # the entry again cost 15-20 µs a file.
            item._opener = functools.partial(
                fs.content,
                inode,
                "",
                None,
                None,
                size,
                item.display_path,
                entry.tsk_file,
            )
            item.reopen = ("tsk", None, None)
            if not isinstance(attributes, Exception):
                item.location = fs.first_run_offset(attributes)
        yield item
        if fs.is_ntfs:
            if isinstance(attributes, Exception):
                raise attributes
            yield from self._named_streams(
                entry.tsk_file,
                meta,
                entry.path,
                allocated,
                entry.realloc,
                times,
                attributes,
            )

    def _named_streams(
        self,
        tsk_file: Any,
        meta: Any,
        path: str,
        allocated: bool,
        realloc: bool = False,
        times: Mapping[str, Any] | None = None,
        attributes: Iterable[Any] | None = None,
    ) -> Iterator[FileItem]:
        """One item per named $DATA attribute (alternate data stream), from
        the entry's attributes (listed already, or by its TSK file)."""
        inode = int(meta.addr)
        if times is None:
            times = Times(self._fs, meta)
        items = []
        attribute_list = None
        for attribute in tsk_file if attributes is None else attributes:
            attr_info = attribute.info
            attr_type = int(attr_info.type)
            if attr_type != _ATTR_NTFS_DATA or not attr_info.name:
                if attr_type == _ATTR_NTFS_ATTRLIST:
                    attribute_list = attr_info
                continue
            stream = _decode(attr_info.name)
            size = int(attr_info.size)
            item = self._stream_item(
                path,
                stream,
                inode,
                size,
                allocated,
                realloc,
                times,
                functools.partial(make_path_spec, self._volume, inode, path, stream),
            )
            item._opener = functools.partial(
                self._fs.content,
                inode,
                stream,
                _ATTR_NTFS_DATA,
                int(attr_info.id),
                size,
                item.display_path,
                tsk_file,
            )
            item.reopen = ("tsk", _ATTR_NTFS_DATA, int(attr_info.id))
            item.location = self._fs.run_offset(attribute)
            items.append(item)
        if attribute_list is not None:
            # Only files whose attributes spill into extension MFT entries.
            items = self._check_attribute_list(
                tsk_file, attribute_list, items, path, inode, allocated, realloc, times
            )
        yield from items

    def through_libfsntfs(
        self, item: FileItem, tsk_has_data: bool
    ) -> Iterator[FileItem]:
        """The default item and the alternate data streams of an entry TSK
        left half-loaded (tsk_has_data: with its $DATA attribute), read
        through libfsntfs; what cannot be is said."""
        fs = self._fs
        inode = item.inode
        assert inode is not None and fs.fallback is not None
        where = self._volume.where(item.path)
        reason = fs.load_error(inode) or "its attributes are not all loaded"
        lost_data = item.is_file and not tsk_has_data
        what = "the $DATA attribute" if lost_data else "all its attributes"
        why = f"MFT entry {inode} ({item.path}): TSK could not load {what}: {reason}"
        try:
            entry = fs.fallback.entry(inode)
            streams = fsntfs.FsntfsVolume.streams(entry)
            has_data = bool(entry.has_default_data_stream())
            size = int(entry.size) if has_data else 0
        except (OSError, *fsntfs.ERRORS) as error:
            # The engine lists an allocated file without metadata as unreadable.
            item.has_metadata = not item.is_file
            self._warn(
                where,
                f"{why}; not read (content and alternate data streams): "
                f"{fsntfs.short(error)}",
            )
            yield item
            return
        parts = []
        if item.is_file and not has_data:
            item.has_metadata = False
            parts.append("libfsntfs finds no $DATA either: not read")
        elif item.is_file:
            item.size = size
            runs = fsntfs.extents(entry)
            item.location = runs[0][0] if runs else None
            volume_size = int(fs.fs_info.info.block_count) * fs.block_size
            outside = [(at, n) for at, n in runs if at + n > volume_size]
            if outside:
                # libfsntfs reads the runs before it, then fails: say so first.
                at, length = outside[0]
                why += (
                    f"; libfsntfs lists a data run at volume offset {at} ({length}"
                    f" bytes) past the end of the volume ({volume_size} bytes)"
                )
                parts.append("not read from there on")
            else:
                parts.append(f"read through libfsntfs ({size} bytes)")
            item._opener = functools.partial(
                fsntfs.FsntfsStream, entry, size, item.display_path, why
            )
            item.reopen = ("fsntfs", why)
            item.path_spec = functools.partial(
                _make_ntfs_path_spec, self._volume, inode, item.path, None
            )
        if streams:
            parts.append(
                f"its {len(streams)} alternate data streams read through libfsntfs"
            )
        self._warn(where, f"{why}; " + "; ".join(parts))
        yield item
        for name, source in streams.items():
            yield self._fsntfs_item(
                item.path,
                name,
                source,
                inode,
                item.allocated,
                item.reallocated,
                item.times,
                why,
            )

    def _stream_item(
        self,
        path: str,
        stream: str,
        inode: int,
        size: int,
        allocated: bool,
        realloc: bool,
        times: Mapping[str, Any],
        path_spec: Any,
    ) -> FileItem:
        """The item of one alternate data stream; its opener is the caller's."""
        return FileItem(
            volume=self._volume,
            path=path,
            stream=stream,
            inode=inode,
            size=size,
            allocated=allocated,
            is_file=True,
            times=times,
            path_spec=path_spec,
            reallocated=realloc,
        )

    def _fsntfs_item(
        self,
        path: str,
        stream: str,
        source: Any,
        inode: int,
        allocated: bool,
        realloc: bool,
        times: Mapping[str, Any],
        why: str,
    ) -> FileItem:
        """The item of an alternate data stream read through libfsntfs."""
        size = int(source.size)
        item = self._stream_item(
            path,
            stream,
            inode,
            size,
            allocated,
            realloc,
            times,
            functools.partial(_make_ntfs_path_spec, self._volume, inode, path, stream),
        )
        item._opener = functools.partial(
            fsntfs.FsntfsStream, source, size, item.display_path, why
        )
        item.reopen = ("fsntfs", why)
        item.location = fsntfs.first_extent(source)
        return item

    def _check_attribute_list(
        self,
        tsk_file: Any,
        attr_info: Any,
        items: list[FileItem],
        path: str,
        inode: int,
        allocated: bool,
        realloc: bool,
        times: Mapping[str, Any],
    ) -> list[FileItem]:
        """The alternate data streams of an entry with an $ATTRIBUTE_LIST:
        TSK's, or libfsntfs' when the list names streams TSK does not list or
        goes past what TSK's parser can hold."""
        where = self._volume.where(path)
        name = f"MFT entry {inode} ({path})"
        try:
            data = tsk_file.read_random(
                0, int(attr_info.size), _ATTR_NTFS_ATTRLIST, int(attr_info.id)
            )
        except ENTRY_ERRORS as error:
            self._warn(
                where,
                f"{name}: its $ATTRIBUTE_LIST cannot be read ({error}): only the "
                "alternate data streams TSK lists are read, which may not be all",
            )
            return items
        listed = parse_attribute_list(data)
        attributes = list(dict.fromkeys((kind, stream) for kind, stream, _ in listed))
        extensions = {entry for _, _, entry in listed if entry != inode}
        streams = [s for kind, s in attributes if kind == _ATTR_NTFS_DATA and s]
        seen = {item.stream for item in items}
        missing = [stream for stream in streams if stream not in seen]
        overflow = (
            len(extensions) > TSK_ATTRLIST_ENTRIES
            or len(attributes) > TSK_ATTRLIST_ATTRIBUTES
        )
        if not missing and not overflow:
            return items
        reason = (
            f"{name}: its $ATTRIBUTE_LIST names {len(streams)} alternate data "
            f"streams in {len(attributes)} attributes over {len(extensions)} "
            f"extension MFT entries; TSK lists {len(items)}"
        )
        if overflow:
            reason += (
                f" (TSK's attribute list parser holds at most {TSK_ATTRLIST_ENTRIES}"
                f" extension entries and {TSK_ATTRLIST_ATTRIBUTES} distinct "
                "attributes; past them it drops streams or gives one stream's "
                "content under another's name)"
            )
        # Past TSK's limits its streams cannot be trusted: all go to libfsntfs.
        wanted = streams if overflow else missing
        kept = [] if overflow else items
        try:
            if self._fs.fallback is None:
                raise OSError("libfsntfs is not used for this volume")
            found = fsntfs.FsntfsVolume.streams(self._fs.fallback.entry(inode))
        except OSError as error:
            if overflow:
                # The streams TSK mapped before its table overflowed are right.
                trusted = {
                    s
                    for kind, s in attributes[:TSK_ATTRLIST_ATTRIBUTES]
                    if kind == _ATTR_NTFS_DATA
                }
                kept = [item for item in items if item.stream in trusted]
            done = {item.stream for item in kept}
            lost = [stream for stream in streams if stream not in done]
            self._warn(
                where,
                f"{reason}; {error}; {len(lost)} not read: {', '.join(lost)}",
            )
            return kept
        why = f"{reason}; read through libfsntfs"
        for stream in wanted:
            source = found.get(stream)
            if source is not None:
                kept.append(
                    self._fsntfs_item(
                        path, stream, source, inode, allocated, realloc, times, why
                    )
                )
        lost = [stream for stream in wanted if stream not in found]
        message = f"{reason}; {len(wanted) - len(lost)} read through libfsntfs"
        if lost:
            message += f"; {len(lost)} not found by libfsntfs either: "
            message += ", ".join(lost)
        self._warn(where, message)
        return kept


def parse_attribute_list(data: bytes) -> list[tuple[int, str, int]]:
    """(attribute type, name, MFT entry holding it) of each $ATTRIBUTE_LIST
    entry, up to the first one that does not fit in data."""
    entries = []
    offset = 0
    # type, entry length, name length (characters), name offset; at 16 the
    # 6-byte MFT entry number of the file reference.
    while offset + 26 <= len(data):
        kind, length, name_length, name_offset = struct.unpack_from(
            "<IHBB", data, offset
        )
        end = offset + length
        name_end = offset + name_offset + 2 * name_length
        if length < 26 or end > len(data) or (name_length and name_end > end):
            break
        name = data[offset + name_offset : name_end] if name_length else b""
        entries.append(
            (
                kind,
                name.decode("utf-16-le", "backslashreplace"),
                int.from_bytes(data[offset + 16 : offset + 22], "little"),
            )
        )
        offset = end
    return entries


def lookup(
    fs: TSKFileSystem, volume: Volume, path: str, stream: str = ""
) -> FileItem | None:
    """The item of one allocated path (and stream), or None if absent."""
    try:
        tsk_file = fs.fs_info.open(path)
    except OSError:
        return None
    meta = tsk_file.info.meta
    if meta is None:
        return None
    inode = int(meta.addr)
    meta_type = int(meta.type)
    is_dir = meta_type in _META_DIRS
    is_file = meta_type == _META_REG
    times = fs.times(meta)
    if stream:
        for attribute in tsk_file:
            attr_info = attribute.info
            if (
                int(attr_info.type) == _ATTR_NTFS_DATA
                and _decode(attr_info.name) == stream
            ):
                size = int(attr_info.size)
                item = FileItem(
                    volume, path, stream, inode, size, True, True, times,
                    make_path_spec(volume, inode, path, stream),
                )  # fmt: skip
                item._opener = fs.opener(
                    inode, _ATTR_NTFS_DATA, int(attr_info.id), size, item.display_path
                )
                return item
        return None
    size = int(meta.size) if is_file else 0
    item = FileItem(
        volume, path, "", inode, size, True, is_file, times,
        make_path_spec(volume, inode, path, None), is_dir=is_dir,
    )  # fmt: skip
    if is_file:
        item._opener = fs.opener(inode, None, None, size, item.display_path)
    return item


def hand_over(item: FileItem) -> tuple[Any, ...]:
    """What another process needs to make the item again from its own open
    file system (taken_over): a scan worker reads the items the main process
    walked instead of walking the volume itself."""
    return (
        item.path,
        item.stream,
        item.inode,
        item.size,
        item.allocated,
        item.is_file,
        item.is_dir,
        item.reallocated,
        item.has_metadata,
        item.location,
        item.reopen,
        # TSK cannot open again what libfsntfs reads for it: its times go along.
        dict(item.times) if item.reopen and item.reopen[0] == "fsntfs" else None,
    )


def taken_over(fs: TSKFileSystem, volume: Volume, key: tuple[Any, ...]) -> FileItem:
    """The item hand_over described, opened again by inode when it is read."""
    path, stream, inode, size, allocated, is_file, is_dir, realloc, has_meta = key[:9]
    location, reopen, times = key[9:]
    if times is None:
        times = Times(fs, inode) if has_meta and inode is not None else {}
    make = make_path_spec
    if reopen is not None and reopen[0] == "fsntfs":
        make = _make_ntfs_path_spec
    path_spec = functools.partial(make, volume, inode, path, stream or None)
    item = FileItem(
        volume, path, stream, inode, size, allocated, is_file, times, path_spec,
        is_dir, realloc, has_meta, location, reopen,
    )  # fmt: skip
    if reopen is None or inode is None:
        return item
    if reopen[0] == "tsk":
        item._opener = functools.partial(
            fs.content, inode, stream, reopen[1], reopen[2], size, item.display_path
        )
    else:
        item._opener = functools.partial(
            _open_fsntfs, fs, inode, stream, size, item.display_path, reopen[1]
        )
    return item


def _open_fsntfs(
    fs: TSKFileSystem, inode: int, stream: str, size: int, name: str, why: str
) -> fsntfs.FsntfsStream:
    fallback = fs.fallback
    try:
        if fallback is None:
            raise OSError("libfsntfs is not used for this volume")
        source = fallback.source(inode, stream)
        entry = fallback.entry(inode)
    except OSError as error:
        raise OSError(f"{name}: {why}; {error}") from None
    return fallback.stream(entry, stream, source, size, name, why)
