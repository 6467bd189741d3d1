"""Volume and FileItem behaviour, and the dfvfs fallback when TSK cannot read."""

from __future__ import annotations

import pickle
from pathlib import Path

import evidence_images as images
import pytest

from toolmarks.evidence import Evidence, EvidenceError, FileItem, Volume, tsk


def _item(label: str, path: str, stream: str = "") -> FileItem:
    volume = Volume(label=label, path_spec=None, fs_type="NTFS", offset=0, size=1)
    return FileItem(
        volume=volume,
        path=path,
        stream=stream,
        inode=5,
        size=0,
        allocated=True,
        is_file=True,
        times={},
        path_spec=None,
    )


@pytest.mark.parametrize(
    ("label", "path", "stream", "shown"),
    [
        ("p1", "/Users/bob/x.exe", "evil", "p1:/Users/bob/x.exe:evil"),
        ("p1", "/Users/bob/x.exe", "", "p1:/Users/bob/x.exe"),
        ("", "/x.exe", "", "/x.exe"),
        ("", "/x.exe", "s", "/x.exe:s"),
        ("p1/vss1", "/a", "", "p1/vss1:/a"),
    ],
)
def test_display_path(label: str, path: str, stream: str, shown: str) -> None:
    assert _item(label, path, stream).display_path == shown


def test_volumes_are_hashable_and_picklable(images_dir: Path) -> None:
    evidence = Evidence(images_dir / "vsstest.qcow2", vss="all")
    volumes = evidence.volumes()
    assert len(set(volumes)) == 3
    copies = pickle.loads(pickle.dumps(volumes))
    assert copies == volumes
    # A copied volume still selects the same file system.
    assert [item.path for item in evidence.walk(copies[1])] == [
        item.path for item in evidence.walk(volumes[1])
    ]


def test_context_manager_and_media(images_dir: Path) -> None:
    raw = (images_dir / "imynd.dd").read_bytes()
    with Evidence(images_dir / "vsstest.qcow2") as evidence:
        (volume,) = evidence.volumes()
    with pytest.raises(EvidenceError, match="no volume labelled"):
        evidence.walk(volume)
    with Evidence(images_dir / "image.vhd") as evidence:
        first = evidence.open_media()
        second = evidence.open_media()
        assert first.read(1024) == raw[:1024]
        # Readers keep their own positions although dfvfs shares the object.
        assert second.read(10) == raw[:10]
        assert first.read(10) == raw[1024:1034]
        (volume,) = evidence.volumes()
        with evidence.open_volume(volume) as data:
            data.seek(1024)
            assert data.read(2048) == raw[1024:3072]


class _BrokenTSK:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise OSError("simulated TSK failure")


@pytest.mark.parametrize("which", ["ntfs", "fat", "ext"])
def test_dfvfs_fallback_when_tsk_fails(
    monkeypatch: pytest.MonkeyPatch,
    which: str,
    ntfs_image: Path,
    fat_image: Path,
    images_dir: Path,
) -> None:
    image = {
        "ntfs": ntfs_image,
        "fat": fat_image,
        "ext": images_dir / "imynd.dd",
    }[which]
    with_tsk = Evidence(image)
    expected = {
        (item.path, item.stream)
        for item in with_tsk.walk(with_tsk.volumes()[0])
        if item.allocated and item.path != "/$OrphanFiles"
    }
    if which == "fat":  # TSK's virtual files and the label entry
        expected = {
            key for key in expected if "$" not in key[0] and "Label" not in key[0]
        }

    monkeypatch.setattr(tsk, "TSKFileSystem", _BrokenTSK)
    warnings: list[tuple[str, str]] = []
    evidence = Evidence(image, warn=lambda where, what: warnings.append((where, what)))
    (volume,) = evidence.volumes()
    assert (
        volume.backend
        == volume.fs_type
        == {"ntfs": "NTFS", "fat": "FAT", "ext": "EXT"}[which]
    )
    assert any("lists allocated entries only" in what for _, what in warnings)
    items = list(evidence.walk(volume))
    assert {(item.path, item.stream) for item in items} == expected
    for item in items:
        assert item.allocated
        if item.is_file:
            with item.open() as stream:
                assert len(stream.read()) == item.size, item.display_path
    by_key = {(item.path, item.stream): item for item in items}
    if which == "ntfs":
        ads = by_key[("/file.txt", "evil")]
        with ads.open() as stream:
            assert stream.read() == images.NTFS_ADS
        assert set(ads.times) == {"creation", "modification", "access", "change"}
    if which == "fat":
        with by_key[("/DIR1/INNER.TXT", "")].open() as stream:
            assert stream.read() == images.FAT_FILES["/DIR1/INNER.TXT"]
