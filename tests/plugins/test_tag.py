"""`toolmarks tag`: plain plaso's super-timeline of the traces scenario, tagged;
stores of an older plaso tagged in their own format; a clean timeline left
alone; bad input refused with the store untouched."""

from __future__ import annotations

import collections
import hashlib
import json
import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from plaso_support import log2timeline, read_store, run, script, toolmarks

from toolmarks.engine.scan import ScanOptions, scan_image
from toolmarks.indicators import loader

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL = REPO_ROOT.parent / "shared" / "test_data" / "real"
OLD_BIN = REPO_ROOT / ".cache" / "venv-plaso-20240308" / "bin"
# Planted traces that plaso cannot see (deleted files and keys): the scan's
# alone, and said so in the README.
SCAN_ONLY = {"/Users/bob/NTUSER.DAT", "/Windows/Prefetch/SDELETE.EXE-0BADF00D.pf"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tagged(plain_store: Path, tmp_path_factory) -> tuple[Path, str]:
    store = tmp_path_factory.mktemp("tagged") / "traces.plaso"
    shutil.copy(plain_store, store)
    done = toolmarks("tag", str(store))
    assert done.returncode == 0, done.stderr
    return store, done.stdout


def _path(row: dict[str, Any]) -> str:
    """The event's file as the scan names it (plaso's NTFS paths use \\; its
    journal events' path spec names $UsnJrnl, whose $J stream they are)."""
    location = getattr(getattr(row["stream"], "path_spec", None), "location", "")
    path = (location or "").replace("\\", "/")
    if row["data"].data_type == "fs:ntfs:usn_change":
        path += ":$J"
    return path


def test_planted_traces_are_tagged(tagged, traces_images) -> None:
    store, summary = tagged
    manifest = traces_images["manifest"]
    rows = [r for r in read_store(store) if r["labels"]]
    by_file = collections.defaultdict(list)
    for row in rows:
        by_file[_path(row)].append(row)
    planted = planted_journal = 0
    for item in manifest["files"]:
        expectations = item["expect"]
        if item["path"] in SCAN_ONLY or item.get("deleted"):
            assert not by_file.get(item["path"])
            continue
        located = f"{item['path']}:{item['stream']}" if item["stream"] else item["path"]
        mine = by_file.get(located, [])
        if not expectations:
            assert not mine, item["path"]  # decoys: SAM, NOTEPAD, plaso's log
        for expect in expectations:
            if expect.get("artefact") == "deleted_key":
                continue  # a key cell in free space: plaso reads none
            if expect["data_type"] == "toolmarks:task:trace":
                continue  # plaso has no parser for task XML files
            if expect.get("artefact") == "task_cache":
                continue  # plaso's windows_task_cache plugin decodes no Actions
            kind = expect["data_type"].split(":")[1]
            if kind == "usn":
                planted_journal += 1
            else:
                planted += len(expect.get("records") or []) or expect.get("runs") or 1
            wanted = {"toolmarks", f"tool_{expect['tool']}"}
            # plaso's own events of a file, a Recycle Bin entry or a journal
            # record meet the same indicators by its content or its name.
            ioc = {"file": "string", "recyclebin": "filename", "usn": "filename"}
            wanted.add(f"ioc_{ioc.get(kind, kind)}")
            hits = [r for r in mine if wanted <= set(r["labels"])]
            assert hits, (item["path"], expect["indicator"])
            if kind == "prefetch":
                assert len(hits) == expect["runs"]
            if kind == "eventlog":
                records = {r["data"].record_number for r in hits}
                assert records == set(expect["records"])
            if kind == "file":
                assert {r["data"].data_type for r in hits} == {"fs:stat"}
    # plaso makes one event per journal record, where toolmarks' journal
    # parser folds one file's records: SDelete's wipe is dozens of renames.
    journal = [r for r in rows if r["data"].data_type == "fs:ntfs:usn_change"]
    for row in journal:
        name = row["data"].filename
        if "tool_wce" in row["labels"]:
            assert name.lower() == "wceaux.dll"
        else:
            assert "tool_sdelete" in row["labels"]
            assert re.fullmatch(r"(sdele)?([A-Z])\2*\.?\2*", name), name
    # Near the planted traces: plaso makes two events of a record (written and
    # creation time) and of a ShimCache entry (its file's and its key's time).
    assert len(journal) >= planted_journal
    assert planted <= len(rows) - len(journal) <= 2 * planted
    # The events parsed out of the SYSTEM hive whose file matched a YARA rule
    # carry its yara_match, and are not tagged for it.
    for row in by_file["/Windows/System32/config/SYSTEM"]:
        if row["data"].data_type != "fs:stat":
            assert "ioc_string" not in row["labels"]
    assert f"{len(rows)} meet toolmarks indicators, {len(rows)} newly tagged" in (
        summary
    )
    assert "tagged events per tool:\n  dbgview: " in summary


def test_tags_in_pinfo_psort_and_timesketch_jsonl(tagged, tmp_path: Path) -> None:
    store, _ = tagged
    rows = [r for r in read_store(store) if r["labels"]]
    counts = collections.Counter(label for r in rows for label in r["labels"])
    copy = tmp_path / store.name
    shutil.copy(store, copy)
    done = run(
        script("pinfo"), "--sections", "events", "--output_format", "json", str(copy)
    )
    assert done.returncode == 0, done.stderr
    stored = json.loads(done.stdout)["storage_counters"]["event_labels"]
    for label, number in counts.items():
        assert stored[label] == number
    out = tmp_path / "timesketch.jsonl"
    log = str(tmp_path / "psort.log.gz")
    done = run(
        script("psort"), "--logfile", log, "-o", "json_line", "-w", str(out), str(copy)
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    tagged_lines = [
        x for x in lines if "toolmarks" in (x.get("tag") or {}).get("labels", [])
    ]
    assert len(tagged_lines) == len(rows)


def test_twice_adds_nothing(tagged, tmp_path: Path) -> None:
    store, _ = tagged
    copy = tmp_path / store.name
    shutil.copy(store, copy)
    before = sha256(copy)
    done = toolmarks("tag", str(copy))
    assert done.returncode == 0, done.stderr
    assert "0 newly tagged" in done.stdout
    assert sha256(copy) == before


def test_shares_read_in_several_processes_tag_the_same(
    plain_store, tagged, tmp_path: Path, monkeypatch
) -> None:
    """The event data cut into three shares, two of them read by forked
    workers: the same tags, byte for byte, as one process."""
    from toolmarks.indicators.compiler import compile_set
    from toolmarks.plugins import tag

    store, _ = tagged
    copy = tmp_path / "shared.plaso"
    shutil.copy(plain_store, copy)
    monkeypatch.setattr(tag, "_MIN_SHARE", 1)
    outcome = tag.tag_store(str(copy), compile_set(loader.load([])), workers=3)
    assert outcome.tagged == outcome.newly_tagged > 0

    def tag_rows(path: Path) -> list[tuple]:
        connection = sqlite3.connect(path)
        rows = connection.execute(
            "SELECT * FROM event_tag ORDER BY _identifier"
        ).fetchall()
        rows += connection.execute(
            "SELECT * FROM event_label_count ORDER BY _identifier"
        ).fetchall()
        connection.close()
        return rows

    assert tag_rows(copy) == tag_rows(store)


def test_psort_analysis_tags_the_same(plain_store, tagged, tmp_path: Path) -> None:
    store, _ = tagged
    copy = tmp_path / "analysed.plaso"
    shutil.copy(plain_store, copy)
    done = toolmarks(
        "psort",
        "--analysis",
        "toolmarks",
        "--logfile",
        str(tmp_path / "psort.log.gz"),
        "-o",
        "null",
        str(copy),
    )
    assert done.returncode == 0, done.stdout + done.stderr

    def tags(path: Path) -> collections.Counter:
        return collections.Counter(
            (r["event"].timestamp, r["data"].data_type, tuple(sorted(r["labels"])))
            for r in read_store(path)
            if r["labels"]
        )

    assert tags(copy) == tags(store)


def test_old_plaso_store_tagged_in_its_own_format(traces_images, tmp_path) -> None:
    """A store of plaso 20240308 (format 20230327), which plaso 20260720 cannot
    read, tagged and read back by that plaso's own psort."""
    store = tmp_path / "old.plaso"
    log2timeline(
        str(OLD_BIN / "log2timeline"),
        store,
        str(traces_images["raw"]),
        "--parsers",
        "prefetch,winevtx",
    )
    done = toolmarks("tag", str(store))
    assert done.returncode == 0, done.stderr
    assert "format 20230327" in done.stdout
    out = tmp_path / "old.csv"
    done = run(
        str(OLD_BIN / "psort"),
        "--logfile",
        str(tmp_path / "psort.log.gz"),
        "-o",
        "dynamic",
        "--fields",
        "datetime,data_type,tag",
        "-w",
        str(out),
        str(store),
    )
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    prefetch = [x for x in lines if "windows:prefetch" in x and "tool_sdelete" in x]
    evtx = [x for x in lines if "windows:evtx" in x and "tool_pwdump" in x]
    assert len(prefetch) == 5  # SDELETE.EXE's five run times
    assert len(evtx) == 14  # 7 service installs, written and creation time
    assert sum("toolmarks" in x for x in lines) == 19


def test_clean_timeline_gets_no_tag(tmp_path: Path) -> None:
    """plaso's own test image (MANIFEST: no tool traces)."""
    store = tmp_path / "clean.plaso"
    log2timeline(
        script("log2timeline"),
        store,
        str(REAL / "images" / "image.qcow2"),
        "--hashers",
        "md5,sha1,sha256",
    )
    before = sha256(store)
    done = toolmarks("tag", str(store))
    assert done.returncode == 0, done.stderr
    assert "0 meet toolmarks indicators" in done.stdout
    assert sha256(store) == before


def test_bad_input(tmp_path: Path, plain_store: Path) -> None:
    text = tmp_path / "notes.plaso"
    text.write_text("not a plaso store\n")
    before = sha256(text)
    done = toolmarks("tag", str(text))
    assert done.returncode == 2
    assert str(text) in done.stderr and sha256(text) == before
    # A bad indicator set is refused before any store is opened.
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nhashes: [{id: x.md5.a, type: md5, value: zz}]\n")
    copy = tmp_path / "store.plaso"
    shutil.copy(plain_store, copy)
    before = sha256(copy)
    done = toolmarks("tag", "--indicators", str(bad), str(copy))
    assert done.returncode == 2
    assert "bad indicator files" in done.stderr and str(bad) in done.stderr
    assert sha256(copy) == before


def _tools_by_file(rows: list[dict[str, Any]], path_of) -> set[tuple[str, str]]:
    return {
        (path_of(r), label.removeprefix("tool_"))
        for r in rows
        for label in r["labels"] or []
        if label.startswith("tool_")
    }


def test_three_fronts_compared(traces_images, tagged, front_store) -> None:
    """toolmarks scan, toolmarks log2timeline and plain log2timeline + toolmarks
    tag on one image: which tool each names in which file. Every difference is
    a row of the README's table."""
    result, _ = scan_image(str(traces_images["raw"]), loader.load(), ScanOptions())
    # Leads name no tool (tests/parsers/test_leads.py).
    scan = {(t.source, m.tool) for t in result.traces for m in t.matches if m.tool}

    def own_path(row: dict[str, Any]) -> str:
        source = getattr(row["data"], "source_location", None)
        return source or _path(row)

    front = _tools_by_file(read_store(front_store), own_path)
    plain = _tools_by_file(read_store(tagged[0]), _path)
    # Deleted files: plaso hands none to its parsers, hashers or YARA.
    assert scan - front == {
        ("/Users/bob/NTUSER.DAT", "dbgview"),
        ("/Users/bob/NTUSER.DAT", "sdelete"),
        ("/Windows/Prefetch/SDELETE.EXE-0BADF00D.pf", "sdelete"),
    }
    assert front <= scan
    # A deleted key (PWDumpX's service, in SYSTEM's free cells): toolmarks'
    # registry parser carves it, plaso's winreg plugins read live keys only.
    # A task XML file: plaso has no parser for them (only for .job files).
    # A TaskCache task (SOFTWARE): plaso's windows_task_cache plugin does not
    # decode the Actions value, so its events name no program to match.
    assert front - plain == {
        ("/Windows/System32/config/SYSTEM", "pwdump"),
        ("/Windows/System32/Tasks/Microsoft/Windows/Maintenance/Cleanup", "pwdump"),
        ("/Windows/System32/config/SOFTWARE", "pwdump"),
    }
    assert plain <= front
