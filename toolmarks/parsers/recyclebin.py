"""Windows Recycle Bin detection core: one `$I` or `INFO2` file in, traces out.

Vista and later keep, per deleted file, a `$I` file (format 1: Vista to 8.1,
the path in a fixed 520-byte field; format 2: Windows 10 on, the path with its
length) beside the `$R` file holding the content. XP and older keep one
`INFO2` per recycler folder, a header and fixed-size records (800 bytes with a
UTF-16 path on NT, 280 bytes of ANSI path on 9x) naming the content
`D<drive letter><index><extension>`. Layouts: libyal dtformats "Windows
Recycle.Bin file formats" and "Windows Recycler file formats", as plaso's
recycler.yaml. An entry whose original path matches a filename indicator is one
Trace at its deletion time. Bad input never raises: it ends as a warning.
"""

from __future__ import annotations

import dataclasses
import ntpath
import re
import struct
from typing import BinaryIO

from dfdatetime import filetime as dfdatetime_filetime

from toolmarks.events import NOT_A_TIME, Match, Trace
from toolmarks.indicators.compiler import CompiledSet
from toolmarks.parsers import manager
from toolmarks.parsers.reading import Refused, describe, read_bounded

DATA_TYPE = "toolmarks:recyclebin:trace"

# plaso's wording (timeliner.yaml, windows:metadata:deleted_item).
DESC_DELETION = "Content Deletion Time"

# An INFO2 of 64 MiB holds some 80,000 records; a bigger one is no INFO2.
MAX_SIZE = 64 * 1024 * 1024

# $I: format version, original file size, deletion FILETIME.
_I_HEADER = struct.Struct("<QQQ")
_I_NAME_LENGTH = struct.Struct("<I")  # format 2: characters, NUL included
_I_V1_NAME_SIZE = 520  # format 1: MAX_PATH UTF-16 characters
_I_VERSIONS = (1, 2)

# INFO2: version, two counters, record size, a total; plaso names all but the
# record size "unknown", and so does this module.
_INFO2_HEADER = struct.Struct("<5I")
# ANSI path, index, drive number (0 = A:), deletion FILETIME, file size.
_INFO2_RECORD = struct.Struct("<260sIIQI")
_INFO2_UNICODE_SIZE = 520
# Record sizes by INFO2 version: 4 of 9x/ME (ANSI only), 5 of NT/2000/XP.
_INFO2_RECORD_SIZES = {4: _INFO2_RECORD.size, 5: _INFO2_RECORD.size + 520}
_DRIVES = 26
# FILETIME of 10000-01-01: Python's datetime, and so the timeline writers, end
# before it; a later value is no time Windows wrote.
_FILETIME_LIMIT = 2650467744000000000

# "C:" or "\\?\C:" before a path: filename indicators match the path within its
# volume, as the scanner's windows_path gives it ("\Users\bob\wce.exe").
_DRIVE_PREFIX = re.compile(r"^(?:\\\\\?\\)?[A-Za-z]:(?=\\|$)")


@dataclasses.dataclass
class DeletedItem:
    """One deleted file or folder as a `$I` file or an INFO2 record names it.

    Attribute names are those of plaso's windows:metadata:deleted_item.
    """

    original_filename: str
    file_size: int
    deletion_filetime: int  # as stored; 0 when not recorded
    recycle_format: str  # "$I" or "INFO2"
    format_version: int
    offset: int  # of the $I header (0) or of the INFO2 record
    content_file: str  # the $R file, or the INFO2 D<drive><index><ext> file
    record_index: int | None = None  # INFO2
    drive_number: int | None = None  # INFO2
    short_filename: str | None = None  # INFO2 ANSI path, when it differs
    # INFO2: the record's content was restored or purged (its ANSI path's first
    # byte is zeroed then); the record stays.
    removed: bool = False
    truncated: bool = False  # the path was cut by the end of the file or record

    @property
    def drive_letter(self) -> str | None:
        number = self.drive_number
        if number is None or number >= _DRIVES:
            return None
        return chr(ord("A") + number)


@dataclasses.dataclass
class RecycleBinResult:
    """The outcome of one file: its entries, traces and warnings."""

    source: str
    items: list[DeletedItem] = dataclasses.field(default_factory=list)
    traces: list[Trace] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def warn(self, problem: str) -> None:
        self.warnings.append(f"{self.source}: recycle bin: {problem}")


def is_recycle_bin_name(file_name: str) -> bool:
    """True for `$I…` and `INFO2` names, the only files this parser reads."""
    upper = file_name.upper()
    return upper == "INFO2" or (upper.startswith("$I") and len(upper) > 2)


