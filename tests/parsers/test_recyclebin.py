"""Tests of the Recycle Bin detection core: real `$I` and INFO2 files, planted
tool paths, decoys and bad input.

The facts of the real files come from ../shared/test_data/real/MANIFEST.md;
where it gives none (the full paths and sizes of INFO2 records 2 to 4), they
were read with plaso 20260720's own parser (`log2timeline --parsers
recycle_bin_info2`, then `psort -o json_line`), not with this one. Missing test
data fails the tests; nothing is skipped.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import io
import random
import struct
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from toolmarks.indicators.compiler import CompiledSet
from toolmarks.indicators.loader import load
from toolmarks.parsers import manager
from toolmarks.parsers.recyclebin import (
    DATA_TYPE,
    DESC_DELETION,
    matching_path,
    parse_recyclebin,
)

ROOT = Path(__file__).resolve().parents[2]
RECYCLEBIN = ROOT / ".." / "shared" / "test_data" / "real" / "recyclebin"
WCE = "C:\\Users\\bob\\Downloads\\wce.exe"
# A FILETIME within the traces scenario's day (2021-02-15T08:30:00Z).
DELETED = 132578442000000000


class Fact(NamedTuple):
    """One `$I` file as MANIFEST.md describes it."""

    name: str
    size: int
    sha256: str
    version: int
    path: str
    file_size: int
    deleted: str  # UTC


# MANIFEST.md, "recyclebin/$I103S5F.jpg" and "recyclebin/$II3DF3L.zip".
I_FACTS = [
    Fact(
        name="$I103S5F.jpg",
        size=104,
        sha256="23c233e261b9b496f547dfc7447050fbae452dffbdd135a43d1bad31bc7b0df9",
        version=2,
        path="C:\\Users\\random\\Downloads\\bunnies.jpg",
        file_size=222255,
        deleted="2016-06-29T21:37:45.618000",
    ),
    Fact(
        name="$II3DF3L.zip",
        size=544,
        sha256="016d798595fe02bc19ee53511055a3ab3343a81a5ecc1301e606c5646b8b1ce8",
        version=1,
        path="C:\\Users\\nfury\\Documents\\Alloy Research\\StarFury.zip",
        file_size=724919,
        deleted="2012-03-12T20:49:58.633000",
    ),
]
INFO2_SIZE = 3220
INFO2_SHA256 = "92b3ccd7393474754d2453338b65e0c910c3f074dccc243deae072c62f9bbb1e"
DESKTOP = "C:\\Documents and Settings\\Mr. Evil\\Desktop\\"
# MANIFEST.md "recyclebin/INFO2": version 5, 800-byte records, drive number 2
# (C:), record index, file name and deletion time; record 1's full path and
# size. The other full paths and sizes: plaso's recycle_bin_info2 (see above).
INFO2_RECORDS = [
    (1, "lalsetup250.exe", "2004-08-25T16:18:25.237000", 2160128),
    (2, "netstumblerinstaller_0_4_0.exe", "2004-08-27T15:12:30.799000", 1325056),
    (3, "WinPcap_3_01_a.exe", "2004-08-27T15:15:26.742000", 442880),
    (4, "ethereal-setup-0.10.6.exe", "2004-08-27T15:29:58.161000", 8460800),
]


@pytest.fixture(scope="module")
def compiled() -> CompiledSet:
    return CompiledSet(load())


def real(name: str) -> bytes:
    return (RECYCLEBIN / name).read_bytes()


def filetime_of(iso: str) -> int:
    moment = datetime.datetime.fromisoformat(iso).replace(tzinfo=datetime.UTC)
    delta = moment - datetime.datetime(1601, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def i_v1(path: str, size: int = 4096, filetime: int = DELETED) -> bytes:
    name = (path + "\x00").encode("utf-16-le")
    return struct.pack("<QQQ", 1, size, filetime) + name.ljust(520, b"\x00")


def i_v2(
    path: str, size: int = 4096, filetime: int = DELETED, length: int | None = None
) -> bytes:
    name = (path + "\x00").encode("utf-16-le")
    count = len(name) // 2 if length is None else length
    return struct.pack("<QQQI", 2, size, filetime, count) + name


def info2_record(
    path: str, index: int, drive: int = 2, filetime: int = DELETED, size: int = 8192
) -> bytes:
    ansi = path.encode("cp1252").ljust(260, b"\x00")
    wide = (path + "\x00").encode("utf-16-le").ljust(520, b"\x00")
    return ansi + struct.pack("<IIQI", index, drive, filetime, size) + wide


def info2(*records: bytes, version: int = 5, record_size: int = 800) -> bytes:
    header = struct.pack("<5I", version, len(records), len(records), record_size, 0)
    return header + b"".join(records)


def parse(data: bytes, name: str, compiled: CompiledSet, **options):
    result = parse_recyclebin(io.BytesIO(data), f"/x/{name}", compiled, name, **options)
    assert not [w for w in result.warnings if "internal error" in w]
    return result


# --- the real files ----------------------------------------------------------------


@pytest.mark.parametrize("fact", I_FACTS, ids=lambda f: f.name)
def test_real_i_files_parse_to_manifest_facts(fact: Fact, compiled) -> None:
    data = real(fact.name)
    assert (len(data), hashlib.sha256(data).hexdigest()) == (fact.size, fact.sha256)
    result = parse(data, fact.name, compiled)
    assert result.warnings == []
    [item] = result.items
    assert item.format_version == fact.version
    assert item.original_filename == fact.path
    assert item.file_size == fact.file_size
    assert item.deletion_filetime == filetime_of(fact.deleted)
    assert item.recycle_format == "$I"
    assert item.content_file == "$R" + fact.name[2:]
    assert not item.truncated
    # No seed tool in either path: no event.
    assert result.traces == []


def test_real_info2_parses_to_manifest_facts(compiled) -> None:
    data = real("INFO2")
    assert (len(data), hashlib.sha256(data).hexdigest()) == (INFO2_SIZE, INFO2_SHA256)
    result = parse(data, "INFO2", compiled)
    assert result.warnings == []
    assert len(result.items) == len(INFO2_RECORDS)
    for number, (item, fact) in enumerate(zip(result.items, INFO2_RECORDS)):
        index, name, deleted, size = fact
        assert item.record_index == index
        assert item.original_filename == DESKTOP + name
        assert item.deletion_filetime == filetime_of(deleted)
        assert item.file_size == size
        assert (item.drive_number, item.drive_letter) == (2, "C")
        assert item.format_version == 5
        assert item.offset == 20 + 800 * number
        assert item.content_file == f"Dc{index}.exe"
        assert item.short_filename is None  # the ANSI path is the same
        assert not item.removed and not item.truncated
    assert result.traces == []


def test_time_description_is_plasos() -> None:
    """plaso's timeliner.yaml (read as data, plaso is not imported)."""
    spec = importlib.util.find_spec("plaso")
    assert spec and spec.origin
    timeliner = Path(spec.origin).parent / "data" / "timeliner.yaml"
    [entry] = [
        d
        for d in yaml.safe_load_all(timeliner.read_text())
        if d and d.get("data_type") == "windows:metadata:deleted_item"
    ]
    assert entry["attribute_mappings"] == [
        {"name": "deletion_time", "description": DESC_DELETION}
    ]
    assert manager.by_data_type(DATA_TYPE).times == {"deletion_time": DESC_DELETION}


