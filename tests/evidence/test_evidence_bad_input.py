"""Bad input is reported (EvidenceError or warn), never a traceback."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import evidence_images as images
import pytest

from toolmarks.evidence import Evidence, EvidenceError


class Problems(list):
    """A warn callback that keeps (location, message) pairs."""

    def __call__(self, location: str, message: str) -> None:
        self.append((location, message))

    def about(self, text: str) -> list[tuple[str, str]]:
        return [problem for problem in self if text in problem[1]]


def test_not_an_image(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("case notes, not a disk image\n" * 50)
    with pytest.raises(EvidenceError) as error:
        Evidence(notes)
    assert str(notes) in str(error.value)
    assert "not a supported disk image" in str(error.value)


def test_real_non_image_file(real_data: Path) -> None:
    prefetch = real_data / "prefetch" / "win10" / "CMD.EXE-D269B812.pf"
    with pytest.raises(EvidenceError, match="CMD.EXE-D269B812.pf"):
        Evidence(prefetch)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.E01", "no such file"),
        (lambda tmp: tmp, "is a directory"),
        (lambda tmp: (tmp / "empty.dd").touch() or tmp / "empty.dd", "empty file"),
    ],
    ids=["missing", "directory", "empty"],
)
def test_unusable_paths(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(EvidenceError) as error:
        Evidence(path)
    assert str(path) in str(error.value) and message in str(error.value)


def test_truncated_e01(tmp_path: Path, images_dir: Path) -> None:
    data = (images_dir / "image-split.E01").read_bytes()
    truncated = tmp_path / "truncated.E01"
    truncated.write_bytes(data[:600_000])
    with pytest.raises(EvidenceError) as error:
        Evidence(truncated)
    text = str(error.value)
    assert str(truncated) in text and "truncated" in text


def test_e01_cut_inside_its_header(tmp_path: Path, images_dir: Path) -> None:
    data = (images_dir / "image.E01").read_bytes()
    truncated = tmp_path / "cut.E01"
    truncated.write_bytes(data[:3000])
    with pytest.raises(EvidenceError) as error:
        Evidence(truncated)
    assert str(truncated) in str(error.value)
    assert "cannot open ewf image" in str(error.value)


def test_e01_without_its_second_segment(tmp_path: Path, images_dir: Path) -> None:
    shutil.copy(images_dir / "image-split.E01", tmp_path / "image-split.E01")
    with pytest.raises(EvidenceError) as error:
        Evidence(tmp_path / "image-split.E01")
    assert "segment files missing" in str(error.value)
    assert "image-split.E01" in str(error.value)


def test_partitions_past_the_end(tmp_path: Path, images_dir: Path) -> None:
    disk = tmp_path / "past-end.dd"
    images.build_mbr_past_end(disk, images_dir / "imynd.dd")
    problems = Problems()
    evidence = Evidence(disk, warn=problems)
    assert [volume.label for volume in evidence.volumes()] == ["p1"]
    past = problems.about("extends past the end of the image")
    assert [where for where, _ in past] == ["p2"]
    starts = problems.about("starts (offset 4608000000) past the end")
    assert [where for where, _ in starts] == ["p3"]
    assert [part["label"] for part in evidence.image_info["partitions"]] == [
        "p1",
        "p2",
        "p3",
    ]
    paths = {item.path for item in evidence.walk(evidence.volumes()[0])}
    assert "/passwords.txt" in paths


def test_unreadable_directory(tmp_path: Path, ntfs_image: Path) -> None:
    broken = tmp_path / "broken.img"
    shutil.copy(ntfs_image, broken)
    evidence = Evidence(broken)
    (volume,) = evidence.volumes()
    app_data = next(
        item for item in evidence.walk(volume) if item.path == "/Users/bob/AppData"
    )
    evidence.close()
    images.break_ntfs_record(broken, app_data.inode)

    problems = Problems()
    evidence = Evidence(broken, warn=problems)
    items = {
        (item.path, item.stream): item for item in evidence.walk(evidence.volumes()[0])
    }
    assert [where for where, _ in problems.about("cannot read directory")] == [
        "/Users/bob/AppData"
    ]
    # The rest of the file system is still there.
    assert ("/file.txt", "evil") in items
    assert ("/Users/bob/wce.exe", "") in items
    assert ("/Users/bob/AppData/nested.txt", "") not in items


def test_truncated_raw_file_system(tmp_path: Path, images_dir: Path) -> None:
    """Cut inside the data blocks: a directory and a file can no longer be read."""
    cut = tmp_path / "cut.dd"
    # Block 21 holds /a_directory's entries, block 22 /passwords.txt (1 KiB blocks).
    cut.write_bytes((images_dir / "imynd.dd").read_bytes()[: 21 * 1024])
    problems = Problems()
    evidence = Evidence(cut, warn=problems)
    items = {item.path: item for item in evidence.walk(evidence.volumes()[0])}
    assert [where for where, _ in problems.about("cannot read directory")] == [
        "/a_directory"
    ]
    assert "/lost+found" in items and "/a_directory/a_file" not in items
    stream = items["/passwords.txt"].open()
    with pytest.raises(OSError, match="/passwords.txt: read error"):
        stream.read()


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"partitions": "one"}, "invalid partition selection"),
        ({"partitions": "0"}, "invalid partition selection"),
        ({"vss": "1,x"}, "invalid VSS store selection"),
    ],
)
def test_bad_selections(images_dir: Path, kwargs: dict, text: str) -> None:
    with pytest.raises(EvidenceError, match=text):
        Evidence(images_dir / "imynd.dd", **kwargs)


def test_partition_selection_without_partition_table(images_dir: Path) -> None:
    problems = Problems()
    evidence = Evidence(images_dir / "imynd.dd", partitions="2", warn=problems)
    assert [volume.label for volume in evidence.volumes()] == [""]
    assert problems.about("no partition table")


def test_missing_partition_is_reported(images_dir: Path) -> None:
    problems = Problems()
    evidence = Evidence(
        images_dir / "tsk_volume_system.raw", partitions="5,9", warn=problems
    )
    assert [volume.label for volume in evidence.volumes()] == ["p5"]
    assert problems.about("partition p9 does not exist")


def test_default_warn_logs(images_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="toolmarks.evidence"):
        evidence = Evidence(images_dir / "tsk_volume_system.raw")
    assert "p1: no supported file system found" in caplog.text
    assert evidence.problems == [("p1", "no supported file system found")]


def test_unknown_volume(images_dir: Path) -> None:
    evidence = Evidence(images_dir / "imynd.dd")
    other = Evidence(images_dir / "tsk_volume_system.raw", warn=lambda *_: None)
    with pytest.raises(EvidenceError, match="no volume labelled 'p5'"):
        list(evidence.walk(other.volumes()[0]))
