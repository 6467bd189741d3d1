#!/usr/bin/env python3
"""Build NTFS test disk images with planted artefacts from a YAML description.

Usage::

    sudo python scripts/build_scenario.py DESCRIPTION.yaml -o OUTDIR \
        [--formats raw,e01,split_e01,mbr,gpt]

or, from Python, ``build(description_path, outdir, formats) -> dict``.

One NTFS volume is made with mkntfs, filled through an ntfs-3g FUSE mount (so it
needs root) and then wrapped into every requested format:

- ``NAME.raw``          the bare NTFS volume;
- ``NAME.E01``          EWF (EnCase 6, deflate) of the volume, by ewfacquirestream;
- ``NAME-split.E01`` …  the same, cut into small segments;
- ``NAME-mbr.raw``      a disk with an MBR: NTFS at 1 MiB, then a small spare
                        partition (FAT16 when mkfs.vfat exists, else left empty);
- ``NAME-gpt.raw``      the same layout with a GPT;
- ``NAME.manifest.json`` the planted facts: per file and stream its in-image path,
                        size, md5/sha1/sha256, allocation state, MFT entry,
                        inserted strings and the description's ``expect`` list.

Description format (YAML; sizes are bytes or strings like ``64 KiB``)::

    name: workstation             # base name of the outputs (default: file stem)
    volume:
      size_mib: 96                # NTFS volume size
      label: WORKSTATION          # NTFS volume label
      cluster_size: 4096          # optional, bytes
    timestamp: 2013-05-14T09:00:00Z  # optional: creation/modification/access
                                  # time of every file and directory
    e01:                          # optional EWF metadata and split segment size
      case_number: TM-0001
      examiner: toolmarks scenario builder
      description: …
      evidence_number: "1"
      notes: …
      segment_size_mib: 16        # split E01 only; ewfacquirestream's minimum is 1
    disk:
      spare_size_mib: 8           # second partition of the MBR/GPT disks (0: none)
    directories:                  # created in this order (parents implied)
      - Windows/System32
    files:
      - path: Users/alice/Documents/report.txt   # "/" separators, no leading "/"
        text: "Quarterly figures\\n"               # content: exactly one of
                                  #   text: STRING (encoding: utf-8|ascii|utf-16le)
                                  #   hex: "4d5a9000"
                                  #   random: {size: 40 MiB, seed: 7}
                                  #   copy: ../shared/test_data/real/...
                                  #         (relative to the project root;
                                  #          decompress: xz|gzip optional;
                                  #          hivex: a hivexsh script run on
                                  #          the copy, to plant registry keys)
                                  #   usn: {sparse: 64 KiB, copy: REAL_J,
                                  #         records: [{name, file: 97-5,
                                  #         parent: 68-1, time, reasons:
                                  #         [FILE_CREATE, CLOSE]}]}
                                  #         a $J of USN_RECORD_V2 records, its
                                  #         zeros written sparse (for the
                                  #         $J stream of $Extend/$UsnJrnl)
        strings:                  # optional, overwrite bytes of the content
                                  # (in an EVTX log the chunk CRC32s are then
                                  # recomputed)
          - {offset: -100, value: "Windows Credentials Editor"}   # <0: from end
          - {offset: 0, value: ZXHttpServer, encoding: wide}      # UTF-16LE
          - {offset: 0, hex: "4d5a"}
        time: 2013-05-15T11:00:00Z  # optional, overrides ``timestamp``
        deleted: true             # optional: written, synced, then deleted
        streams:                  # optional alternate data streams
          - name: hidden
            text: "…"             # same content keys as a file
            expect: [{tool: mapiget, kind: string}]
        expect:                   # required: the findings a scan must report for
          - {tool: wce, kind: string}   # this file's main stream; [] for decoys

Random content is SHAKE-256 of ``"toolmarks-scenario:<seed>"`` truncated to the
size, so it is the same on every machine and Python version.

Times are set through ntfs-3g's ``system.ntfs_times`` extended attribute (like
``touch -d``, but it also sets the creation time); the MFT-entry-modified time
can not be set and is the build time.  Deleted files are written last and the
volume is unmounted right after they are removed, so their clusters and MFT
entries are not reused and the content stays recoverable.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("raw", "e01", "split_e01", "mbr", "gpt")
MANIFEST_VERSION = 1
KIB = 1024
MIB = 1024 * KIB
SECTOR_SIZE = 512
PARTITION_OFFSET = MIB
# ewfacquirestream silently falls back to 1.4 GiB below this, so check it here.
MIN_SEGMENT_SIZE = MIB
RANDOM_PREFIX = "toolmarks-scenario:"
# Seconds between 1601-01-01 (FILETIME epoch) and 1970-01-01.
FILETIME_EPOCH_DELTA = 11644473600
NTFS_GPT_TYPE = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"  # Microsoft basic data
UUID_NAMESPACE = uuid.UUID("6d6b7374-6f6f-6c6d-6172-6b7373636e72")

# Debian package of each external tool, for the error message.
TOOL_PACKAGES = {
    "mkntfs": "ntfs-3g",
    "ntfs-3g": "ntfs-3g",
    "umount": "mount",
    "ewfacquirestream": "ewf-tools",
    "sfdisk": "fdisk",
}
ENCODINGS = {
    "ascii": "ascii",
    "utf-8": "utf-8",
    "wide": "utf-16-le",
    "utf-16le": "utf-16-le",
}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": KIB, "MiB": MIB, "GiB": 1024 * MIB}
# Characters Windows does not allow in names (ntfs-3g's windows_names rejects them
# too, but checking here gives the description's line instead of EINVAL).
_BAD_NAME_CHARS = set('<>:"|?*\\') | {chr(c) for c in range(32)}


class ScenarioError(Exception):
    """A bad description, a missing prerequisite or a failed build step."""


@dataclass
class Stream:
    """One data stream of a planted file: "" is the main (unnamed) stream."""

    name: str
    data: bytes
    source: str
    markers: list[dict[str, Any]]
    expect: list[Any]


@dataclass
class PlantedFile:
    """A file to write into the volume, with its streams."""

    path: str
    streams: list[Stream]
    deleted: bool
    time: dt.datetime | None


@dataclass
class Scenario:
    """A parsed, validated scenario description."""

    name: str
    source: Path
    size_mib: int
    label: str
    cluster_size: int | None
    timestamp: dt.datetime | None
    e01: dict[str, str]
    segment_size: int
    spare_size: int
    directories: list[str]
    files: list[PlantedFile] = field(default_factory=list)


# --- description parsing -------------------------------------------------------


def _check_keys(
    obj: Any, where: str, allowed: Iterable[str], required: Iterable[str] = ()
) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ScenarioError(f"{where}: expected a mapping, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s): {', '.join(map(str, unknown))}")
    for key in required:
        if key not in obj:
            raise ScenarioError(f"{where}: missing key '{key}'")
    return obj


def parse_size(value: Any, where: str) -> int:
    """Return a size in bytes from an int or a string like '64 KiB'."""
    if isinstance(value, bool):
        raise ScenarioError(f"{where}: not a size: {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.match(str(value))
        if not match:
            raise ScenarioError(f"{where}: not a size (use e.g. 4096 or '64 KiB')")
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if size < 0:
        raise ScenarioError(f"{where}: size must not be negative")
    return size


def parse_time(value: Any, where: str) -> dt.datetime:
    """Return an aware UTC datetime; YAML may already have parsed the value."""
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        when = dt.datetime(value.year, value.month, value.day)
    else:
        try:
            when = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise ScenarioError(f"{where}: not an ISO 8601 time: {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def format_time(when: dt.datetime) -> str:
    """ISO 8601 in UTC with a Z, as written to the manifest."""
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def random_bytes(size: int, seed: int | str) -> bytes:
    """Deterministic pseudo-random bytes: SHAKE-256 of the seed."""
    return hashlib.shake_256(f"{RANDOM_PREFIX}{seed}".encode()).digest(size)


def _check_path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ScenarioError(f"{where}: path must be a non-empty string")
    if value.startswith("/") or "\\" in value:
        raise ScenarioError(
            f"{where}: path '{value}' must be relative with '/' separators"
        )
    parts = value.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ScenarioError(f"{where}: path '{value}' has an empty or dot part")
        if set(part) & _BAD_NAME_CHARS or part.endswith((" ", ".")):
            raise ScenarioError(f"{where}: '{part}' is not a valid Windows name")
    return value


_CONTENT_KEYS = ("text", "hex", "random", "copy", "usn")

# --- NTFS USN change journal ($Extend/$UsnJrnl:$J) --------------------------
# USN_RECORD_V2 (winioctl.h): length, major 2, minor 0, file and parent
# references, USN, FILETIME, reason, source info, security id, attributes,
# name length and offset (60), then the UTF-16LE name, padded to 8 bytes.
_USN_RECORD_V2 = struct.Struct("<IHHQQqqIIIIHH")
# Windows writes $J in 4096-byte blocks and never lets a record cross one (as
# libfsntfs reads it); the rest of a block that cannot hold the next record is
# zeros.
USN_BLOCK_SIZE = 4096
USN_REASONS = {
    "DATA_OVERWRITE": 0x00000001,
    "DATA_EXTEND": 0x00000002,
    "DATA_TRUNCATION": 0x00000004,
    "NAMED_DATA_OVERWRITE": 0x00000010,
    "NAMED_DATA_EXTEND": 0x00000020,
    "NAMED_DATA_TRUNCATION": 0x00000040,
    "FILE_CREATE": 0x00000100,
    "FILE_DELETE": 0x00000200,
    "EA_CHANGE": 0x00000400,
    "SECURITY_CHANGE": 0x00000800,
    "RENAME_OLD_NAME": 0x00001000,
    "RENAME_NEW_NAME": 0x00002000,
    "INDEXABLE_CHANGE": 0x00004000,
    "BASIC_INFO_CHANGE": 0x00008000,
    "HARD_LINK_CHANGE": 0x00010000,
    "OBJECT_ID_CHANGE": 0x00080000,
    "STREAM_CHANGE": 0x00200000,
    "CLOSE": 0x80000000,
}
USN_ATTRIBUTES = {
    "READONLY": 0x1,
    "HIDDEN": 0x2,
    "SYSTEM": 0x4,
    "DIRECTORY": 0x10,
    "ARCHIVE": 0x20,
    "NORMAL": 0x80,
    "TEMPORARY": 0x100,
    "NOT_CONTENT_INDEXED": 0x2000,
}
_REFERENCE_RE = re.compile(r"^(\d+)-(\d+)$")


def filetime_of(when: dt.datetime) -> int:
    """FILETIME (100 ns since 1601-01-01 UTC) of an aware datetime."""
    seconds = int(when.timestamp()) + FILETIME_EPOCH_DELTA
    return seconds * 10**7 + when.microsecond * 10


def usn_record_v2(
    name: str,
    file_reference: int,
    parent_reference: int,
    usn: int,
    filetime: int,
    reasons: int,
    attributes: int = 0x20,
    source_info: int = 0,
    security_id: int = 0,
) -> bytes:
    """One byte-exact USN_RECORD_V2."""
    encoded = name.encode("utf-16-le")
    length = (_USN_RECORD_V2.size + len(encoded) + 7) // 8 * 8
    header = _USN_RECORD_V2.pack(
        length,
        2,
        0,
        file_reference,
        parent_reference,
        usn,
        filetime,
        reasons,
        source_info,
        security_id,
        attributes,
        len(encoded),
        _USN_RECORD_V2.size,
    )
    return (header + encoded).ljust(length, b"\0")


def usn_append(journal: bytearray, records: Iterable[dict[str, Any]]) -> None:
    """Append records to a $J as Windows lays them out: each record's USN is its
    offset, and a record that does not fit in the rest of its 4096-byte block
    starts the next one."""
    for spec in records:
        size = len(usn_record_v2(spec["name"], 0, 0, 0, 0, 0))
        room = USN_BLOCK_SIZE - len(journal) % USN_BLOCK_SIZE
        if size > room:
            journal.extend(bytes(room))
        journal.extend(
            usn_record_v2(
                spec["name"],
                spec["file_reference"],
                spec["parent_reference"],
                len(journal),
                spec["filetime"],
                spec["reasons"],
                spec.get("attributes", 0x20),
            )
        )


def _parse_reference(value: Any, where: str) -> int:
    """An NTFS file reference written as 'ENTRY-SEQUENCE' (plaso's form)."""
    match = _REFERENCE_RE.match(str(value))
    if not match or int(match.group(1)) >= 1 << 48 or int(match.group(2)) >= 1 << 16:
        raise ScenarioError(f"{where}: not an MFT reference ENTRY-SEQUENCE: {value!r}")
    return int(match.group(1)) | int(match.group(2)) << 48


def _flags(value: Any, names: dict[str, int], where: str) -> int:
    if not isinstance(value, list) or not value:
        raise ScenarioError(f"{where}: must be a non-empty list")
    unknown = [item for item in value if item not in names]
    if unknown:
        raise ScenarioError(f"{where}: unknown flag(s) {', '.join(map(str, unknown))}")
    result = 0
    for item in value:
        result |= names[item]
    return result


def _usn_content(spec: Any, where: str, base: Path) -> bytes:
    """A $J: optional zeros (left sparse when written), optional copied real
    records, then the described records."""
    _check_keys(spec, where, ("sparse", "copy", "records"), ("records",))
    sparse = parse_size(spec.get("sparse", 0), f"{where}: sparse")
    if sparse % USN_BLOCK_SIZE:
        raise ScenarioError(f"{where}: sparse must be a multiple of {USN_BLOCK_SIZE}")
    journal = bytearray(sparse)
    if "copy" in spec:
        source = (base / str(spec["copy"])).resolve()
        if not source.is_file():
            raise ScenarioError(f"{where}: copy source {source} is not a file")
        journal += source.read_bytes()
    if not isinstance(spec["records"], list):
        raise ScenarioError(f"{where}: records must be a list")
    records = []
    for index, item in enumerate(spec["records"]):
        here = f"{where}: records[{index}]"
        _check_keys(
            item,
            here,
            ("name", "file", "parent", "time", "reasons", "attributes"),
            ("name", "file", "parent", "time", "reasons"),
        )
        name = item["name"]
        if not isinstance(name, str) or not name or set(name) & _BAD_NAME_CHARS:
            raise ScenarioError(f"{here}: bad name {name!r}")
        records.append(
            {
                "name": name,
                "file_reference": _parse_reference(item["file"], f"{here}: file"),
                "parent_reference": _parse_reference(item["parent"], f"{here}: parent"),
                "filetime": filetime_of(parse_time(item["time"], f"{here}: time")),
                "reasons": _flags(item["reasons"], USN_REASONS, f"{here}: reasons"),
                "attributes": _flags(
                    item.get("attributes", ["ARCHIVE"]),
                    USN_ATTRIBUTES,
                    f"{here}: attributes",
                ),
            }
        )
    usn_append(journal, records)
    return bytes(journal)


def _parse_content(
    spec: dict[str, Any], where: str, base: Path
) -> tuple[bytes, str, list[dict[str, Any]]]:
    """Return (data, source kind, markers) of a file or stream spec."""
    kinds = [key for key in _CONTENT_KEYS if key in spec]
    if len(kinds) != 1:
        raise ScenarioError(f"{where}: needs exactly one of {', '.join(_CONTENT_KEYS)}")
    kind = kinds[0]
    value = spec[kind]
    if kind != "text" and "encoding" in spec:
        raise ScenarioError(f"{where}: 'encoding' only applies to text")
    if kind != "copy" and "decompress" in spec:
        raise ScenarioError(f"{where}: 'decompress' only applies to copy")
    if kind != "copy" and "hivex" in spec:
        raise ScenarioError(f"{where}: 'hivex' only applies to copy")
    if kind == "usn":
        data = _usn_content(value, f"{where}: usn", base)
    elif kind == "text":
        if not isinstance(value, str):
            raise ScenarioError(f"{where}: text must be a string")
        encoding = spec.get("encoding", "utf-8")
        if encoding not in ENCODINGS:
            raise ScenarioError(f"{where}: unknown encoding '{encoding}'")
        data = value.encode(ENCODINGS[encoding])
    elif kind == "hex":
        try:
            data = bytes.fromhex(str(value))
        except ValueError:
            raise ScenarioError(f"{where}: hex content is not hexadecimal") from None
    elif kind == "random":
        _check_keys(value, f"{where}: random", ("size", "seed"), ("size", "seed"))
        seed = value["seed"]
        if not isinstance(seed, (int, str)) or isinstance(seed, bool):
            raise ScenarioError(f"{where}: random seed must be an int or a string")
        data = random_bytes(parse_size(value["size"], f"{where}: random.size"), seed)
    else:
        source = (base / str(value)).resolve()
        if not source.is_file():
            raise ScenarioError(f"{where}: copy source {source} is not a file")
        decompress = spec.get("decompress")
        if decompress == "xz":
            data = lzma.decompress(source.read_bytes())
        elif decompress == "gzip":
            data = gzip.decompress(source.read_bytes())
        elif decompress is None:
            data = source.read_bytes()
        else:
            raise ScenarioError(f"{where}: decompress must be xz or gzip")
        if "hivex" in spec:
            data = _edit_hive(data, spec["hivex"], where)
    data, markers = _insert_strings(data, spec.get("strings", []), where)
    if markers and data.startswith(EVTX_SIGNATURE):
        data = fix_evtx_checksums(data)
    return data, kind, markers


EVTX_SIGNATURE = b"ElfFile\x00"
_EVTX_CHUNK = 65536
_EVTX_HEADER_SIZE = 4096


def fix_evtx_checksums(data: bytes) -> bytes:
    """An event log with the CRC32s of its chunks recomputed, so that strings
    planted in its records leave it as consistent as Windows writes it: per
    chunk, the records' checksum (bytes 512 to the free space offset) and the
    header's (bytes 0-120 and 128-512)."""
    buffer = bytearray(data)
    for start in range(_EVTX_HEADER_SIZE, len(buffer) - _EVTX_CHUNK + 1, _EVTX_CHUNK):
        chunk = buffer[start : start + _EVTX_CHUNK]
        if chunk[:8] != b"ElfChnk\x00":
            continue
        (free,) = struct.unpack_from("<I", chunk, 0x30)
        struct.pack_into("<I", chunk, 0x34, zlib.crc32(chunk[512:free]))
        struct.pack_into("<I", chunk, 0x7C, zlib.crc32(chunk[:0x78] + chunk[0x80:512]))
        buffer[start : start + _EVTX_CHUNK] = chunk
    return bytes(buffer)


def _edit_hive(data: bytes, script: Any, where: str) -> bytes:
    """A registry hive with a hivexsh script applied (keys planted in a real hive)."""
    if not isinstance(script, str):
        raise ScenarioError(f"{where}: hivex must be a hivexsh script (a string)")
    if shutil.which("hivexsh") is None:
        raise ScenarioError(f"{where}: hivexsh not found (Debian package libhivex-bin)")
    with tempfile.TemporaryDirectory() as folder:
        hive = Path(folder) / "hive"
        hive.write_bytes(data)
        result = subprocess.run(
            ["hivexsh", "-w", str(hive)],
            input=script.rstrip("\n") + "\ncommit\n",
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or result.stderr.strip():
            raise ScenarioError(f"{where}: hivexsh failed: {result.stderr.strip()}")
        return hive.read_bytes()


def _insert_strings(
    data: bytes, specs: Any, where: str
) -> tuple[bytes, list[dict[str, Any]]]:
    if not isinstance(specs, list):
        raise ScenarioError(f"{where}: strings must be a list")
    buffer = bytearray(data)
    markers: list[dict[str, Any]] = []
    taken: list[tuple[int, int]] = []
    for index, spec in enumerate(specs):
        here = f"{where}: strings[{index}]"
        _check_keys(spec, here, ("offset", "value", "encoding", "hex"), ("offset",))
        if ("value" in spec) == ("hex" in spec):
            raise ScenarioError(f"{here}: needs exactly one of value, hex")
        if "hex" in spec:
            if "encoding" in spec:
                raise ScenarioError(f"{here}: encoding does not apply to hex")
            try:
                raw = bytes.fromhex(str(spec["hex"]))
            except ValueError:
                raise ScenarioError(f"{here}: hex is not hexadecimal") from None
            marker = {"value": raw.hex(), "encoding": "hex"}
        else:
            encoding = spec.get("encoding", "ascii")
            if encoding not in ENCODINGS:
                raise ScenarioError(f"{here}: unknown encoding '{encoding}'")
            raw = str(spec["value"]).encode(ENCODINGS[encoding])
            # One spelling per encoding in the manifest, whatever alias was used.
            name = "utf-16le" if ENCODINGS[encoding] == "utf-16-le" else encoding
            marker = {"value": str(spec["value"]), "encoding": name}
        offset = spec["offset"]
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise ScenarioError(f"{here}: offset must be an integer")
        start = offset if offset >= 0 else len(buffer) + offset
        end = start + len(raw)
        if start < 0 or end > len(buffer):
            raise ScenarioError(
                f"{here}: {len(raw)} bytes at offset {offset} do not fit in "
                f"{len(buffer)} bytes of content"
            )
        if any(start < t_end and t_start < end for t_start, t_end in taken):
            raise ScenarioError(f"{here}: overlaps another inserted string")
        taken.append((start, end))
        buffer[start:end] = raw
        markers.append({"offset": start, "length": len(raw), **marker})
    return bytes(buffer), markers


def _parse_expect(spec: dict[str, Any], where: str) -> list[Any]:
    if "expect" not in spec:
        # Every planted file says what a scan must report, even if nothing.
        raise ScenarioError(f"{where}: missing 'expect' (use [] for a decoy)")
    expect = spec["expect"]
    if not isinstance(expect, list):
        raise ScenarioError(f"{where}: expect must be a list")
    return expect


_FILE_KEYS = (
    "path",
    *_CONTENT_KEYS,
    "encoding",
    "decompress",
    "hivex",
    "strings",
    "time",
    "deleted",
    "streams",
    "expect",
)
_STREAM_KEYS = ("name", *_CONTENT_KEYS, "encoding", "decompress", "strings", "expect")


def _parse_file(spec: Any, where: str, base: Path) -> PlantedFile:
    _check_keys(spec, where, _FILE_KEYS, ("path",))
    path = _check_path(spec["path"], f"{where}: path")
    where = f"{where} ({path})"
    data, kind, markers = _parse_content(spec, where, base)
    streams = [Stream("", data, kind, markers, _parse_expect(spec, where))]
    extra = spec.get("streams", [])
    if not isinstance(extra, list):
        raise ScenarioError(f"{where}: streams must be a list")
    for index, stream_spec in enumerate(extra):
        here = f"{where}: streams[{index}]"
        _check_keys(stream_spec, here, _STREAM_KEYS, ("name",))
        name = stream_spec["name"]
        if not isinstance(name, str) or not name or set(name) & _BAD_NAME_CHARS:
            raise ScenarioError(f"{here}: bad stream name {name!r}")
        if any(s.name == name for s in streams):
            raise ScenarioError(f"{here}: duplicate stream name '{name}'")
        data, kind, markers = _parse_content(stream_spec, here, base)
        streams.append(
            Stream(name, data, kind, markers, _parse_expect(stream_spec, here))
        )
    deleted = spec.get("deleted", False)
    if not isinstance(deleted, bool):
        raise ScenarioError(f"{where}: deleted must be true or false")
    when = parse_time(spec["time"], f"{where}: time") if "time" in spec else None
    return PlantedFile(path, streams, deleted, when)


def load_description(path: Path) -> Scenario:
    """Parse and check a scenario description; raise ScenarioError if bad."""
    where = str(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ScenarioError(f"{where}: {error}") from None
    _check_keys(
        doc,
        where,
        ("name", "volume", "timestamp", "e01", "disk", "directories", "files"),
        ("volume", "files"),
    )
    name = str(doc.get("name", path.stem))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ScenarioError(f"{where}: name '{name}' is not a safe file name")

    volume = _check_keys(
        doc["volume"], f"{where}: volume", ("size_mib", "label", "cluster_size")
    )
    size_mib = volume.get("size_mib")
    if not isinstance(size_mib, int) or isinstance(size_mib, bool) or size_mib < 2:
        raise ScenarioError(f"{where}: volume.size_mib must be an integer >= 2")
    label = str(volume.get("label", name.upper()))
    if len(label) > 32:
        raise ScenarioError(f"{where}: volume.label is longer than 32 characters")
    cluster_size = volume.get("cluster_size")
    if cluster_size is not None and (
        not isinstance(cluster_size, int) or cluster_size & (cluster_size - 1)
    ):
        raise ScenarioError(f"{where}: volume.cluster_size must be a power of two")

    timestamp = doc.get("timestamp")
    if timestamp is not None:
        timestamp = parse_time(timestamp, f"{where}: timestamp")

    e01_spec = _check_keys(
        doc.get("e01", {}),
        f"{where}: e01",
        (
            "case_number",
            "examiner",
            "description",
            "evidence_number",
            "notes",
            "segment_size_mib",
        ),
    )
    e01 = {
        "case_number": str(e01_spec.get("case_number", f"TOOLMARKS-{name}")),
        "examiner": str(e01_spec.get("examiner", "toolmarks scenario builder")),
        "description": str(
            e01_spec.get("description", f"toolmarks test scenario {name}")
        ),
        "evidence_number": str(e01_spec.get("evidence_number", "1")),
        "notes": str(
            e01_spec.get(
                "notes", "synthetic test image built by scripts/build_scenario.py"
            )
        ),
    }
    segment_mib = e01_spec.get("segment_size_mib", 8)
    if not isinstance(segment_mib, (int, float)) or segment_mib * MIB < (
        MIN_SEGMENT_SIZE
    ):
        raise ScenarioError(
            f"{where}: e01.segment_size_mib must be >= 1 (ewfacquirestream's minimum)"
        )

    disk = _check_keys(doc.get("disk", {}), f"{where}: disk", ("spare_size_mib",))
    spare_mib = disk.get("spare_size_mib", 8)
    if not isinstance(spare_mib, int) or not (spare_mib == 0 or spare_mib >= 4):
        # Below 4 MiB a FAT16 with one-sector clusters is not viable.
        raise ScenarioError(f"{where}: disk.spare_size_mib must be 0 or >= 4")

    directories_spec = doc.get("directories", [])
    if not isinstance(directories_spec, list):
        raise ScenarioError(f"{where}: directories must be a list")
    directories = [
        _check_path(d, f"{where}: directories[{i}]")
        for i, d in enumerate(directories_spec)
    ]

    files_spec = doc["files"]
    if not isinstance(files_spec, list):
        raise ScenarioError(f"{where}: files must be a list")
    files = [
        _parse_file(spec, f"{where}: files[{i}]", PROJECT_ROOT)
        for i, spec in enumerate(files_spec)
    ]
    # NTFS as Windows sees it is case-insensitive; ntfs-3g is not, so catch
    # names that differ only in case, and a path that is both file and directory.
    names = [*_directory_list(directories, files), *(f.path for f in files)]
    spellings: dict[str, str] = {}
    for entry in names:
        other = spellings.setdefault(entry.lower(), entry)
        if other != entry:
            raise ScenarioError(f"{where}: '{entry}' differs from '{other}' in case")
    if len(spellings) != len(names):
        raise ScenarioError(f"{where}: a path is listed twice or as file and directory")
    used = sum(len(s.data) for f in files for s in f.streams)
    if used > size_mib * MIB * 0.8:
        raise ScenarioError(
            f"{where}: {used} bytes of content do not fit in a {size_mib} MiB volume"
        )

    return Scenario(
        name=name,
        source=path,
        size_mib=size_mib,
        label=label,
        cluster_size=cluster_size,
        timestamp=timestamp,
        e01=e01,
        segment_size=int(segment_mib * MIB),
        spare_size=spare_mib * MIB,
        directories=directories,
        files=files,
    )


# --- building ------------------------------------------------------------------


def check_prerequisites(formats: Iterable[str]) -> None:
    """Fail with a clear message if a tool or root is missing."""
    formats = set(formats)
    tools = ["mkntfs", "ntfs-3g", "umount"]
    if formats & {"e01", "split_e01"}:
        tools.append("ewfacquirestream")
    if formats & {"mbr", "gpt"}:
        tools.append("sfdisk")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        packages = sorted({TOOL_PACKAGES[tool] for tool in missing})
        raise ScenarioError(
            f"missing tool(s): {', '.join(missing)} "
            f"(Debian packages: {', '.join(packages)})"
        )
    if os.geteuid() != 0:
        raise ScenarioError(
            "must run as root: the volume is filled through an ntfs-3g FUSE mount"
        )
    if not os.path.exists("/dev/fuse"):
        raise ScenarioError("/dev/fuse is missing: ntfs-3g can not mount the volume")


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(command, check=True, capture_output=True, **kwargs)
    except subprocess.CalledProcessError as error:
        output = (error.stderr or b"").decode(errors="replace").strip()
        output = output or (error.stdout or b"").decode(errors="replace").strip()
        raise ScenarioError(
            f"{command[0]} failed ({error.returncode}): {' '.join(command)}\n{output}"
        ) from None


def _make_volume(raw: Path, scenario: Scenario) -> None:
    raw.unlink(missing_ok=True)
    with raw.open("wb") as handle:
        handle.truncate(scenario.size_mib * MIB)
    command = ["mkntfs", "--force", "--quick", "--quiet"]
    command += ["--label", scenario.label, "--sector-size", str(SECTOR_SIZE)]
    # Hidden sectors = the partition start in the MBR/GPT disks, as Windows
    # writes it; a bare volume cut out of a disk carries the same value.
    command += ["--partition-start", str(PARTITION_OFFSET // SECTOR_SIZE)]
    command += ["--heads", "255", "--sectors-per-track", "63"]
    if scenario.cluster_size:
        command += ["--cluster-size", str(scenario.cluster_size)]
    _run([*command, str(raw)])


@contextlib.contextmanager
def _mounted(raw: Path, mountpoint: Path, log: Path) -> Iterator[None]:
    """Mount the volume with ntfs-3g; on exit unmount and wait until it is written."""
    options = "streams_interface=windows,windows_names,no_detach"
    with log.open("ab") as log_handle:
        # no_detach keeps ntfs-3g in the foreground so that waiting for it after
        # umount guarantees the volume is closed (FUSE umount is asynchronous).
        process = subprocess.Popen(
            ["ntfs-3g", "-o", options, str(raw), str(mountpoint)],
            stdout=log_handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(mountpoint):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ScenarioError(
                    f"ntfs-3g could not mount {raw}:\n{log.read_text(errors='replace')}"
                )
            time.sleep(0.05)
        yield
    finally:
        if os.path.ismount(mountpoint):
            subprocess.run(["umount", str(mountpoint)], check=False)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=30)
    if process.returncode != 0:
        raise ScenarioError(
            f"ntfs-3g exited with {process.returncode}:\n"
            f"{log.read_text(errors='replace')}"
        )


def _set_times(path: Path, when: dt.datetime) -> None:
    filetime = (int(when.timestamp()) + FILETIME_EPOCH_DELTA) * 10**7
    filetime += when.microsecond * 10
    # creation, modification, access; ntfs-3g always sets MFT-modified to now.
    times = struct.pack("<3Q", filetime, filetime, filetime)
    os.setxattr(path, "system.ntfs_times", times, follow_symlinks=False)


def _write_streams(target: Path, planted: PlantedFile, sync: bool) -> None:
    for stream in planted.streams:
        name = f"{target}:{stream.name}" if stream.name else str(target)
        with open(name, "xb") as handle:
            if stream.source == "usn":
                _write_sparse(handle, stream.data)
            else:
                handle.write(stream.data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())


def _write_sparse(handle: Any, data: bytes) -> None:
    """Write data leaving its zero blocks unwritten: ntfs-3g makes them sparse
    runs, as Windows keeps the start of $J."""
    block = 64 * KIB
    for start in range(0, len(data), block):
        piece = data[start : start + block]
        if piece.count(0) != len(piece):
            handle.seek(start)
            handle.write(piece)
    handle.truncate(len(data))


# Directories mkntfs makes itself; ntfs-3g refuses to create entries in $Extend
# but lets a file be renamed into it.
_SYSTEM_DIRECTORIES = ("$Extend",)


def _directory_list(directories: list[str], files: list[PlantedFile]) -> list[str]:
    """Declared directories and the parents of every file, parents first."""
    result: list[str] = []
    paths = [*directories, *(str(PurePosixPath(f.path).parent) for f in files)]
    for path in paths:
        parts = PurePosixPath(path).parts
        for depth in range(1, len(parts) + 1):
            candidate = "/".join(parts[:depth])
            if candidate != "." and candidate not in result:
                result.append(candidate)
    return result


def _populate(raw: Path, scenario: Scenario, work: Path) -> dict[str, int]:
    """Write the planted files; return their MFT entry numbers by path."""
    mountpoint = work / "mnt"
    mountpoint.mkdir()
    entries: dict[str, int] = {}
    directories = _directory_list(scenario.directories, scenario.files)
    live = [f for f in scenario.files if not f.deleted]
    gone = [f for f in scenario.files if f.deleted]
    with _mounted(raw, mountpoint, work / "ntfs-3g.log"):
        for directory in directories:
            if directory not in _SYSTEM_DIRECTORIES:
                (mountpoint / directory).mkdir()
        for index, planted in enumerate(live):
            target = mountpoint / planted.path
            if planted.path.startswith(tuple(d + "/" for d in _SYSTEM_DIRECTORIES)):
                staged = mountpoint / f"toolmarks-staged-{index}"
                _write_streams(staged, planted, sync=False)
                staged.rename(target)
            else:
                _write_streams(target, planted, sync=False)
            # ntfs-3g reports the MFT record number as the inode number.
            entries[planted.path] = target.stat().st_ino
        for planted in live:
            when = planted.time or scenario.timestamp
            if when:
                _set_times(mountpoint / planted.path, when)
        # Deleted files come last: nothing is written after their removal, so
        # their clusters and MFT records keep the content.
        for planted in gone:
            target = mountpoint / planted.path
            _write_streams(target, planted, sync=True)
            when = planted.time or scenario.timestamp
            if when:
                _set_times(target, when)
            entries[planted.path] = target.stat().st_ino
        os.sync()
        for planted in gone:
            (mountpoint / planted.path).unlink()
        # Removing and adding entries changed the directories' times; setting
        # them touches only MFT records and index entries, never free clusters.
        if scenario.timestamp:
            for directory in sorted(directories, key=lambda d: -d.count("/")):
                if directory not in _SYSTEM_DIRECTORIES:
                    _set_times(mountpoint / directory, scenario.timestamp)
    return entries


def _segment_order(path: Path) -> tuple[int, str]:
    suffix = path.suffix[2:].upper()  # .E01 -> 01, .EAA -> AA
    return (0, suffix.zfill(3)) if suffix.isdigit() else (1, path.suffix.upper())


def _acquire_e01(
    raw: Path, target: Path, scenario: Scenario, segment_size: int | None
) -> list[Path]:
    """Write an EnCase 6 image of the volume; return its segment files in order."""
    pattern = re.compile(re.escape(target.name) + r"\.[E-Z][0-9A-Z]{2}")
    for stale in target.parent.iterdir():
        # Leftover segments of an earlier, larger build would join this image.
        if pattern.fullmatch(stale.name):
            stale.unlink()
    meta = scenario.e01
    command = ["ewfacquirestream", "-q", "-t", str(target), "-f", "encase6"]
    command += ["-c", "deflate:fast", "-d", "sha1", "-m", "fixed", "-M", "physical"]
    command += ["-C", meta["case_number"], "-D", meta["description"]]
    command += ["-e", meta["examiner"], "-E", meta["evidence_number"]]
    command += ["-N", meta["notes"]]
    if segment_size:
        command += ["-S", str(segment_size)]
    with raw.open("rb") as stdin:
        _run(command, stdin=stdin)
    segments = sorted(
        (p for p in target.parent.iterdir() if pattern.fullmatch(p.name)),
        key=_segment_order,
    )
    if not segments:
        raise ScenarioError(f"ewfacquirestream wrote no segment for {target}")
    return segments


def _copy_into(source: Path, target: Path, offset: int) -> None:
    """Copy source into target at offset, skipping zero blocks to stay sparse."""
    chunk = MIB
    zero = bytes(chunk)
    with source.open("rb") as src, target.open("r+b") as dst:
        position = offset
        while block := src.read(chunk):
            if block != zero[: len(block)]:
                dst.seek(position)
                dst.write(block)
            position += len(block)


def _mkfs_vfat() -> str | None:
    return shutil.which("mkfs.vfat") or shutil.which("mkfs.fat")


def _disk_image(
    raw: Path, out: Path, scenario: Scenario, scheme: str, work: Path
) -> dict[str, Any]:
    """Make an MBR or GPT disk holding the volume at 1 MiB and a spare partition."""
    volume_size = raw.stat().st_size
    start = PARTITION_OFFSET // SECTOR_SIZE
    sectors = volume_size // SECTOR_SIZE
    spare_start = start + sectors
    spare_sectors = scenario.spare_size // SECTOR_SIZE
    # 1 MiB at the end keeps the layout symmetric and holds the GPT backup.
    total = PARTITION_OFFSET + volume_size + scenario.spare_size + MIB
    out.unlink(missing_ok=True)
    with out.open("wb") as handle:
        handle.truncate(total)

    def ident(role: str) -> uuid.UUID:
        # Fixed identifiers, so rebuilding gives the same partition tables.
        return uuid.uuid5(UUID_NAMESPACE, f"{scenario.name}:{scheme}:{role}")

    if scheme == "mbr":
        lines = ["label: dos", f"label-id: 0x{ident('disk').hex[:8]}"]
        parts = [f"start={start}, size={sectors}, type=7, bootable"]
        ntfs_type, spare_type = "0x07", "0x06"
        if spare_sectors:
            parts.append(f"start={spare_start}, size={spare_sectors}, type=6")
    else:
        lines = ["label: gpt", f"label-id: {str(ident('disk')).upper()}"]
        lines.append(f"first-lba: {start}")
        parts = [
            (
                f"start={start}, size={sectors}, type={NTFS_GPT_TYPE}, "
                f'uuid={str(ident("ntfs")).upper()}, name="Basic data partition"'
            )
        ]
        ntfs_type = spare_type = NTFS_GPT_TYPE
        if spare_sectors:
            parts.append(
                f"start={spare_start}, size={spare_sectors}, type={NTFS_GPT_TYPE}, "
                f'uuid={str(ident("spare")).upper()}, name="spare"'
            )
    script = "\n".join([*lines, "unit: sectors", "sector-size: 512", "", *parts])
    _run(
        ["sfdisk", "--no-reread", "--no-tell-kernel", "--quiet", str(out)],
        input=(script + "\n").encode(),
    )
    _copy_into(raw, out, PARTITION_OFFSET)
    partitions = [
        {
            "number": 1,
            "offset": PARTITION_OFFSET,
            "size": volume_size,
            "type": ntfs_type,
            "filesystem": "ntfs",
        }
    ]
    if spare_sectors:
        filesystem = None
        mkfs = _mkfs_vfat()
        if mkfs:
            spare = work / f"spare-{scheme}.img"
            with spare.open("wb") as handle:
                handle.truncate(scenario.spare_size)
            serial = ident("spare-fat").hex[:8]
            _run(
                [mkfs, "-F", "16", "-s", "1", "-S", str(SECTOR_SIZE), "-n", "SPARE"]
                + ["-i", serial, "-h", str(spare_start), str(spare)]
            )
            _copy_into(spare, out, spare_start * SECTOR_SIZE)
            filesystem = "fat16"
        partitions.append(
            {
                "number": 2,
                "offset": spare_start * SECTOR_SIZE,
                "size": scenario.spare_size,
                "type": spare_type,
                "filesystem": filesystem,
            }
        )
    return {
        "files": [out.name],
        "size": total,
        "volume_offset": PARTITION_OFFSET,
        "partition_table": "dos" if scheme == "mbr" else "gpt",
        "partitions": partitions,
    }


def _hashes(data: bytes) -> dict[str, str]:
    return {
        "md5": hashlib.md5(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _file_digests(path: Path) -> dict[str, str]:
    digests = {name: hashlib.new(name) for name in ("md5", "sha1", "sha256")}
    with path.open("rb") as handle:
        while block := handle.read(MIB):
            for digest in digests.values():
                digest.update(block)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def _manifest_files(
    scenario: Scenario, entries: dict[str, int]
) -> list[dict[str, Any]]:
    result = []
    for planted in scenario.files:
        when = planted.time or scenario.timestamp
        for stream in planted.streams:
            result.append(
                {
                    "path": "/" + planted.path,
                    "stream": stream.name,
                    "size": len(stream.data),
                    **_hashes(stream.data),
                    "allocated": not planted.deleted,
                    "mft_entry": entries[planted.path],
                    "source": stream.source,
                    "times": (
                        {
                            "created": format_time(when),
                            "modified": format_time(when),
                            "accessed": format_time(when),
                        }
                        if when
                        else None
                    ),
                    "markers": stream.markers,
                    "expect": stream.expect,
                }
            )
    return result


def _relative_to_project(path: Path) -> str:
    try:
        return path.resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


def parse_formats(value: str | Iterable[str] | None) -> list[str]:
    """Return the requested formats in canonical order; reject unknown ones."""
    if value is None:
        return list(FORMATS)
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [item.strip() for item in items if item.strip()]
    unknown = sorted(set(items) - set(FORMATS))
    if unknown or not items:
        raise ScenarioError(
            f"unknown format(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {','.join(FORMATS)}"
        )
    return [fmt for fmt in FORMATS if fmt in items]


def build(
    description_path: str | Path,
    outdir: str | Path,
    formats: str | Iterable[str] | None = None,
) -> dict[str, Any]:
    """Build the scenario's images into outdir.

    Returns a dict of format -> image path (the first segment for E01s) plus
    "manifest" (the manifest dict) and "manifest_path".
    """
    scenario = load_description(Path(description_path))
    wanted = parse_formats(formats)
    check_prerequisites(wanted)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    name = scenario.name
    raw = outdir / f"{name}.raw"
    started = time.monotonic()
    images: dict[str, dict[str, Any]] = {}
    result: dict[str, Any] = {}

    with tempfile.TemporaryDirectory(prefix="toolmarks-scenario-") as tmp:
        work = Path(tmp)
        _make_volume(raw, scenario)
        entries = _populate(raw, scenario, work)
        volume = {
            "filesystem": "ntfs",
            "label": scenario.label,
            "size": raw.stat().st_size,
            "cluster_size": scenario.cluster_size,
            "sector_size": SECTOR_SIZE,
            **_file_digests(raw),
        }
        if "raw" in wanted:
            images["raw"] = {"files": [raw.name], "volume_offset": 0}
            result["raw"] = raw
        if "e01" in wanted:
            segments = _acquire_e01(raw, outdir / name, scenario, None)
            images["e01"] = {
                "files": [p.name for p in segments],
                "volume_offset": 0,
                **scenario.e01,
            }
            result["e01"] = segments[0]
        if "split_e01" in wanted:
            segments = _acquire_e01(
                raw, outdir / f"{name}-split", scenario, scenario.segment_size
            )
            if len(segments) < 2:
                print(
                    f"warning: {name}-split.E01 has a single segment; lower "
                    "e01.segment_size_mib to split it",
                    file=sys.stderr,
                )
            images["split_e01"] = {
                "files": [p.name for p in segments],
                "volume_offset": 0,
                "segment_size": scenario.segment_size,
                **scenario.e01,
            }
            result["split_e01"] = segments[0]
        for scheme in ("mbr", "gpt"):
            if scheme in wanted:
                disk = outdir / f"{name}-{scheme}.raw"
                images[scheme] = _disk_image(raw, disk, scenario, scheme, work)
                result[scheme] = disk
        if "raw" not in wanted:
            raw.unlink()

    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "scenario": name,
        "description": _relative_to_project(scenario.source),
        "description_sha256": hashlib.sha256(scenario.source.read_bytes()).hexdigest(),
        "timestamp": format_time(scenario.timestamp) if scenario.timestamp else None,
        "volume": volume,
        "images": images,
        "directories": [
            "/" + d for d in _directory_list(scenario.directories, scenario.files)
        ],
        "files": _manifest_files(scenario, entries),
    }
    manifest_path = outdir / f"{name}.manifest.json"
    # Written last: its presence marks a complete build.
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(
        f"built {name} ({', '.join(wanted)}) in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    return {**result, "manifest": manifest, "manifest_path": manifest_path}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description="Build NTFS scenario images with planted artefacts."
    )
    parser.add_argument("description", type=Path, help="scenario YAML file")
    parser.add_argument("-o", "--outdir", type=Path, required=True)
    parser.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help=f"comma-separated subset of {','.join(FORMATS)} (default: all)",
    )
    args = parser.parse_args(argv)
    try:
        result = build(args.description, args.outdir, args.formats)
    except ScenarioError as error:
        print(f"build_scenario: error: {error}", file=sys.stderr)
        return 1
    for fmt in FORMATS:
        if fmt in result:
            print(f"{fmt}\t{result[fmt]}")
    print(f"manifest\t{result['manifest_path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
