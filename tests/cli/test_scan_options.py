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
    # The E01's chunks no read of the scan decoded are announced, then checked.
    checking = [e for e in events if e["event"] == "checking"]
    facts = json.loads((tmp_path / "out" / "scan.json").read_text())["image"]
    left = facts["verification"]["chunks_after_scan"]
    assert len(checking) == 1 and left > 0
    assert checking[0]["bytes"] == min(facts["media_size"], left * 32 * 1024)
    assert events.index(checking[0]) < events.index(done[0])


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


def test_output_that_is_a_file_exits_2(demo_image, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    wanted = {
        notes: f"{notes}: exists and is not a folder",
        notes / "out": f"{notes / 'out'}: cannot be made: {notes} is not a folder",
    }
    for command in ("scan", "batch"):
        for out, message in wanted.items():
            result = run(command, str(demo_image["e01"]), "-o", str(out))
            assert result.returncode == 2, result.stderr
            assert "internal error" not in result.stderr
            assert f"argument -o/--output: {message}\n" in result.stderr
    assert notes.read_text() == "mine"


def test_bad_numbers_exit_2(demo_image, tmp_path: Path) -> None:
    image, out = str(demo_image["e01"]), str(tmp_path / "out")
    bad = {
        ("scan", "--max-file-size", "-5"): "must be 1 byte or more",
        ("scan", "--max-file-size", "0"): "must be 1 byte or more",
        ("scan", "--max-file-size", "inf"): "not a size",
        ("scan", "--workers", "0"): "must be 1 or more",
        ("scan", "--workers", "-3"): "must be 1 or more",
        ("scan", "--vss", "0"): "invalid VSS store selection",
        ("batch", "--max-file-size", "-5"): "must be 1 byte or more",
        ("batch", "--workers", "0"): "must be 1 or more",
        ("batch", "--split-images", "0"): "must be 1 or more",
        ("batch", "--partitions", "x"): "invalid partition selection",
    }
    for (command, option, value), message in bad.items():
        result = run(command, image, "-o", out, option, value)
        assert result.returncode == 2, (option, value, result.stderr)
        assert f"argument {option}: " in result.stderr
        assert message in result.stderr, result.stderr
    assert not Path(out).exists()


def test_missing_vss_stores_are_warned(
    demo_image, real_data: Path, tmp_path: Path
) -> None:
    """As a partition that does not exist: a warning naming the store, on
    stderr (once) and in scan.json; the volumes that exist are scanned."""
    out = tmp_path / "demo"
    result = run("scan", str(demo_image["e01"]), "-o", str(out), "--vss", "99")
    assert result.returncode == 0, result.stderr
    message = (
        "VSS store 99 does not exist (no volume has readable Volume Shadow Copies)"
    )
    assert result.stderr.count(f"toolmarks: warning: demo.E01: {message}\n") == 1
    summary = json.loads((out / "scan.json").read_text())
    assert summary["warnings"] == [{"location": "demo.E01", "message": message}]
    assert [volume["label"] for volume in summary["volumes"]] == [""]
    # MANIFEST: vsstest.qcow2 has two stores.
    out = tmp_path / "vsstest"
    image = real_data / "images" / "vsstest.qcow2"
    result = run("scan", str(image), "-o", str(out), "--vss", "2,3", "--json-log")
    assert result.returncode == 0, result.stderr
    warnings = [
        json.loads(line)
        for line in result.stderr.splitlines()
        if json.loads(line)["event"] == "warning"
    ]
    assert warnings == [
        {
            "event": "warning",
            "location": "vsstest.qcow2",
            "message": "VSS store 3 does not exist",
        }
    ]
    summary = json.loads((out / "scan.json").read_text())
    assert [volume["label"] for volume in summary["volumes"]] == ["", "vss2"]
    assert summary["warnings"] == [
        {"location": "vsstest.qcow2", "message": "VSS store 3 does not exist"}
    ]


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