# --- planted tool paths and decoys ----------------------------------------------------


@pytest.mark.parametrize("make", [i_v1, i_v2], ids=["v1", "v2"])
def test_i_file_naming_wce_gives_one_event(make, compiled) -> None:
    result = parse(make(WCE, size=90112), "$IWCE001.exe", compiled)
    assert result.warnings == []
    [trace] = result.traces
    assert trace.data_type == DATA_TYPE
    assert trace.timestamp is not None and trace.timestamp.timestamp == DELETED
    assert trace.timestamp_desc == DESC_DELETION
    assert trace.source == "/x/$IWCE001.exe"
    [match] = trace.matches
    assert (match.tool, match.indicator, match.kind, match.value) == (
        "wce",
        "wce.filename.exe",
        "filename",
        WCE,
    )
    assert trace.attributes == {
        "original_filename": WCE,
        "file_size": 90112,
        "deletion_filetime": DELETED,
        "recycle_format": "$I",
        "format_version": 1 if make is i_v1 else 2,
        "content_file": "$RWCE001.exe",
    }


def test_info2_record_naming_wce_gives_one_event(compiled) -> None:
    data = info2(
        info2_record(DESKTOP + "notes.txt", 1),
        info2_record("D:\\tools\\wce.exe", 2, drive=3),
    )
    result = parse(data, "INFO2", compiled)
    assert result.warnings == []
    assert len(result.items) == 2
    [trace] = result.traces
    assert [(m.tool, m.indicator, m.value) for m in trace.matches] == [
        ("wce", "wce.filename.exe", "D:\\tools\\wce.exe")
    ]
    assert trace.timestamp is not None and trace.timestamp.timestamp == DELETED
    attributes = trace.attributes
    assert (attributes["record_index"], attributes["record_offset"]) == (2, 820)
    assert (attributes["drive_number"], attributes["drive_letter"]) == (3, "D")
    assert attributes["content_file"] == "Dd2.exe"
    assert attributes["removed"] is False


