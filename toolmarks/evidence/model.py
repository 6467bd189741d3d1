"""Data types of the evidence layer: volumes, file items and the error type."""

from __future__ import annotations

import dataclasses
import functools
import io
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO

from dfvfs.resolver import resolver


class EvidenceError(Exception):
    """The image cannot be opened at all, or a request cannot be served."""


class ReadOnlyStream(io.RawIOBase):
    """A sized, seekable, read-only stream; subclasses read at an offset.

    Each stream keeps its own position: dfvfs caches file objects per path spec
    and TSK reads the volume underneath, so a shared offset cannot be trusted.
    """

    # Whether readinto fills the buffer straight from the image, without the
    # bytes object read() makes (and copies once more here).
    reads_into = False

    def __init__(self, size: int, name: str) -> None:
        super().__init__()
        self._size = size
        self._offset = 0
        self.name = name

    def _read_at(self, offset: int, size: int) -> bytes:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._offset

    def get_size(self) -> int:
        """Size in bytes (dfvfs file object style)."""
        return self._size

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._offset
        elif whence == os.SEEK_END:
            offset += self._size
        elif whence != os.SEEK_SET:
            raise ValueError(f"invalid whence: {whence}")
        if offset < 0:
            raise OSError(f"{self.name}: negative seek offset")
        self._offset = offset
        return offset

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        remaining = self._size - self._offset
        if remaining <= 0:
            return b""
        if size is None or size < 0 or size > remaining:
            size = remaining
        data = self._read_at(self._offset, size)
        self._offset += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)


class SharedReader(ReadOnlyStream):
    """A private read position over a dfvfs file object."""

    def __init__(self, file_object: Any, name: str) -> None:
        super().__init__(file_object.get_size(), name)
        self._file_object = file_object

    def _read_at(self, offset: int, size: int) -> bytes:
        try:
            self._file_object.seek(offset, os.SEEK_SET)
            return self._file_object.read(size)
        except Exception as exception:  # dfvfs back ends raise many types
            raise OSError(
                f"{self.name}: read error at offset {offset}: {exception}"
            ) from exception


