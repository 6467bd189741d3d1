"""A worker killed mid-scan leaves its private folder beside the image's: the
next scan of that image removes it once it is older than the task time limit
(its task was stopped), never a younger one (a task may still write it)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from toolmarks.engine import distributed
from toolmarks.engine.batch import BatchOptions
from toolmarks.engine.scan import ScanOptions
from toolmarks.indicators import loader


def test_stale_private_folders_are_removed(demo_image, tmp_path: Path) -> None:
    root = tmp_path / "evidence"
    (root / "case").mkdir(parents=True)
    shutil.copy(demo_image["e01"], root / "demo.E01")
    stale = root / "case" / ".demo.E01.partial-0123456789ab"
    young = root / "case" / ".demo.E01.partial-ba9876543210"
    other = root / "case" / ".other.E01.partial-0123456789ab"
    for folder in (stale, young, other):
        folder.mkdir()
        (folder / "timeline.jsonl").write_text("{}\n")
    limit = 3600
    old = time.time() - limit - 60
    for folder in (stale, other):
        os.utime(folder, (old, old))
    payload = distributed._payload(
        "demo.E01",
        "case/demo.E01",
        loader.load(),
        [],
        True,
        BatchOptions(scan=ScanOptions(workers=1), verify=False),
        False,
        "toolmarks batch demo.E01",
    )
    job = distributed.Job.from_payload(payload, root)
    result = distributed.run_job(job, root, stale_after=limit)
    assert result.status == "ok"
    assert (root / "case" / "demo.E01" / "findings.json").is_file()
    assert not stale.exists()
    # A younger folder may be a running task's; another image's is not ours.
    assert young.is_dir() and other.is_dir()
