"""NTFS orphan files: the walk lists /$OrphanFiles itself, exactly as TSK does.

TSK's own listing (what pytsk3 gives when it opens $OrphanFiles, what the walk
read before) is the oracle: the same walk is run once with the orphans listed
by toolmarks and once with ntfs_orphans.list_orphans answering "let TSK list
them", on a real image with orphans planted by ntfs-3g and byte patches.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import evidence_images as images
import pytest
import pytsk3
from evidence_fls import parse_fls, walk_listing

from toolmarks.evidence import Evidence, FileItem, ntfs_orphans

ORPHANS = "/$OrphanFiles"


def _walk(image: Path) -> tuple[list[FileItem], list[tuple[str, str]]]:
    warnings: list[tuple[str, str]] = []
    evidence = Evidence(image, warn=lambda where, what: warnings.append((where, what)))
    (volume,) = evidence.volumes()
    return list(evidence.walk(volume)), warnings


def _facts(item: FileItem) -> tuple[Any, ...]:
    times = {key: value.CopyToDateTimeString() for key, value in item.times.items()}
    return (
        item.path,
        item.stream,
        item.inode,
        item.size,
        item.allocated,
        item.is_file,
        item.is_dir,
        item.reallocated,
        item.has_metadata,
        sorted(times.items()),
    )


def _read(item: FileItem) -> bytes:
    with item.open() as stream:
        return stream.read()


def _both_walks(
    image: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[FileItem], list[FileItem], list[Any], list[tuple[str, str]]]:
    """(walk with toolmarks' orphan listing, walk with TSK's, what
    list_orphans answered, the warnings of both walks)."""
    answers: list[Any] = []
    real = ntfs_orphans.list_orphans

    def spy(fs_info: Any, named: ntfs_orphans.NamedEntries) -> Any:
        answers.append(real(fs_info, named))
        return answers[-1]

    monkeypatch.setattr(ntfs_orphans, "list_orphans", spy)
    ours, our_warnings = _walk(image)
    monkeypatch.setattr(
        ntfs_orphans, "list_orphans", lambda fs_info, named: "TSK lists them"
    )
    tsk, tsk_warnings = _walk(image)
    assert our_warnings == tsk_warnings
    return ours, tsk, answers, our_warnings


def _fls_listing(image: Path) -> Any:
    # Orphan names cut inside a character are not UTF-8: read bytes.
    result = subprocess.run(
        ["fls", "-r", "-p", str(image)], check=True, capture_output=True
    )
    text = result.stdout.decode("utf-8", "backslashreplace")
    return parse_fls(line for line in text.splitlines() if line.strip())


def test_ntfs_orphans_listed_as_tsk_lists_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = tmp_path / "orphans.img"
    entries = images.build_ntfs_orphans(image)
    ours, tsk, answers, warnings = _both_walks(image, monkeypatch)
    assert warnings == []
    # toolmarks listed the orphans itself, TSK's second walk was not run.
    (answer,) = answers
    assert isinstance(answer, list), answer

    assert [_facts(item) for item in ours] == [_facts(item) for item in tsk]
    orphans = [item for item in ours if item.path.startswith(f"{ORPHANS}/")]
    assert len(orphans) > 40  # planted ones, spilled streams, mkntfs' 16-23
    for mine, theirs in zip(ours, tsk, strict=True):
        if mine.path.startswith(f"{ORPHANS}/") and mine.is_file:
            assert _read(mine) == _read(theirs), mine.display_path

    by_key = {(item.path, item.stream): item for item in ours}
    for path, content in images.ORPHAN_FILES.items():
        item = by_key[(path, "")]
        assert not item.allocated and item.is_file
        assert _read(item) == content, path
    path, stream, content = images.ORPHAN_ADS
    assert _read(by_key[(path, stream)]) == content
    assert by_key[(f"{ORPHANS}/gone", "")].is_dir
    assert by_key[(f"{ORPHANS}/gone/sub", "")].is_dir
    assert by_key[(images.ORPHAN_LONG_PATH, "")].inode == entries[images.ORPHAN_LONG]
    dos = entries["dos.txt"]
    assert by_key[(f"{ORPHANS}/OrphanFile-{dos}", "")].inode == dos
    # An orphan directory's files are listed in it, not again at the top;
    # the still named deleted file is not an orphan.
    assert (f"{ORPHANS}/early.bin", "") not in by_key
    assert not by_key[(images.ORPHAN_NAMED_DELETED, "")].allocated
    assert not any(item.path.endswith("/deleted.txt") for item in orphans)
    # The file whose names and streams spilled into extension MFT entries is
    # an orphan with its streams (TSK and fls find 39 of the 40 in the deleted
    # entry); the extension entries themselves are not.
    spilled = [item for item in orphans if item.stream.startswith("s")]
    assert [item.stream for item in spilled] == [f"s{n:02d}" for n in range(39)]
    assert len({item.inode for item in spilled}) == 1

    # pytsk3 opening $OrphanFiles itself: the same entries, names, order.
    fs_info = pytsk3.FS_Info(pytsk3.Img_Info(str(image)))
    listed = [
        (
            f"{ORPHANS}/{entry.info.name.name.decode('utf-8', 'backslashreplace')}",
            int(entry.info.name.meta_addr),
        )
        for entry in fs_info.open_dir(inode=fs_info.info.last_inum)
    ]
    top = [
        (item.path, item.inode)
        for item in orphans
        if not item.stream and item.path.count("/") == 2
    ]
    assert top == listed
    assert walk_listing(ours) == _fls_listing(image)


def test_ntfs_orphans_left_to_tsk_when_unsure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An orphan's entry TSK cannot load: TSK lists $OrphanFiles itself."""
    image = tmp_path / "orphans.img"
    entries = images.build_ntfs_orphans(image)
    images.move_first_data_run_past_the_end(image, entries["tool.bin"])
    ours, tsk, answers, _ = _both_walks(image, monkeypatch)
    (answer,) = answers
    assert isinstance(answer, str)
    assert f"MFT entry {entries['tool.bin']}" in answer
    assert [_facts(item) for item in ours] == [_facts(item) for item in tsk]
    paths = {item.path for item in ours}
    assert f"{ORPHANS}/old.txt" in paths
    assert walk_listing(ours) == _fls_listing(image)
