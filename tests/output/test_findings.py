"""Findings of the traces scenario: one per planted tool, with the evidence
kinds its planted files say it left, and the MANIFEST's SDelete runs; the same
image scanned twice gives byte-identical findings.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from plaso_support import toolmarks

# What each planted expectation is, as an examiner names it: (data type,
# artefact) -> evidence kind; None stands for any artefact.
KIND_OF = {
    ("toolmarks:file:match", None): "present",
    ("toolmarks:prefetch:execution", None): "executed",
    ("toolmarks:recyclebin:trace", None): "present",
    ("toolmarks:task:trace", None): "scheduled",
    ("toolmarks:registry:trace", "eula"): "accepted",
    ("toolmarks:registry:trace", "shimcache"): "listed",
    ("toolmarks:registry:trace", "service"): "installed",
    ("toolmarks:registry:trace", "task_cache"): "scheduled",
    ("toolmarks:registry:trace", "deleted_key"): "remnant",
    ("toolmarks:usn:trace", "usn_record"): "remnant",
    ("toolmarks:usn:trace", "sdelete_wipe"): "executed",
}
# MANIFEST: SDELETE.EXE-D6B20984.pf, run count 5, first and last stored runs;
# traces.yaml: the journal's wipe of passwords.txt ends (FILE_DELETE) after them.
SDELETE_FIRST_RUN = "2021-02-14T02:22:57.090417+00:00"
SDELETE_LAST_RUN = "2021-02-14T02:38:08.922573+00:00"
SDELETE_WIPE = "2021-02-14T02:38:09.260000+00:00"


def expected_kind(expect: dict[str, Any]) -> str:
    data_type = expect["data_type"]
    if data_type == "toolmarks:eventlog:trace":
        return "installed" if expect.get("event_id") in (7045, 4697) else "executed"
    return (
        KIND_OF.get((data_type, expect.get("artefact"))) or KIND_OF[(data_type, None)]
    )


@pytest.fixture(scope="module")
def scans(traces_images, tmp_path_factory) -> list[Path]:
    outs = []
    for name in ("one", "two"):
        out = tmp_path_factory.mktemp(name)
        done = toolmarks("scan", str(traces_images["raw"]), "-o", str(out), "--force")
        assert done.returncode == 0, done.stderr
        (out.parent / f"{name}.stderr").write_text(done.stderr)
        outs.append(out)
    return outs


def test_findings_match_the_planted_truth(scans, traces_images) -> None:
    document = json.loads((scans[0] / "findings.json").read_text())
    assert document["schema"] == "toolmarks-findings/1"
    planted: dict[str, set[str]] = {}
    for item in traces_images["manifest"]["files"]:
        for expect in item["expect"]:
            planted.setdefault(expect["tool"], set()).add(expected_kind(expect))
    found = {f["tool"]: set(f["evidence"]) for f in document["findings"]}
    assert found == planted


def test_sdelete_runs_as_the_manifest_says(scans) -> None:
    document = json.loads((scans[0] / "findings.json").read_text())
    sdelete = next(f for f in document["findings"] if f["tool"] == "sdelete")
    assert sdelete["strongest"] == "executed"
    assert sdelete["dual_use"] is True
    assert sdelete["statement"].startswith("executed 5 times between 2021-02-14 02:22")
    assert "legitimate use is possible" in sdelete["statement"]
    executed = sdelete["evidence"]["executed"]
    assert (executed["first"], executed["last"]) == (SDELETE_FIRST_RUN, SDELETE_WIPE)
    assert SDELETE_LAST_RUN < SDELETE_WIPE
    # Two prefetch files (one deleted) of 5 runs each, and the wipe.
    assert executed["events"] == 11
    assert (sdelete["first"], sdelete["last"]) == (
        "2018-11-15T15:33:40.889690+00:00",  # MANIFEST: sdelete.exe's ShimCache time
        # The planted SDelete EULA key: hivexsh gives it the time of its parent,
        # Software\\Sysinternals (MANIFEST: written up to 13:46:55.569667Z).
        "2022-02-14T13:46:55.569667+00:00",
    )


def test_findings_are_deterministic_and_summarised(scans) -> None:
    one, two = (out / "findings.json" for out in scans)
    assert one.read_bytes() == two.read_bytes()
    document = json.loads(one.read_text())
    stderr = (scans[0].parent / "one.stderr").read_text().splitlines()
    # One line per tool at the end of the scan, in the findings' order.
    lines = [
        line
        for line in stderr
        if line.split(":")[1:2] in ([f" {f['tool']}"] for f in document["findings"])
    ]
    assert lines == [
        f"toolmarks: {f['tool']}: {f['statement']} ({f['events']} events)"
        for f in document["findings"]
    ]
    summary = json.loads((scans[0] / "scan.json").read_text())
    assert "findings.json" in summary["outputs"]