@pytest.mark.parametrize(
    "path",
    [
        "C:\\Users\\bob\\wce.exe.txt",
        "C:\\Users\\bob\\owce.exe",
        "C:\\Users\\bob\\Downloads\\wce.exe\\readme.txt",
        "C:\\Users\\bob\\Downloads\\wce.exe.lnk",
    ],
)
def test_decoys_give_nothing(path: str, compiled) -> None:
    for data, name in (
        (i_v2(path), "$IDECOY1.txt"),
        (i_v1(path), "$IDECOY2.txt"),
        (info2(info2_record(path, 1)), "INFO2"),
    ):
        result = parse(data, name, compiled)
        assert result.warnings == []
        assert [item.original_filename for item in result.items] == [path]
        assert result.traces == []


def test_matching_path_drops_the_drive() -> None:
    assert matching_path(WCE) == "\\Users\\bob\\Downloads\\wce.exe"
    assert matching_path("\\\\?\\d:\\wce.exe") == "\\wce.exe"
    assert matching_path("\\\\server\\share\\wce.exe") == "\\\\server\\share\\wce.exe"


def test_routing_by_path() -> None:
    def name(path: str) -> str | None:
        definition = manager.parser_for(path)
        return definition.name if definition else None

    for path in (
        "/$Recycle.Bin/S-1-5-21-1-2-3-1001/$IWCE001.exe",
        "/$RECYCLE.BIN/S-1-5-21-1-2-3-1001/$i103s5f.jpg",
        "/RECYCLER/S-1-5-21-1-2-3-1003/INFO2",
        "/Recycled/INFO2",
    ):
        assert name(path) == "recyclebin", path
    for path in (
        "/$Recycle.Bin/S-1-5-21-1-2-3-1001/$RWCE001.exe",
        "/$Recycle.Bin/S-1-5-21-1-2-3-1001/desktop.ini",
        "/$Recycle.Bin/S-1-5-21-1-2-3-1001/$RWCE001/$IABCDEF.exe",
        "/Users/bob/INFO2",
    ):
        assert name(path) is None, path


def test_other_names_are_not_read(compiled) -> None:
    """plaso hands every file to a parser without signatures."""
    result = parse(i_v2(WCE), "wce.exe", compiled)
    assert (result.items, result.traces, result.warnings) == ([], [], [])


# --- bad input -----------------------------------------------------------------------


def test_name_length_past_the_end(compiled) -> None:
    data = i_v2(WCE, length=500)
    result = parse(data, "$IBAD001.exe", compiled)
    [warning] = result.warnings
    assert warning.startswith("/x/$IBAD001.exe: recycle bin: ")
    assert "path length 500 characters at offset 24 runs past the end" in warning
    # The path itself is there, NUL-terminated: parsed, and flagged.
    [item] = result.items
    assert (item.original_filename, item.file_size) == (WCE, 4096)
    [trace] = result.traces
    assert trace.attributes["truncated"] is True