def parse_recyclebin(
    file_object: BinaryIO,
    source: str,
    compiled: CompiledSet,
    file_name: str,
    *,
    max_size: int = MAX_SIZE,
) -> RecycleBinResult:
    """Parses one `$I` or INFO2 file and returns its traces; never raises.

    The file name says the format, as in plaso: neither file has a signature.
    Other names give an empty result without warnings, since plaso hands every
    file to a parser without signatures.
    """
    result = RecycleBinResult(source=source)
    if not is_recycle_bin_name(file_name):
        return result
    try:
        data = read_bounded(file_object, max_size)
    except Refused as error:
        result.warn(str(error))
        return result
    except Exception as error:  # noqa: BLE001 - any file-object failure is a warning
        result.warn(f"cannot read the file: {describe(error)}")
        return result
    try:
        if file_name.upper() == "INFO2":
            _parse_info2(data, result)
        else:
            _parse_i(data, file_name, result)
        result.traces = [
            trace
            for item in result.items
            if (trace := _trace(item, source, compiled)) is not None
        ]
    except Exception as error:  # noqa: BLE001
        # A bug of ours must not end a scan of a whole disk at one odd file; it
        # is reported, and tests fail on any "internal error" warning.
        result.warn(f"internal error: {describe(error)}")
        result.traces = []
    return result


# --- $I files -------------------------------------------------------------------


def _parse_i(data: bytes, file_name: str, result: RecycleBinResult) -> None:
    size = len(data)
    if size < _I_HEADER.size:
        result.warn(
            f"truncated $I header at offset 0: {size} bytes, {_I_HEADER.size} needed"
        )
        return
    if not any(data):
        result.warn(f"zero-filled from offset 0 to {size}: no entry")
        return
    version, file_size, filetime = _I_HEADER.unpack_from(data)
    if version not in _I_VERSIONS:
        result.warn(
            f"unknown $I format version {version} at offset 0 (1 and 2 are known)"
        )
        return
    truncated = False
    if version == 1:
        start = _I_HEADER.size
        field = data[start : start + _I_V1_NAME_SIZE]
        if len(field) < _I_V1_NAME_SIZE:
            truncated = True
            result.warn(
                f"truncated: the path field at offset {start} holds {len(field)} "
                f"of {_I_V1_NAME_SIZE} bytes"
            )
    else:
        offset = _I_HEADER.size
        if size < offset + _I_NAME_LENGTH.size:
            result.warn(f"truncated: no path length at offset {offset} ({size} bytes)")
            field, truncated = b"", True
        else:
            (length,) = _I_NAME_LENGTH.unpack_from(data, offset)
            start = offset + _I_NAME_LENGTH.size
            end = start + 2 * length
            if end > size:
                truncated = True
                result.warn(
                    f"path length {length} characters at offset {offset} runs past "
                    f"the end of the file ({size} bytes): "
                    f"{(size - start) // 2} characters read"
                )
            elif length == 0:
                result.warn(f"path length 0 at offset {offset}")
            field = data[start : min(end, size)]
    _check_time(filetime, 16, result)
    path, terminated = _utf16(field, result, _I_HEADER.size)
    if not terminated and version == 1 and not truncated:
        result.warn(f"the path field at offset {_I_HEADER.size} has no terminating NUL")
    if not path:
        result.warn(f"empty original path at offset {_I_HEADER.size}")
    result.items.append(
        DeletedItem(
            original_filename=path,
            file_size=file_size,
            deletion_filetime=filetime,
            recycle_format="$I",
            format_version=version,
            offset=0,
            content_file="$R" + file_name[2:],
            truncated=truncated,
        )
    )


# --- INFO2 ----------------------------------------------------------------------


def _parse_info2(data: bytes, result: RecycleBinResult) -> None:
    size = len(data)
    if size < _INFO2_HEADER.size:
        result.warn(
            f"truncated INFO2 header at offset 0: {size} bytes, "
            f"{_INFO2_HEADER.size} needed"
        )
        return
    if not any(data):
        result.warn(f"zero-filled from offset 0 to {size}: no record")
        return
    version, _, _, record_size, _ = _INFO2_HEADER.unpack_from(data)
    if record_size not in _INFO2_RECORD_SIZES.values():
        fallback = _INFO2_RECORD_SIZES.get(version)
        if fallback is None:
            result.warn(
                f"not an INFO2 file: version {version} at offset 0 and record size "
                f"{record_size} at offset 12 are unknown"
            )
            return
        result.warn(
            f"record size {record_size} at offset 12 does not fit an INFO2 record "
            f"(280 or 800 bytes): read as version {version} records of "
            f"{fallback} bytes"
        )
        record_size = fallback
    elif version not in _INFO2_RECORD_SIZES:
        result.warn(f"unknown INFO2 version {version} at offset 0: read as records")
    zero_filled, first_zero = 0, 0
    offset = _INFO2_HEADER.size
    while offset < size:
        record = data[offset : offset + record_size]
        if len(record) < _INFO2_RECORD.size:
            result.warn(
                f"{len(record)} bytes at offset {offset} are a partial record "
                f"({record_size} bytes needed): not read"
            )
            break
        if not any(record):
            zero_filled += 1
            first_zero = first_zero or offset
        else:
            result.items.append(
                _info2_record(record, record_size, version, offset, result)
            )
        offset += record_size
    if zero_filled:
        result.warn(
            f"{zero_filled} zero-filled record(s) skipped (first at offset "
            f"{first_zero})"
        )


