"""Reading hostile input, for every parser: a file read whole up to a limit,
never past it, and an exception said in one bounded line."""

from __future__ import annotations

import errno
import io
import os
from typing import BinaryIO

READ_CHUNK = 1024 * 1024
MAX_ERROR_TEXT = 400


class Refused(Exception):
    """The file is not read or not parsed; str() says why."""


def describe(error: BaseException) -> str:
    """The error's type and message on one line of at most MAX_ERROR_TEXT."""
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > MAX_ERROR_TEXT:
        text = text[:MAX_ERROR_TEXT] + "…"
    return f"{type(error).__name__}: {text}"


def read_bounded(file_object: BinaryIO, max_size: int) -> bytes:
    """All bytes of the file; Refused if it holds more than max_size or cannot
    be read. Reads at most max_size + 1 bytes whatever size it claims."""
    try:
        size = _size_of(file_object)
    except Exception as error:  # a broken file object is a warning
        raise Refused(f"cannot read the file: {describe(error)}") from error
    if size is not None and size > max_size:
        raise Refused(f"{size} bytes, larger than the limit of {max_size}: not read")
    try:
        file_object.seek(0, os.SEEK_SET)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # a stream that cannot seek is read from where it stands
    chunks, total = [], 0
    try:
        while total <= max_size:
            chunk = file_object.read(min(READ_CHUNK, max_size + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as error:
        raise Refused(f"cannot read the file: {describe(error)}") from error
    if total > max_size:
        raise Refused(f"more than the limit of {max_size} bytes: not read")
    return b"".join(chunks)


def _size_of(file_object: BinaryIO) -> int | None:
    """The size without reading: dfvfs file objects have get_size(), others seek."""
    get_size = getattr(file_object, "get_size", None)
    if callable(get_size):
        return int(get_size())
    try:
        size = file_object.seek(0, os.SEEK_END)
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return int(size if size is not None else file_object.tell())


def data_ranges(file_object: BinaryIO) -> list[tuple[int, int]] | None:
    """The (start, end) byte ranges of a stream that hold data; the rest is
    sparse and reads as zeros. None when the stream cannot tell: read it all.

    Evidence streams say it themselves (their data runs); local files through
    SEEK_DATA/SEEK_HOLE.
    """
    own = getattr(file_object, "data_ranges", None)
    if callable(own):
        try:
            return own()
        except Exception:  # noqa: BLE001 - unknown ranges: the stream is read whole
            return None
    seek_data = getattr(os, "SEEK_DATA", None)
    seek_hole = getattr(os, "SEEK_HOLE", None)
    try:
        descriptor = file_object.fileno()
        size = os.fstat(descriptor).st_size
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    if seek_data is None or seek_hole is None:
        return None
    ranges: list[tuple[int, int]] = []
    position = 0
    try:
        while position < size:
            try:
                start = os.lseek(descriptor, position, seek_data)
            except OSError as error:
                if error.errno == errno.ENXIO:
                    break  # nothing but a hole up to the end
                raise
            position = min(os.lseek(descriptor, start, seek_hole), size)
            ranges.append((start, position))
    except OSError:
        return None
    return ranges