def test_hostile_name_length(compiled) -> None:
    data = struct.pack("<QQQI", 2, 1, DELETED, 0xFFFFFFFF) + "C:\\a".encode("utf-16-le")
    result = parse(data, "$IBAD002", compiled)
    assert any("offset 24" in w and "4294967295" in w for w in result.warnings)
    [item] = result.items
    assert item.original_filename == "C:\\a" and item.truncated


@pytest.mark.parametrize(
    "cut, where",
    [(0, "0 bytes"), (10, "offset 0"), (26, "offset 24"), (60, "offset 24")],
)
def test_truncated_i_files(cut: int, where: str, compiled) -> None:
    for make in (i_v1, i_v2):
        data = make(WCE)[:cut]
        result = parse(data, "$ICUT001.exe", compiled)
        assert result.warnings, (make, cut)
        assert all(w.startswith("/x/$ICUT001.exe: ") for w in result.warnings)
        assert any(where in w for w in result.warnings), result.warnings
        # A cut path names no tool: "C:\Users\bob\Do…" at most.
        assert result.traces == []


def test_zero_filled_files(compiled) -> None:
    for name, size in (("$IZERO01.exe", 544), ("$IZERO02.exe", 28), ("INFO2", 3220)):
        result = parse(bytes(size), name, compiled)
        assert result.warnings == [
            f"/x/{name}: recycle bin: zero-filled from offset 0 to {size}: "
            + ("no record" if name == "INFO2" else "no entry")
        ]
        assert result.items == [] and result.traces == []


def test_unknown_i_version(compiled) -> None:
    data = struct.pack("<Q", 3) + i_v2(WCE)[8:]
    result = parse(data, "$IVER003.exe", compiled)
    assert result.warnings == [
        (
            "/x/$IVER003.exe: recycle bin: unknown $I format version 3 at offset 0 "
            "(1 and 2 are known)"
        )
    ]
    assert result.items == []