def _info2_record(
    record: bytes, record_size: int, version: int, offset: int, result: RecycleBinResult
) -> DeletedItem:
    ansi, index, drive, filetime, file_size = _INFO2_RECORD.unpack_from(record)
    _check_time(filetime, offset + 268, result)
    if drive >= _DRIVES:
        result.warn(f"drive number {drive} at offset {offset + 264} is no drive")
    letter = chr(ord("A") + drive) if drive < _DRIVES else "?"
    # Windows zeroes the first byte of the ANSI path ("C:\…") when it restores
    # or purges the content; the rest of the path stays.
    removed = ansi[:1] == b"\x00" and ansi[1:2] == b":"
    ansi_text = (letter if removed else "") + _ansi(ansi[1:] if removed else ansi)
    truncated = False
    unicode_text = ""
    if record_size > _INFO2_RECORD.size:
        field = record[_INFO2_RECORD.size : _INFO2_RECORD.size + _INFO2_UNICODE_SIZE]
        if len(field) < _INFO2_UNICODE_SIZE:
            truncated = True
            result.warn(
                f"truncated record at offset {offset}: its UTF-16 path holds "
                f"{len(field)} of {_INFO2_UNICODE_SIZE} bytes"
            )
        unicode_text, _ = _utf16(field, result, offset + _INFO2_RECORD.size)
    path = unicode_text or ansi_text
    if not path:
        result.warn(f"empty original path in the record at offset {offset}")
    extension = ntpath.splitext(path)[1]
    return DeletedItem(
        original_filename=path,
        file_size=file_size,
        deletion_filetime=filetime,
        recycle_format="INFO2",
        format_version=version,
        offset=offset,
        content_file=f"D{letter.lower()}{index}{extension}",
        record_index=index,
        drive_number=drive,
        short_filename=ansi_text if unicode_text and ansi_text != path else None,
        removed=removed,
        truncated=truncated,
    )


# --- helpers ----------------------------------------------------------------------


def _check_time(filetime: int, offset: int, result: RecycleBinResult) -> None:
    if filetime >= _FILETIME_LIMIT:
        result.warn(
            f"deletion time 0x{filetime:016x} at offset {offset} is past the year "
            "9999: event without a time"
        )


def _utf16(field: bytes, result: RecycleBinResult, offset: int) -> tuple[str, bool]:
    """The UTF-16LE string up to its NUL, and whether a NUL ended it."""
    field = field[: len(field) & ~1]
    try:
        text = field.decode("utf-16-le")
    except UnicodeDecodeError:
        text = field.decode("utf-16-le", errors="replace")
        head = text.partition("\x00")[0]
        if "\ufffd" in head:
            result.warn(
                f"the path at offset {offset} is not valid UTF-16 "
                "(unpaired surrogates shown as U+FFFD)"
            )
    head, nul, _ = text.partition("\x00")
    return head, bool(nul)


def _ansi(field: bytes) -> str:
    # The ANSI code page of the system is not in the file; cp1252 is the
    # Western default (plaso's default code page too).
    return field.partition(b"\x00")[0].decode("cp1252", errors="replace")


def matching_path(path: str) -> str:
    """The path as filename indicators see it: no drive ("\\Users\\bob\\x.exe")."""
    return _DRIVE_PREFIX.sub("", path)


def _trace(item: DeletedItem, source: str, compiled: CompiledSet) -> Trace | None:
    matches: list[Match] = []
    seen: set[str] = set()
    for path in (item.original_filename, item.short_filename):
        if not path:
            continue
        for indicator in compiled.filenames.match(matching_path(path)):
            if indicator.id not in seen:
                seen.add(indicator.id)
                matches.append(Match.of(indicator, path, kind="filename"))
    if not matches:
        return None
    filetime = item.deletion_filetime
    timed = 0 < filetime < _FILETIME_LIMIT
    attributes = {
        "original_filename": item.original_filename,
        "file_size": item.file_size,
        "deletion_filetime": filetime,
        "recycle_format": item.recycle_format,
        "format_version": item.format_version,
        "content_file": item.content_file,
    }
    if item.recycle_format == "INFO2":
        attributes.update(
            record_index=item.record_index,
            record_offset=item.offset,
            drive_number=item.drive_number,
            drive_letter=item.drive_letter,
            short_filename=item.short_filename,
            removed=item.removed,
        )
    if item.truncated:
        attributes["truncated"] = True
    return Trace(
        DATA_TYPE,
        dfdatetime_filetime.Filetime(timestamp=filetime) if timed else None,
        DESC_DELETION if timed else NOT_A_TIME,
        source,
        matches,
        attributes,
    )


manager.register(
    manager.ParserDefinition(
        name="recyclebin",
        data_type=DATA_TYPE,
        description="Windows Recycle Bin $I and INFO2 files: deleted tool paths",
        times={"deletion_time": DESC_DELETION},
        report_fields=("original_filename", "file_size", "content_file"),
        indicator_sections=("filenames",),
        paths=re.compile(
            r"(^|/)(\$recycle\.bin/([^/]+/)?\$i[^/]+|(recycler/[^/]+|recycled)/info2)$",
            re.IGNORECASE,
        ),
        parse=parse_recyclebin,
    )
)
