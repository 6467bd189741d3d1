"""No silent skips: entries The Sleuth Kit cannot load, and ADS past its limits.

TSK reports a file whose $DATA attribute it refuses (a sparse file larger than
the volume, a corrupt data run) as empty, and its attribute list parser drops
or mixes up alternate data streams past 256 extension MFT entries or 255
distinct attributes. The images are built by ntfs-3g (evidence_images); what is
planted in them is what the tests expect.
"""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

import evidence_images as images
import pytest

from toolmarks.evidence import Evidence, fsntfs
from toolmarks.evidence.tsk import parse_attribute_list

# MANIFEST: evtx/aptsimulator/System.evtx, 1118208 bytes.
EVTX = Path("evtx") / "aptsimulator" / "System.evtx"
EVTX_SIZE = 1118208
EVTX_PATH = "/Windows/System32/winevt/Logs/System.evtx"


class Problems(list):
    """A warn callback that keeps (location, message) pairs."""

    def __call__(self, location: str, message: str) -> None:
        self.append((location, message))


@pytest.fixture(scope="module")
def sparse_image(built: Path) -> Path:
    path = built / "sparse.img"
    images.build_ntfs_sparse(path)
    return path


@pytest.fixture(scope="module")
def streams_image(built: Path) -> Path:
    path = built / "streams.img"
    images.build_ntfs_many_streams(path)
    return path


@pytest.fixture(scope="module")
def evtx_images(built: Path, real_data: Path) -> tuple[Path, Path, int]:
    """(clean image, the same with System.evtx's first data run past the end,
    the MFT entry of System.evtx)."""
    clean = built / "evtx-clean.img"
    images.build_ntfs_evtx(clean, real_data / EVTX, EVTX_PATH)
    entry = images.ntfs_entry_of(clean, EVTX_PATH)
    broken = built / "evtx-broken.img"
    broken.write_bytes(clean.read_bytes())
    images.move_first_data_run_past_the_end(broken, entry)
    return clean, broken, entry


def scan(image: Path, out: Path) -> tuple[dict, list[dict], int]:
    """`toolmarks scan` with the shipped indicators: (scan.json, timeline rows,
    peak resident memory of the scan's processes in KiB)."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "code = subprocess.call(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(code)\n"
    )
    command = [sys.executable, "-m", "toolmarks", "scan", str(image), "-o", str(out)]
    result = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    peak = int(result.stdout.split()[-1])
    report = json.loads((out / "scan.json").read_text())
    rows = [json.loads(line) for line in (out / "timeline.jsonl").open()]
    return report, rows, peak


def string_hits(rows: list[dict], indicator: str) -> dict[str, set[int]]:
    """source -> offsets of the string indicator's hits."""
    found: dict[str, set[int]] = {}
    for row in rows:
        for match in row.get("matches", []):
            if match["indicator"] == indicator:
                offsets = found.setdefault(row["source"], set())
                offsets.add(match["detail"]["offset"])
    return found


# -- a sparse file larger than its volume ----------------------------------


def test_sparse_file_is_read_through_libfsntfs(sparse_image: Path) -> None:
    problems = Problems()
    evidence = Evidence(sparse_image, warn=problems)
    (volume,) = evidence.volumes()
    items = {(item.path, item.stream): item for item in evidence.walk(volume)}
    item = items[(images.SPARSE_PATH, "")]
    assert item.size == images.SPARSE_SIZE
    assert sorted(where for where, _ in problems) == sorted(
        ["/notes.txt", images.SPARSE_PATH]
    )
    message = dict(problems)[images.SPARSE_PATH]
    assert message.startswith(f"MFT entry {item.inode} ({images.SPARSE_PATH}): ")
    assert "TSK could not load the $DATA attribute: " in message
    assert message.endswith(f"; read through libfsntfs ({images.SPARSE_SIZE} bytes)")

    stream = item.open()
    assert stream.read(len(images.SPARSE_HEAD)) == images.SPARSE_HEAD
    stream.seek(images.SPARSE_FAR - 4096)
    assert stream.read(4096) == bytes(4096)  # a hole reads as zeros
    assert stream.read(len(images.SPARSE_TAIL)) == images.SPARSE_TAIL
    stream.seek(images.SPARSE_SIZE - 10)
    assert stream.read(100) == bytes(10)
    assert stream.read(1) == b""
    # Where its first cluster lies, for reading the disk in order.
    with open(sparse_image, "rb") as raw:
        raw.seek(item.location)
        assert raw.read(len(images.SPARSE_HEAD)) == images.SPARSE_HEAD

    # The files beside it are TSK's as before, the empty one still empty.
    assert items[("/plain.txt", "")].open().read() == images.SPARSE_PLAIN
    assert items[("/empty.txt", "")].size == 0
    assert items[("/empty.txt", "")].has_metadata


