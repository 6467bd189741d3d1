"""Images built by the tests: NTFS (deleted file, ADS), FAT16, GPT, E01, split raw."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import evidence_images as images
import pytest
from evidence_fls import parse_fls, run_fls, walk_listing

from toolmarks.evidence import Evidence, FileItem

NOW = time.time()


def _by_key(evidence: Evidence, label: str = "") -> dict[tuple[str, str], FileItem]:
    volume = next(v for v in evidence.volumes() if v.label == label)
    return {(item.path, item.stream): item for item in evidence.walk(volume)}


def _read(item: FileItem) -> bytes:
    with item.open() as stream:
        return stream.read()


def _assert_matches_fls(evidence: Evidence, label: str, image: Path, offset=None):
    volume = next(v for v in evidence.volumes() if v.label == label)
    expected = parse_fls(run_fls([image], offset))
    got = walk_listing(evidence.walk(volume))
    assert got == expected


def test_ntfs_plain_ads_deleted(ntfs_image: Path) -> None:
    evidence = Evidence(ntfs_image)
    (volume,) = evidence.volumes()
    assert (volume.label, volume.fs_type, volume.backend) == ("", "NTFS", "TSK")
    assert (volume.offset, volume.size) == (0, 16 * 1024 * 1024)
    items = _by_key(evidence)

    plain = items[("/plain.txt", "")]
    assert _read(plain) == images.NTFS_PLAIN
    assert plain.allocated and plain.is_file and not plain.is_dir
    assert plain.display_path == "/plain.txt"

    main = items[("/file.txt", "")]
    ads = items[("/file.txt", "evil")]
    assert _read(main) == images.NTFS_MAIN
    assert _read(ads) == images.NTFS_ADS
    assert ads.size == len(images.NTFS_ADS) and ads.is_file and ads.allocated
    assert ads.inode == main.inode
    assert ads.display_path == "/file.txt:evil"
    assert ads.path_spec.data_stream == "evil"

    deleted = items[("/Users/bob/wce.exe", "")]
    assert not deleted.allocated
    assert deleted.is_file and deleted.has_metadata and not deleted.reallocated
    assert deleted.size == len(images.NTFS_DELETED)
    assert _read(deleted) == images.NTFS_DELETED
    assert set(deleted.times) == {"creation", "modification", "access", "change"}

    nested = items[("/Users/bob/AppData/nested.txt", "")]
    assert _read(nested) == images.NTFS_NESTED
    assert items[("/Users/bob/AppData", "")].is_dir

    for item in (plain, main, ads):
        assert set(item.times) == {"creation", "modification", "access", "change"}
        stamp = item.times["modification"].CopyToPosixTimestamp()
        assert abs(stamp - NOW) < 24 * 3600

    # NTFS metadata files are ordinary entries.
    assert items[("/$MFT", "")].inode == 0 and items[("/$MFT", "")].is_file
    assert items[("/$Secure", "$SDS")].size > 0
    assert items[("/$Extend", "")].is_dir

    _assert_matches_fls(evidence, "", ntfs_image)


def test_ntfs_stream_reading(ntfs_image: Path) -> None:
    evidence = Evidence(ntfs_image)
    deleted = _by_key(evidence)[("/Users/bob/wce.exe", "")]
    with deleted.open() as stream:
        assert stream.read(7) == images.NTFS_DELETED[:7]
        assert stream.tell() == 7
        stream.seek(-5, os.SEEK_END)
        assert stream.read() == images.NTFS_DELETED[-5:]
        assert stream.read(10) == b""
        stream.seek(100)
        chunks = []
        while chunk := stream.read(4096):
            chunks.append(chunk)
        assert b"".join(chunks) == images.NTFS_DELETED[100:]
    directory = _by_key(evidence)[("/Users", "")]
    with pytest.raises(IsADirectoryError):
        directory.open()


def test_ntfs_items_survive_pickling(ntfs_image: Path) -> None:
    """Items sent to worker processes open through dfvfs from their path spec."""
    evidence = Evidence(ntfs_image)
    items = _by_key(evidence)
    for key, expected in (
        (("/file.txt", "evil"), images.NTFS_ADS),
        (("/file.txt", ""), images.NTFS_MAIN),
        (("/Users/bob/wce.exe", ""), images.NTFS_DELETED),
    ):
        copy = pickle.loads(pickle.dumps(items[key]))
        assert copy.display_path == items[key].display_path
        assert _read(copy) == expected


def test_ntfs_lookup(ntfs_image: Path) -> None:
    evidence = Evidence(ntfs_image)
    (volume,) = evidence.volumes()
    ads = evidence.lookup(volume, "/file.txt", stream="evil")
    assert ads is not None and _read(ads) == images.NTFS_ADS
    nested = evidence.lookup(volume, "/Users/bob/AppData/nested.txt")
    assert nested is not None and _read(nested) == images.NTFS_NESTED
    assert evidence.lookup(volume, "/nope.txt") is None
    assert evidence.lookup(volume, "/file.txt", stream="nope") is None


def test_ntfs_in_ewf(ntfs_ewf: Path, ntfs_image: Path) -> None:
    evidence = Evidence(ntfs_ewf)
    info = evidence.image_info
    assert info["format"] == "ewf"
    assert len(info["segments"]) >= 4  # 16 MiB in 4 MiB segments
    assert info["md5"] == images.digest_of(ntfs_image, "md5")
    assert info["sha1"] == images.digest_of(ntfs_image, "sha1")
    assert info["acquisition"]["case_number"] == "case-42"
    assert info["acquisition"]["examiner_name"] == "examiner"
    items = _by_key(evidence)
    assert _read(items[("/file.txt", "evil")]) == images.NTFS_ADS
    assert _read(items[("/Users/bob/wce.exe", "")]) == images.NTFS_DELETED
    _assert_matches_fls(evidence, "", ntfs_ewf)


def test_fat16(fat_image: Path) -> None:
    evidence = Evidence(fat_image)
    (volume,) = evidence.volumes()
    assert (volume.fs_type, volume.backend) == ("FAT", "TSK")
    items = _by_key(evidence)
    for path, data in images.FAT_FILES.items():
        assert _read(items[(path, "")]) == data, path
    assert items[("/DIR1", "")].is_dir
    deleted = items[(images.FAT_DELETED_NAME, "")]
    assert not deleted.allocated and deleted.is_file
    assert _read(deleted) == images.FAT_DELETED
    tool = items[("/TOOL.EXE", "")]
    assert set(tool.times) == {"creation", "modification", "access"}
    modification = tool.times["modification"]
    assert modification.is_local_time
    assert modification.CopyToDateTimeString().startswith("2013-05-17 10:30:00")
    _assert_matches_fls(evidence, "", fat_image)


def test_gpt_with_ntfs_and_fat(gpt_image: tuple[Path, int, int]) -> None:
    path, first, second = gpt_image
    evidence = Evidence(path)
    info = evidence.image_info
    assert info["partition_table"] == "GPT"
    assert [(v.label, v.fs_type, v.offset) for v in evidence.volumes()] == [
        ("p1", "NTFS", first * 512),
        ("p2", "FAT", second * 512),
    ]
    ntfs = _by_key(evidence, "p1")
    ads = ntfs[("/file.txt", "evil")]
    assert ads.display_path == "p1:/file.txt:evil"
    assert _read(ads) == images.NTFS_ADS
    assert _read(ntfs[("/Users/bob/wce.exe", "")]) == images.NTFS_DELETED
    fat = _by_key(evidence, "p2")
    assert _read(fat[("/TOOL.EXE", "")]) == images.FAT_FILES["/TOOL.EXE"]
    _assert_matches_fls(evidence, "p1", path, first)
    _assert_matches_fls(evidence, "p2", path, second)
    only_fat = Evidence(path, partitions="p2")
    assert [volume.label for volume in only_fat.volumes()] == ["p2"]
    with only_fat.open_volume(only_fat.volumes()[0]) as raw:
        assert raw.get_size() == 16 * 1024 * 1024
        assert raw.read(3) == b"\xeb\x3c\x90"


def test_reused_inode_is_flagged(tmp_path: Path) -> None:
    image = tmp_path / "reused.ext2"
    images.build_ext2_reused_inode(image, tmp_path)
    evidence = Evidence(image)
    items = _by_key(evidence)
    old = items[("/tool.exe", "")]
    new = items[("/sub/other.txt", "")]
    assert (old.allocated, old.reallocated) == (False, True)
    assert (new.allocated, new.reallocated) == (True, False)
    # The metadata, and so the content, are the new owner's.
    assert old.inode == new.inode
    assert _read(old) == b"innocent file\n"
    lines = run_fls([image])
    assert f"r/r * {old.inode}(realloc):\ttool.exe" in lines
    _assert_matches_fls(evidence, "", image)


def test_split_raw(tmp_path: Path, images_dir: Path) -> None:
    source = images_dir / "tsk_volume_system.raw"
    data = source.read_bytes()
    for index, start in enumerate(range(0, len(data), 600_000), start=1):
        (tmp_path / f"disk.{index:03d}").write_bytes(data[start : start + 600_000])
    evidence = Evidence(tmp_path / "disk.001")
    info = evidence.image_info
    assert info["format"] == "raw"
    assert [Path(p).name for p in info["segments"]] == [
        "disk.001",
        "disk.002",
        "disk.003",
    ]
    assert info["size"] == len(data)
    assert [volume.label for volume in evidence.volumes()] == ["p5"]
    with evidence.open_media() as media:
        media.seek(599_990)
        assert media.read(20) == data[599_990:600_010]
    assert ("/lost+found", "") in _by_key(evidence, "p5")


def test_many_entries_walk_fast(tmp_path: Path) -> None:
    """A few thousand entries, deleted directories included, match fls quickly."""
    image = tmp_path / "many.img"
    images.build_many_ntfs(image)
    evidence = Evidence(image)
    (volume,) = evidence.volumes()
    started = time.perf_counter()
    items = list(evidence.walk(volume))
    elapsed = time.perf_counter() - started
    assert len(items) > 2000
    assert sum(not item.allocated for item in items) > 100
    expected = parse_fls(run_fls([image]))
    assert walk_listing(items) == expected
    # About 0.1 s on the reference machine; the bound only catches blow-ups.
    assert elapsed < 10, f"walk of {len(items)} entries took {elapsed:.1f}s"
