"""Items walked in one process and read in another (the local worker pool),
and NTFS content read through libfsntfs.

The main process walks a TSK volume once and hands each item over as a key;
a worker's own Evidence of the image makes the item again and opens it by
inode. What a worker reads must be exactly what the walk's own item reads, and
a scan with workers must find exactly what a one-process scan finds. NTFS
streams TSK lists are read through libfsntfs: byte for byte what TSK reads.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import evidence_images as images
import pytest
from dfvfs.resolver import resolver

from toolmarks.engine import wire
from toolmarks.engine.scan import ScanOptions, count_totals, not_read, scan_image
from toolmarks.evidence import Evidence, fsntfs
from toolmarks.indicators import loader
from toolmarks.output.timeline import sort_key


@pytest.fixture(scope="module")
def handover_images(built: Path, traces_images: dict[str, Any]) -> list[Path]:
    """Deleted files and an ADS; 2,000 files with deleted ones and a deleted
    folder; a file TSK cannot load (read through libfsntfs); a compressed file;
    500 ADS past TSK's attribute list limits; the traces scenario (hives,
    prefetch)."""
    made = []
    for build in (
        images.build_ntfs,
        images.build_many_ntfs,
        build_ntfs_sparse_stream,
        build_ntfs_compressed,
        images.build_ntfs_many_streams,
    ):
        path = built / f"handover-{build.__name__}.img"
        if not path.exists():
            build(path)
        made.append(path)
    return [*made, Path(traces_images["raw"])]


def build_ntfs_sparse_stream(path: Path) -> None:
    """build_ntfs's image and /notes.txt, whose sparse stream "hidden" is
    larger than the volume: TSK gives up on the entry, libfsntfs reads it all."""
    images.build_ntfs(path)
    with images.ntfs_mount(path, streams=True) as mount_point:
        (mount_point / "notes.txt").write_bytes(images.SPARSE_NOTES)
        with open(f"{mount_point}/notes.txt:hidden", "wb") as hidden:
            hidden.seek(images.SPARSE_ADS_AT)
            hidden.write(images.SPARSE_HEAD)
            hidden.truncate(images.SPARSE_ADS_SIZE)


# FILE_ATTRIBUTE_COMPRESSED: ntfs-3g compresses what is written in a folder
# that has it (LZNT1, 4 KiB clusters).
COMPRESSED_FOLDER = 0x800
COMPRESSED = b"Windows Credentials Editor " * 20000


def build_ntfs_compressed(path: Path) -> None:
    """build_ntfs's image and /packed/wce.txt, an NTFS-compressed file."""
    images.build_ntfs(path)
    with images.ntfs_mount(path) as mount_point:
        packed = mount_point / "packed"
        packed.mkdir()
        os.setxattr(
            packed, "system.ntfs_attrib_be", COMPRESSED_FOLDER.to_bytes(4, "big")
        )
        (packed / "wce.txt").write_bytes(COMPRESSED)


def digest(item: Any) -> str:
    """SHA-256 of the item's content, or why it cannot be read."""
    try:
        with item.open() as stream:
            return hashlib.sha256(stream.read()).hexdigest()
    except OSError as error:
        return f"error: {error}"


FIELDS = (
    "path",
    "stream",
    "inode",
    "size",
    "allocated",
    "is_file",
    "is_dir",
    "reallocated",
    "has_metadata",
    "location",
    "reopen",
    "display_path",
)


