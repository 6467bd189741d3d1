"""libfsntfs: the reader of NTFS content, and of the entries TSK gives up on.

The Sleuth Kit walks (deleted names, orphans); libfsntfs, which dfvfs and
plaso read NTFS with, reads the streams the walk lists (TSKFileSystem.content);
a large stream whose extents libfsntfs reports plain is read straight from them
(Direct). libfsntfs also lists the streams of the entries where TSK shows signs
of giving up: TSK drops a $DATA attribute whose data runs it refuses (a run
longer than the volume, which every large sparse file has, or a corrupt one)
and reports the file as empty; its attribute list parser reads at most 256
extension MFT entries and 256 distinct attributes of one file.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any

import pyfsntfs

from toolmarks.evidence.model import FileRange, ReadOnlyStream

# libfsntfs extent flag: no clusters behind the extent (sparse).
_EXTENT_SPARSE = 0x00000001
_ATTRIBUTE_LIST = 0x20
_DATA = 0x80
_COMPRESSED = 0x800  # a file attribute flag ($STANDARD_INFORMATION)
# Smaller streams are read through libfsntfs: finding out whether a stream can
# be read directly costs about 5 µs, what reading 12 KiB directly saves.
DIRECT_MIN = 64 * 1024
# NTFS' own files: MFT entries 0-23, and those in $Extend (entry 11).
_FIRST_USER_ENTRY = 24
_EXTEND = 11
_MFT_INDEX = 0xFFFFFFFFFFFF  # of a file reference (the rest is a sequence)
# What the libyal bindings raise on bad input.
ERRORS = (OSError, RuntimeError, ValueError, TypeError, MemoryError)


def short(error: BaseException, limit: int = 300) -> str:
    """A libyal error message on one line, cut to a readable length."""
    text = (str(error).strip() or type(error).__name__).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class FsntfsStream(ReadOnlyStream):
    """Read-only stream over a libfsntfs file entry or alternate data stream.

    Sparse runs and the bytes past the initialized size read as zeros;
    libfsntfs produces them per read, so a sparse file is never held whole.
    """

    def __init__(
        self,
        source: Any,
        size: int,
        name: str,
        why: str = "",
        direct: Direct | None = None,
    ) -> None:
        super().__init__(size, name)
        self._source = source
        # What read errors begin with: the stream, and why libfsntfs reads it
        # when TSK could not.
        self._where = f"{name}: {why}; " if why else f"{name}: "
        self._direct = direct
        self.reads_into = direct is not None

    def readinto(self, buffer: Any) -> int:
        if self._direct is None:
            return super().readinto(buffer)
        if self.closed:
            raise ValueError("I/O operation on closed file")
        offset = self._offset
        size = max(0, min(len(buffer), self._size - offset))
        view = memoryview(buffer)[:size]
        if not self._direct.read_into(offset, view):
            view[:] = self._read_at(offset, size)
        self._offset = offset + size
        return size

    def _read_at(self, offset: int, size: int) -> bytes:
        chunks = []
        wanted = size
        while wanted > 0:
            try:
                data = self._source.read_buffer_at_offset(wanted, offset)
            except ERRORS as error:
                raise OSError(
                    f"{self._where}libfsntfs read error at offset {offset}: "
                    f"{short(error)}"
                ) from error
            if not data:
                # A silent end before the stream's size would drop its tail.
                raise OSError(
                    f"{self._where}libfsntfs returned no data at offset "
                    f"{offset} of {self._size} bytes"
                )
            chunks.append(data)
            offset += len(data)
            wanted -= len(data)
        return b"".join(chunks)

    def data_ranges(self) -> list[tuple[int, int]] | None:
        """What data_ranges() tells of the stream; None if libfsntfs cannot."""
        try:
            return data_ranges(self._source)
        except ERRORS:
            return None


class Direct:
    """A stream's clusters read straight from the volume libfsntfs reads.

    libfsntfs reads a stream cluster block by cluster block through a Python
    file object, and copies each block twice. Where every extent of the stream
    has clusters behind it, none is compressed and the stream is initialised to
    its end, its bytes are its extents' bytes, read here from the same file
    object in one call a run: with preadv into the reader's buffer on a raw
    image. Reading 742 MiB of large files took 0.37 s of CPU through libfsntfs
    and 0.07 s so on a raw image; 0.83 and 0.61 s (the inflating included) on
    an E01.
    """

    __slots__ = ("_file", "_read", "_runs", "_starts")

    def __init__(self, file: Any, runs: list[tuple[int, int, int]]) -> None:
        self._file = file
        self._runs = runs  # (first byte, end, volume offset of the first byte)
        # Where each run starts: a read finds its first run by bisection, not
        # by passing the runs before it (a file may have thousands).
        self._starts = [start for start, _, _ in runs]
        self._read = file.pread_into if isinstance(file, FileRange) else self._copy

    def read_into(self, offset: int, view: memoryview) -> bool:
        """Fills view with the bytes at offset of the stream; False if the
        volume cannot give them (libfsntfs then reads them, and says what is
        wrong)."""
        stop = offset + len(view)
        runs = self._runs
        # The run holding offset (the first starts at 0), and those after it.
        for index in range(bisect.bisect_right(self._starts, offset) - 1, len(runs)):
            start, end, where = runs[index]
            if end <= offset:
                continue  # an empty run
            if start >= stop:
                break
            first, last = max(start, offset), min(end, stop)
            piece = view[first - offset : last - offset]
            if not self._read(where + first - start, piece):
                return False
        return True

    def _copy(self, offset: int, view: memoryview) -> bool:
        # libfsntfs reads through this file object too: its reads seek first,
        # so they read right after a seek of ours (test_direct_read's E01).
        try:
            view[:] = _read_exactly(self._file, offset, len(view))
        except OSError:
            return False
        return True


def _read_exactly(file_object: Any, offset: int, size: int) -> bytes:
    """size bytes at offset of a volume's file object.

    Raises:
      OSError: the volume cannot give them all.
    """
    try:
        file_object.seek(offset)
        data = file_object.read(size)
    except Exception as error:  # noqa: BLE001 - dfvfs back ends raise many types
        raise OSError(f"volume offset {offset}: {short(error)}") from None
    if len(data) != size:
        raise OSError(f"volume offset {offset}: short read")
    return data


def direct(
    file_object: Any, entry: Any, stream: str, source: Any, size: int
) -> Direct | None:
    """How to read source (entry itself or its stream named stream) straight
    from file_object, the volume libfsntfs reads; None where only libfsntfs
    reads it as it is: resident, sparse, compressed, not initialised to its
    end, or split over an attribute list."""
    if file_object is None or size <= 0:
        return None
    try:
        if entry.file_attribute_flags & _COMPRESSED:
            return None
        found = None
        for index in range(entry.number_of_attributes):
            attribute = entry.get_attribute(index)
            kind = attribute.attribute_type
            if kind == _ATTRIBUTE_LIST:
                return None
            if kind == _DATA and (attribute.attribute_name or "") == stream:
                if found is not None:
                    return None
                found = attribute
        if found is None or not found.data_size == found.valid_data_size == size:
            return None
        runs, position = [], 0
        limit = file_object.get_size()
        for index in range(source.number_of_extents):
            offset, length, flags = source.get_extent(index)
            if flags or offset < 0:
                return None
            end = min(position + int(length), size)
            if offset + end - position > limit:
                return None
            runs.append((position, end, int(offset)))
            position = end
            if position == size:
                return Direct(file_object, runs)
    except ERRORS:
        return None
    return None


def extents(source: Any) -> list[tuple[int, int]]:
    """(volume byte offset, byte length) of the extents with clusters behind
    them, in stream order; empty if libfsntfs cannot list them."""
    found = []
    try:
        for index in range(source.number_of_extents):
            offset, size, flags = source.get_extent(index)
            if not flags & _EXTENT_SPARSE:
                found.append((int(offset), int(size)))
    except ERRORS:
        return []
    return found


def data_ranges(source: Any) -> list[tuple[int, int]]:
    """(start, end) byte ranges of the stream with clusters behind them; the
    rest (sparse extents) reads as zeros."""
    size = int(source.get_size())
    ranges, position = [], 0
    for index in range(source.get_number_of_extents()):
        _, length, flags = source.get_extent(index)
        if not flags & _EXTENT_SPARSE and position < size:
            ranges.append((position, min(position + int(length), size)))
        position += int(length)
    return ranges


def first_extent(source: Any) -> int | None:
    """Volume byte offset of the first extent with clusters behind it."""
    found = extents(source)
    return found[0][0] if found else None


class FsntfsVolume:
    """libfsntfs over one NTFS volume, opened on first use."""

    def __init__(self, open_volume: Callable[[], Any]) -> None:
        self._open_volume = open_volume
        self._volume: Any = None
        self._file_object: Any = None
        self._error: str | None = None
        self._last: tuple[int, Any] | None = None

    def entry(self, inode: int) -> Any:
        """The libfsntfs file entry of MFT entry inode.

        Raises:
          OSError: the volume or the entry cannot be read.
        """
        if self._last is not None and self._last[0] == inode:
            return self._last[1]
        volume = self._open()
        try:
            entry = volume.get_file_entry(inode)
        except ERRORS as error:
            raise OSError(f"libfsntfs cannot read MFT entry {inode}: {short(error)}")
        # The streams of one entry come one after the other, and an entry with
        # hundreds of extension records takes libfsntfs about 8 ms to read.
        self._last = (inode, entry)
        return entry

    def source(self, inode: int, stream: str) -> Any:
        """The default data stream ("") or the named stream of MFT entry inode.

        Raises:
          OSError: the volume, the entry or the stream cannot be read.
        """
        entry = self.entry(inode)
        if not stream:
            return entry
        try:
            found = entry.get_alternate_data_stream_by_name(stream)
        except ERRORS as error:
            raise OSError(
                f"libfsntfs cannot read stream {stream}: {short(error)}"
            ) from None
        if found is None:
            raise OSError(f"libfsntfs finds no stream {stream} in MFT entry {inode}")
        return found

    def stream(
        self, entry: Any, stream: str, source: Any, size: int, name: str, why: str = ""
    ) -> FsntfsStream:
        """A reader of source: entry itself (stream "") or its stream named
        stream."""
        plan = None
        if size >= DIRECT_MIN:
            plan = direct(self._file_object, entry, stream, source, size)
        return FsntfsStream(source, size, name, why, plan)

    def volume(self) -> Any:
        """The pyfsntfs volume.

        Raises:
          OSError: libfsntfs cannot open it.
        """
        return self._open()

    def read_at(self, offset: int, size: int) -> bytes:
        """Bytes of the volume itself (index buffers the walk reads raw).

        Raises:
          OSError: the volume cannot be read there.
        """
        self._open()
        return _read_exactly(self._file_object, offset, size)

    def _open(self) -> Any:
        if self._volume is not None:
            return self._volume
        if self._error is not None:
            raise OSError(self._error)
        try:
            file_object = self._open_volume()
            volume = pyfsntfs.volume()
            volume.open_file_object(file_object)
        except ERRORS as error:
            self._error = f"libfsntfs cannot open the volume: {short(error)}"
            raise OSError(self._error) from None
        # The volume reads through the file object: keep both alive together.
        self._file_object = file_object
        self._volume = volume
        return volume

    def stream_sizes(self, metadata: bool) -> Iterator[int]:
        """The size of every stream of the volume's MFT records, in record
        order, 0 for a directory: what a walk would list, estimated without one
        (deleted names left in directories are not counted). metadata: count
        the content of NTFS' own files ($MFT, $Extend/...) too.

        Raises:
          OSError: the volume cannot be read.
        """
        volume = self._open()
        system = set(range(_FIRST_USER_ENTRY))
        try:
            extend = volume.get_file_entry(_EXTEND)
            for number in range(extend.number_of_sub_file_entries):
                child = extend.get_sub_file_entry(number)
                system.add(child.file_reference & _MFT_INDEX)
        except ERRORS:
            pass  # its files are then counted as content
        for index in range(volume.number_of_file_entries):
            try:
                entry = volume.get_file_entry(index)
                if (
                    entry.is_empty()
                    or not entry.number_of_attributes
                    or entry.base_record_file_reference
                ):
                    continue  # never used, or an extension of another record
                own = metadata or index not in system
                has_data = entry.has_default_data_stream()
                yield int(entry.size) if own and has_data else 0
                for number in range(entry.number_of_alternate_data_streams):
                    stream = entry.get_alternate_data_stream(number)
                    yield int(stream.size) if own else 0
            except ERRORS:
                continue

    @staticmethod
    def streams(entry: Any) -> dict[str, Any]:
        """The entry's alternate data streams by name.

        Raises:
          OSError: one of them cannot be read.
        """
        found = {}
        try:
            for index in range(entry.number_of_alternate_data_streams):
                stream = entry.get_alternate_data_stream(index)
                found[stream.name or ""] = stream
        except ERRORS as error:
            raise OSError(
                f"libfsntfs cannot list its alternate data streams: {short(error)}"
            ) from None
        return found
