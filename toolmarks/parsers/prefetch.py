"""Windows prefetch detection core: one prefetch file in, execution traces out.

libscca (pyscca) reads every format version: 17 (XP/2003), 23 (Vista/7), 26 (8.x),
30 and 31 (Windows 10/11, usually MAM/LZXPRESS-Huffman compressed, which libscca
decompresses itself). The executable name and the referenced file names are
matched against the prefetch indicators; each recorded run time of a matching
file becomes one Trace. Bad input never raises: it ends as a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import struct
from typing import Any, BinaryIO

import pyscca
from dfdatetime import filetime as dfdatetime_filetime

from toolmarks.events import NOT_A_TIME, Match, Trace
from toolmarks.indicators.compiler import CompiledSet
from toolmarks.indicators.model import Indicator
from toolmarks.parsers import manager
from toolmarks.parsers.reading import Refused, describe, read_bounded

DATA_TYPE = "toolmarks:prefetch:execution"

MAX_SIZE = 64 * 1024 * 1024
SCCA_SIGNATURE = b"SCCA"  # at offset 4 of an uncompressed file
MAM_SIGNATURE = b"MAM\x04"  # at offset 0 of a Windows 10+ compressed file
_MAM_HEADER = struct.Struct("<4sI")  # signature, uncompressed size

# plaso's winprefetch wording (timeliner.yaml: last_run_time, previous_run_times).
DESC_LAST_RUN = "Last Time Executed"
DESC_PREVIOUS_RUN = "Previous Last Time Executed"

# The header stores the executable name in 60 bytes of UTF-16 with a terminating
# NUL, so longer names are cut to 29 characters; the full name is then only
# found in the referenced files.
TRUNCATED_NAME_LENGTH = 29
# libscca keeps 8 run times from format 26 on, 1 before; asking for more raises.
_RUN_TIME_SLOTS_NEW = 8
_RUN_TIME_SLOTS_OLD = 1
_FIRST_VERSION_WITH_8_RUNS = 26
# libscca error chains can be long; the head names the failing step.


@dataclasses.dataclass(frozen=True)
class PrefetchVolume:
    """One volume the program ran from or touched files on."""

    device_path: str
    serial_number: int
    creation_time: dfdatetime_filetime.Filetime | None

    @property
    def serial_number_hex(self) -> str:
        """The serial number as plaso prints it: 0x and 8 upper-case hex digits."""
        return f"0x{self.serial_number:08X}"


@dataclasses.dataclass
class PrefetchInfo:
    """What one prefetch file says, as far as it could be read."""

    executable: str
    prefetch_hash: int
    format_version: int
    run_count: int
    compressed: bool  # MAM-compressed on disk
    # (slot index in the file, time); empty (zero) slots are left out.
    last_run_times: list[tuple[int, dfdatetime_filetime.Filetime]]
    volumes: list[PrefetchVolume]
    filenames: list[str]  # the referenced files, in file order
    complete: bool = True  # False when a part could not be read (see warnings)

    @property
    def prefetch_hash_hex(self) -> str:
        """The prefetch hash as plaso prints it: 0x and 8 upper-case hex digits."""
        return f"0x{self.prefetch_hash:08X}"

    @property
    def path_hints(self) -> list[str]:
        """Referenced files that are the executable itself (where it ran from)."""
        name = self.executable.upper()
        truncated = len(name) == TRUNCATED_NAME_LENGTH
        hints = []
        for path in self.filenames:
            base = path.rpartition("\\")[2].upper()
            if base == name or (truncated and base.startswith(name)):
                hints.append(path)
        return hints

    def executable_names(self) -> list[str]:
        """The stored name, then the full names of a truncated one, for matching."""
        names = [self.executable]
        if len(self.executable) == TRUNCATED_NAME_LENGTH:
            for path in self.path_hints:
                base = path.rpartition("\\")[2]
                if base.upper() not in (n.upper() for n in names):
                    names.append(base)
        return names


@dataclasses.dataclass
class PrefetchResult:
    """The outcome of one file: traces, warnings and what was read."""

    source: str
    info: PrefetchInfo | None = None  # None when the file could not be parsed
    traces: list[Trace] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    size: int | None = None  # bytes read; None when the file was not read
    md5: str | None = None
    sha256: str | None = None

    def warn(self, problem: str) -> None:
        self.warnings.append(f"{self.source}: prefetch: {problem}")

    @property
    def programs(self) -> list[tuple[str, dfdatetime_filetime.Filetime | None]]:
        """Where the program ran from, with its last run: for leads."""
        if self.info is None:
            return []
        times = [when for _, when in self.info.last_run_times]
        last = max(times, key=lambda when: when.timestamp) if times else None
        return [(path, last) for path in self.info.path_hints]


def parse_prefetch(
    file_object: BinaryIO,
    source: str,
    compiled: CompiledSet,
    *,
    max_size: int = MAX_SIZE,
) -> PrefetchResult:
    """Parses one prefetch file and returns its traces; never raises on bad input.

    `source` names the file in traces and warnings. Files larger than `max_size`,
    and MAM files declaring a larger uncompressed size, are refused with a warning.
    """
    result = PrefetchResult(source=source)
    try:
        _parse_into(result, file_object, compiled, max_size)
    except Exception as error:  # noqa: BLE001
        # A bug of ours must not end a scan of a whole disk at one odd file; it
        # is reported, and tests fail on any "internal error" warning.
        result.warn(f"internal error: {describe(error)}")
        result.traces = []
    return result


def _parse_into(
    result: PrefetchResult, file_object: BinaryIO, compiled: CompiledSet, max_size: int
) -> None:
    try:
        data = read_bounded(file_object, max_size)
    except Refused as error:
        result.warn(str(error))
        return
    except Exception as error:  # noqa: BLE001 - any file-object failure is a warning
        result.warn(f"cannot read the file: {describe(error)}")
        return
    result.size = len(data)
    result.md5 = hashlib.md5(data).hexdigest()
    result.sha256 = hashlib.sha256(data).hexdigest()
    try:
        compressed = _check_header(data, max_size)
    except Refused as error:
        result.warn(str(error))
        return
    result.info = _parse(data, compressed, result)
    if result.info is not None:
        result.traces = _traces(result.info, result, compiled)


def _check_header(data: bytes, max_size: int) -> bool:
    """Whether the data is MAM-compressed; Refused if it is no prefetch file.

    libscca allocates what a MAM header declares, so the declared size is checked
    here, before libscca sees the data.
    """
    if data[:4] == MAM_SIGNATURE:
        if len(data) < _MAM_HEADER.size:
            raise Refused(f"truncated MAM header ({len(data)} bytes)")
        _, declared = _MAM_HEADER.unpack_from(data)
        if declared > max_size:
            raise Refused(
                f"MAM header declares {declared} bytes uncompressed, more than the "
                f"limit of {max_size}: not decompressed"
            )
        if declared == 0:
            raise Refused("MAM header declares 0 bytes uncompressed")
        return True
    if data[4:8] == SCCA_SIGNATURE:
        return False
    if len(data) >= 4 and data[:3] == MAM_SIGNATURE[:3]:
        raise Refused(f"unsupported MAM compression type 0x{data[3]:02x}")
    raise Refused(
        f"not a prefetch file: no SCCA signature at offset 4 and no MAM\\x04 "
        f"signature at offset 0 (first bytes {data[:8].hex()}, {len(data)} bytes)"
    )


def _parse(
    data: bytes, compressed: bool, result: PrefetchResult
) -> PrefetchInfo | None:
    """Reads the file with libscca, part by part, so a broken part costs only itself.

    Any exception of libscca is a warning: the data is untrusted, and the binding
    raises OSError for format errors but may raise others for odd values.
    """
    scca_file = pyscca.file()
    try:
        scca_file.open_file_object(io.BytesIO(data))
    except Exception as error:  # noqa: BLE001
        result.warn(f"libscca cannot open it: {describe(error)}")
        return None
    try:
        return _read_parts(scca_file, compressed, result)
    finally:
        try:
            scca_file.close()
        except Exception as error:  # noqa: BLE001
            result.warn(f"libscca cannot close it: {describe(error)}")


def _read_parts(
    scca_file: Any, compressed: bool, result: PrefetchResult
) -> PrefetchInfo | None:
    try:
        info = PrefetchInfo(
            executable=scca_file.executable_filename or "",
            prefetch_hash=scca_file.prefetch_hash or 0,
            format_version=scca_file.format_version,
            run_count=scca_file.run_count,
            compressed=compressed,
            last_run_times=[],
            volumes=[],
            filenames=[],
        )
    except Exception as error:  # noqa: BLE001
        result.warn(f"cannot read the file header: {describe(error)}")
        return None
    if not info.executable:
        result.warn("the executable name is empty (corrupted header)")
        info.complete = False

    slots = (
        _RUN_TIME_SLOTS_NEW
        if info.format_version >= _FIRST_VERSION_WITH_8_RUNS
        else _RUN_TIME_SLOTS_OLD
    )
    for index in range(slots):
        try:
            timestamp = scca_file.get_last_run_time_as_integer(index)
        except Exception as error:  # noqa: BLE001
            result.warn(f"cannot read last run time {index}: {describe(error)}")
            info.complete = False
            break
        if timestamp:  # unused slots are zero
            info.last_run_times.append(
                (index, dfdatetime_filetime.Filetime(timestamp=timestamp))
            )

    try:
        for index in range(scca_file.number_of_volumes):
            volume = scca_file.get_volume_information(index)
            creation = volume.get_creation_time_as_integer()
            info.volumes.append(
                PrefetchVolume(
                    device_path=volume.device_path or "",
                    serial_number=volume.serial_number or 0,
                    creation_time=(
                        dfdatetime_filetime.Filetime(timestamp=creation)
                        if creation
                        else None
                    ),
                )
            )
    except Exception as error:  # noqa: BLE001
        result.warn(f"cannot read volume {len(info.volumes)}: {describe(error)}")
        info.complete = False
    # Windows writes device paths as \DEVICE\... or \VOLUME{...}; an empty or
    # garbled one is what libscca makes of a cut or damaged volume section (seen
    # on MAM files cut near their end, which libscca decodes without complaint).
    for index, volume in enumerate(info.volumes):
        if not _plausible_path(volume.device_path):
            result.warn(
                f"volume {index} device path {volume.device_path!r} is not a "
                "device path (truncated or corrupted)"
            )
            info.complete = False

    missing = 0
    try:
        for index in range(scca_file.number_of_filenames):
            name = scca_file.get_filename(index)
            if name:
                info.filenames.append(name)
            else:
                missing += 1
    except Exception as error:  # noqa: BLE001
        result.warn(
            f"cannot read referenced file {len(info.filenames) + missing}: "
            f"{describe(error)}"
        )
        info.complete = False
    if missing:
        result.warn(f"{missing} referenced file name(s) missing")
        info.complete = False
    # Kept, since a damaged name may still tell something, but flagged.
    odd = sum(1 for name in info.filenames if not _plausible_path(name))
    if odd:
        result.warn(f"{odd} referenced file name(s) are not paths (corrupted)")
        info.complete = False
    # Windows names every referenced file by the device path of a listed volume
    # (true of all 2205 names in the real test files). A cut MAM file can leave
    # libscca a plausible but wrong device path ("\SDELET"); this catches it.
    prefixes = tuple(v.device_path.upper() + "\\" for v in info.volumes)
    if prefixes:
        orphans = sum(1 for n in info.filenames if not n.upper().startswith(prefixes))
        if orphans:
            result.warn(
                f"{orphans} of {len(info.filenames)} referenced files are on no "
                "listed volume (volume section truncated or corrupted)"
            )
            info.complete = False
    return info


def _plausible_path(path: str) -> bool:
    """Prefetch paths are absolute NT paths: a backslash first, no control chars."""
    return path.startswith("\\") and path.isprintable()


def prefetch_matches(
    info: PrefetchInfo, compiled: CompiledSet
) -> list[tuple[Indicator, str, list[str]]]:
    """(indicator, matched value, matched referenced files), one per indicator."""
    hits: dict[str, tuple[Indicator, str, list[str]]] = {}
    for name in info.executable_names():
        for indicator, files in compiled.match_prefetch(name, info.filenames):
            if indicator.id in hits:
                continue
            value = name if indicator.fields.get("executable") else files[0]
            hits[indicator.id] = (indicator, value, files)
    return list(hits.values())


def _traces(
    info: PrefetchInfo, result: PrefetchResult, compiled: CompiledSet
) -> list[Trace]:
    hits = prefetch_matches(info, compiled)
    if not hits:
        return []
    # Match.detail must stay hashable (Match is frozen), hence tuples.
    matches = [
        Match.of(indicator, value=value, kind="prefetch", referenced=tuple(files))
        for indicator, value, files in hits
    ]
    matched_files = list(dict.fromkeys(f for _, _, files in hits for f in files))
    base = {
        "executable": info.executable,
        "prefetch_hash": info.prefetch_hash_hex,
        "format_version": info.format_version,
        "run_count": info.run_count,
        "volume_device_paths": [v.device_path for v in info.volumes],
        "volume_serial_numbers": [v.serial_number_hex for v in info.volumes],
        "path_hints": info.path_hints,
        "matched_referenced_files": matched_files,
        "referenced_file_count": len(info.filenames),
        # One list shared by all traces of the file: for SDelete it is the list
        # of wiped files, too useful to leave out and too long to copy.
        "referenced_files": info.filenames,
        "prefetch_md5": result.md5,
        "prefetch_sha256": result.sha256,
        "prefetch_path": result.source,
    }
    times: list[tuple[int | None, dfdatetime_filetime.Filetime | None]]
    times = list(info.last_run_times) or [(None, None)]
    traces = []
    for index, timestamp in times:
        if timestamp is None:
            # Windows writes a prefetch file when the program runs, so a match
            # without a readable run time still counts; plaso keeps such events
            # as "Not a time" too.
            desc = NOT_A_TIME
        else:
            desc = DESC_LAST_RUN if index == 0 else DESC_PREVIOUS_RUN
        traces.append(
            Trace(
                data_type=DATA_TYPE,
                timestamp=timestamp,
                timestamp_desc=desc,
                source=result.source,
                matches=list(matches),
                attributes={**base, "run_index": index},
            )
        )
    return traces


manager.register(
    manager.ParserDefinition(
        name="prefetch",
        evidence="executed",
        data_type=DATA_TYPE,
        description="Windows prefetch files: runs of programs named by indicators",
        times={"last_run_time": DESC_LAST_RUN, "previous_run_times": DESC_PREVIOUS_RUN},
        report_fields=("executable", "run_count", "prefetch_hash", "path_hints"),
        indicator_sections=("prefetch",),
        paths=re.compile(r"(^|/)prefetch/[^/]+\.pf$", re.IGNORECASE),
        signatures=((4, SCCA_SIGNATURE), (0, MAM_SIGNATURE)),
        parse=lambda stream, source, compiled, _name: parse_prefetch(
            stream, source, compiled
        ),
    )
)
