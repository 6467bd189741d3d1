"""A user cache of what every run would otherwise rebuild: the validated
indicator set and the compiled Hyperscan database.

Entries are keyed by a digest of everything they derive from and carry that key
and a digest of their payload, so a stale, truncated or tampered entry is a miss
and the caller rebuilds from the source files: a cache never changes a result.
`TOOLMARKS_NO_CACHE=1` turns it off; failures to write are silent.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

MAGIC = b"toolmarks-cache-1\n"
_DIGEST = 32
# Entries kept per kind; each distinct set (shipped, shipped + a case's own
# files, …) has its own, so alternating between them does not rebuild.
KEEP = 8


def cache_dir() -> Path | None:
    """`$XDG_CACHE_HOME/toolmarks` (default `~/.cache/toolmarks`), None if off."""
    if os.environ.get("TOOLMARKS_NO_CACHE", "") not in ("", "0"):
        return None
    base = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says a relative path is invalid and must be ignored.
    if not os.path.isabs(base):
        try:
            base = os.path.join(Path.home(), ".cache")
        except RuntimeError:  # no home directory
            return None
    return Path(base) / "toolmarks"


def digest(*parts: bytes | str) -> bytes:
    """A key from parts, each length-prefixed so no two part lists collide."""
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "little"))
        hasher.update(data)
    return hasher.digest()


def _path(directory: Path, kind: str, key: bytes) -> Path:
    return directory / f"{kind}-{key.hex()[:40]}.bin"


def read(kind: str, key: bytes) -> bytes | None:
    """The payload stored under key, or None when absent, stale or corrupt."""
    directory = cache_dir()
    if directory is None:
        return None
    path = _path(directory, kind, key)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(MAGIC)
    if (
        len(data) < head + 2 * _DIGEST
        or data[:head] != MAGIC
        or data[head : head + _DIGEST] != key
    ):
        return None
    payload = data[head + 2 * _DIGEST :]
    if hashlib.sha256(payload).digest() != data[head + _DIGEST : head + 2 * _DIGEST]:
        return None
    try:
        os.utime(path)  # pruning drops the least recently used
    except OSError:
        pass
    return payload


def write(kind: str, key: bytes, payload: bytes) -> None:
    """Stores payload under key atomically (readers see all or nothing)."""
    directory = cache_dir()
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{kind}-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(MAGIC + key + hashlib.sha256(payload).digest() + payload)
            os.replace(temporary, _path(directory, kind, key))
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        _prune(directory, kind)
    except OSError:
        pass  # a read-only or full cache only costs time


def _prune(directory: Path, kind: str) -> None:
    entries = []
    for path in directory.glob(f"{kind}-*.bin"):
        try:
            entries.append((path.stat().st_mtime, path))
        except OSError:
            continue
    for _, path in sorted(entries, reverse=True)[KEEP:]:
        try:
            path.unlink()
        except OSError:
            pass
