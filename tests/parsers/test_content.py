"""The content scan: one chunked read gives hashes, string hits and imphash."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pefile
import pip
import pytest
import yaml

from toolmarks.indicators import compiler, loader
from toolmarks.parsers import content

# A real PE file that ships inside pip (distlib's launcher stub), not a tool.
PE_FILE = Path(pip.__file__).parent / "_vendor" / "distlib" / "t64.exe"


def compiled_set(tmp_path: Path, **fields) -> compiler.CompiledSet:
    tool = {
        "id": "probe",
        "title": "Probe",
        "description": "test strings",
        "stages": [],
        "dual_use": False,
        "references": ["test"],
        **fields,
    }
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(tool))
    return compiler.compile_set(loader.load([path], shipped=False))


def string(name: str, value: str, **extra) -> dict:
    return {
        "id": f"probe.string.{name}",
        "value": value,
        "source": "test",
        "confidence": "primary",
        "encodings": ["ascii", "wide"],
        **extra,
    }


STRINGS = [
    string("plain", "Windows Credentials Editor"),
    string("nocase", "ZXHttpServer", nocase=True),
    string("fullword", "wce_ccache", fullword=True),
]


@pytest.mark.parametrize("chunk_size", [7, 64, 1000, 1 << 20])
def test_strings_are_found_across_chunk_boundaries(tmp_path, chunk_size) -> None:
    compiled = compiled_set(tmp_path, strings=STRINGS)
    data = bytearray(os.urandom(5000).replace(b"\x00", b"\x01"))
    data[100:126] = b"Windows Credentials Editor"
    data[3000 : 3000 + 24] = "zxhttpSERVER".encode("utf-16-le")
    data[4000:4010] = b"wce_ccache"
    data[4010] = ord(" ")
    data[3999] = ord(" ")
    data[4500:4510] = b"wce_ccacheX"[:10]  # not a whole word: only the first counts
    data[4900:4926] = b"Windows Credentials Editor"  # later copy: first one kept
    result = content.scan_stream(
        io.BytesIO(bytes(data)), compiled, chunk_size=chunk_size
    )
    found = {(h.indicator.id, h.offset, h.encoding) for h in result.strings}
    assert found == {
        ("probe.string.plain", 100, "ascii"),
        ("probe.string.nocase", 3000, "wide"),
        ("probe.string.fullword", 4000, "ascii"),
    }
    assert result.hashes == {"md5": hashlib.md5(data).hexdigest()}
    assert result.size == len(data)


def test_fullword_rejects_part_of_a_word(tmp_path) -> None:
    compiled = compiled_set(tmp_path, strings=STRINGS)
    result = content.scan_stream(io.BytesIO(b"xwce_ccachex"), compiled)
    assert result.strings == []


def test_hash_types_follow_the_set_and_imphash_of_a_real_pe(tmp_path) -> None:
    pe = pefile.PE(str(PE_FILE))
    imphash = pe.get_imphash()
    data = PE_FILE.read_bytes()
    compiled = compiled_set(
        tmp_path,
        hashes=[
            {
                "id": "probe.imphash.stub",
                "type": "imphash",
                "value": imphash,
                "source": "test",
                "confidence": "primary",
            },
            {
                "id": "probe.sha256.other",
                "type": "sha256",
                "value": "ab" * 32,
                "source": "test",
                "confidence": "primary",
            },
        ],
    )
    result = content.scan_stream(io.BytesIO(data), compiled, chunk_size=4096)
    assert result.imphash == imphash
    assert result.hashes == {
        "md5": hashlib.md5(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_read_error_is_reported_with_its_offset(tmp_path) -> None:
    class Broken(io.RawIOBase):
        calls = 0

        def read(self, size=-1):
            self.calls += 1
            if self.calls > 2:
                raise OSError("sector not readable")
            return b"a" * size

    compiled = compiled_set(tmp_path, strings=STRINGS)
    result = content.scan_stream(Broken(), compiled, chunk_size=100)
    assert result.error == "read failed at offset 200: sector not readable"


@pytest.mark.parametrize("chunk_size", [5, 16, 29, 30, 31])
def test_plain_strings_alone_cross_boundaries(tmp_path, chunk_size) -> None:
    compiled = compiled_set(tmp_path, strings=[STRINGS[0]])
    data = b"x" * 17 + b"Windows Credentials Editor" + b"y" * 40
    result = content.scan_stream(io.BytesIO(data), compiled, chunk_size=chunk_size)
    assert [(h.indicator.id, h.offset) for h in result.strings] == [
        ("probe.string.plain", 17)
    ]


@pytest.mark.parametrize("chunk_size", [3, 10, 11, 12, 1 << 20])
def test_fullword_at_the_very_end_and_start(tmp_path, chunk_size) -> None:
    compiled = compiled_set(tmp_path, strings=[STRINGS[2]])
    for data, offset in [
        (b"ab wce_ccache", 3),
        (b"wce_ccache-x", 0),
        (b"awce_ccache wce_ccache", 12),
        ("x wce_ccache".encode("utf-16-le"), 4),
    ]:
        result = content.scan_stream(io.BytesIO(data), compiled, chunk_size=chunk_size)
        assert [h.offset for h in result.strings] == [offset], data


def test_yara_fallback_finds_the_same(tmp_path, monkeypatch) -> None:
    data = bytearray(os.urandom(5000).replace(b"\x00", b"\x01"))
    data[100:126] = b"Windows Credentials Editor"
    data[3000 : 3000 + 24] = "zxhttpSERVER".encode("utf-16-le")
    data[3999:4011] = b" wce_ccache "
    with_hyperscan = compiled_set(tmp_path, strings=STRINGS)
    monkeypatch.setattr(compiler, "hyperscan", None)
    with_yara = compiled_set(tmp_path, strings=STRINGS)
    assert with_yara.strings.database is None and with_yara.strings.rules
    results = [
        {
            (h.indicator.id, h.offset, h.encoding)
            for h in content.scan_stream(
                io.BytesIO(bytes(data)), compiled, chunk_size=64
            ).strings
        }
        for compiled in (with_hyperscan, with_yara)
    ]
    assert results[0] == results[1] and len(results[0]) == 3
