"""Walking file systems TSK cannot read, through dfvfs' own back ends.

Slower than the TSK walk and limited to what the back end lists (usually
allocated entries only), but it covers XFS, APFS and whatever else dfvfs
knows.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

from dfvfs.path import factory as path_spec_factory

from toolmarks.evidence.model import FileItem, SharedReader, Volume

Warn = Callable[[str, str], None]

_TIME_ATTRIBUTES = (
    ("creation", "creation_time"),
    ("modification", "modification_time"),
    ("access", "access_time"),
    ("change", "change_time"),
)


def _times(file_entry: Any) -> dict[str, Any]:
    result = {}
    for key, attribute in _TIME_ATTRIBUTES:
        try:
            value = getattr(file_entry, attribute, None)
        except Exception:  # noqa: BLE001 - back ends raise assorted errors
            value = None
        if value is not None:
            result[key] = value
    return result


def _inode(file_entry: Any) -> int | None:
    for name in ("inode", "mft_entry", "identifier"):
        value = getattr(file_entry.path_spec, name, None)
        if isinstance(value, int):
            return value
    return None


def _stream_path_spec(path_spec: Any, stream: str) -> Any:
    """The path spec of a named data stream, where the back end has them."""
    kwargs = {
        key: value
        for key, value in path_spec.__dict__.items()
        if key not in ("type_indicator",) and value is not None
    }
    kwargs["data_stream"] = stream
    try:
        return path_spec_factory.Factory.NewPathSpec(path_spec.type_indicator, **kwargs)
    except (TypeError, ValueError, KeyError):
        return path_spec


class DfvfsWalker:
    """Walks a dfvfs file system entry by entry."""

    def __init__(self, file_system: Any, volume: Volume, warn: Warn) -> None:
        self._fs = file_system
        self._volume = volume
        self._warn = warn

    def walk(self) -> Iterator[FileItem]:
        try:
            root = self._fs.GetRootFileEntry()
        except Exception as exception:  # noqa: BLE001 - reported, not raised
            self._warn(
                self._volume.where("/"), f"cannot open root directory: {exception}"
            )
            return
        if root is None:
            self._warn(self._volume.where("/"), "cannot open root directory")
            return
        visited: set[Any] = set()
        stack: list[tuple[Any, str]] = [(root, "/")]
        while stack:
            directory, dir_path = stack.pop()
            key = _inode(directory)
            if key is not None:
                if key in visited:
                    continue
                visited.add(key)
            try:
                children = list(directory.sub_file_entries)
            except Exception as exception:  # noqa: BLE001 - reported, not raised
                self._warn(
                    self._volume.where(dir_path), f"cannot read directory: {exception}"
                )
                continue
            subdirs = []
            for child in children:
                try:
                    name = child.name
                    if name in (".", ".."):
                        continue
                    path = f"{dir_path.rstrip('/')}/{name}"
                    yield from self._items(child, path)
                    if child.IsDirectory() and not child.IsLink():
                        subdirs.append((child, path))
                except Exception as exception:  # noqa: BLE001 - reported
                    self._warn(
                        self._volume.where(dir_path), f"unreadable entry: {exception}"
                    )
            # Reverse so the pop order follows the listing order.
            stack.extend(reversed(subdirs))

    def _items(self, file_entry: Any, path: str) -> Iterator[FileItem]:
        is_dir = file_entry.IsDirectory()
        is_file = file_entry.IsFile()
        allocated = file_entry.IsAllocated()
        times = _times(file_entry)
        inode = _inode(file_entry)
        streams = {stream.name: stream for stream in file_entry.data_streams}
        # Some files have only named streams (NTFS $Secure): their default
        # stream is empty, as TSK reports it.
        has_default = "" in streams
        size = 0
        if is_file and has_default:
            size = file_entry.size or 0
        item = FileItem(
            volume=self._volume,
            path=path,
            stream="",
            inode=inode,
            size=size,
            allocated=allocated,
            is_file=is_file,
            times=times,
            path_spec=file_entry.path_spec,
            is_dir=is_dir,
        )
        if is_file:
            item._opener = _opener(file_entry, "") if has_default else _empty
        yield item
        for name in streams:
            if not name:
                continue
            stream_item = FileItem(
                volume=self._volume,
                path=path,
                stream=name,
                inode=inode,
                size=_stream_size(file_entry, name),
                allocated=allocated,
                is_file=True,
                times=times,
                path_spec=_stream_path_spec(file_entry.path_spec, name),
            )
            stream_item._opener = _opener(file_entry, name)
            yield stream_item


def _stream_size(file_entry: Any, name: str) -> int:
    try:
        file_object = file_entry.GetFileObject(data_stream_name=name)
        return file_object.get_size() if file_object is not None else 0
    except Exception:  # noqa: BLE001 - size stays unknown
        return 0


def _empty() -> io.BytesIO:
    return io.BytesIO(b"")


def _opener(file_entry: Any, stream: str) -> Callable[[], Any]:
    def _open() -> Any:
        try:
            file_object = file_entry.GetFileObject(data_stream_name=stream)
        except Exception as exception:  # noqa: BLE001 - turned into OSError
            raise OSError(f"{file_entry.path_spec.location}: {exception}") from None
        if file_object is None:
            raise OSError(f"{file_entry.path_spec.location}: no such data stream")
        return SharedReader(file_object, str(file_entry.path_spec.location))

    return _open
