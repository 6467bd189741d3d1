"""`toolmarks scan` on broken evidence: each case is reported, the scan goes on,
and the exit code says whether the image could be opened at all."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from ntfs_support import plant_ntfs


def scan(image: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "toolmarks",
            "scan",
            str(image),
            "-o",
            str(out),
            "--workers",
            "1",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "scan.json").read_text())


def matched_paths(out: Path) -> set[str]:
    rows = [json.loads(line) for line in (out / "timeline.jsonl").open()]
    return {row["path"] for row in rows}


def planted(manifest: dict[str, Any]) -> set[str]:
    return {
        f["path"]
        for f in manifest["files"]
        if f["expect"] and not any(e.get("test_indicator") for e in f["expect"])
    }


def test_not_a_disk_image(tmp_path: Path) -> None:
    image = tmp_path / "notes.raw"
    image.write_bytes(os.urandom(3 * 1024 * 1024))
    result = scan(image, tmp_path / "out")
    assert result.returncode == 2
    assert str(image) in result.stderr and "Traceback" not in result.stderr


def test_good_e01_verifies(tmp_path: Path, demo_image) -> None:
    """Every chunk's checksum by default, each chunk decoded once."""
    result = scan(demo_image["e01"], tmp_path / "out")
    assert result.returncode == 0, result.stderr
    facts = summary(tmp_path / "out")
    verification = facts["image"]["verification"]
    assert verification["ok"] is True and verification["bad_sectors"] == []
    assert verification["method"] == "every chunk's checksum, as the scan decoded it"
    # 32 KiB chunks (ewfacquire's default) over the whole media.
    media_size = facts["image"]["media_size"]
    assert verification["chunks"] == -(-media_size // (32 * 1024))
    # The scan decoded most of them; the check decoded the rest.
    assert 0 < verification["chunks_after_scan"] < verification["chunks"]
    assert verification["stored_md5"] == demo_image["manifest"]["volume"]["md5"]
    assert verification["computed_md5"] is None


def test_good_e01_verifies_its_md5(tmp_path: Path, demo_image) -> None:
    result = scan(demo_image["e01"], tmp_path / "out", "--verify-md5")
    assert result.returncode == 0, result.stderr
    verification = summary(tmp_path / "out")["image"]["verification"]
    assert verification["ok"] is True
    assert verification["computed_md5"] == demo_image["manifest"]["volume"]["md5"]


def test_missing_image(tmp_path: Path) -> None:
    result = scan(tmp_path / "nothing.E01", tmp_path / "out")
    assert result.returncode == 2
    assert "nothing.E01" in result.stderr and "Traceback" not in result.stderr


def test_truncated_e01(tmp_path: Path, workstation_images) -> None:
    source = workstation_images["e01"]
    image = tmp_path / "cut.E01"
    data = source.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    result = scan(image, tmp_path / "out")
    assert "Traceback" not in result.stderr
    if result.returncode == 2:  # refused whole: the message names the file
        assert "cut.E01" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        facts = summary(tmp_path / "out")
        assert facts["warnings"] or facts["unreadable"]


def test_e01_with_a_corrupted_chunk(tmp_path: Path, workstation_images) -> None:
    source = workstation_images["e01"]
    image = tmp_path / "bad.E01"
    shutil.copy(source, image)
    with image.open("r+b") as handle:  # garbage over compressed data mid-file
        handle.seek(image.stat().st_size // 2)
        handle.write(os.urandom(64 * 1024))
    # The oracle: ewfverify's own list of the sectors that failed.
    done = subprocess.run(
        ["ewfverify", "-q", str(image)], capture_output=True, text=True, check=False
    )
    expected = [
        [int(first), int(last)]
        for first, last in re.findall(r"at sector\(s\): (\d+) - (\d+)", done.stdout)
    ]
    assert done.returncode != 0 and expected
    # The scan's own check, in one process and in a pool of workers (each
    # noting the chunks it decoded), and ewfverify's.
    for number, extra in enumerate(((), ("--workers", "2"), ("--verify-md5",))):
        out = tmp_path / f"out{number}"
        result = scan(image, out, *extra)
        assert result.returncode == 0, result.stderr
        facts = summary(out)
        verification = facts["image"]["verification"]
        assert verification["ok"] is False
        assert verification["bad_sectors"] == expected
        if "--verify-md5" in extra:
            assert verification["stored_md5"] != verification["computed_md5"]
        first, last = verification["bad_sectors"][0]
        message = f"checksum errors in sectors {first}-{last}"
        assert any(message in w["message"] for w in facts["warnings"])
        assert message in result.stderr
        # Files outside the damaged chunks are still found.
        assert matched_paths(out) & planted(workstation_images["manifest"])


def _icat(image: Path, inode: int) -> bytes | None:
    """A file's content as The Sleuth Kit reads it (None if it cannot)."""
    done = subprocess.run(
        ["icat", str(image), str(inode)], capture_output=True, check=False
    )
    return done.stdout if done.returncode == 0 else None


def test_e01_damage_names_the_streams_on_the_bad_sectors(
    tmp_path: Path, workstation_images
) -> None:
    manifest = workstation_images["manifest"]
    victim = next(f for f in manifest["files"] if f["path"] == "/Windows/Temp/big.bin")
    content = _icat(workstation_images["raw"], victim["mft_entry"])
    assert content is not None and len(content) == victim["size"]
    # Random data is stored uncompressed in an E01 chunk: find a piece of the
    # file there and flip 16 bytes, 20 MiB into the file (its WCE string is
    # near its end, so it is still found).
    damaged_at = 20 * 2**20 + 100
    image = tmp_path / "damaged.E01"
    shutil.copy(workstation_images["e01"], image)
    data = bytearray(image.read_bytes())
    position = data.find(content[damaged_at - 100 : damaged_at + 4000])
    assert position > 0, "the victim's bytes are not stored verbatim in the E01"
    position += 100
    data[position : position + 16] = bytes(
        b ^ 0xFF for b in data[position : position + 16]
    )
    image.write_bytes(bytes(data))

    out = tmp_path / "out"
    result = scan(image, out)
    assert result.returncode == 0, result.stderr
    verification = summary(out)["image"]["verification"]
    assert verification["ok"] is False and verification["bad_sectors"]
    damaged = {d["location"]: d for d in verification["damaged_streams"]}
    ranges = damaged[victim["path"]]["stream_ranges"]
    assert any(first <= damaged_at <= last for first, last in ranges)
    # The Sleuth Kit, reading both images on its own, agrees on which files
    # changed: every one of them is named.
    changed = {
        f["path"]
        for f in manifest["files"]
        if f.get("mft_entry")
        and not f.get("stream")
        and _icat(image, f["mft_entry"])
        != _icat(workstation_images["raw"], f["mft_entry"])
    }
    assert victim["path"] in changed and changed <= set(damaged)
    for item in damaged.values():
        assert all(0 <= a <= b for a, b in item["stream_ranges"]), item
    # The hit in the damaged file is still reported, marked as such.
    rows = [json.loads(line) for line in (out / "timeline.jsonl").open()]
    victim_rows = [row for row in rows if row["path"] == victim["path"]]
    assert victim_rows and all("damaged" in row for row in victim_rows)
    assert all("DAMAGED: bytes" in row["message"] for row in victim_rows)
    assert "streams with data there: " in result.stderr
    assert victim["path"] in result.stderr


def test_partition_table_pointing_past_the_end(
    tmp_path: Path, workstation_images
) -> None:
    image = tmp_path / "mbr.raw"
    shutil.copy(workstation_images["mbr"], image)
    size = image.stat().st_size
    with image.open("r+b") as handle:  # second MBR entry: start far past the end
        handle.seek(446 + 16 + 8)
        handle.write(struct.pack("<II", size // 512 * 4, 2048))
    out = tmp_path / "out"
    result = scan(image, out)
    assert result.returncode == 0, result.stderr
    assert matched_paths(out) == planted(workstation_images["manifest"])
    assert any("p2" in w["location"] for w in summary(out)["warnings"])


def _mft_entry_offset(image: Path, entry: int) -> int:
    with image.open("rb") as handle:
        boot = handle.read(512)
    sector = struct.unpack_from("<H", boot, 0x0B)[0]
    cluster = sector * boot[0x0D]
    mft_cluster = struct.unpack_from("<Q", boot, 0x30)[0]
    return mft_cluster * cluster + entry * 1024


def test_corrupted_mft_entry(tmp_path: Path, workstation_images) -> None:
    manifest = workstation_images["manifest"]
    victim = next(
        f for f in manifest["files"] if f["path"] == "/Users/alice/Documents/5-mail.txt"
    )
    image = tmp_path / "mft.raw"
    shutil.copy(workstation_images["raw"], image)
    with image.open("r+b") as handle:
        handle.seek(_mft_entry_offset(image, victim["mft_entry"]))
        handle.write(b"BAAD" + os.urandom(1020))
    out = tmp_path / "out"
    result = scan(image, out)
    assert result.returncode == 0, result.stderr
    # The name is still in its directory's index, so the filename indicator
    # still matches it; the broken entry itself is reported.
    assert matched_paths(out) == planted(manifest)
    rows = [json.loads(line) for line in (out / "timeline.jsonl").open()]
    victim_rows = [row for row in rows if row["path"] == victim["path"]]
    assert [(r["timestamp_desc"], r["match_kinds"]) for r in victim_rows] == [
        ("Not a time", ["filename"])
    ]
    problems = [
        u for u in summary(out)["unreadable"] if u["location"] == victim["path"]
    ]
    assert problems and f"entry {victim['mft_entry']}" in problems[0]["message"]


def test_unreadable_sectors_at_the_end(tmp_path: Path, workstation_images) -> None:
    image = tmp_path / "short.raw"
    shutil.copy(workstation_images["raw"], image)
    with image.open("r+b") as handle:  # the last 30 MiB are gone
        handle.truncate(image.stat().st_size - 30 * 2**20)
    out = tmp_path / "out"
    result = scan(image, out)
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 2)
    if result.returncode == 0:
        facts = summary(out)
        assert facts["unreadable"] or facts["warnings"]


def test_control_characters_in_paths(tmp_path: Path, scenario_builder) -> None:
    """A name with an escape sequence and a newline is shown escaped on stderr,
    stays exact in JSONL and cannot become a formula in the CSV."""
    raw = tmp_path / "ctl.raw"
    folder = "=cmd|' -C calc'!A0\x1b[31m\n"
    plant_ntfs(raw, [folder], tmp_path / "mnt")
    out = tmp_path / "out"
    result = scan(raw, out)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (out / "timeline.jsonl").open()]
    assert {row["path"] for row in rows} == {f"/{folder}/1234-attach.doc"}
    csv_text = (out / "timeline.csv").read_text(encoding="utf-8-sig")
    assert "\x1b" not in result.stderr
    for line in csv_text.splitlines():
        assert not line.startswith("=")
    cells = [
        cell for row in csv.reader(csv_text.splitlines(keepends=True)) for cell in row
    ]
    assert not [cell for cell in cells if cell[:1] in "=+-@"]
