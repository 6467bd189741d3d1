"""Every real test image opens, and its walk matches fls and the MANIFEST facts."""

from __future__ import annotations

import collections
import hashlib
from pathlib import Path

import pytest
from evidence_fls import parse_fls, run_fls, walk_listing

from toolmarks.evidence import Evidence, EvidenceError, FileItem, Volume

EXT_FILES = {
    "/a_directory/another_file": 22,
    "/a_directory/a_file": 53,
    "/passwords.txt": 116,
}


def _open(path: Path, **kwargs: str) -> tuple[Evidence, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    evidence = Evidence(
        path, warn=lambda where, what: problems.append((where, what)), **kwargs
    )
    return evidence, problems


def _volume(evidence: Evidence, label: str) -> Volume:
    by_label = {volume.label: volume for volume in evidence.volumes()}
    assert label in by_label, f"no volume {label!r} in {sorted(by_label)}"
    return by_label[label]


def _items(evidence: Evidence, label: str) -> dict[str, FileItem]:
    items = list(evidence.walk(_volume(evidence, label)))
    by_path: dict[str, FileItem] = {}
    for item in items:
        if item.allocated:
            by_path[item.path + (f":{item.stream}" if item.stream else "")] = item
    return by_path


def _read(item: FileItem) -> bytes:
    with item.open() as stream:
        return stream.read()


def _check_readable(item: FileItem) -> None:
    """Reads the item, or its head and tail if it is large (e.g. sparse $Bad)."""
    with item.open() as stream:
        if item.size <= 1 << 20:
            assert len(stream.read()) == item.size, item.display_path
            return
        assert len(stream.read(1 << 20)) == 1 << 20, item.display_path
        stream.seek(item.size - 4096)
        assert len(stream.read(8192)) == 4096, item.display_path
        assert stream.tell() == item.size


# (image, label, fls source: the image files or a raw copy key, sector offset)
FLS_CASES = [
    ("image.E01", "", ["image.E01"], None),
    ("image-split.E01", "p5", ["image-split.E01", "image-split.E02"], 352),
    ("tsk_volume_system.raw", "p5", ["tsk_volume_system.raw"], 352),
    ("imynd.dd", "", ["imynd.dd"], None),
    ("image.vmdk", "", ["image.vmdk"], None),
    ("image.vhd", "", ["image.vhd"], None),
    ("image.qcow2", "", "image.qcow2", None),
    ("windows_volume.qcow2", "", "windows_volume.qcow2", None),
    ("vsstest.qcow2", "", "vsstest.qcow2", None),
    ("vsstest.qcow2", "vss1", "vsstest.qcow2/vss1", None),
    ("vsstest.qcow2", "vss2", "vsstest.qcow2/vss2", None),
]

# Entries (file entries, named data streams) fls lists; checked against the
# walk and pinned so that a silent change of either side shows up.
EXPECTED_COUNTS = {
    ("image.E01", ""): (10, 0),
    ("image-split.E01", "p5"): (2, 0),
    ("tsk_volume_system.raw", "p5"): (2, 0),
    ("imynd.dd", ""): (10, 0),
    ("image.vmdk", ""): (9, 0),
    ("image.vhd", ""): (10, 0),
    ("image.qcow2", ""): (10, 0),
}


@pytest.mark.parametrize(
    ("image", "label", "source", "offset"),
    FLS_CASES,
    ids=[f"{case[0]}:{case[1] or '-'}" for case in FLS_CASES],
)
def test_walk_matches_fls(
    images_dir: Path,
    raw_copies: dict[str, Path],
    image: str,
    label: str,
    source: list[str] | str,
    offset: int | None,
) -> None:
    if isinstance(source, str):
        fls_images = [raw_copies[source]]
    else:
        fls_images = [images_dir / name for name in source]
    expected = parse_fls(run_fls(fls_images, offset))

    evidence, problems = _open(images_dir / image, vss="all")
    items = list(evidence.walk(_volume(evidence, label)))
    got = walk_listing(items)

    assert got[0] == expected[0], (
        f"entries only in fls: {expected[0] - got[0]}; only in walk: {got[0] - expected[0]}"
    )
    assert got[1] == expected[1], (
        f"streams only in fls: {expected[1] - got[1]}; only in walk: {got[1] - expected[1]}"
    )
    counts = (sum(expected[0].values()), sum(expected[1].values()))
    if (image, label) in EXPECTED_COUNTS:
        assert counts == EXPECTED_COUNTS[(image, label)]
    assert counts[0] > 0
    # Every listed item can be described and, if it is a file with data, read.
    for item in items:
        assert item.display_path
        if item.is_file and item.has_metadata and item.allocated:
            _check_readable(item)
    assert not [p for p in problems if "directory" in p[1]]


@pytest.mark.parametrize("name", ["image.E01", "imynd.dd", "image.qcow2", "image.vhd"])
def test_small_ext2_image_facts(images_dir: Path, name: str) -> None:
    evidence, _ = _open(images_dir / name)
    (volume,) = evidence.volumes()
    assert (volume.label, volume.fs_type, volume.offset) == ("", "EXT", 0)
    items = _items(evidence, "")
    for path, size in EXT_FILES.items():
        assert items[path].size == size
        assert items[path].is_file
        assert len(_read(items[path])) == size
    assert _read(items["/passwords.txt"]).splitlines()[0] == b"place,user,password"
    assert items["/lost+found"].is_dir and not items["/lost+found"].is_file
    assert items["/a_directory/a_file"].inode == 14
    # ext2 has no creation time; the other three are there.
    assert set(items["/passwords.txt"].times) == {"modification", "access", "change"}
    everything = list(evidence.walk(volume))
    deleted = {item.path for item in everything if not item.allocated}
    assert {"/a_directory/another_file~", "/passwords.txt~"} <= deleted
    backup = next(item for item in everything if item.path == "/passwords.txt~")
    assert (backup.has_metadata, backup.inode, backup.size) == (False, None, 0)
    with pytest.raises(OSError, match="without metadata"):
        backup.open()


def test_image_vmdk_facts(images_dir: Path) -> None:
    evidence, _ = _open(images_dir / "image.vmdk")
    assert evidence.image_info["format"] == "vmdk"
    assert evidence.image_info["size"] == 102400
    items = _items(evidence, "")
    link = items["/a_link"]
    assert not link.is_file and not link.is_dir
    for path, size in EXT_FILES.items():
        assert items[path].size == size


def test_image_vhd_and_qcow_info(images_dir: Path) -> None:
    vhd, _ = _open(images_dir / "image.vhd")
    assert (vhd.image_info["format"], vhd.image_info["size"]) == ("vhd", 104448)
    qcow, _ = _open(images_dir / "image.qcow2")
    assert (qcow.image_info["format"], qcow.image_info["size"]) == ("qcow", 102400)
    raw, _ = _open(images_dir / "imynd.dd")
    assert (raw.image_info["format"], raw.image_info["size"]) == ("raw", 102400)


def test_image_e01_metadata(images_dir: Path) -> None:
    evidence, _ = _open(images_dir / "image.E01")
    info = evidence.image_info
    assert info["format"] == "ewf"
    assert info["size"] == 102400
    assert info["md5"] == "d73c51f10c7ee6a681b7b619ccc6f1c4"
    acquisition = info["acquisition"]
    assert acquisition["case_number"] == "PyVFS"
    assert acquisition["description"] == "Test image for PyVFS"
    assert acquisition["examiner_name"] == "John Doe"
    assert acquisition["evidence_number"] == "image.dd"
    assert acquisition["notes"] == "Notes on test image for PyVFS"
    assert acquisition["acquiry_date"] == "Tue Dec 10 11:28:38 2013"
    assert acquisition["acquiry_software_version"] == "20131210"
    # The stored MD5 is that of the decoded media.
    with evidence.open_media() as media:
        assert hashlib.md5(media.read()).hexdigest() == info["md5"]


@pytest.mark.parametrize("name", ["image-split.E01", "tsk_volume_system.raw"])
def test_mbr_disk_with_logical_partition(images_dir: Path, name: str) -> None:
    evidence, problems = _open(images_dir / name)
    info = evidence.image_info
    assert info["size"] == 1474560
    assert info["partition_table"] == "MBR"
    partitions = {part["label"]: part for part in info["partitions"]}
    assert sorted(partitions) == ["p1", "p5"]
    assert (partitions["p1"]["offset"], partitions["p1"]["size"]) == (512, 350 * 512)
    assert partitions["p1"]["fs_type"] is None
    assert (partitions["p5"]["offset"], partitions["p5"]["size"]) == (
        180224,
        2528 * 512,
    )
    assert partitions["p5"]["fs_type"] == "EXT"
    (volume,) = evidence.volumes()
    assert (volume.label, volume.fs_type, volume.offset) == ("p5", "EXT", 180224)
    assert volume.size == 2528 * 512
    assert ("p1", "no supported file system found") in problems
    items = _items(evidence, "p5")
    assert items["/lost+found"].is_dir
    assert items["/lost+found"].display_path == "p5:/lost+found"
    # Selecting only the partition without a file system leaves nothing.
    with pytest.raises(EvidenceError, match="no file system found in the selected"):
        Evidence(images_dir / name, partitions="1", warn=lambda *_: None)
    only, _ = _open(images_dir / name, partitions="5")
    assert [volume.label for volume in only.volumes()] == ["p5"]


def test_split_ewf_metadata(images_dir: Path) -> None:
    evidence, _ = _open(images_dir / "image-split.E01")
    info = evidence.image_info
    assert info["format"] == "ewf"
    assert [Path(segment).name for segment in info["segments"]] == [
        "image-split.E01",
        "image-split.E02",
    ]
    assert info["md5"] == "38ea5af8a80e16e46c095c9110242fc0"
    acquisition = info["acquisition"]
    assert acquisition["case_number"] == "Case"
    assert acquisition["examiner_name"] == "John"
    assert acquisition["evidence_number"] == "Evidence"
    assert acquisition["notes"] == "dfVFS split EWF-E01 test file"
    # Decoding both segments gives the same media as the raw copy.
    with evidence.open_media() as media:
        decoded = media.read()
    assert decoded == (images_dir / "tsk_volume_system.raw").read_bytes()


def test_vsstest_volumes_and_stores(images_dir: Path) -> None:
    evidence, _ = _open(images_dir / "vsstest.qcow2", vss="all")
    assert evidence.image_info["format"] == "qcow"
    assert evidence.image_info["size"] == 1024**3
    volumes = evidence.volumes()
    assert [(v.label, v.fs_type, v.vss_store) for v in volumes] == [
        ("", "NTFS", None),
        ("vss1", "NTFS", 1),
        ("vss2", "NTFS", 2),
    ]
    stores = evidence.image_info["vss_stores"]
    assert [(s["store"], s["identifier"]) for s in stores] == [
        (1, "600f0b69-5bdf-11e3-9d6c-005056c00008"),
        (2, "600f0b6d-5bdf-11e3-9d6c-005056c00008"),
    ]
    assert stores[0]["creation_time"].startswith("2013-12-03T06:35:09.736378")
    assert stores[1]["creation_time"].startswith("2013-12-03T06:37:48.919058")

    current = _items(evidence, "")
    assert current["/another_file"].size == 22
    assert current["/password.txt"].size == 116
    assert _read(current["/password.txt"]).startswith(b"place,user,password\n")
    assert current["/syslog.gz"].size == 540
    assert _read(current["/syslog.gz"])[:2] == b"\x1f\x8b"
    assert current["/System Volume Information"].is_dir
    assert "/$MFT" in current and current["/$MFT"].inode == 0

    def user_files(items: dict[str, FileItem]) -> set[str]:
        return {
            path
            for path, item in items.items()
            if path.count("/") == 1 and not path.startswith("/$") and item.is_file
        }

    store1 = _items(evidence, "vss1")
    assert user_files(store1) == {"/syslog"}
    assert store1["/syslog"].size == 1247
    assert store1["/syslog"].display_path == "vss1:/syslog"
    assert len(_read(store1["/syslog"])) == 1247
    store2 = _items(evidence, "vss2")
    assert user_files(store2) == {"/another_file", "/syslog.gz"}
    assert _read(store2["/another_file"]) == _read(current["/another_file"])


def test_vss_selection(images_dir: Path) -> None:
    none, _ = _open(images_dir / "vsstest.qcow2")
    assert [volume.label for volume in none.volumes()] == [""]
    assert len(none.image_info["vss_stores"]) == 2
    second, _ = _open(images_dir / "vsstest.qcow2", vss="2")
    assert [volume.label for volume in second.volumes()] == ["", "vss2"]
    missing, problems = _open(images_dir / "vsstest.qcow2", vss="1,7")
    assert [volume.label for volume in missing.volumes()] == ["", "vss1"]
    assert any("VSS store 7 does not exist" in what for _, what in problems)


def test_windows_volume_facts(images_dir: Path) -> None:
    evidence, _ = _open(images_dir / "windows_volume.qcow2")
    (volume,) = evidence.volumes()
    assert volume.fs_type == "NTFS" and volume.backend == "TSK"
    items = _items(evidence, "")
    syslog = items["/Windows/System32/config/syslog"]
    assert syslog.size == 1247 and syslog.is_file and syslog.allocated
    assert set(syslog.times) == {"creation", "modification", "access", "change"}
    user_files = [
        path
        for path, item in items.items()
        if item.is_file and not path.startswith("/$")
    ]
    assert user_files == ["/Windows/System32/config/syslog"]
    found = evidence.lookup(volume, "/Windows/System32/config/syslog")
    assert found is not None and found.inode == syslog.inode
    assert _read(found) == _read(syslog)
    assert evidence.lookup(volume, "/Windows/System32/config/SYSTEM") is None


def test_every_real_image_opens(images_dir: Path) -> None:
    names = sorted(path.name for path in images_dir.iterdir())
    expected = {
        "image.E01",
        "image-split.E01",
        "image.vmdk",
        "image.vhd",
        "image.qcow2",
        "imynd.dd",
        "tsk_volume_system.raw",
        "vsstest.qcow2",
        "windows_volume.qcow2",
    }
    assert expected <= set(names), f"missing: {expected - set(names)}"
    for name in sorted(expected):
        evidence, _ = _open(images_dir / name, vss="all")
        counts = collections.Counter(
            item.is_dir
            for volume in evidence.volumes()
            for item in evidence.walk(volume)
        )
        # image-split.E01 and tsk_volume_system.raw hold only lost+found.
        assert counts[True] > 0, name
        if name not in ("image-split.E01", "tsk_volume_system.raw"):
            assert counts[False] > 0, name
        evidence.close()


def test_vss_inside_a_partition(vss_in_partition: tuple[Path, int]) -> None:
    disk, offset = vss_in_partition
    evidence, _ = _open(disk, vss="all")
    volumes = evidence.volumes()
    assert [(v.label, v.fs_type, v.offset, v.vss_store) for v in volumes] == [
        ("p1", "NTFS", offset, None),
        ("p1/vss1", "NTFS", offset, 1),
        ("p1/vss2", "NTFS", offset, 2),
    ]
    assert [s["volume"] for s in evidence.image_info["vss_stores"]] == ["p1", "p1"]
    store1 = _items(evidence, "p1/vss1")
    assert store1["/syslog"].display_path == "p1/vss1:/syslog"
    assert len(_read(store1["/syslog"])) == 1247
    assert "/password.txt" in _items(evidence, "p1")
    assert "/password.txt" not in _items(evidence, "p1/vss2")
