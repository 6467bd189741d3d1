"""The start-up cache: a scan's outputs are the same with and without it, a
changed user file is used at once, and a stale or corrupt entry is rebuilt."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from toolmarks.cli.main import main
from toolmarks.indicators import cache, compiler, loader

USER_TOOL = """\
id: usertool
title: User tool
description: A case's own indicator file.
stages: [attack]
dual_use: false
references: [tests]
strings:
  - id: usertool.string.one
    value: "{value}"
    encodings: [ascii]
    source: test
    confidence: primary
"""
# Fields that hold the time of the run, not its result.
TIMING = {"started", "seconds"}
# plaso tables about the session (its start and end times), not the events.
SESSION_TABLES = {"session", "analysis_report", "sqlite_sequence"}


@pytest.fixture()
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv("TOOLMARKS_NO_CACHE", raising=False)
    return home / "toolmarks"


def _scan(image: Path, outdir: Path, *options: str) -> None:
    code = main(["scan", str(image), "-o", str(outdir), "--force", *options])
    assert code == 0


def _without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _plaso_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as db:
        names = [
            r[0]
            for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return {
            name: list(db.execute(f"SELECT * FROM {name}"))
            for name in names
            if name not in SESSION_TABLES and not name.startswith("sqlite_")
        }


def _strings_found(compiled: compiler.CompiledSet, data: bytes) -> set[str]:
    found = set()

    def on_match(pattern: int, start: int, end: int, flags: int, context: Any) -> None:
        found.add(compiled.strings.literals[pattern][0].id)

    compiled.strings.database.scan(data, match_event_handler=on_match)
    return found


def test_scan_outputs_identical_with_and_without_cache(
    demo_image: dict[str, Any],
    cache_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outdir = tmp_path / "out"  # one path: scan.json records the command line
    runs = {}
    for name in ("no cache", "cold", "warm"):
        if name == "no cache":
            monkeypatch.setenv("TOOLMARKS_NO_CACHE", "1")
        else:
            monkeypatch.delenv("TOOLMARKS_NO_CACHE")
        _scan(demo_image["e01"], outdir)
        runs[name] = tmp_path / name
        shutil.move(outdir, runs[name])
        if name == "no cache":
            assert not cache_home.exists()
        monkeypatch.setenv("TOOLMARKS_NO_CACHE", "1")
    assert sorted(p.name.split("-")[0] for p in cache_home.glob("*.bin")) == [
        "hyperscan",
        "indicator",
    ]
    # The planted GETMAIL string of the manifest is found in every run.
    planted = [
        f["path"]
        for f in demo_image["manifest"]["files"]
        if any("Lu's Crazy Profile" in m.get("value", "") for m in f.get("markers", []))
    ]
    assert planted
    for name in ("cold", "warm"):
        for output in ("timeline.jsonl", "timeline.csv", "findings.json"):
            reference = (runs["no cache"] / output).read_bytes()
            assert (runs[name] / output).read_bytes() == reference, (name, output)
        scan = [
            json.loads((runs[r] / "scan.json").read_text()) for r in (name, "no cache")
        ]
        assert _without_timing(scan[0]) == _without_timing(scan[1])
        rows = _plaso_rows(runs[name] / "timeline.plaso")
        assert rows == _plaso_rows(runs["no cache"] / "timeline.plaso")
        assert rows["event"]
    timeline = (runs["warm"] / "timeline.jsonl").read_text()
    for path in planted:
        assert path.replace("/", "\\\\") in timeline or path in timeline


def test_changed_user_file_is_used(
    demo_image: dict[str, Any], cache_home: Path, tmp_path: Path
) -> None:
    user = tmp_path / "user.yaml"
    planted = {
        "WNetCancelConnection2W": "/Users/alice/Documents/report.txt",
        "Lu's Crazy Profile (democode)": "/Users/alice/AppData/Local/Temp/gm.exe",
    }
    files = {f["path"] for f in demo_image["manifest"]["files"]}
    assert set(planted.values()) <= files
    for value, path in planted.items():
        user.write_text(USER_TOOL.format(value=value), encoding="utf-8")
        outdir = tmp_path / "out"
        _scan(demo_image["e01"], outdir, "--no-shipped", "--indicators", str(user))
        events = [
            json.loads(line)
            for line in (outdir / "timeline.jsonl").read_text().splitlines()
        ]
        text = json.dumps(events)
        assert "usertool.string.one" in text
        assert value.replace("'", "") in text.replace("'", "")
        assert path.rsplit("/", 1)[1] in text
        other = next(v for v in planted if v != value)
        assert other not in text
        shutil.rmtree(outdir)
    # Both versions of the file were cached: each load was keyed by its content.
    assert len(list(cache_home.glob("indicator-set-*.bin"))) == 2
    assert len(list(cache_home.glob("hyperscan-*.bin"))) == 2


def test_changed_file_same_size_and_time_is_reloaded(
    cache_home: Path, tmp_path: Path
) -> None:
    user = tmp_path / "user.yaml"
    user.write_text(USER_TOOL.format(value="AAAAAAAA"), encoding="utf-8")
    first = loader.load([user], shipped=False)
    stat = user.stat()
    user.write_text(USER_TOOL.format(value="BBBBBBBB"), encoding="utf-8")
    os.utime(user, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = loader.load([user], shipped=False)
    assert first.indicator("usertool.string.one").value == "AAAAAAAA"
    assert second.indicator("usertool.string.one").value == "BBBBBBBB"
    compiled = compiler.compile_set(second)
    assert _strings_found(compiled, b"xxBBBBBBBBxx") == {"usertool.string.one"}
    assert _strings_found(compiled, b"xxAAAAAAAAxx") == set()


def _corruptions(data: bytes) -> list[bytes]:
    head = len(cache.MAGIC)
    flipped = bytearray(data)
    flipped[-10] ^= 0x01
    wrong_key = bytearray(data)
    wrong_key[head] ^= 0x01
    return [b"", data[:-100], data[: head + 20], bytes(flipped), bytes(wrong_key)]


def test_corrupt_cache_is_ignored_and_rebuilt(
    cache_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "user.yaml"
    user.write_text(USER_TOOL.format(value="CORRUPTME"), encoding="utf-8")
    monkeypatch.setenv("TOOLMARKS_NO_CACHE", "1")
    fresh = loader.load([user])
    monkeypatch.delenv("TOOLMARKS_NO_CACHE")
    assert loader.load([user]) == fresh  # fills the cache
    compiler.compile_set(fresh)
    entries = sorted(cache_home.glob("*.bin"))
    assert len(entries) == 2
    originals = {entry: entry.read_bytes() for entry in entries}
    for entry, data in originals.items():
        for bad in _corruptions(data):
            entry.write_bytes(bad)
            loaded = loader.load([user])
            assert loaded == fresh
            compiled = compiler.compile_set(loaded)
            assert _strings_found(compiled, b"..CORRUPTME..") == {"usertool.string.one"}
            # Rebuilt: the entry is whole again.
            assert entry.read_bytes() == data or entry.name.startswith("hyperscan")
        entry.write_bytes(data)


def test_unwritable_cache_still_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    monkeypatch.delenv("TOOLMARKS_NO_CACHE", raising=False)
    monkeypatch.setenv("TOOLMARKS_NO_CACHE", "0")
    indicator_set = loader.load()
    assert "getmail.string.crazy_profile" in {i.id for i in indicator_set.indicators()}


def test_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOOLMARKS_NO_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_dir() == tmp_path / "toolmarks"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid per the spec
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "toolmarks"
    monkeypatch.setenv("TOOLMARKS_NO_CACHE", "1")
    assert cache.cache_dir() is None
