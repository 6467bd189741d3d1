"""File content: hashes, indicator strings and imphash from one chunked read.

The same chunks feed MD5 (always), SHA-1/SHA-256 (when the set uses them) and the
compiled YARA ruleset. Chunks overlap by the longest string so none is missed at
a boundary; memory stays bounded whatever the file size.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import BinaryIO

from toolmarks.indicators.compiler import CompiledSet
from toolmarks.indicators.model import Indicator

CHUNK_SIZE = 8 * 1024 * 1024
# PE files up to this size are kept in memory for the imphash; larger ones are
# reported as not checked rather than held whole.
MAX_PE_SIZE = 64 * 1024 * 1024


@dataclasses.dataclass
class StringHit:
    indicator: Indicator
    rule: str
    offset: int  # of the first occurrence in the stream
    encoding: str  # ascii or wide, as found


@dataclasses.dataclass
class ContentResult:
    size: int = 0  # bytes read
    hashes: dict[str, str] = dataclasses.field(default_factory=dict)
    strings: list[StringHit] = dataclasses.field(default_factory=list)
    imphash: str | None = None
    error: str | None = None  # why the read stopped early, with the offset
    notes: list[str] = dataclasses.field(default_factory=list)  # checks not done


def _imphash(data: bytes) -> tuple[str | None, str | None]:
    """(imphash, problem) of PE bytes; pefile is only imported for PE files."""
    import pefile

    try:
        pe = pefile.PE(data=data, fast_load=True)
        pe.parse_data_directories(
            directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]]
        )
        value = pe.get_imphash()
        return (value or None), None
    except Exception as error:  # noqa: BLE001 - pefile raises many kinds on bad PEs
        return None, f"imphash: not a valid PE: {error}"


def scan_stream(
    file_object: BinaryIO,
    compiled: CompiledSet,
    *,
    chunk_size: int = CHUNK_SIZE,
) -> ContentResult:
    """Reads a stream once and returns its hashes, string hits and imphash."""
    result = ContentResult()
    digests = {"md5": hashlib.md5()}
    for name in ("sha1", "sha256"):
        if name in compiled.hash_types:
            digests[name] = hashlib.new(name)
    rules = compiled.yara_rules
    overlap = max(compiled.max_string_bytes - 1, 0)
    want_imphash = "imphash" in compiled.hash_types
    pe_chunks: list[bytes] | None = None
    hits: dict[str, StringHit] = {}
    tail = b""
    offset = 0
    while True:
        try:
            chunk = file_object.read(chunk_size)
        except Exception as error:  # noqa: BLE001 - any back end error is a bad read
            result.error = f"read failed at offset {offset}: {error}"
            break
        if not chunk:
            break
        if offset == 0 and want_imphash and chunk[:2] == b"MZ":
            pe_chunks = []
        for digest in digests.values():
            digest.update(chunk)
        if pe_chunks is not None:
            if offset + len(chunk) <= MAX_PE_SIZE:
                pe_chunks.append(chunk)
            else:
                pe_chunks = None
                result.notes.append(
                    f"imphash not computed: PE larger than {MAX_PE_SIZE} bytes"
                )
        if rules is not None:
            buffer = tail + chunk if tail else chunk
            base = offset - len(tail)
            for match in rules.match(data=buffer):
                _add_hits(hits, match, base, compiled)
            tail = buffer[-overlap:] if overlap else b""
        offset += len(chunk)
    result.size = offset
    result.hashes = {name: digest.hexdigest() for name, digest in digests.items()}
    result.strings = sorted(hits.values(), key=lambda hit: hit.offset)
    if pe_chunks and result.error is None:
        result.imphash, problem = _imphash(b"".join(pe_chunks))
        if problem:
            result.notes.append(problem)
    return result


def _add_hits(
    hits: dict[str, StringHit], match, base: int, compiled: CompiledSet
) -> None:
    """Keeps the first occurrence of each rule; later chunks only add new rules."""
    if match.rule in hits:
        return
    instances = [
        (base + instance.offset, instance.matched_data)
        for string in match.strings
        for instance in string.instances
    ]
    if not instances:
        return
    offset, data = min(instances)
    encoding = "wide" if len(data) > 1 and data[1:2] == b"\x00" else "ascii"
    hits[match.rule] = StringHit(
        compiled.rule_indicators[match.rule], match.rule, offset, encoding
    )
