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


def test_unallocated_finds_the_deleted_files_data(demo_image, tmp_path: Path) -> None:
    deleted = next(f for f in demo_image["manifest"]["files"] if not f["allocated"])
    (marker,) = deleted["markers"]
    # Where The Sleuth Kit says the deleted file's clusters are.
    istat = subprocess.run(
        ["istat", str(demo_image["e01"]), str(deleted["mft_entry"])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    first_cluster = int(istat.split("Type: $DATA", 1)[1].split("\n")[1].split()[0])
    out = tmp_path / "out"
    result = run("scan", str(demo_image["e01"]), "-o", str(out), "--unallocated")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "scan.json").read_text())["counts"]["unallocated_bytes"]
    rows = [json.loads(line) for line in (out / "timeline.jsonl").open()]
    unallocated = [r for r in rows if r["data_type"] == "toolmarks:unallocated:match"]
    assert [
        (m["value"], m["detail"]["volume_offset"]) for m in unallocated[0]["matches"]
    ] == [(marker["value"], first_cluster * 4096 + marker["offset"])]
    assert len(unallocated) == 1 and unallocated[0]["timestamp_desc"] == "Not a time"
    # Without the option the rest of the timeline is the same.
    plain = tmp_path / "plain"
    assert run("scan", str(demo_image["e01"]), "-o", str(plain)).returncode == 0
    others = [r for r in rows if r not in unallocated]
    plain_rows = [json.loads(line) for line in (plain / "timeline.jsonl").open()]
    assert [r["message"] for r in others] == [r["message"] for r in plain_rows]
