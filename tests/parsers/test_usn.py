"""Tests of the USN journal detection core on the real $J and planted records.

The real records are ../shared/test_data/real/usn/UsnJrnl.raw (facts from its
MANIFEST.md entry, and every field cross-read with plaso's own dtfabric
definition of USN_RECORD_V2, a reader independent of ours). Planted records are
byte-exact USN_RECORD_V2 structures made by scripts/build_scenario.py, appended
after the real ones as Windows lays them out. Missing test data fails.
"""

from __future__ import annotations

import io
import os
import random
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import plaso.parsers
import pyfsntfs
import pytest
from dtfabric.runtime import fabric

from toolmarks.events import Trace
from toolmarks.evidence import Evidence
from toolmarks.indicators.compiler import CompiledSet
from toolmarks.indicators.loader import load
from toolmarks.parsers import manager, usn
from toolmarks.parsers.usn import (
    BLOCK_SIZE,
    DATA_TYPE,
    DESC_DELETION,
    DESC_UPDATE,
    MAX_WARNINGS,
    parse_usn,
    read_records,
)
from toolmarks.plugins.parsers import Journal

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / ".." / "shared" / "test_data" / "real" / "usn" / "UsnJrnl.raw"
SOURCE = "TRACES:/$Extend/$UsnJrnl:$J"
ROOT_DIR = "5-5"
TEMP_DIR = "41-1"  # \Users\alice\AppData\Local\Temp in the planted records
DOCS_DIR = "60-2"

# MANIFEST.md, usn/UsnJrnl.raw: 19 records, names and reason flags in order.
REAL_RECORDS = [
    ("Nieuw - Tekstdocument.txt", 0x100),
    ("Nieuw - Tekstdocument.txt", 0x80000100),
    ("Nieuw - Tekstdocument.txt", 0x1000),
    ("first.txt", 0x2000),
    ("first.txt", 0x80002000),
    ("first.txt", 0x80000),
    ("first.txt", 0x80080000),
    (".", 0x80000),
    ("first.txt", 0x2),
    ("first.txt", 0x80000002),
    ("Kopie van first.txt", 0x100),
    ("Kopie van first.txt", 0x102),
    ("Kopie van first.txt", 0x8102),
    ("Kopie van first.txt", 0x8103),
    ("Kopie van first.txt", 0x80008103),
    ("Kopie van first.txt", 0x1000),
    ("second.txt", 0x2000),
    ("second.txt", 0x80002000),
    (".", 0x80080000),
]
REAL_SIZE = 1728


@pytest.fixture(scope="module")
def compiled() -> CompiledSet:
    return CompiledSet(load())


@pytest.fixture(scope="module")
def real() -> bytes:
    if not REAL.is_file():
        pytest.fail(f"real test data missing: {REAL}")
    return REAL.read_bytes()


def _ref(text: str) -> int:
    entry, sequence = text.split("-")
    return int(entry) | int(sequence) << 48


class Planter:
    """Planted records with FILETIMEs counted in seconds from a base time."""

    def __init__(self, builder: ModuleType) -> None:
        self.builder = builder
        self.records: list[dict[str, Any]] = []
        self.base = 132580000000000000  # 2021-02-15T08:26:40Z

    def add(
        self, name: str, file: str, parent: str, second: float, *reasons: str
    ) -> None:
        flags = 0
        for reason in reasons:
            flags |= self.builder.USN_REASONS[reason]
        self.records.append(
            {
                "name": name,
                "file_reference": _ref(file),
                "parent_reference": _ref(parent),
                "filetime": self.base + int(second * 10**7),
                "reasons": flags,
            }
        )

    def iso(self, second: float) -> str:
        from dfdatetime import filetime

        value = filetime.Filetime(timestamp=self.base + int(second * 10**7))
        return value.CopyToDateTimeStringISO8601()

    def journal(self, start: bytes = b"") -> bytes:
        journal = bytearray(start)
        self.builder.usn_append(journal, self.records)
        return bytes(journal)


