"""Integrity check of EWF images: every chunk's checksum, and on request the
stored MD5.

libewf checks a chunk's checksum as it decodes it and reads on when it fails
(the data comes back as zeros or garbage), noting the chunk. The scan's own
reads go through a ChunkLog, which notes the chunks they decoded; check_chunks
then has the chunks no read touched decoded (by the workers, through their own
handles) and gathers the failures noted by every process. So each chunk is
decoded once, where ewfverify beside the scan decoded every chunk a second time
and hashed the media (on 2 cores, E01 scans took 1.7 times as long as raw
ones). The stored MD5 is compared by ewfverify (EwfVerifier) when asked for, or
when pyewf cannot tell its checksum errors (a pyewf not built by
scripts/build_pyewf.sh).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import Any

import pyewf

_ERROR_RANGE = re.compile(r"at sector\(s\): (\d+) - (\d+)")
_STORED = re.compile(r"MD5 hash stored in file:\s+([0-9a-f]{32}|N/A)")
_COMPUTED = re.compile(r"MD5 hash calculated over data:\s+([0-9a-f]{32})")


EWFVERIFY = "ewfverify: every chunk's checksum and the stored MD5"
CHUNKS = "every chunk's checksum, as the scan decoded it"


@dataclasses.dataclass
class Verification:
    ok: bool | None  # None: could not be checked
    stored_md5: str | None = None
    computed_md5: str | None = None  # None unless the MD5 was computed
    bad_sectors: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    problem: str | None = None
    seconds: float = 0.0
    method: str = EWFVERIFY
    chunks: int | None = None  # chunks checked (CHUNKS)
    chunks_after_scan: int | None = None  # of them, decoded for the check alone

    def as_dict(self, bytes_per_sector: int = 512) -> dict:
        out = dataclasses.asdict(self)
        out["bad_byte_ranges"] = [
            (first * bytes_per_sector, (last + 1) * bytes_per_sector - 1)
            for first, last in self.bad_sectors
        ]
        return out


class EwfVerifier:
    """Starts ewfverify on an image at once; result() waits for its answer."""

    def __init__(self, segment: str) -> None:
        self._started = time.monotonic()
        self._process = None
        self._problem = None
        if shutil.which("ewfverify") is None:
            self._problem = "ewfverify not found (Debian package ewf-tools)"
            return
        self._process = subprocess.Popen(
            ["ewfverify", "-q", segment],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )

    def result(self) -> Verification:
        if self._process is None:
            return Verification(ok=None, problem=self._problem)
        output, _ = self._process.communicate()
        seconds = round(time.monotonic() - self._started, 3)
        stored = _STORED.search(output)
        computed = _COMPUTED.search(output)
        result = Verification(
            ok=self._process.returncode == 0,
            stored_md5=stored.group(1) if stored and stored.group(1) != "N/A" else None,
            computed_md5=computed.group(1) if computed else None,
            bad_sectors=[(int(a), int(b)) for a, b in _ERROR_RANGE.findall(output)],
            seconds=seconds,
        )
        if not result.ok:
            lines = [line.strip() for line in output.splitlines() if line.strip()]
            result.problem = lines[-1] if lines else "ewfverify failed"
        return result


# Inclusive (first, last) ranges: of EWF chunks, of sectors.
Runs = list[tuple[int, int]]


def merge(ranges: Iterable[tuple[int, int]]) -> Runs:
    """Inclusive (first, last) ranges, sorted, with touching ones joined."""
    merged: Runs = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


def can_check_chunks() -> bool:
    """Whether pyewf tells the checksum errors libewf noted."""
    return hasattr(pyewf.handle, "get_checksum_error")


def bad_sectors(handle: Any) -> Runs:
    """(first, last) sectors of the chunks whose checksum failed so far."""
    errors = []
    for index in range(handle.get_number_of_checksum_errors()):
        start, count = handle.get_checksum_error(index)
        errors.append((start, start + count - 1))
    return errors


# libewf keeps about 160 bytes for every chunk a handle has read, for as long
# as the handle is open: 5 MiB per GiB of media, GiBs per worker on a TB image.
# A ChunkLog opens a fresh handle after decoding this much.
RENEW_AFTER = 8 * 1024**3


class ChunkLog:
    """The pyewf handle dfvfs reads an EWF image through, noting which chunks
    each read decoded (libewf decodes, and checks, whole chunks). Given the
    segment files, it replaces the handle with a fresh one every `renew_after`
    bytes, keeping the failures the old one noted."""

    def __init__(
        self,
        handle: Any,
        segments: list[str] | None = None,
        renew_after: int = RENEW_AFTER,
    ) -> None:
        self._handle = handle
        self._segments = segments
        self._renew_after = renew_after
        self._since_renewed = 0
        self._noted: Runs = []  # by the handles closed since
        self.renewed = 0
        self._chunk_size = handle.get_chunk_size()
        self._runs: list[list[int]] = []

    def read(self, size: int | None = None) -> bytes:
        self._renew_if_due()
        offset = self._handle.get_offset()
        data = self._handle.read(size) if size is not None else self._handle.read()
        if data:
            self._since_renewed += len(data)
            first = offset // self._chunk_size
            last = (offset + len(data) - 1) // self._chunk_size
            runs = self._runs
            # Reads go mostly forward: most join the last run.
            if runs and runs[-1][0] <= first <= runs[-1][1] + 1:
                runs[-1][1] = max(runs[-1][1], last)
            else:
                runs.append([first, last])
                if len(runs) > 65_536:
                    self._runs = [list(run) for run in merge(map(tuple, runs))]
        return data

    def __getattr__(self, name: str) -> Any:
        # seek, get_offset, get_media_size, close...: the handle's own.
        return getattr(self._handle, name)

    def _renew_if_due(self) -> None:
        if self._segments is None or self._since_renewed < self._renew_after:
            return
        self._since_renewed = 0
        fresh = pyewf.handle()
        try:
            fresh.open(self._segments, "r")
            fresh.seek(self._handle.get_offset())
        except (OSError, RuntimeError, TypeError):
            fresh.close()
            self._segments = None  # read on with the handle at hand
            return
        self._noted = self._bad_sectors()
        self._handle.close()
        self._handle = fresh
        self.renewed += 1

    def _bad_sectors(self) -> Runs:
        return merge([*self._noted, *bad_sectors(self._handle)])

    def take(self) -> tuple[Runs, Runs]:
        """(chunk runs decoded since the last take, bad sectors noted so far)."""
        runs = merge((first, last) for first, last in self._runs)
        self._runs = []
        return runs, self._bad_sectors()

    @property
    def geometry(self) -> tuple[int, int]:
        """(chunk size, media size) in bytes."""
        return self._chunk_size, self._handle.get_media_size()

    def decode(self, runs: Runs) -> tuple[Runs, list[str]]:
        """Decodes the chunk runs (a Decode): the bad sectors noted so far, and
        what could not be read."""
        problems = []
        chunk_size, media_size = self.geometry
        for first, last in runs:
            for start in range(first, last + 1, _READ_CHUNKS):
                offset = start * chunk_size
                if offset >= media_size:
                    break
                size = min(_READ_CHUNKS, last + 1 - start) * chunk_size
                self._renew_if_due()
                try:
                    data = self._handle.read_buffer_at_offset(
                        min(size, media_size - offset), offset
                    )
                    self._since_renewed += len(data)
                except (OSError, RuntimeError) as error:
                    problems.append(f"chunks from {start}: cannot be read: {error}")
        return self._bad_sectors(), problems


# Decodes chunk runs, somewhere: (sectors of the chunks that failed their
# checksum, noted by the handles that decoded them; problems that stopped a read).
Decode = Callable[[Runs], tuple[Runs, list[str]]]


def check_chunks(
    chunk_size: int,
    media_size: int,
    decoded: Iterable[tuple[int, int]],
    noted: Iterable[tuple[int, int]],
    stored_md5: str | None,
    decode: Decode,
    announce: Callable[[int], None] | None = None,
) -> Verification:
    """The verification of every chunk: those the scan decoded (chunk runs),
    with the failures the scan's processes noted (sector ranges), and the
    others decoded now by `decode`. `announce` hears how many bytes of media
    that is first."""
    began = time.monotonic()
    total = -(-media_size // chunk_size)
    rest = _gaps(merge(decoded), total)
    # In pieces, so that one long gap (free space) is shared by the workers.
    pieces = [
        (start, min(start + _PIECE - 1, last))
        for first, last in rest
        for start in range(first, last + 1, _PIECE)
    ]
    found: Runs = []
    problems: list[str] = []
    if pieces:
        if announce:
            announce(min(media_size, sum(b - a + 1 for a, b in pieces) * chunk_size))
        found, problems = decode(pieces)
    bad = merge([*noted, *found])
    result = Verification(
        ok=not bad and not problems,
        stored_md5=stored_md5,
        bad_sectors=bad,
        method=CHUNKS,
        chunks=total,
        chunks_after_scan=sum(last - first + 1 for first, last in rest),
        seconds=round(time.monotonic() - began, 3),
    )
    if problems:
        result.problem = problems[0]
    elif bad:
        result.problem = "chunks failed their checksum"
    return result


def _gaps(runs: Runs, total: int) -> Runs:
    """The chunk runs of 0..total-1 that runs leave out."""
    gaps, start = [], 0
    for first, last in runs:
        if first > start:
            gaps.append((start, min(first, total) - 1))
        start = max(start, last + 1)
    if start < total:
        gaps.append((start, total - 1))
    return [(a, b) for a, b in gaps if a <= b]


# Chunks decoded by one read when checking the chunks the scan did not read,
# and handed to a worker at a time.
_READ_CHUNKS = 64
_PIECE = 1024
