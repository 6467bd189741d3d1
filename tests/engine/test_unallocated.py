"""--unallocated: strings in the clusters no file owns, checked against The Sleuth
Kit's own view of the allocation (blkls, istat)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from toolmarks.engine.scan import ScanOptions, scan_image
from toolmarks.evidence import Evidence
from toolmarks.indicators import loader
from toolmarks.parsers.content import DATA_TYPE_UNALLOCATED

CLUSTER = 4096
WCE = b"Windows Credentials Editor"
ZXHTTP = "ZXHttpServer".encode("utf-16-le")
DELETED = "/Users/alice/AppData/Local/Temp/deleted_gm.tmp"


def free_clusters(image: Path, *args: str) -> list[int]:
    """The unallocated clusters as `blkls -l` lists them."""
    lines = subprocess.run(
        ["blkls", "-l", *args, str(image)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return [int(line.split("|")[0]) for line in lines if line.endswith("|f")]


def istat_clusters(image: Path, inode: int) -> list[int]:
    text = subprocess.run(
        ["istat", str(image), str(inode)], capture_output=True, text=True, check=True
    ).stdout
    tail = text.split("Type: $DATA", 1)[1].split("\n", 1)[1]
    return [int(n) for n in tail.split("Type:", 1)[0].split()]


def unallocated_matches(image: Path, **options) -> list[tuple[str, int, str]]:
    result, _ = scan_image(str(image), loader.load(), ScanOptions(**options))
    return sorted(
        (match.indicator, dict(match.detail)["volume_offset"], trace.source)
        for trace in result.traces
        if trace.data_type == DATA_TYPE_UNALLOCATED
        for match in trace.matches
    )


def test_free_space_is_the_sleuth_kits(workstation_images) -> None:
    sector = 512
    for name in ("raw", "mbr"):
        image = workstation_images[name]
        with Evidence(str(image)) as evidence:
            volume = next(v for v in evidence.volumes() if v.fs_type == "NTFS")
            cluster_size, extents = evidence.free_space(volume)
        assert cluster_size == CLUSTER
        ours = [c for o, n in extents for c in range(o // CLUSTER, (o + n) // CLUSTER)]
        offset = ("-o", str((volume.offset or 0) // sector))
        assert ours == free_clusters(image, *offset), image


def test_strings_in_unallocated_clusters(tmp_path: Path, workstation_images) -> None:
    original = workstation_images["raw"]
    free = free_clusters(original)
    deleted = next(
        f for f in workstation_images["manifest"]["files"] if f["path"] == DELETED
    )
    deleted_clusters = istat_clusters(original, deleted["mft_entry"])
    assert set(deleted_clusters) <= set(free)  # a deleted file's data is free space
    # Plant WCE in the last free cluster, and ZXHttpServer (UTF-16LE) across
    # the first 64 KiB region boundary of the last free extent.
    last = free[-1]
    first = last
    while first - 1 in free:
        first -= 1
    assert last - first > 32
    wce_at = last * CLUSTER + 100
    zx_at = first * CLUSTER + 65536 - 7
    image = tmp_path / "free.raw"
    shutil.copy(original, image)
    with image.open("r+b") as handle:
        handle.seek(wce_at)
        handle.write(WCE)
        handle.seek(zx_at)
        handle.write(ZXHTTP)

    found = unallocated_matches(image, unallocated=True, region_size=65536)
    assert found == unallocated_matches(
        image, unallocated=True, region_size=65536, workers=2
    )
    offsets = {(indicator, offset) for indicator, offset, _ in found}
    assert ("wce.string.credentials_editor", wce_at) in offsets
    assert ("zxhttpserver.string.name", zx_at) in offsets
    # The deleted file's string is found in its (free) clusters too.
    assert any(
        indicator == "getmail.string.crazy_profile"
        and offset // CLUSTER in deleted_clusters
        for indicator, offset, _ in found
    )
    # Every hit is real: the string is at that offset, in a free cluster.
    indicator_set = loader.load()
    data = image.read_bytes()
    for indicator_id, offset, source in found:
        value = indicator_set.indicator(indicator_id).fields["value"]
        here = data[offset : offset + 2 * len(value)]
        assert here.lower().startswith(
            value.lower().encode()
        ) or here.lower().startswith(value.lower().encode("utf-16-le")), (
            indicator_id,
            offset,
        )
        assert offset // CLUSTER in free
        first_byte, last_byte = map(int, source.split()[-1].rstrip(">").split("-"))
        assert first_byte <= offset <= last_byte
    # Off by default.
    assert unallocated_matches(image) == []


def test_non_ntfs_volumes_are_said_not_scanned(real_data) -> None:
    image = real_data / "images" / "image.E01"
    result, _ = scan_image(
        str(image), loader.load(), ScanOptions(unallocated=True, workers=1)
    )
    assert any("unallocated space not scanned" in w["message"] for w in result.warnings)