class LazyTimes(Mapping[str, Any]):
    """An entry's times, made into dfdatetime values when first read
    (subclasses: _make): the walk of 100,000 small files spent 5.5 µs an entry
    on times only the few entries with a hit show. A copy (pickle) holds them
    made."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[str, Any] | None = None

    def _make(self) -> dict[str, Any]:
        raise NotImplementedError

    def _made(self) -> dict[str, Any]:
        if self._values is None:
            self._values = self._make()
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._made()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._made())

    def __len__(self) -> int:
        return len(self._made())

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self._made(),))


class FileRange(ReadOnlyStream):
    """A range of a local file (a volume inside a raw image), read with pread."""

    def __init__(self, path: str, offset: int, size: int, name: str) -> None:
        super().__init__(size, name)
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - a reader
        self._fd = self._file.fileno()
        self._base = offset

    def read(self, size: int | None = -1) -> bytes:
        # libfsntfs reads every MFT record and data run through here: kept short.
        if self.closed:
            raise ValueError("I/O operation on closed file")
        offset = self._offset
        if size is None or size < 0 or offset + size > self._size:
            size = max(0, self._size - offset)
        data = os.pread(self._fd, size, self._base + offset)
        self._offset = offset + len(data)
        return data

    def pread_into(self, offset: int, view: memoryview) -> bool:
        """Fills view with the bytes at offset of the range, without moving
        its position; False if the range or the file ends first."""
        if offset + len(view) > self._size:
            return False
        return os.preadv(self._fd, [view], self._base + offset) == len(view)

    def close(self) -> None:
        self._file.close()
        super().close()


@dataclasses.dataclass(frozen=True)
class Volume:
    """One file system found in the image.

    label is "" for a bare file system, "p1", "p5" for partitions (the dfvfs
    location without "/"), "p1/vss1" or "vss1" for Volume Shadow Copy stores.
    path_spec is the dfvfs path spec of the volume the file system lives on
    (partition, VSS store or the whole media); fs_path_spec is the path spec
    of the file system root itself, ready for dfvfs' OpenFileSystem.
    """

    label: str
    path_spec: Any
    fs_type: str
    offset: int | None
    size: int | None
    fs_path_spec: Any = dataclasses.field(default=None, compare=False)
    # "TSK" when The Sleuth Kit reads it (deleted entries, ADS), else the dfvfs
    # back end type indicator used as a fallback (allocated entries only).
    backend: str = dataclasses.field(default="TSK", compare=False)
    # VSS store number (1-based) or None for a current volume.
    vss_store: int | None = None

    def where(self, path: str) -> str:
        """A path in this volume as messages show it: "<label>:<path>" or "<path>"."""
        return f"{self.label}:{path}" if self.label else path


@dataclasses.dataclass(eq=False)
class FileItem:
    """One file entry or one NTFS data stream of a file entry.

    Directories are items too (is_file False, size 0). A named NTFS data stream
    (alternate data stream, ADS) is its own item with stream set; its is_file is
    True even when it hangs off a directory, since it is a byte stream.
    reallocated is True for a deleted name whose metadata entry now belongs to
    another file: its times, size and content are that other file's.
    has_metadata is False for deleted names whose metadata is gone (e.g. ext
    names with inode 0): there is nothing to read.
    """

    volume: Volume
    path: str
    stream: str
    inode: int | None
    size: int
    allocated: bool
    is_file: bool
    times: Mapping[str, Any]
    # The dfvfs path spec, or a functools.partial that makes it when first read:
    # dfvfs takes about 15 µs to make one, and only a few items ever need it.
    path_spec: Any
    is_dir: bool = False
    reallocated: bool = False
    has_metadata: bool = True
    # Byte offset in the volume of the stream's first data run, None when its
    # data is resident or unknown: readers sort by it to read the disk in order.
    location: int | None = None
    # How another process opens the stream again from its own copy of the file
    # system, by inode: ("tsk", attribute type, attribute id) or ("fsntfs", why
    # libfsntfs reads it); None when only this process's opener or the path
    # spec can (see tsk.hand_over).
    reopen: tuple[Any, ...] | None = None
    _opener: Callable[[], BinaryIO] | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    @property
    def display_path(self) -> str:
        """Where the item is, as "<label>:<path>[:<stream>]" ("<path>..." if no label)."""
        text = self.volume.where(self.path)
        if self.stream:
            text = f"{text}:{self.stream}"
        return text

    def open(self) -> BinaryIO:
        """Opens this stream read-only (read, seek, tell).

        Raises:
          OSError: for directories, names without metadata, unreadable data.
        """
        if self.is_dir and not self.stream:
            raise IsADirectoryError(f"{self.display_path}: is a directory")
        if not self.has_metadata:
            raise OSError(f"{self.display_path}: deleted name without metadata")
        if self._opener is not None:
            return self._opener()
        # A FileItem that crossed a process boundary has no opener: dfvfs can
        # still resolve its path spec on its own.
        try:
            file_object = resolver.Resolver.OpenFileObject(self.path_spec)
        except Exception as exception:  # dfvfs raises many error types
            raise OSError(f"{self.display_path}: {exception}") from exception
        if file_object is None:
            raise OSError(f"{self.display_path}: cannot be opened")
        return SharedReader(file_object, self.display_path)

    def __getstate__(self) -> dict[str, Any]:
        # The opener holds pytsk3 handles, which cannot be pickled.
        state = dict(self.__dict__)
        state["_opener"] = None
        state["_path_spec"] = self.path_spec
        return state


def _get_path_spec(item: FileItem) -> Any:
    value = item.__dict__["_path_spec"]
    if isinstance(value, functools.partial):
        value = item.__dict__["_path_spec"] = value()
    return value


def _set_path_spec(item: FileItem, value: Any) -> None:
    item.__dict__["_path_spec"] = value


# Set after the dataclass is made, so that its __init__ and repr use it.
FileItem.path_spec = property(_get_path_spec, _set_path_spec)  # type: ignore[assignment]