def _wipe(planter: Planter, original: str, ref: str, start: float, names: list[str]):
    """SDelete's sequence: rename away from the original name through each
    letter name (old name, new name, close), then delete the last one."""
    old = original
    for step, name in enumerate(names):
        second = start + step * 0.01
        planter.add(old, ref, DOCS_DIR, second, "RENAME_OLD_NAME")
        planter.add(name, ref, DOCS_DIR, second, "RENAME_NEW_NAME")
        planter.add(name, ref, DOCS_DIR, second, "RENAME_NEW_NAME", "CLOSE")
        old = name
    end = start + len(names) * 0.01
    planter.add(old, ref, DOCS_DIR, end, "FILE_DELETE", "CLOSE")
    return end


V151_NAMES = [f"{c * 6}.{c * 4}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
JPCERT_NAMES = [f"sdele{c * 20}.{c * 3}" for c in "ABC"]


@pytest.fixture(scope="module")
def planted(scenario_builder: ModuleType) -> Planter:
    """The planted story, after the real records."""
    p = Planter(scenario_builder)
    # WCE drops wceaux.dll in Temp, uses it and deletes it (JPCERT WCE.htm).
    p.add("wceaux.dll", "70-3", TEMP_DIR, 10, "FILE_CREATE")
    p.add("wceaux.dll", "70-3", TEMP_DIR, 10, "FILE_CREATE", "DATA_EXTEND")
    p.add("wceaux.dll", "70-3", TEMP_DIR, 10.5, "FILE_CREATE", "DATA_EXTEND", "CLOSE")
    p.add("wceaux.dll", "70-3", TEMP_DIR, 14, "FILE_DELETE", "CLOSE")
    # SDelete v1.51 wipes secret.docx (26 renames), current SDelete plan.xlsx.
    _wipe(p, "secret.docx", "80-4", 100, V151_NAMES)
    _wipe(p, "plan.xlsx", "81-2", 200, JPCERT_NAMES)
    # Decoys: renamed to a letter name once and never deleted; names that look
    # like the tools' but are not.
    p.add("sdelete.txt", "90-1", DOCS_DIR, 300, "FILE_CREATE", "CLOSE")
    p.add("sdelete.txt", "90-1", DOCS_DIR, 301, "RENAME_OLD_NAME")
    p.add("AAAA", "90-1", DOCS_DIR, 301, "RENAME_NEW_NAME")
    p.add("AAAA", "90-1", DOCS_DIR, 301, "RENAME_NEW_NAME", "CLOSE")
    p.add("AAA.txt", "91-1", DOCS_DIR, 302, "FILE_CREATE", "CLOSE")
    p.add("AAA.txt", "91-1", DOCS_DIR, 303, "FILE_DELETE", "CLOSE")
    p.add("wcefoo.dll", "92-1", TEMP_DIR, 304, "FILE_CREATE", "CLOSE")
    # A tool at the volume root: matched as \wce.exe.
    p.add("wce.exe", "93-1", ROOT_DIR, 400, "FILE_CREATE")
    p.add("wce.exe", "93-1", ROOT_DIR, 400, "FILE_CREATE", "DATA_EXTEND", "CLOSE")
    return p


def _kind(traces: list[Trace], artefact: str) -> list[Trace]:
    return [t for t in traces if t.attributes["artefact"] == artefact]


def _ids(trace: Trace) -> set[str]:
    return {m.indicator for m in trace.matches}


class ZeroLead(io.RawIOBase):
    """A stream of `zeros` zero bytes then `data`, without holding the zeros."""

    def __init__(self, zeros: int, data: bytes) -> None:
        super().__init__()
        self.zeros, self.data, self.position = zeros, data, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        size = self.zeros + len(self.data)
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: size}
        self.position = base[whence] + offset
        return self.position

    def read(self, size: int = -1) -> bytes:
        end = self.zeros + len(self.data)
        if size < 0:
            size = end - self.position
        size = max(0, min(size, end - self.position))
        start, stop = self.position, self.position + size
        out = bytes(max(0, min(stop, self.zeros) - start))
        out += self.data[max(0, start - self.zeros) : max(0, stop - self.zeros)]
        self.position = stop
        return out


