"""`toolmarks scan` on the real images of ../shared/test_data/real/images.

Facts from its MANIFEST: vsstest.qcow2's current volume holds password.txt and
syslog.gz, VSS store 1 only syslog; image.E01 holds passwords.txt and a deleted
passwords.txt~.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml


def user_indicators(folder: Path) -> Path:
    path = folder / "names.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "id": "names",
                "title": "Test names",
                "description": "file names",
                "stages": [],
                "dual_use": False,
                "references": ["test"],
                "filenames": [
                    {
                        "id": "names.filename.syslog",
                        "regex": r"\\syslog$",
                        "source": "test",
                        "confidence": "primary",
                    },
                    {
                        "id": "names.filename.password",
                        "regex": r"\\passwords?\.txt",
                        "source": "test",
                        "confidence": "primary",
                    },
                ],
            }
        )
    )
    return path


def scan(image: Path, out: Path, *extra: str) -> list[dict]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolmarks",
            "scan",
            str(image),
            "-o",
            str(out),
            "--no-shipped",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in (out / "timeline.jsonl").open()]


def sources(rows: list[dict]) -> set[tuple[str, bool]]:
    return {(row["source"], row["allocated"]) for row in rows}


def test_vss_stores_are_scanned_on_request(real_data: Path, tmp_path: Path) -> None:
    image = real_data / "images" / "vsstest.qcow2"
    names = user_indicators(tmp_path)
    current = scan(image, tmp_path / "none", "--indicators", str(names))
    assert sources(current) == {("/password.txt", True)}
    every = scan(image, tmp_path / "all", "--indicators", str(names), "--vss", "all")
    assert sources(every) == {("/password.txt", True), ("vss1:/syslog", True)}
    summary = json.loads((tmp_path / "all" / "scan.json").read_text())
    assert [v["label"] for v in summary["volumes"]] == ["", "vss1", "vss2"]


def test_deleted_name_in_ext_e01(real_data: Path, tmp_path: Path) -> None:
    image = real_data / "images" / "image.E01"
    rows = scan(image, tmp_path / "out", "--indicators", str(user_indicators(tmp_path)))
    assert sources(rows) == {("/passwords.txt", True), ("/passwords.txt~", False)}
    summary = json.loads((tmp_path / "out" / "scan.json").read_text())
    assert summary["image"]["md5"] == "d73c51f10c7ee6a681b7b619ccc6f1c4"
    assert summary["image"]["verification"]["ok"] is True