def test_every_item_reads_the_same_once_handed_over(
    handover_images: list[Path],
) -> None:
    for image in handover_images:
        with Evidence(image, warn=lambda *_: None) as walker:
            walked = [
                (volume.label, Evidence.hand_over(item), item, digest(item))
                for volume in walker.volumes()
                for item in walker.walk(volume)
            ]
        # The keys cross a process boundary in a pickle.
        keys = pickle.loads(pickle.dumps([(label, key) for label, key, *_ in walked]))
        with Evidence(image, warn=lambda *_: None) as worker:
            volumes = {volume.label: volume for volume in worker.volumes()}
            for (label, key), (_, _, item, content) in zip(keys, walked):
                again = worker.taken_over(volumes[label], key)
                for field in FIELDS:
                    assert getattr(again, field) == getattr(item, field), (
                        image.name,
                        item.display_path,
                        field,
                    )
                assert dict(again.times) == dict(item.times), item.display_path
                assert digest(again) == content, (image.name, item.display_path)
        if "sparse" in image.name:
            # What libfsntfs reads for TSK is handed over too.
            assert any(i.reopen[0] == "fsntfs" for *_, i, _ in walked if i.reopen)


def listed(notes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(notes, key=str)


def timeline(result: Any) -> list[dict[str, Any]]:
    """The traces as the outputs hold them: in timeline order."""
    return [wire.encode_trace(t) for t in sorted(result.traces, key=sort_key)]


def test_workers_find_what_one_process_finds(handover_images: list[Path]) -> None:
    shipped = loader.load([], shipped=True)
    for image in handover_images:
        one, _ = scan_image(str(image), shipped, ScanOptions(workers=1))
        # Every image but the 2,000 plain files holds a planted tool's trace.
        assert one.traces or "many_ntfs" in image.name, image.name
        for workers in (2, 3):
            many, _ = scan_image(str(image), shipped, ScanOptions(workers=workers))
            what = (image.name, workers)
            assert timeline(many) == timeline(one), what
            assert many.counts == one.counts, what
            # Shares report in their own order; the walk's warnings come first.
            for name in ("unreadable", "skipped", "not_checked", "warnings"):
                assert listed(getattr(many, name)) == listed(getattr(one, name)), what


def test_libfsntfs_reads_what_tsk_reads(
    handover_images: list[Path], images_dir: Path
) -> None:
    """Every stream toolmarks reads through libfsntfs, against dfvfs' TSK back
    end reading the item's own TSK path spec."""
    sources = [(image, "none") for image in handover_images]
    sources += [(images_dir / "vsstest.qcow2", "all")]
    sources += [(images_dir / "windows_volume.qcow2", "none")]
    compared, compressed = 0, False
    for image, vss in sources:
        with Evidence(image, vss=vss, warn=lambda *_: None) as evidence:
            for volume in evidence.volumes():
                for item in evidence.walk(volume):
                    if not item.reopen or item.reopen[0] != "tsk" or not item.size:
                        continue
                    if item.path == "/$BadClus":
                        # Initialized size 0: TSK reads nothing, the volume's
                        # size of zeros for toolmarks (TSKStream) and libfsntfs.
                        continue
                    with item.open() as stream:
                        assert isinstance(stream, fsntfs.FsntfsStream), item
                        ours = stream.read()
                    tsk = resolver.Resolver.OpenFileObject(item.path_spec)
                    assert tsk.read(item.size) == ours, (image.name, item.display_path)
                    compared += 1
                    compressed |= ours == COMPRESSED
    # Deleted files, ADS, hives, VSS stores and the compressed file were in.
    assert compared > 2000 and compressed


def test_progress_totals_of_ntfs_come_from_the_mft(handover_images: list[Path]) -> None:
    """The progress bar's totals read the $MFT records in order instead of
    walking the volume: the bytes are those the scan reads, the entries within
    a few (records of NTFS' own the walk does not list, and the reverse)."""
    options = ScanOptions()
    for image in handover_images:
        entries, size = count_totals(str(image), options)
        walked = read = 0
        with Evidence(image, warn=lambda *_: None) as evidence:
            for volume in evidence.volumes():
                for item in evidence.walk(volume):
                    walked += 1
                    read += 0 if not_read(item, options) else item.size
        assert size == read, image.name
        assert abs(entries - walked) <= 8, (image.name, entries, walked)
