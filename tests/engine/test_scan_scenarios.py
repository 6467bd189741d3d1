"""End to end: scans of the scenario images find exactly the planted facts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from toolmarks.engine.scan import (
    SMALL_IMAGE,
    ScanOptions,
    default_workers,
    scan_image,
)
from toolmarks.indicators import loader
from toolmarks.parsers.content import DATA_TYPE_FILE

TEST_TOOL = "scenario_test"


def test_indicators(manifest: dict[str, Any], folder: Path) -> Path:
    """A user indicator file with the md5 of every file planted as a known hash."""
    hashes = [
        {
            "id": f"{TEST_TOOL}.md5.file_{n}",
            "type": "md5",
            "value": f["md5"],
            "source": f"scenario manifest {f['path']}",
            "confidence": "primary",
        }
        for n, f in enumerate(manifest["files"])
        if any(e.get("test_indicator") for e in f["expect"])
    ]
    assert hashes
    path = folder / f"{TEST_TOOL}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "id": TEST_TOOL,
                "title": "Scenario known hashes",
                "description": "md5s of planted files",
                "stages": [],
                "dual_use": False,
                "references": ["test_data/scenarios"],
                "hashes": hashes,
            }
        )
    )
    return path


test_indicators.__test__ = False  # a helper, not a test


def expected(manifest: dict[str, Any]) -> set[tuple[str, str, str, str, bool]]:
    found = set()
    for item in manifest["files"]:
        for expect in item["expect"]:
            tool = TEST_TOOL if expect.get("test_indicator") else expect["tool"]
            found.add(
                (item["path"], item["stream"], tool, expect["kind"], item["allocated"])
            )
    return found


def findings(traces) -> set[tuple[str, str, str, str, bool]]:
    return {
        (
            t.attributes["path"],
            t.attributes["stream"],
            m.tool,
            m.kind,
            t.attributes["allocated"],
        )
        for t in traces
        if t.data_type == DATA_TYPE_FILE
        for m in t.matches
    }


def check_values(traces, manifest: dict[str, Any]) -> None:
    """Each match shows the planted value: the string, or the file's path."""
    planted = {(f["path"], f["stream"]): f for f in manifest["files"]}
    for trace in traces:
        item = planted[(trace.attributes["path"], trace.attributes["stream"])]
        assert trace.attributes["md5_hash"] == item["md5"]
        for match in trace.matches:
            if match.kind == "string":
                marker = next(m for m in item["markers"] if m["value"] == match.value)
                assert dict(match.detail)["offset"] == marker["offset"]
            elif match.kind == "filename":
                assert match.value == item["path"].replace("/", "\\")


def test_demo_image_findings_are_exact(demo_image: dict[str, Any]) -> None:
    manifest = demo_image["manifest"]
    result, volumes = scan_image(str(demo_image["e01"]), loader.load(), ScanOptions())
    assert [v.fs_type for v in volumes] == ["NTFS"]
    assert findings(result.traces) == expected(manifest)
    check_values(result.traces, manifest)
    assert not result.unreadable and not result.warnings


@pytest.mark.parametrize("fmt", ["raw", "e01", "split_e01", "mbr", "gpt"])
def test_workstation_findings_are_exact(
    workstation_images: dict[str, Any], tmp_path: Path, fmt: str
) -> None:
    manifest = workstation_images["manifest"]
    indicator_set = loader.load([test_indicators(manifest, tmp_path)])
    result, volumes = scan_image(
        str(workstation_images[fmt]), indicator_set, ScanOptions()
    )
    ntfs = [v for v in volumes if v.fs_type == "NTFS"]
    assert len(ntfs) == 1
    assert ntfs[0].label == ("p1" if fmt in ("mbr", "gpt") else "")
    assert findings(result.traces) == expected(manifest)
    check_values(result.traces, manifest)
    assert not result.unreadable
    # The 40 MiB file was read whole: its marker sits 100 bytes before the end.
    big = [t for t in result.traces if t.attributes["path"] == "/Windows/Temp/big.bin"]
    assert big and big[0].attributes["size"] > 32 * 2**20


def test_workstation_two_workers_find_the_same(workstation_images, tmp_path) -> None:
    manifest = workstation_images["manifest"]
    indicator_set = loader.load([test_indicators(manifest, tmp_path)])
    one, _ = scan_image(str(workstation_images["raw"]), indicator_set, ScanOptions())
    two, _ = scan_image(
        str(workstation_images["raw"]), indicator_set, ScanOptions(workers=2)
    )
    assert findings(two.traces) == findings(one.traces) == expected(manifest)
    assert two.counts["files"] == one.counts["files"]
    assert two.counts["bytes"] == one.counts["bytes"]


def test_file_size_cap_is_reported_not_silent(workstation_images, tmp_path) -> None:
    manifest = workstation_images["manifest"]
    indicator_set = loader.load([test_indicators(manifest, tmp_path)])
    result, _ = scan_image(
        str(workstation_images["raw"]),
        indicator_set,
        ScanOptions(max_file_size=32 * 2**20),
    )
    assert [s["location"] for s in result.skipped] == ["/Windows/Temp/big.bin"]
    assert ("/Windows/Temp/big.bin", "", "wce", "string", True) not in findings(
        result.traces
    )


def test_small_image_files_are_scanned_by_one_process(
    demo_image: dict[str, Any], tmp_path: Path
) -> None:
    """Workers cost more than they save on a small image; one per core (at
    most 8) otherwise, and when the size cannot be read."""
    cores = max(1, min(os.cpu_count() or 1, 8))
    assert default_workers(str(demo_image["e01"])) == 1
    big = tmp_path / "big.raw"
    with big.open("wb") as handle:  # sparse: no space taken
        handle.truncate(SMALL_IMAGE)
    assert default_workers(str(big)) == cores
    assert default_workers(str(tmp_path / "missing.raw")) == cores
    assert default_workers() == cores