def test_sparse_stream_hides_no_entry(sparse_image: Path) -> None:
    """A sparse stream larger than the volume makes TSK give up the whole
    entry: its content and both streams are read through libfsntfs."""
    problems = Problems()
    evidence = Evidence(sparse_image, warn=problems)
    (volume,) = evidence.volumes()
    items = {
        item.stream: item for item in evidence.walk(volume) if item.path == "/notes.txt"
    }
    assert sorted(items) == ["", "hidden", "small"]
    assert items[""].open().read() == images.SPARSE_NOTES
    assert items["small"].open().read() == images.SPARSE_SMALL
    hidden = items["hidden"].open()
    assert items["hidden"].size == images.SPARSE_ADS_SIZE
    hidden.seek(images.SPARSE_ADS_AT)
    assert hidden.read(len(images.SPARSE_HEAD)) == images.SPARSE_HEAD
    # Past a process boundary (no opener) dfvfs' libfsntfs back end reads it.
    hidden = pickle.loads(pickle.dumps(items["hidden"])).open()
    hidden.seek(images.SPARSE_ADS_AT)
    assert hidden.read(len(images.SPARSE_HEAD)) == images.SPARSE_HEAD
    message = dict(problems)["/notes.txt"]
    assert message.startswith(f"MFT entry {items[''].inode} (/notes.txt): TSK ")
    assert f"read through libfsntfs ({len(images.SPARSE_NOTES)} bytes)" in message
    assert message.endswith("its 2 alternate data streams read through libfsntfs")


def test_sparse_file_is_scanned_without_holding_it(
    sparse_image: Path, tmp_path: Path
) -> None:
    report, rows, peak = scan(sparse_image, tmp_path / "out")
    assert string_hits(rows, "wce.string.credentials_editor") == {
        images.SPARSE_PATH: {0},
        "/notes.txt:hidden": {images.SPARSE_ADS_AT},
    }
    assert string_hits(rows, "gsecdump.string.output_admin_line") == {
        images.SPARSE_PATH: {images.SPARSE_FAR}
    }
    assert report["unreadable"] == []
    warnings = {w["location"]: w["message"] for w in report["warnings"]}
    assert set(warnings) == {"/notes.txt", images.SPARSE_PATH}
    assert all("read through libfsntfs" in text for text in warnings.values())
    assert report["counts"]["bytes"] >= images.SPARSE_SIZE
    # 8 GiB streamed: nowhere near its size in memory.
    assert peak < 1024 * 1024, f"peak resident memory {peak} KiB"


# -- a corrupt data run ---------------------------------------------------------


def test_corrupt_data_run_is_unreadable_with_its_reason(
    evtx_images: tuple[Path, Path, int],
) -> None:
    _, broken, entry = evtx_images
    problems = Problems()
    evidence = Evidence(broken, warn=problems)
    (volume,) = evidence.volumes()
    item = next(i for i in evidence.walk(volume) if i.path == EVTX_PATH)
    assert item.size == EVTX_SIZE
    assert [where for where, _ in problems] == [EVTX_PATH]
    message = problems[0][1]
    assert message.startswith(
        f"MFT entry {entry} ({EVTX_PATH}): TSK could not load the $DATA attribute: "
    )
    # The run moved past the end, in words an examiner can check with istat.
    assert "; libfsntfs lists a data run at volume offset " in message
    assert message.endswith("; not read from there on")
    stream = item.open()
    with pytest.raises(OSError) as error:
        stream.read()
    text = str(error.value)
    assert text.startswith(f"{EVTX_PATH}: MFT entry {entry} ({EVTX_PATH}): ")
    assert "libfsntfs read error at offset 0" in text


def test_corrupt_data_run_in_a_scan(
    evtx_images: tuple[Path, Path, int], tmp_path: Path
) -> None:
    clean, broken, entry = evtx_images
    report, _, _ = scan(clean, tmp_path / "clean")
    assert report["counts"]["eventlog_files"] == 1
    assert report["unreadable"] == []

    report, _, _ = scan(broken, tmp_path / "broken")
    # Not parsed, and said so: no silent drop of the count.
    assert report["counts"]["eventlog_files"] == 0
    (unreadable,) = report["unreadable"]
    assert unreadable["location"] == EVTX_PATH
    assert f"MFT entry {entry} ({EVTX_PATH})" in unreadable["message"]
    assert "TSK could not load the $DATA attribute" in unreadable["message"]
    assert "past the end of the volume" in unreadable["message"]
    assert "libfsntfs read error at offset 0" in unreadable["message"]
    (warning,) = report["warnings"]
    assert warning["location"] == EVTX_PATH


