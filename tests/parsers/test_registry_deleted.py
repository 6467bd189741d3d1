"""Deleted keys: key cells in a hive's free space, planted with hivexsh in real
hives and checked against python-registry, which reads live keys only."""

from __future__ import annotations

import io
import lzma
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pyregf
import pytest
import yaml
from Registry import Registry

from toolmarks.indicators import compiler, loader
from toolmarks.parsers import registry, registry_deleted

NTUSER = "registry/regipy/NTUSER_with_winscp.DAT.xz"
SYSTEM = "registry/regipy/SYSTEM_WIN_10_1709.xz"


def hive_bytes(real_data: Path, relative: str) -> bytes:
    return lzma.decompress((real_data / relative).read_bytes())


def plant(tmp_path: Path, data: bytes, commands: list[str]) -> bytes:
    """hivexsh commands run on a copy of a hive, committed."""
    hivexsh = shutil.which("hivexsh")
    if hivexsh is None:
        pytest.fail("hivexsh (Debian libhivex-bin) is needed to plant test keys")
    hive, script = tmp_path / "hive", tmp_path / "script"
    hive.write_bytes(data)
    script.write_text("\n".join([*commands, "commit", ""]), encoding="ascii")
    subprocess.run([hivexsh, "-w", "-f", str(script), str(hive)], check=True)
    return hive.read_bytes()


def key_indicators(tmp_path: Path, hive: str, *keys: str) -> compiler.CompiledSet:
    """A set with one key-only registry indicator per key regex."""
    tool = {
        "id": "probe",
        "title": "Probe",
        "description": "test keys",
        "stages": [],
        "dual_use": False,
        "references": ["test"],
        "registry": [
            {
                "id": f"probe.registry.key_{n}",
                "hive": hive,
                "key": key,
                "source": "test",
                "confidence": "primary",
            }
            for n, key in enumerate(keys)
        ],
    }
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(tool))
    return compiler.compile_set(loader.load([path], shipped=False))


def deleted_traces(data: bytes, compiled) -> list:
    result = registry.parse_hive(io.BytesIO(data), "p1:/hive", compiled)
    return [t for t in result.traces if t.attributes["artefact"] == "deleted_key"]


def test_real_hive_deleted_keys_are_not_live(real_data: Path) -> None:
    data = hive_bytes(real_data, SYSTEM)
    live = Registry.Registry(io.BytesIO(data))
    found = list(registry_deleted.deleted_keys(data))
    assert len(found) > 100  # a Windows 10 SYSTEM hive keeps many
    for key in found:
        with pytest.raises(Registry.RegistryKeyNotFoundException):
            live.open(key.path)


def test_planted_deleted_key(tmp_path: Path, real_data: Path) -> None:
    before = hive_bytes(real_data, NTUSER)
    data = plant(
        tmp_path,
        before,
        [
            "cd Software\\Sysinternals",
            "add ToolZ",
            "cd ToolZ",
            "setval 1",
            "EulaAccepted",
            "dword:1",
            "del",
        ],
    )
    live = Registry.Registry(io.BytesIO(data))
    assert live.open("Software\\Sysinternals").subkeys()  # the parent is live
    with pytest.raises(Registry.RegistryKeyNotFoundException):
        live.open("Software\\Sysinternals\\ToolZ")
    compiled = key_indicators(tmp_path, "NTUSER", r"Software\\Sysinternals\\ToolZ")
    [trace] = deleted_traces(data, compiled)
    assert trace.attributes["key_path"].lower() == "software\\sysinternals\\toolz"
    assert [(m.indicator, dict(m.detail)["via"]) for m in trace.matches] == [
        ("probe.registry.key_0", "deleted key")
    ]
    assert trace.timestamp_desc == "Registry Last Written Time"
    assert "parent reference" in trace.attributes["note"]
    assert deleted_traces(before, compiled) == []


def test_stale_copy_of_a_live_key_is_not_deleted(
    tmp_path: Path, real_data: Path
) -> None:
    """A live key's nk bytes copied into free space (as an old version of a
    key is left behind) give the walk's trace, not a deleted key."""
    data = bytearray(hive_bytes(real_data, NTUSER))
    regf = pyregf.file()
    regf.open_file_object(io.BytesIO(bytes(data)))
    key = regf.get_root_key().get_sub_key_by_path("Software\\Sysinternals\\DbgView")
    record = key.offset  # of the nk record, after the cell size
    regf.close()
    size = -struct.unpack_from("<i", data, record - 4)[0]
    start = next(
        s
        for s, e in registry_deleted.free_cells(bytes(data))
        if e - s >= size and (s - 4 - 4096) % 8 == 0
    )
    data[start : start + size - 4] = data[record : record + size - 4]
    compiled = key_indicators(tmp_path, "NTUSER", r"Software\\Sysinternals\\DbgView")
    assert [
        k.path
        for k in registry_deleted.deleted_keys(bytes(data))
        if k.path.lower().endswith("dbgview")
    ]
    result = registry.parse_hive(io.BytesIO(bytes(data)), "p1:/hive", compiled)
    assert [t.attributes["artefact"] for t in result.traces] == ["key"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_damaged_free_space_never_crashes(real_data: Path, seed: int) -> None:
    data = bytearray(hive_bytes(real_data, SYSTEM))
    rng = random.Random(seed)
    for _ in range(5000):
        data[rng.randrange(4096, len(data))] = rng.randrange(256)
    # Parent references forming a loop, and ones pointing past the end.
    for key in list(registry_deleted.deleted_keys(bytes(data)))[:20]:
        cell = 4096 + key.offset
        struct.pack_into("<I", data, cell + 4 + 16, key.offset)
    keys = list(registry_deleted.deleted_keys(bytes(data)))
    assert all(key.path for key in keys)
