"""`toolmarks batch`: the scenario images scanned as one case give the outputs of
single scans, the case view states the planted tools per host, reruns skip
what is done, and images that cannot be scanned fail alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from toolmarks.engine.batch import MARKER, folder_names

# The System log planted in the traces scenario is the APTSimulator VM's
# (MANIFEST.md: computers DESKTOP-TMKU40H, 719 records, and WIN-C89CFTIHC0I).
TRACES_HOST = "DESKTOP-TMKU40H"
NOT_AN_IMAGE = "notes<b>\u202e.txt"


def toolmarks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "toolmarks", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


def planted_tools(manifest: dict[str, Any]) -> set[str]:
    return {
        expect["tool"]
        for item in manifest["files"]
        for expect in item["expect"]
        if not expect.get("test_indicator")
    }


def snapshot(folder: Path) -> dict[str, int]:
    """mtime of every file of every image folder."""
    return {
        str(path.relative_to(folder)): path.stat().st_mtime_ns
        for path in sorted(folder.glob("*/*"))
    }


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def case(tmp_path_factory, demo_image, traces_images, workstation_images) -> dict:
    """One batch of the scenario images (a copy of the demo image whose name
    clashes with the original, two given through --from-list), a missing image
    and a text file; then the same batch again."""
    tmp = tmp_path_factory.mktemp("batch")
    other = tmp / "other"
    other.mkdir()
    copy = other / "demo.E01"
    shutil.copy2(demo_image["e01"], copy)
    text = tmp / NOT_AN_IMAGE
    text.write_text("not a disk image\n")
    (tmp / "list.txt").write_text(
        f"# two images\n{workstation_images['raw']}\n\nother/demo.E01\n"
    )
    images = {
        "demo": str(demo_image["e01"]),
        "copy": str(copy),
        "traces": str(traces_images["raw"]),
        "workstation_raw": str(workstation_images["raw"]),
        "workstation_e01": str(workstation_images["e01"]),
        "missing": str(tmp / "gone.E01"),
        "text": str(text),
    }
    case_dir = tmp / "case"
    argv = [
        "batch",
        images["demo"],
        images["traces"],
        images["workstation_e01"],
        images["missing"],
        images["text"],
        "--from-list",
        str(tmp / "list.txt"),
        "-o",
        str(case_dir),
        "--workers",
        "2",
    ]
    first = toolmarks(*argv)
    first_json = (case_dir / "case.json").read_bytes()
    before = snapshot(case_dir)
    # A changed image (its mtime) is scanned again, the others are skipped.
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 10**9))
    second = toolmarks(*argv)
    return {
        "tmp": tmp,
        "dir": case_dir,
        "argv": argv,
        "images": images,
        "names": folder_names(list(images.values())),
        "manifests": {
            "demo": demo_image["manifest"],
            "copy": demo_image["manifest"],
            "traces": traces_images["manifest"],
            "workstation_raw": workstation_images["manifest"],
            "workstation_e01": workstation_images["manifest"],
        },
        "first": first,
        "first_json": first_json,
        "before": before,
        "second": second,
        "after": snapshot(case_dir),
        "view": json.loads((case_dir / "case.json").read_text()),
    }


def test_batch_runs_and_reports_the_failed_images(case) -> None:
    first = case["first"]
    assert first.returncode == 0, first.stderr
    assert "2 failed" in first.stderr
    view = case["view"]
    entries = {entry["path"]: entry for entry in view["images"]}
    missing = entries[case["images"]["missing"]]
    assert missing["status"] == "failed" and "no such file" in missing["error"]
    text = entries[case["images"]["text"]]
    assert text["status"] == "failed"
    assert "not a supported disk image" in text["error"]
    assert sorted(view["images_failed"]) == sorted(
        case["names"][case["images"][k]] for k in ("missing", "text")
    )
    ok = [e for e in view["images"] if e["status"] == "ok"]
    assert len(ok) == 5 and all(e["error"] is None for e in ok)
    # No folder for what could not be scanned.
    assert not (case["dir"] / case["names"][case["images"]["missing"]]).exists()


def test_clashing_names_get_distinct_folders(case) -> None:
    names = case["names"]
    demo, copy = names[case["images"]["demo"]], names[case["images"]["copy"]]
    assert demo != copy and demo.startswith("demo.E01-")
    assert copy.startswith("demo.E01-")
    by_name = {e["name"]: e["path"] for e in case["view"]["images"]}
    assert by_name[demo] == case["images"]["demo"]
    assert by_name[copy] == str(case["tmp"] / "other" / "demo.E01")


def test_folder_names_are_deterministic() -> None:
    images = ["/a/x.E01", "/b/X.e01", "/c/y.raw", "/d/case.json", "/e/.hidden"]
    names = folder_names(images)
    assert names == folder_names(list(reversed(images)))
    assert names["/c/y.raw"] == "y.raw"
    assert len(set(names.values())) == len(images)
    assert names["/d/case.json"] != "case.json"
    assert not names["/e/.hidden"].startswith(".")


def test_outputs_are_those_of_single_scans(case) -> None:
    single = case["tmp"] / "single"
    scans = {}
    for key in ("demo", "traces", "workstation_raw", "workstation_e01"):
        out = single / key
        scans[key] = subprocess.Popen(
            [sys.executable, "-m", "toolmarks", "scan", case["images"][key]]
            + ["-o", str(out), "--workers", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    for key, process in scans.items():
        assert process.wait(timeout=600) == 0, key
        folder = case["dir"] / case["names"][case["images"][key]]
        out = single / key
        assert (folder / "findings.json").read_bytes() == (
            out / "findings.json"
        ).read_bytes(), key
        assert rows(folder / "timeline.jsonl") == rows(out / "timeline.jsonl"), key
        marker = json.loads((folder / MARKER).read_text())
        assert marker["image"] == os.path.abspath(case["images"][key])


def test_tools_per_host_are_the_planted_ones(case) -> None:
    view = case["view"]
    hosts_of = {
        entry["name"]: entry["host"]
        for entry in view["images"]
        if entry["status"] == "ok"
    }
    for key, manifest in case["manifests"].items():
        name = case["names"][case["images"][key]]
        host = hosts_of[name]
        seen = {
            tool
            for tool, item in view["tools"].items()
            if any(name in h["images"] for h in item["hosts"])
        }
        assert seen == planted_tools(manifest), key
        if key == "traces":
            assert host == TRACES_HOST
        else:
            assert host == name  # no event log names the computer
    # First time per host: the earliest planted file time of the tool's files.
    demo = case["names"][case["images"]["demo"]]
    for tool in planted_tools(case["manifests"]["demo"]):
        planted = min(
            when.replace("Z", "+00:00")
            for item in case["manifests"]["demo"]["files"]
            if any(e.get("tool") == tool for e in item["expect"])
            for when in item["times"].values()
        )
        (entry,) = [h for h in view["tools"][tool]["hosts"] if h["host"] == demo]
        assert entry["first"] == planted, tool


def test_cross_host_order(case) -> None:
    view = case["view"]
    order = view["order"]
    count = sum(len(e["findings"]) for e in view["images"])
    assert len(order) == count > 0
    timed = [(o["first"], o["last"]) for o in order if o["first"]]
    assert timed == sorted(timed)
    assert {o["host"] for o in order} == {h["host"] for h in view["hosts"]}


def test_combined_timeline(case) -> None:
    combined = rows(case["dir"] / "case.jsonl")
    view = case["view"]
    expected = 0
    for entry in view["images"]:
        if entry["status"] != "ok":
            continue
        own = rows(case["dir"] / entry["name"] / "timeline.jsonl")
        expected += len(own)
        mine = [r for r in combined if r["case_image"] == entry["name"]]
        assert all(r["case_host"] == entry["host"] for r in mine)
        added = ("case_image", "case_host")
        assert [{k: v for k, v in r.items() if k not in added} for r in mine] == own
    assert len(combined) == expected
    stamps = [r["timestamp"] for r in combined]
    untimed = stamps.count(None)
    assert stamps[:untimed] == [None] * untimed
    assert stamps[untimed:] == sorted(stamps[untimed:])


def test_case_page(case) -> None:
    page = (case["dir"] / "case.html").read_text()
    assert "Content-Security-Policy" in page and "<script" not in page
    assert "notes&lt;b&gt;\\u202e.txt" in page and "<b>" not in page
    assert TRACES_HOST in page
    for tool in case["view"]["tools"]:
        assert f"<code>{tool}</code>" in page


def test_rerun_skips_what_is_done(case) -> None:
    second = case["second"]
    assert second.returncode == 0, second.stderr
    copy = case["names"][case["images"]["copy"]]
    lines = second.stderr.splitlines()
    for key in ("demo", "traces", "workstation_raw", "workstation_e01"):
        name = case["names"][case["images"][key]]
        assert any(f"{name}: skipped" in line for line in lines), name
    assert any(f"{copy}: scanned" in line for line in lines)
    before, after = case["before"], case["after"]
    assert before.keys() == after.keys()
    changed = {path.split("/")[0] for path in before if before[path] != after[path]}
    assert changed == {copy}
    # The case view does not depend on what this run skipped.
    assert (case["dir"] / "case.json").read_bytes() == case["first_json"]


def test_rescan_scans_again(case) -> None:
    result = toolmarks(*case["argv"], "--rescan")
    assert result.returncode == 0, result.stderr
    assert ": skipped" not in result.stderr and " 0 skipped" in result.stderr
    now = snapshot(case["dir"])
    done = {path.split("/")[0] for path in now if now[path] != case["after"][path]}
    ok = {e["name"] for e in case["view"]["images"] if e["status"] == "ok"}
    assert done == ok
    assert (case["dir"] / "case.json").read_bytes() == case["first_json"]


def test_bad_arguments(tmp_path: Path) -> None:
    assert toolmarks("batch", "-o", str(tmp_path / "c")).returncode == 2
    missing_list = toolmarks(
        "batch", "--from-list", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "c")
    )
    assert missing_list.returncode == 2 and "nope.txt" in missing_list.stderr
    (tmp_path / "file").write_text("x")
    assert toolmarks("batch", "x.E01", "-o", str(tmp_path / "file")).returncode == 2


def test_verify_md5_scans_again_and_computes_it(tmp_path: Path, demo_image) -> None:
    """The E01's chunks are checked by default; asking for the MD5 makes the
    outputs out of date, and the rescan compares the stored MD5."""
    argv = ["batch", str(demo_image["e01"]), "-o", str(tmp_path / "case")]
    first = toolmarks(*argv)
    assert first.returncode == 0, first.stderr
    (folder,) = (p for p in (tmp_path / "case").iterdir() if p.is_dir())
    check = json.loads((folder / "scan.json").read_text())["image"]["verification"]
    assert check["ok"] is True and check["computed_md5"] is None
    again = toolmarks(*argv, "--verify-md5")
    assert again.returncode == 0, again.stderr
    assert f"{folder.name}: scanned" in again.stderr
    check = json.loads((folder / "scan.json").read_text())["image"]["verification"]
    assert check["computed_md5"] == demo_image["manifest"]["volume"]["md5"]