# -- 500 alternate data streams ---------------------------------------------


@pytest.mark.parametrize("path", ["/spread.txt", "/packed.txt"])
def test_every_stream_is_listed_with_its_own_content(
    streams_image: Path, path: str
) -> None:
    problems = Problems()
    evidence = Evidence(streams_image, warn=problems)
    (volume,) = evidence.volumes()
    streams = {
        item.stream: item
        for item in evidence.walk(volume)
        if item.path == path and item.stream
    }
    names = [images.stream_name(number) for number in range(images.STREAM_COUNT)]
    assert sorted(streams) == names
    for number, name in enumerate(names):
        assert streams[name].open().read() == images.stream_content(path, number)
    (message,) = [message for where, message in problems if where == path]
    assert f"names {images.STREAM_COUNT} alternate data streams" in message
    assert message.endswith(f"; {images.STREAM_COUNT} read through libfsntfs")


def test_streams_scan_hits_only_the_planted_stream(
    streams_image: Path, tmp_path: Path
) -> None:
    report, rows, _ = scan(streams_image, tmp_path / "out")
    last = images.stream_name(images.STREAM_COUNT - 1)
    hits = string_hits(rows, "wce.string.credentials_editor")
    assert set(hits) == {f"/spread.txt:{last}", f"/packed.txt:{last}"}
    assert report["unreadable"] == []
    assert report["counts"]["files"] >= 2 * (images.STREAM_COUNT + 1)


def test_attribute_list_parser_stops_at_bad_lengths() -> None:
    name = "ads".encode("utf-16-le")
    entry = (
        (0x80).to_bytes(4, "little")
        + (32).to_bytes(2, "little")
        + bytes([3, 26])
        + bytes(8)
        + (70).to_bytes(6, "little")
        + bytes(4)
        + name
    )
    assert parse_attribute_list(entry) == [(0x80, "ads", 70)]
    # Zero length, a length past the end, a name past its entry, cut short.
    zero = entry[:4] + bytes(2) + entry[6:]
    past = entry[:4] + (400).to_bytes(2, "little") + entry[6:]
    long_name = entry[:6] + bytes([40]) + entry[7:]
    for data in (zero, past, long_name, entry[:20], entry + zero):
        assert parse_attribute_list(data) in ([], [(0x80, "ads", 70)])
    assert parse_attribute_list(entry + zero) == [(0x80, "ads", 70)]
    assert parse_attribute_list(zero) == []
    assert parse_attribute_list(past) == []
    assert parse_attribute_list(long_name) == []


# -- when libfsntfs cannot read the volume either ------------------------------


def without_libfsntfs(evidence: Evidence) -> None:
    """Points libfsntfs at a volume of zeros, which it refuses as not NTFS."""
    (volume,) = evidence.volumes()
    handle = evidence._handle(volume)
    handle.fallback = fsntfs.FsntfsVolume(lambda: io.BytesIO(bytes(1 << 20)))


def test_unloaded_entry_without_libfsntfs_is_named(sparse_image: Path) -> None:
    problems = Problems()
    evidence = Evidence(sparse_image, warn=problems)
    without_libfsntfs(evidence)
    (volume,) = evidence.volumes()
    item = next(i for i in evidence.walk(volume) if i.path == images.SPARSE_PATH)
    # No content to read, and so the engine lists it as unreadable.
    assert item.is_file and not item.has_metadata
    message = dict(problems)[images.SPARSE_PATH]
    assert "TSK could not load the $DATA attribute" in message
    assert "; not read (content and alternate data streams): " in message
    assert "libfsntfs cannot open the volume" in message


def test_streams_past_tsk_limits_without_libfsntfs(streams_image: Path) -> None:
    """Only the streams TSK mapped before its attribute table overflowed are
    kept, each with its own content; the others are named as not read."""
    problems = Problems()
    evidence = Evidence(streams_image, warn=problems)
    without_libfsntfs(evidence)
    (volume,) = evidence.volumes()
    for path in ("/spread.txt", "/packed.txt"):
        kept = {
            item.stream: item
            for item in evidence.walk(volume)
            if item.path == path and item.stream
        }
        assert 0 < len(kept) < images.STREAM_COUNT
        for name, item in kept.items():
            number = int(name.removeprefix("ads"))
            assert item.open().read() == images.stream_content(path, number)
        message = dict(problems)[path]
        lost = [
            images.stream_name(number)
            for number in range(images.STREAM_COUNT)
            if images.stream_name(number) not in kept
        ]
        assert message.endswith(f"; {len(lost)} not read: " + ", ".join(lost))
