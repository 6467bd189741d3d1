"""NTFS streams read straight from their volume (fsntfs.Direct) read what
libfsntfs reads, and only those streams whose bytes are their clusters' are.

The scan reads a stream of 64 KiB or more in one read a run (with preadv into
its own buffer on a raw image) when every extent has clusters behind it, none
is compressed and the stream is initialised to its end; every other stream
goes through libfsntfs. The image of build_ntfs_direct holds one stream of
each kind, on a bare volume, as the partition of an MBR disk (the volume then
starts 1 MiB into the image file) and in an E01 of that disk; both walks (the
$MFT walk and TSK's, which make their streams apart) are read with the scan's
own reader and in odd-sized reads that cross the extents' ends. The scan reads
such streams into one buffer per thread: strings across two reads, and scans
in threads at once, are checked too.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
from collections.abc import Iterator
from pathlib import Path

import evidence_images as images
import pytest

from toolmarks.evidence import Evidence, fsntfs
from toolmarks.evidence.model import FileItem, FileRange
from toolmarks.indicators import loader
from toolmarks.indicators.compiler import compile_set
from toolmarks.parsers import content

# The streams of build_ntfs_direct read with preadv; the others are what
# libfsntfs alone reads as they are (resident, under 64 KiB, a hole, bytes past
# the initialised size).
DIRECT = {
    "/big.bin",
    "/fragmented-a.bin",
    "/fragmented-b.bin",
    "/streams.txt:big",
    "/exactly-64k.bin",
}
ODD_READ = 65_537  # ends inside clusters and runs


@pytest.fixture(scope="module")
def direct_images(built: Path) -> dict[str, Path]:
    bare = built / "direct.img"
    if not bare.exists():
        images.build_ntfs_direct(bare)
    disk = built / "direct-mbr.img"
    if not disk.exists():
        images.build_mbr_around(bare, disk)
    ewf = built / "direct.E01"
    if not ewf.exists():
        images.build_ewf(disk, built / "direct")
    return {"bare": bare, "mbr": disk, "mbr.E01": ewf}


def _streams(evidence: Evidence, tsk_only: bool) -> Iterator[tuple[str, FileItem]]:
    (volume,) = evidence.volumes()
    for item in evidence.walk(volume, tsk_only=tsk_only):
        if (
            item.is_file
            and item.allocated
            and item.path in {name.partition(":")[0] for name in images.DIRECT_FILES}
        ):
            name = f"{item.path}:{item.stream}" if item.stream else item.path
            yield name, item


def _read_in(item: FileItem, size: int) -> bytes:
    """The stream read with readinto, size bytes at a time, as scan_stream
    reads it."""
    out = bytearray()
    buffer = memoryview(bytearray(size))
    with item.open() as stream:
        while True:
            count = stream.readinto(buffer)
            if not count:
                return bytes(out)
            out += buffer[:count]


def _by_libfsntfs(evidence: Evidence, item: FileItem) -> bytes:
    fallback = evidence._handle(item.volume).fallback
    source = fallback.source(item.inode, item.stream)
    return fsntfs.FsntfsStream(source, item.size, item.display_path).read()


@pytest.mark.parametrize("layout", ["bare", "mbr", "mbr.E01"])
@pytest.mark.parametrize("walk", ["mft", "tsk"])
def test_direct_reads_read_what_libfsntfs_reads(
    direct_images: dict[str, Path], layout: str, walk: str
) -> None:
    compiled = compile_set(loader.load([], shipped=True))
    read_direct, seen = set(), set()
    with Evidence(direct_images[layout], warn=lambda *_: None) as evidence:
        for name, item in _streams(evidence, tsk_only=walk == "tsk"):
            seen.add(name)
            wanted = images.DIRECT_FILES[name]
            with item.open() as stream:
                if stream.reads_into:
                    read_direct.add(name)
            assert _by_libfsntfs(evidence, item) == wanted, name
            assert _read_in(item, content.CHUNK_SIZE) == wanted, name
            assert _read_in(item, ODD_READ) == wanted, name
            with item.open() as stream:
                found = content.scan_stream(stream, compiled)
            assert found.error is None, (name, found.error)
            assert found.hashes["sha256"] == hashlib.sha256(wanted).hexdigest(), name
    assert seen == set(images.DIRECT_FILES)
    assert read_direct == DIRECT


def test_fragmented_streams_are_in_several_runs(
    direct_images: dict[str, Path],
) -> None:
    """What the test above claims of the image: its fragmented files are."""
    with Evidence(direct_images["bare"], warn=lambda *_: None) as evidence:
        for name, item in _streams(evidence, tsk_only=False):
            if name.startswith("/fragmented-"):
                source = evidence._handle(item.volume).fallback.source(item.inode, "")
                assert source.number_of_extents > 1, name


def test_string_hits_across_reads_into_one_buffer() -> None:
    """A string the buffer holds across two reads is found once, at its
    offset, when the chunks are views of one buffer read into again."""
    data = b"x" * (ODD_READ - 10) + b"Windows Credentials Editor" + b"y" * 1000

    compiled = compile_set(loader.load([], shipped=True))
    found = content.scan_stream(_Memory(data), compiled, chunk_size=ODD_READ)
    assert found.hashes["md5"] == hashlib.md5(data).hexdigest()
    offsets = {hit.indicator.id: hit.offset for hit in found.strings}
    assert offsets.get("wce.string.credentials_editor") == ODD_READ - 10, offsets


def test_direct_reads_across_many_runs(tmp_path: Path) -> None:
    """A stream of 300 runs scattered backwards over a volume file (one of
    them empty), read at offsets and sizes that start and end anywhere: each
    read gives the stream's bytes, and a read the volume cannot give whole
    says so."""
    block = 1000
    count = 300
    stream = bytes(range(256)) * (block * count // 256) + bytes(block * count % 256)
    volume = bytearray(block * (count + 1))
    runs, position = [], 0
    for number in range(count):
        where = (count - number) * block  # backwards, never at 0
        volume[where : where + block] = stream[position : position + block]
        runs.append((position, position + block, where))
        if number == 100:
            runs.append((position + block, position + block, 0))
        position += block
    path = tmp_path / "volume.raw"
    path.write_bytes(bytes(volume))
    file = FileRange(str(path), 0, len(volume), "volume.raw")
    plan = fsntfs.Direct(file, runs)
    for offset, size in [(0, 1), (0, len(stream)), (999, 2), (100_999, 1_002)] + [
        (offset, 7_777) for offset in range(0, len(stream) - 7_777, 3_333)
    ]:
        view = memoryview(bytearray(size))
        assert plan.read_into(offset, view), (offset, size)
        assert bytes(view) == stream[offset : offset + size], (offset, size)
    past_end = fsntfs.Direct(file, [(0, block, len(volume) - block // 2)])
    assert not past_end.read_into(0, memoryview(bytearray(block)))


class _Memory(fsntfs.FsntfsStream):
    """A stream that fills the reader's buffer itself, from bytes in memory."""

    def __init__(self, data: bytes) -> None:
        super().__init__(None, len(data), "memory")
        self.reads_into = True
        self._data = data

    def readinto(self, buffer: memoryview) -> int:
        piece = self._data[self._offset : self._offset + len(buffer)]
        buffer[: len(piece)] = piece
        self._offset += len(piece)
        return len(piece)


def test_threads_scanning_at_once_read_their_own_streams() -> None:
    """Scans in threads of one process (a Celery thread pool) each read into
    a buffer of their own (each with its own compiled set, as each scan
    compiles it: a Hyperscan database scans in one thread at a time)."""
    indicator_set = loader.load([], shipped=True)
    streams = [images._seeded(f"thread {n}", 1 << 20) for n in range(4)]

    def md5(data: bytes) -> str:
        compiled = compile_set(indicator_set)
        found = content.scan_stream(_Memory(data), compiled, chunk_size=4096)
        return found.hashes["md5"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            got = list(pool.map(md5, streams))
            assert got == [hashlib.md5(data).hexdigest() for data in streams]
