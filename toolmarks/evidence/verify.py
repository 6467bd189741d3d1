"""Integrity check of EWF images with ewfverify, run beside the scan.

pyewf reads a chunk whose checksum fails without raising (its data comes back
as zeros or garbage) and does not expose the failed chunks, so the check is
ewfverify's: it decodes every chunk and compares the stored MD5.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import time

_ERROR_RANGE = re.compile(r"at sector\(s\): (\d+) - (\d+)")
_STORED = re.compile(r"MD5 hash stored in file:\s+([0-9a-f]{32}|N/A)")
_COMPUTED = re.compile(r"MD5 hash calculated over data:\s+([0-9a-f]{32})")


@dataclasses.dataclass
class Verification:
    ok: bool | None  # None: could not be checked
    stored_md5: str | None = None
    computed_md5: str | None = None
    bad_sectors: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    problem: str | None = None
    seconds: float = 0.0

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
