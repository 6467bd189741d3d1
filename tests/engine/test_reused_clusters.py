"""A deleted file's hits say when its clusters belong to another entry now."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from toolmarks.engine.scan import ScanOptions, scan_image
from toolmarks.indicators import loader

DELETED = "/Users/alice/AppData/Local/Temp/deleted_gm.tmp"


def _istat_clusters(image: Path, inode: int) -> list[int]:
    """The clusters of an entry's $DATA as The Sleuth Kit's istat lists them."""
    text = subprocess.run(
        ["istat", str(image), str(inode)], capture_output=True, text=True, check=True
    ).stdout
    tail = text.split("Type: $DATA", 1)[1].split("\n", 1)[1]
    return [int(n) for n in re.findall(r"\d+", tail.split("Type:", 1)[0])]


def _reused_by_trace(image: Path) -> dict[str, set[str]]:
    result, _ = scan_image(str(image), loader.load(), ScanOptions(workers=1))
    found: dict[str, set[str]] = {}
    for trace in result.traces:
        found.setdefault(trace.source, set()).add(
            trace.attributes.get("reused_clusters", "")
        )
    return found


def test_hits_in_reused_clusters_are_marked(tmp_path: Path, workstation_images):
    manifest = workstation_images["manifest"]
    victim = next(f for f in manifest["files"] if f["path"] == DELETED)
    assert victim["allocated"] is False
    original = workstation_images["raw"]
    # Untouched, no hit of the image is in reused clusters.
    assert all(v == {""} for v in _reused_by_trace(original).values())

    # Mark some of the deleted file's clusters allocated in $Bitmap, as they
    # would be once another file took them: its 3rd to 5th and its last.
    all_clusters = _istat_clusters(original, victim["mft_entry"])
    assert len(all_clusters) == victim["size"] // 4096 == 12
    clusters = all_clusters[2:5] + all_clusters[-1:]
    bitmap_cluster = _istat_clusters(original, 6)[0]
    image = tmp_path / "reused.raw"
    shutil.copy(original, image)
    with image.open("r+b") as handle:
        for cluster in clusters:
            handle.seek(bitmap_cluster * 4096 + cluster // 8)
            byte = handle.read(1)[0]
            handle.seek(-1, 1)
            handle.write(bytes([byte | 1 << (cluster % 8)]))

    found = _reused_by_trace(image)
    expected = (
        "bytes 8192-20479, 45056-49151 of this deleted stream lie in clusters "
        "allocated to another entry now: what was read there may be that "
        "entry's content"
    )
    assert found.pop(DELETED) == {expected}
    assert all(v == {""} for v in found.values())