class Failing(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        raise OSError("sector 1234 unreadable")


# --- the real journal --------------------------------------------------------


def test_real_journal_records_are_the_manifest_facts(
    real: bytes, compiled: CompiledSet
) -> None:
    assert len(real) == REAL_SIZE
    records, result = read_records(io.BytesIO(real), SOURCE, compiled)
    assert [(r.name, r.reasons) for r in records] == REAL_RECORDS
    assert all(r.version == 2 for r in records)
    assert result.warnings == []
    # Every field as plaso's own definition of the structure reads it.
    definitions = Path(plaso.parsers.__file__).parent / "ntfs.yaml"
    record_map = fabric.DataTypeFabric(
        yaml_definition=definitions.read_bytes()
    ).CreateDataTypeMap("usn_record_v2")
    offset = 0
    for record in records:
        (size,) = memoryview(real)[offset : offset + 4].cast("I")
        theirs = record_map.MapByteStream(real[offset : offset + size])
        assert record.offset == offset
        assert record.file_reference == theirs.file_reference
        assert record.parent_reference == theirs.parent_file_reference
        assert record.usn == theirs.update_sequence_number
        assert record.timestamp == theirs.update_date_time
        assert record.reasons == theirs.update_reason_flags
        assert record.file_attributes == theirs.file_attribute_flags
        assert record.name.encode("utf-16-le") == theirs.name[: theirs.name_size]
        offset += size


def test_real_journal_gives_no_trace(real: bytes, compiled: CompiledSet) -> None:
    result = parse_usn(io.BytesIO(real), SOURCE, compiled)
    assert (result.traces, result.warnings, result.records) == ([], [], 19)


def test_registered_for_the_j_stream_only() -> None:
    definition = manager.parser_for("/$Extend/$UsnJrnl:$J")
    assert definition is not None and definition.name == "usn"
    assert definition.data_type == DATA_TYPE
    assert manager.parser_for("/$Extend/$UsnJrnl:$Max") is None
    assert manager.parser_for("/Users/bob/$UsnJrnl:$J") is None


# --- planted records ---------------------------------------------------------


@pytest.fixture(scope="module")
def story(real: bytes, planted: Planter, compiled: CompiledSet) -> Any:
    journal = planted.journal(real)
    return journal, parse_usn(io.BytesIO(journal), SOURCE, compiled)


def test_planted_records_are_v2_records_as_plaso_reads_them(
    story: Any, planted: Planter, compiled: CompiledSet
) -> None:
    journal, result = story
    assert result.warnings == []
    records, _ = read_records(io.BytesIO(journal), SOURCE, compiled)
    assert result.records == len(REAL_RECORDS) + len(planted.records)
    mine = records[len(REAL_RECORDS) :]
    assert [r.name for r in mine] == [r["name"] for r in planted.records]
    for record in mine:
        # Windows' invariants: the USN is the offset, no record crosses a block.
        assert record.usn == record.offset
        length = int.from_bytes(journal[record.offset : record.offset + 4], "little")
        assert record.offset % BLOCK_SIZE + length <= BLOCK_SIZE


def test_wceaux_create_and_delete_are_two_events(story: Any, planted: Planter) -> None:
    _, result = story
    traces = [t for t in result.traces if "wce.filename.wceaux_dll" in _ids(t)]
    assert len(traces) == 2
    created, deleted = traces
    for trace in traces:
        assert trace.data_type == DATA_TYPE
        assert trace.timestamp_desc == DESC_UPDATE
        assert trace.attributes["file_name"] == "wceaux.dll"
        assert trace.attributes["file_reference"] == "70-3"
        assert trace.attributes["parent_file_reference"] == TEMP_DIR
        assert trace.attributes["matched_path"] == f"\\<MFT {TEMP_DIR}>\\wceaux.dll"
        (match,) = trace.matches
        assert (match.tool, match.kind) == ("wce", "filename")
        assert trace.attributes["closed"] is True
    assert created.timestamp.CopyToDateTimeStringISO8601() == planted.iso(10)
    assert created.attributes["reasons"] == ["DATA_EXTEND", "FILE_CREATE", "CLOSE"]
    assert created.attributes["record_count"] == 3
    assert created.attributes["last_time"] == planted.iso(10.5)
    assert deleted.timestamp.CopyToDateTimeStringISO8601() == planted.iso(14)
    assert deleted.attributes["reasons"] == ["FILE_DELETE", "CLOSE"]
    assert deleted.attributes["record_count"] == 1


def test_sdelete_wipes_reported_once_with_the_original_name(
    story: Any, planted: Planter
) -> None:
    _, result = story
    wipes = _kind(result.traces, "sdelete_wipe")
    assert [w.attributes["original_name"] for w in wipes] == [
        "secret.docx",
        "plan.xlsx",
    ]
    v151, jpcert = wipes
    assert v151.attributes["renames"] == 26
    assert v151.attributes["letters"] == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    assert v151.attributes["first_letter_name"] == "AAAAAA.AAAA"
    assert v151.attributes["last_letter_name"] == "ZZZZZZ.ZZZZ"
    assert v151.attributes["file_reference"] == "80-4"
    assert v151.timestamp_desc == DESC_DELETION
    assert v151.timestamp.CopyToDateTimeStringISO8601() == planted.iso(100.26)
    assert v151.attributes["wipe_start_time"] == planted.iso(100)
    assert _ids(v151) == {"sdelete.filename.wipe_rename"}
    (match,) = v151.matches
    assert (match.tool, match.kind, match.value) == (
        "sdelete",
        "usn_wipe",
        "AAAAAA.AAAA",
    )
    assert dict(match.detail)["original_name"] == "secret.docx"
    assert dict(match.detail)["renames"] == 26
    assert dict(match.detail)["deleted"] is True
    assert jpcert.attributes["renames"] == 3
    assert jpcert.attributes["letters"] == "ABC"
    assert "sdelete.filename.wipe_rename_jpcert" in _ids(jpcert)
    assert jpcert.timestamp.CopyToDateTimeStringISO8601() == planted.iso(200.03)
    # The letter names of a wiped file are in its wipe event, not events of
    # their own.
    for trace in result.traces:
        if trace.attributes["artefact"] == "usn_record":
            assert trace.attributes["file_reference"] not in ("80-4", "81-2")


def test_decoys(story: Any) -> None:
    _, result = story
    names = {t.attributes["file_name"] for t in _kind(result.traces, "usn_record")}
    assert names == {"wceaux.dll", "AAAA", "wce.exe"}
    # Renamed once to a letter name and never deleted: no wipe, a weak name hit.
    (letter,) = [t for t in result.traces if t.attributes["file_name"] == "AAAA"]
    assert letter.attributes["artefact"] == "usn_record"
    assert _ids(letter) == {"sdelete.filename.wipe_rename"}
    assert all(m.weak for m in letter.matches)
    assert letter.attributes["reasons"] == ["RENAME_NEW_NAME", "CLOSE"]


def test_root_files_match_as_root_paths(story: Any) -> None:
    _, result = story
    (tool,) = [t for t in result.traces if t.attributes["file_name"] == "wce.exe"]
    assert tool.attributes["matched_path"] == "\\wce.exe"
    assert _ids(tool) == {"wce.filename.exe"}
    assert tool.attributes["reasons"] == ["DATA_EXTEND", "FILE_CREATE", "CLOSE"]


def test_sparse_leading_zeros_are_skipped(story: Any, compiled: CompiledSet) -> None:
    journal, expected = story
    zeros = 64 * 1024 * 1024
    started = time.perf_counter()
    result = parse_usn(ZeroLead(zeros, journal), SOURCE, compiled)
    elapsed = time.perf_counter() - started
    assert result.warnings == []
    assert result.zero_bytes == zeros
    assert result.bytes_read == zeros + len(journal)
    assert [t.attributes["offset"] - zeros for t in result.traces] == [
        t.attributes["offset"] for t in expected.traces
    ]
    assert elapsed < 5.0  # a hang guard; the bench measures the speed


def _busy_journal(planted: Planter, scenario_builder: ModuleType) -> bytes:
    """A journal of 2 MiB of everyday records (short and 255-character names,
    names of the root and of other folders, renames, records of the planted
    files' references) around the planted story, padded to whole blocks."""
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789 _-.~{}éß漢"
    reasons = scenario_builder.USN_REASONS
    filler = []
    while len(filler) < 16_000:
        size = rng.choice((1, 5, 12, 31, 32, 33, 64, 100, 255))
        name = "".join(rng.choice(letters) for _ in range(size)).strip(" .") or "x"
        flags = rng.choice(
            [["FILE_CREATE"], ["DATA_EXTEND", "CLOSE"], ["RENAME_OLD_NAME"]]
        )
        filler.append(
            {
                "name": name,
                "file_reference": _ref(rng.choice(("70-3", "80-4", "300-1", "301-2"))),
                "parent_reference": _ref(rng.choice((ROOT_DIR, DOCS_DIR, TEMP_DIR))),
                "filetime": planted.base,
                "reasons": sum(reasons[flag] for flag in flags),
            }
        )
    journal = bytearray()
    half = len(filler) // 2
    scenario_builder.usn_append(journal, filler[:half])
    scenario_builder.usn_append(journal, planted.records)
    scenario_builder.usn_append(journal, filler[half:])
    journal.extend(bytes(-len(journal) % BLOCK_SIZE))
    return bytes(journal)


def _facts(result: Any) -> tuple:
    return (
        result.records,
        result.warnings,
        [
            (t.timestamp_desc, t.timestamp, t.attributes, [vars(m) for m in t.matches])
            for t in result.traces
        ],
    )


def test_numpy_walk_gives_what_the_record_walk_gives(
    planted: Planter,
    scenario_builder: ModuleType,
    compiled: CompiledSet,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    journal = _busy_journal(planted, scenario_builder)
    walked = []
    fast = usn._Parser._fast_chunk

    def counted(self: Any, data: bytes, base: int) -> bool:
        walked.append(fast(self, data, base))
        return walked[-1]

    monkeypatch.setattr(usn._Parser, "_fast_chunk", counted)
    quick = parse_usn(io.BytesIO(journal), SOURCE, compiled)
    assert walked and all(walked)
    monkeypatch.setattr(usn._Parser, "_fast_chunk", lambda *_: False)
    slow = parse_usn(io.BytesIO(journal), SOURCE, compiled)
    assert _facts(quick) == _facts(slow)
    assert quick.records > 16_000
    wipes = _kind(quick.traces, "sdelete_wipe")
    assert [w.attributes["original_name"] for w in wipes] == [
        "secret.docx",
        "plan.xlsx",
    ]


def test_holes_of_a_sparse_local_file_are_not_read(
    story: Any, compiled: CompiledSet, tmp_path: Path
) -> None:
    journal, expected = story
    hole = 64 * 1024 * 1024
    path = tmp_path / "J"
    with path.open("wb") as handle:
        handle.seek(hole)
        handle.write(journal)
    with path.open("rb") as handle:
        result = parse_usn(handle, SOURCE, compiled)
    assert result.hole_bytes == hole
    assert result.bytes_read == len(journal)
    assert [t.attributes["offset"] - hole for t in result.traces] == [
        t.attributes["offset"] for t in expected.traces
    ]


class Clusters(io.BytesIO):
    """A journal whose data runs are 512-byte clusters, some left sparse."""

    def __init__(self, data: bytes, runs: list[tuple[int, int]]) -> None:
        super().__init__(data)
        self.runs = runs

    def data_ranges(self) -> list[tuple[int, int]]:
        return self.runs


def test_data_runs_smaller_than_a_block(story: Any, compiled: CompiledSet) -> None:
    journal, expected = story
    lead = bytes(3 * BLOCK_SIZE)
    data = lead + journal
    # Runs cut blocks in pieces, out of order, with the sparse lead left out.
    size = len(data)
    runs = [(len(lead) + 512, size), (len(lead), len(lead) + 512)]
    result = parse_usn(Clusters(data, runs), SOURCE, compiled)
    assert result.hole_bytes == len(lead)
    assert result.warnings == []
    assert [t.attributes["offset"] - len(lead) for t in result.traces] == [
        t.attributes["offset"] for t in expected.traces
    ]


def test_journal_in_an_image_is_read_by_its_data_runs(
    traces_images: dict[str, Any], compiled: CompiledSet
) -> None:
    """The traces scenario's $J starts with 64 KiB that ntfs-3g left sparse:
    TSK's data runs say so, and the parser never reads them."""
    with Evidence(str(traces_images["raw"])) as evidence:
        (volume,) = evidence.volumes()
        item = evidence.lookup(volume, "/$Extend/$UsnJrnl", stream="$J")
        assert item is not None
        with item.open() as stream:
            ranges = stream.data_ranges()
            whole = stream.read()
            result = parse_usn(stream, SOURCE, compiled)
    assert ranges[0][0] == 64 * 1024 and ranges[-1][1] == len(whole)
    assert whole[: 64 * 1024] == bytes(64 * 1024)
    assert result.hole_bytes == 64 * 1024
    assert _facts(result) == _facts(parse_usn(io.BytesIO(whole), SOURCE, compiled))
    assert {t.attributes["file_name"] for t in result.traces} >= {"wceaux.dll"}


def test_journal_in_the_plaso_front_skips_sparse_extents(
    traces_images: dict[str, Any], compiled: CompiledSet
) -> None:
    """The plaso front reads `$J` through libfsntfs: its sparse extent is not
    read either, and the traces are those of the whole stream."""
    volume = pyfsntfs.volume()
    volume.open(str(traces_images["raw"]))
    try:
        entry = volume.get_file_entry_by_path("\\$Extend\\$UsnJrnl")
        stream = entry.get_alternate_data_stream_by_name("$J")
        journal = Journal(stream)
        assert journal.data_ranges() == [(64 * 1024, stream.get_size())]
        result = parse_usn(journal, SOURCE, compiled)
        stream.seek(0)
        whole = stream.read()
    finally:
        volume.close()
    assert result.hole_bytes == 64 * 1024
    assert _facts(result) == _facts(parse_usn(io.BytesIO(whole), SOURCE, compiled))


# --- bad input ---------------------------------------------------------------


def _only_warning(result: Any) -> str:
    assert len(result.warnings) == 1, result.warnings
    assert result.warnings[0].startswith(f"{SOURCE}: usn journal: ")
    return result.warnings[0]


def test_zero_filled_journal(compiled: CompiledSet) -> None:
    result = parse_usn(io.BytesIO(bytes(3 * BLOCK_SIZE + 100)), SOURCE, compiled)
    assert (result.traces, result.warnings, result.records) == ([], [], 0)


def test_truncated_journal(story: Any, compiled: CompiledSet) -> None:
    journal, _ = story
    records, _ = read_records(io.BytesIO(journal), SOURCE, compiled)
    cut = records[-1].offset + 30  # inside the last record
    result = parse_usn(io.BytesIO(journal[:cut]), SOURCE, compiled)
    warning = _only_warning(result)
    assert f"record at offset {records[-1].offset}:" in warning
    assert "past the end of the journal" in warning
    assert result.records == len(records) - 1
    # wce.exe's CLOSE record is cut off; its first record still makes its event.
    (tool,) = [t for t in result.traces if t.attributes["file_name"] == "wce.exe"]
    assert tool.attributes["closed"] is False
    assert len(result.traces) == 6


def test_length_past_its_block_resyncs_at_the_next_block(
    real: bytes, planted: Planter, compiled: CompiledSet
) -> None:
    block = bytearray(real)
    # A record whose length runs past the first block, then planted records in
    # the next block.
    bad_at = len(block)
    block += (BLOCK_SIZE).to_bytes(4, "little") + b"\x02\x00" + bytes(58)
    block += bytes(BLOCK_SIZE - len(block))
    journal = planted.journal(bytes(block))
    result = parse_usn(io.BytesIO(journal), SOURCE, compiled)
    warning = _only_warning(result)
    assert f"record at offset {bad_at}: length {BLOCK_SIZE}" in warning
    assert f"past the end of its block (offset {BLOCK_SIZE})" in warning
    assert len(_kind(result.traces, "sdelete_wipe")) == 2
    assert result.records == len(REAL_RECORDS) + len(planted.records)


def test_name_past_the_record_is_skipped(
    scenario_builder: ModuleType, compiled: CompiledSet
) -> None:
    good = scenario_builder.usn_record_v2(
        "wce.exe", _ref("93-1"), _ref(ROOT_DIR), 0, 132580000000000000, 0x80000100
    )
    bad = bytearray(good)
    bad[56:58] = (200).to_bytes(2, "little")  # name length past the record
    journal = bytes(bad) + good
    result = parse_usn(io.BytesIO(journal), SOURCE, compiled)
    warning = _only_warning(result)
    assert "record at offset 0: name at 60, 200 bytes" in warning
    assert result.records == 1
    assert [t.attributes["offset"] for t in result.traces] == [len(good)]


def test_short_length_unknown_version_and_range_records(
    scenario_builder: ModuleType, compiled: CompiledSet
) -> None:
    good = scenario_builder.usn_record_v2(
        "wce.exe", _ref("93-1"), _ref(ROOT_DIR), 0, 132580000000000000, 0x80000100
    )
    v4 = bytearray(good)
    v4[4:6] = (4).to_bytes(2, "little")  # a range record: counted, skipped
    short = (4).to_bytes(4, "little") + bytes(4)
    unknown = bytearray(good)
    unknown[4:6] = (9).to_bytes(2, "little")
    journal = bytearray(bytes(v4) + good + short)
    journal += bytes(BLOCK_SIZE - len(journal)) + unknown
    journal += bytes(2 * BLOCK_SIZE - len(journal)) + good
    result = parse_usn(io.BytesIO(bytes(journal)), SOURCE, compiled)
    assert result.range_records == 1
    assert result.records == 2
    assert len(result.warnings) == 2
    assert f"record at offset {2 * len(good)}: length 4" in result.warnings[0]
    assert (
        f"record at offset {BLOCK_SIZE}: unknown major version 9"
        in (result.warnings[1])
    )
    assert len(result.traces) == 2


def test_v3_records(scenario_builder: ModuleType, compiled: CompiledSet) -> None:
    v2 = scenario_builder.usn_record_v2(
        "wce.exe", _ref("93-1"), _ref(ROOT_DIR), 0, 132580000000000000, 0x80000100
    )
    name = "wce.exe".encode("utf-16-le")
    # USN_RECORD_V3: 128-bit references, name at 76.
    head = (
        (96).to_bytes(4, "little")
        + (3).to_bytes(2, "little")
        + bytes(2)
        + _ref("93-1").to_bytes(16, "little")
        + _ref(ROOT_DIR).to_bytes(16, "little")
        + v2[24:56]
        + len(name).to_bytes(2, "little")
        + (76).to_bytes(2, "little")
    )
    record = (head + name).ljust(96, b"\0")
    result = parse_usn(io.BytesIO(record), SOURCE, compiled)
    assert result.warnings == []
    (trace,) = result.traces
    assert trace.attributes["record_version"] == 3
    assert trace.attributes["file_reference"] == "93-1"
    assert _ids(trace) == {"wce.filename.exe"}


def test_garbage_warnings_are_bounded(compiled: CompiledSet) -> None:
    import hashlib

    garbage = hashlib.shake_256(b"usn garbage").digest(64 * BLOCK_SIZE)
    result = parse_usn(io.BytesIO(garbage), SOURCE, compiled)
    assert result.traces == []
    assert len(result.warnings) == MAX_WARNINGS + 1
    assert "more problems not listed" in result.warnings[-1]
    assert not any("internal error" in w for w in result.warnings)


def test_read_error_is_a_warning(compiled: CompiledSet) -> None:
    result = parse_usn(Failing(), SOURCE, compiled)
    warning = _only_warning(result)
    assert "read error at offset 0: sector 1234 unreadable" in warning
