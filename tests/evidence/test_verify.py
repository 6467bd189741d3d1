"""The EWF chunk check: which chunks a read decoded (ChunkLog), and every chunk
checked once (check_chunks), against ewfverify on a damaged copy of the demo."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pyewf

from toolmarks.evidence import Evidence, verify

CHUNK = 32 * 1024  # ewfacquire's default, the demo's


def test_merge_sorts_and_joins_touching_ranges() -> None:
    assert verify.merge([(9, 9), (0, 2), (3, 4), (6, 7), (1, 1)]) == [
        (0, 4),
        (6, 7),
        (9, 9),
    ]
    assert verify.merge([]) == []


def test_chunk_log_notes_each_chunk_a_read_decoded(demo_image: dict[str, Any]) -> None:
    handle = pyewf.handle()
    handle.open(pyewf.glob(str(demo_image["e01"])), "r")
    log = verify.ChunkLog(handle)
    assert log.get_chunk_size() == CHUNK
    log.seek(3 * CHUNK + 10)
    assert len(log.read(100)) == 100  # inside chunk 3
    log.seek(5 * CHUNK - 1)
    assert len(log.read(2)) == 2  # the last byte of 4, the first of 5
    log.seek(7 * CHUNK)
    assert len(log.read(CHUNK)) == CHUNK  # all of 7, none of 8
    log.seek(20 * CHUNK)
    log.read(0)  # nothing read, nothing decoded
    assert log.take() == ([(3, 5), (7, 7)], [])
    assert log.take() == ([], [])  # since the last take
    handle.close()


def _log(image: Path) -> verify.ChunkLog:
    handle = pyewf.handle()
    handle.open(pyewf.glob(str(image)), "r")
    return verify.ChunkLog(handle)


def test_every_chunk_is_checked_once(demo_image: dict[str, Any]) -> None:
    stored = demo_image["manifest"]["volume"]["md5"]
    log = _log(demo_image["e01"])
    chunk_size, media = log.geometry
    asked: list[verify.Runs] = []

    def decode(runs: verify.Runs) -> tuple[verify.Runs, list[str]]:
        asked.append(runs)
        return log.decode(runs)

    everything = verify.check_chunks(chunk_size, media, [], [], stored, decode)
    assert everything.ok is True and everything.bad_sectors == []
    assert everything.chunks == everything.chunks_after_scan == -(-media // CHUNK)
    assert verify.merge(asked[0]) == [(0, everything.chunks - 1)]
    half = everything.chunks // 2
    rest = verify.check_chunks(chunk_size, media, [(0, half - 1)], [], stored, decode)
    assert rest.ok is True and rest.chunks_after_scan == everything.chunks - half
    assert verify.merge(asked[1]) == [(half, everything.chunks - 1)]
    done = verify.check_chunks(chunk_size, media, [(0, media)], [], stored, decode)
    assert done.ok is True and done.chunks_after_scan == 0 and len(asked) == 2


def test_bad_chunks_equal_ewfverify(demo_image: dict[str, Any], tmp_path: Path) -> None:
    image = tmp_path / "bad.E01"
    shutil.copy(demo_image["e01"], image)
    with image.open("r+b") as handle:  # garbage over compressed data mid-file
        handle.seek(image.stat().st_size // 2)
        handle.write(bytes(range(256)) * 16)
    done = subprocess.run(
        ["ewfverify", "-q", str(image)], capture_output=True, text=True, check=False
    )
    expected = [
        (int(first), int(last))
        for first, last in re.findall(r"at sector\(s\): (\d+) - (\d+)", done.stdout)
    ]
    assert done.returncode != 0 and expected
    # Decoded by the check itself...
    log = _log(image)
    alone = verify.check_chunks(*log.geometry, [], [], None, log.decode)
    assert alone.ok is False and alone.bad_sectors == expected
    # ...or by the scan's reads, through an Evidence that notes them.
    with Evidence(image) as evidence:
        for volume in evidence.volumes():
            for item in evidence.walk(volume):
                if item.is_file and item.size:
                    with item.open() as stream:
                        while stream.read(1 << 20):
                            pass
        assert evidence.chunk_log is not None
        decoded, noted = evidence.chunk_log.take()
        assert noted == expected
        # A check that decodes nothing again must still report them.
        scanned = verify.check_chunks(
            *evidence.chunk_log.geometry, decoded, noted, None, lambda _: ([], [])
        )
    assert scanned.bad_sectors == expected
    assert scanned.chunks_after_scan < alone.chunks_after_scan


def test_a_renewed_handle_keeps_the_bytes_and_the_failures(
    demo_image: dict[str, Any], tmp_path: Path
) -> None:
    """libewf's memory grows with every chunk a handle reads: the ChunkLog
    opens a fresh handle now and then, and neither the bytes it reads nor the
    failures the closed handles noted change."""
    image = tmp_path / "bad.E01"
    shutil.copy(demo_image["e01"], image)
    with image.open("r+b") as handle:
        handle.seek(image.stat().st_size // 2)
        handle.write(bytes(range(256)) * 16)
    expected = _log(image).decode([(0, 10**6)])[0]
    assert expected  # the damaged chunk, as a plain handle reads it
    plain = _log(image)
    segments = pyewf.glob(str(image))
    handle = pyewf.handle()
    handle.open(segments, "r")
    log = verify.ChunkLog(handle, segments, renew_after=3 * CHUNK)
    media = log.geometry[1]
    log.seek(0)
    for offset in range(0, media, 2 * CHUNK + 7):
        assert log.read(2 * CHUNK + 7) == plain.read_buffer_at_offset(
            2 * CHUNK + 7, offset
        )
    assert log.renewed > 10
    runs, noted = log.take()
    assert runs == [(0, -(-media // CHUNK) - 1)] and noted == expected
    assert log.decode([(0, 3)])[0] == expected
