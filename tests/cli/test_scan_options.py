"""`toolmarks scan` options: machine-readable log, exit codes, output safety."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "toolmarks", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_json_log_is_json_lines(demo_image, tmp_path: Path) -> None:
    result = run(
        "scan", str(demo_image["e01"]), "-o", str(tmp_path / "out"), "--json-log"
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    done = [e for e in events if e["event"] == "done"]
    assert len(done) == 1 and done[0]["matched_locations"] == 6
    assert done[0]["warnings"] == 0 and done[0]["unreadable"] == 0


def test_bad_arguments_exit_2(demo_image, tmp_path: Path) -> None:
    assert run().returncode == 2
    assert run("scan", str(demo_image["e01"])).returncode == 2  # no -o
    result = run(
        "scan", str(demo_image["e01"]), "-o", str(tmp_path / "o"), "--partitions", "x"
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\n")
    result = run(
        "scan",
        str(demo_image["e01"]),
        "-o",
        str(tmp_path / "o2"),
        "--indicators",
        str(bad),
    )
    assert result.returncode == 2 and f"{bad}:1:" in result.stderr


def test_output_folder_is_not_overwritten(demo_image, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "case-notes.txt").write_text("mine")
    result = run("scan", str(demo_image["e01"]), "-o", str(out))
    assert result.returncode == 2 and "not empty" in result.stderr
    assert (out / "case-notes.txt").read_text() == "mine"