def test_bad_utf16_is_said(compiled) -> None:
    # An unpaired high surrogate (0xD800) inside the path.
    name = (
        "C:\\a".encode("utf-16-le") + b"\x00\xd8" + "\\wce.exe\x00".encode("utf-16-le")
    )
    data = struct.pack("<QQQI", 2, 1, DELETED, len(name) // 2) + name
    result = parse(data, "$IUTF001.exe", compiled)
    assert any("offset 24" in w and "UTF-16" in w for w in result.warnings)
    [item] = result.items
    assert item.original_filename == "C:\\a\ufffd\\wce.exe"
    # Still a path ending in \wce.exe.
    assert len(result.traces) == 1


def test_info2_record_size_that_does_not_fit(compiled) -> None:
    data = bytearray(real("INFO2"))
    struct.pack_into("<I", data, 12, 1000)
    result = parse(bytes(data), "INFO2", compiled)
    [warning] = result.warnings
    assert warning.startswith("/x/INFO2: recycle bin: record size 1000 at offset 12")
    # Read as version 5 records: the four records are all there.
    assert [i.record_index for i in result.items] == [1, 2, 3, 4]
    # An unknown version too: nothing to go by.
    struct.pack_into("<I", data, 0, 9)
    result = parse(bytes(data), "INFO2", compiled)
    assert result.items == []
    [warning] = result.warnings
    assert "version 9 at offset 0" in warning and "record size 1000" in warning


def test_truncated_info2(compiled) -> None:
    data = real("INFO2")
    # Record 4 (offset 2420) cut within its UTF-16 path: read from what is there.
    result = parse(data[:3000], "INFO2", compiled)
    [warning] = result.warnings
    assert "truncated record at offset 2420" in warning
    assert [i.record_index for i in result.items] == [1, 2, 3, 4]
    assert result.items[3].truncated
    # Cut within its fixed part: not read.
    result = parse(data[:2500], "INFO2", compiled)
    [warning] = result.warnings
    assert "80 bytes at offset 2420 are a partial record" in warning
    assert [i.record_index for i in result.items] == [1, 2, 3]
    # Cut within the header.
    result = parse(data[:12], "INFO2", compiled)
    assert result.warnings == [
        "/x/INFO2: recycle bin: truncated INFO2 header at offset 0: 12 bytes, 20 needed"
    ]


def test_zero_filled_info2_record(compiled) -> None:
    data = bytearray(real("INFO2"))
    data[820:1620] = bytes(800)
    result = parse(bytes(data), "INFO2", compiled)
    assert result.warnings == [
        "/x/INFO2: recycle bin: 1 zero-filled record(s) skipped (first at offset 820)"
    ]
    assert [i.record_index for i in result.items] == [1, 3, 4]


def test_removed_records(compiled) -> None:
    """A restored or purged entry: its ANSI path's first byte is zeroed."""
    record = bytearray(info2_record("C:\\Temp\\wce.exe", 7))
    record[0] = 0
    result = parse(info2(bytes(record)), "INFO2", compiled)
    [trace] = result.traces
    assert trace.attributes["removed"] is True
    assert trace.attributes["original_filename"] == "C:\\Temp\\wce.exe"
    # A 9x record (version 4, 280 bytes, no UTF-16 path): the drive number
    # gives the lost letter back.
    short = bytes(record[:280])
    result = parse(info2(short, version=4, record_size=280), "INFO2", compiled)
    [item] = result.items
    assert (item.original_filename, item.format_version) == ("C:\\Temp\\wce.exe", 4)
    assert item.removed and len(result.traces) == 1


def test_drive_number_out_of_range(compiled) -> None:
    result = parse(info2(info2_record("C:\\wce.exe", 1, drive=40)), "INFO2", compiled)
    assert result.warnings == [
        "/x/INFO2: recycle bin: drive number 40 at offset 284 is no drive"
    ]
    [trace] = result.traces
    assert trace.attributes["drive_letter"] is None
    assert trace.attributes["content_file"] == "D?1.exe"


def test_zero_deletion_time_is_not_a_time(compiled) -> None:
    [trace] = parse(i_v2(WCE, filetime=0), "$IZT0001.exe", compiled).traces
    assert trace.timestamp is None and trace.timestamp_desc == "Not a time"


def test_unreadable_and_oversized_streams(compiled) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            raise OSError("sector 42 unreadable")

    result = parse_recyclebin(Broken(), "/x/INFO2", compiled, "INFO2")
    assert result.warnings == [
        "/x/INFO2: recycle bin: cannot read the file: OSError: sector 42 unreadable"
    ]
    result = parse(real("INFO2"), "INFO2", compiled, max_size=1000)
    assert result.warnings == [
        "/x/INFO2: recycle bin: 3220 bytes, larger than the limit of 1000: not read"
    ]


def test_fuzzed_files_never_raise(compiled) -> None:
    """Cut, flipped and random bytes: warnings at most, and only from our reading."""
    rng = random.Random(10)
    seeds = [
        (real("$I103S5F.jpg"), "$I103S5F.jpg"),
        (real("$II3DF3L.zip"), "$II3DF3L.zip"),
        (real("INFO2"), "INFO2"),
        (i_v2(WCE), "$IWCE001.exe"),
    ]
    for _ in range(400):
        data, name = rng.choice(seeds)
        mutated = bytearray(data[: rng.randrange(len(data) + 1)])
        for _ in range(rng.randrange(8)):
            if mutated:
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        result = parse(bytes(mutated), name, compiled)
        for trace in result.traces:
            assert trace.matches and trace.data_type == DATA_TYPE


def test_deletion_time_past_9999_is_no_time(compiled) -> None:
    """Python's datetime (and so the JSONL and CSV writers) ends at 9999."""
    result = parse(i_v2(WCE, filetime=2**64 - 1), "$IFAR001.exe", compiled)
    [warning] = result.warnings
    assert warning == (
        "/x/$IFAR001.exe: recycle bin: deletion time 0xffffffffffffffff at offset "
        "16 is past the year 9999: event without a time"
    )
    [trace] = result.traces
    assert trace.timestamp is None and trace.timestamp_desc == "Not a time"
    assert trace.attributes["deletion_filetime"] == 2**64 - 1
    record = info2(info2_record("C:\\wce.exe", 1, filetime=2**63))
    result = parse(record, "INFO2", compiled)
    assert any("at offset 288 is past the year 9999" in w for w in result.warnings)
