"""The $MFT-order NTFS walk (mft.MftWalker) lists what TSK's walk lists.

TSKWalker walks NTFS through TSK's directory listings, which is slow on volumes
of 100,000 files; MftWalker reads every $MFT record in order instead and must
yield the same items (order aside): same fields, same times, same content, same
warnings, and the same item again when a scan worker makes it from its
hand-over key. Every NTFS image the tests build or read is compared, each
walker on its own freshly opened Evidence, as a scan opens it.
"""

from __future__ import annotations

import collections
import hashlib
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import evidence_images as images
import pytest
from ntfs_support import plant_ntfs
from test_handover import build_ntfs_compressed, listed, timeline

from toolmarks.engine import scan
from toolmarks.engine.scan import ScanOptions, scan_image
from toolmarks.evidence import Evidence, tsk
from toolmarks.evidence.mft import Doubt, MftWalker, Seen
from toolmarks.evidence.model import FileItem, Volume
from toolmarks.indicators import loader

# Items larger than this are compared without their content.
CONTENT_LIMIT = 1 << 20
SHOWN = 10  # differing tuples shown per side

# MANIFEST: evtx/aptsimulator/System.evtx (as test_unloadable plants it).
EVTX = Path("evtx") / "aptsimulator" / "System.evtx"
EVTX_PATH = "/Windows/System32/winevt/Logs/System.evtx"


class Canon(NamedTuple):
    """Everything a scan takes from one FileItem."""

    path: str
    stream: str
    inode: int | None
    size: int
    allocated: bool
    is_file: bool
    is_dir: bool
    reallocated: bool
    has_metadata: bool
    location: int | None
    times: tuple[tuple[Any, ...], ...]
    reopen: tuple[Any, ...] | None
    content: str | None  # MD5, or the OSError open or read raised
    # What FileItem.open falls back on once the opener is gone (a pickle).
    path_spec: str


def _times(times: Any) -> tuple[tuple[Any, ...], ...]:
    return tuple(
        (
            key,
            value.timestamp,
            value.fraction_of_second,
            value.precision,
            value.is_local_time,
        )
        for key, value in sorted(dict(times).items())
    )


def _content(item: FileItem) -> str | None:
    if not (item.has_metadata and item.is_file and item.size <= CONTENT_LIMIT):
        return None
    try:
        with item.open() as stream:
            return hashlib.md5(stream.read()).hexdigest()
    except OSError as error:
        return f"{type(error).__name__}: {error}"


def canon(item: FileItem) -> Canon:
    return Canon(
        item.path,
        item.stream,
        item.inode,
        item.size,
        item.allocated,
        item.is_file,
        item.is_dir,
        item.reallocated,
        item.has_metadata,
        item.location,
        _times(item.times),
        item.reopen,
        _content(item),
        item.path_spec.comparable,
    )


Warnings = list[tuple[str, str]]
Walker = Callable[[tsk.TSKFileSystem, Volume, tsk.Warn], Any]


def _ntfs_labels(image: Path, vss: str) -> list[str]:
    with Evidence(image, vss=vss, warn=lambda *_: None) as evidence:
        labels = []
        for volume in evidence.volumes():
            handle = evidence._handle(volume)
            if isinstance(handle, tsk.TSKFileSystem) and handle.is_ntfs:
                labels.append(volume.label)
        return labels


def _walk(
    image: Path, vss: str, label: str, walker: Walker, doubts: list[str] | None = None
) -> tuple[list[Canon], Warnings, list[tuple[Any, ...]]]:
    """One walker's items of one volume, on an Evidence of its own: their
    canonical tuples, its warnings, and their hand-over keys (doubts: where
    MftWalker's reason to let TSKWalker walk goes)."""
    warnings: Warnings = []
    with Evidence(image, vss=vss, warn=lambda *_: None) as evidence:
        (volume,) = [v for v in evidence.volumes() if v.label == label]
        fs = evidence._handle(volume)
        found, keys = [], []
        walking = walker(fs, volume, lambda *pair: warnings.append(pair))
        for item in walking.walk():
            found.append(canon(item))
            keys.append(tsk.hand_over(item))
        if doubts is not None and walking.doubt is not None:
            doubts.append(f"{label or '-'}: {walking.doubt}")
    return found, warnings, keys


def _taken_over(
    image: Path, vss: str, label: str, keys: list[tuple[Any, ...]]
) -> list[Canon]:
    """The items a scan worker makes again from the keys, in its own Evidence
    (the keys cross a process boundary in a pickle)."""
    keys = pickle.loads(pickle.dumps(keys))
    with Evidence(image, vss=vss, warn=lambda *_: None) as evidence:
        (volume,) = [v for v in evidence.volumes() if v.label == label]
        fs = evidence._handle(volume)
        return [canon(tsk.taken_over(fs, volume, key)) for key in keys]


def _fields_apart(ours: Iterable[Canon], theirs: Iterable[Canon]) -> str:
    """Which fields differ between items of the same path, stream and inode."""
    by_key = collections.defaultdict(list)
    for item in theirs:
        by_key[item[:3]].append(item)
    fields: collections.Counter[str] = collections.Counter()
    for item in ours:
        for other in by_key.get(item[:3], [])[:1]:
            for name, mine, tsks in zip(Canon._fields, item, other, strict=True):
                if mine != tsks:
                    fields[name] += 1
    return ", ".join(f"{name} x{count}" for name, count in fields.most_common())


def _shown(side: str, items: collections.Counter[Canon]) -> list[str]:
    ordered = sorted(items.elements(), key=lambda item: (item.path, item.stream))
    lines = [f"  {side} ({len(ordered)}):"]
    lines += [f"    {item!r}" for item in ordered[:SHOWN]]
    return lines


def difference(where: str, tsk_items: list[Canon], mft_items: list[Canon]) -> str:
    """Empty if both walks hold the same items (as multisets), else what
    differs: the first SHOWN items of each side and the fields that part
    items of the same path, stream and inode."""
    theirs, ours = collections.Counter(tsk_items), collections.Counter(mft_items)
    only_tsk, only_mft = theirs - ours, ours - theirs
    if not only_tsk and not only_mft:
        return ""
    counts = (
        f"{where}: TSKWalker {len(tsk_items)} items, MftWalker {len(mft_items)}; "
        f"{sum(only_tsk.values())} only in TSKWalker's walk, "
        f"{sum(only_mft.values())} only in MftWalker's"
    )
    fields = _fields_apart(only_mft, only_tsk) or "none"
    lines = [counts, f"  fields apart (same path, stream, inode): {fields}"]
    lines += _shown("only TSKWalker", only_tsk)
    lines += _shown("only MftWalker", only_mft)
    return "\n".join(lines)


def warnings_apart(where: str, tsk_warnings: Warnings, mft_warnings: Warnings) -> str:
    """Empty if both walks warned alike (as sorted lists), else the warnings
    only one of them gave."""
    if sorted(tsk_warnings) == sorted(mft_warnings):
        return ""
    theirs, ours = collections.Counter(tsk_warnings), collections.Counter(mft_warnings)
    head = f"TSKWalker {len(tsk_warnings)}, MftWalker {len(mft_warnings)}"
    lines = [f"{where}: warnings differ ({head})"]
    for side, left in (
        ("only TSKWalker", theirs - ours),
        ("only MftWalker", ours - theirs),
    ):
        lines += [f"  {side}: {pair!r}" for pair in sorted(left.elements())[:SHOWN]]
    return "\n".join(lines)


def compare_walkers(
    image: Path, vss: str = "none", doubts: list[str] | None = None
) -> dict[str, list[Canon]]:
    """Runs both walkers on every NTFS volume of the image and asserts they
    agree; returns TSKWalker's items by volume label. doubts: where to note
    why MftWalker let TSKWalker walk a volume; if None, it must not have."""
    labels = _ntfs_labels(image, vss)
    assert labels, f"{image.name}: no NTFS volume"
    problems, walked = [], {}
    noted: list[str] = []
    for label in labels:
        where = f"{image.name} volume {label or '-'}"
        mft, mft_warnings, keys = _walk(image, vss, label, MftWalker, noted)
        theirs, tsk_warnings, _ = _walk(image, vss, label, tsk.TSKWalker)
        walked[label] = theirs
        problems.append(difference(where, theirs, mft))
        problems.append(warnings_apart(where, tsk_warnings, mft_warnings))
        again = _taken_over(image, vss, label, keys)
        apart = [(a, b) for a, b in zip(mft, again, strict=True) if a != b]
        if apart:
            problems.append(
                f"{where}: {len(apart)} MftWalker items differ once handed over "
                "(walked, then taken_over):\n"
                + "\n".join(f"    {a!r}\n    {b!r}" for a, b in apart[:SHOWN])
            )
    message = "\n".join(problem for problem in problems if problem)
    assert not message, message
    if doubts is None:
        assert not noted, f"{image.name}: MftWalker let TSK walk: {noted}"
    else:
        doubts += noted
    return walked


# -- the images ----------------------------------------------------------------


def _made(built: Path, name: str, build: Callable[[Path], Any]) -> Path:
    """built/name, built by build once a session."""
    path = built / name
    if not path.exists():
        part = built / f".{name}.part"
        build(part)
        part.rename(path)
    return path


def _copy_then(source: Path, edit: Callable[[Path], Any]) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        shutil.copyfile(source, path)
        edit(path)

    return build


def _broken_records(path: Path) -> None:
    """Breaks the MFT records of /file.txt (it has an ADS) and of the
    directory /Users/bob/AppData, whose file then has no parent TSK can load
    (libfsntfs refuses them too: MftWalker hands the volume to TSKWalker)."""
    for inside in ("/file.txt", "/Users/bob/AppData"):
        images.break_ntfs_record(path, images.ntfs_entry_of(path, inside))


def _broken_file(path: Path) -> None:
    """Breaks the MFT record of /file.txt only: no directory, so MftWalker's
    plan holds and the walk of the entries meets the record libfsntfs refuses."""
    images.break_ntfs_record(path, images.ntfs_entry_of(path, "/file.txt"))


def _orphans_mended(path: Path) -> None:
    """build_ntfs_orphans with the record its index erasure breaks mended:
    libfsntfs refuses the broken record, and MftWalker hands a volume with
    one to TSKWalker whole (so the plain orphans image tests no walk of its
    own)."""
    images.build_ntfs_orphans(path)
    assert images.end_zeroed_attribute_lists(path)


def _orphans_unsure(path: Path) -> None:
    """_orphans_mended with /$OrphanFiles/tool.bin's first data run past the
    end of the volume (test_evidence_orphans: TSK lists the orphans itself)."""
    entries = images.build_ntfs_orphans(path)
    assert images.end_zeroed_attribute_lists(path)
    images.move_first_data_run_past_the_end(path, entries["tool.bin"])


# Folder names of the CSV and terminal escaping tests (test_timeline,
# test_scan_bad_input) and a character outside the BMP (a UTF-16 surrogate pair).
HOSTILE_FOLDERS = [
    "\x1b[31mred\x1b[0m",
    "bell\x07\x07",
    "invoice\u202ecod.exe",
    "iso\u2068late\u2069",
    "=HYPERLINK(1)\n",
    "=cmd|' -C calc'!A0\x1b[31m\n",
    "emoji\U0001f600",
]
# 240 characters of 3-byte UTF-8: TSK lists the folder under its full name
# (from the index) and under its $FILE_NAME cut to 256 bytes.
LONG_FOLDER = "\u65e5\u672c\u8a9e" * 80


def _planted(folders: list[str]) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            plant_ntfs(path, folders, Path(scratch) / "mount")

    return build


def _deep(name: str, levels: int, last: int = 0) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        images.build_ntfs_deep(path, name, levels, last)

    return build


def _evtx(real_data: Path) -> Callable[[Path], None]:
    def build(path: Path) -> None:
        images.build_ntfs_evtx(path, real_data / EVTX, EVTX_PATH)

    return build


def _run_past_end(path: Path) -> None:
    images.move_first_data_run_past_the_end(path, images.ntfs_entry_of(path, EVTX_PATH))


Source = tuple[Path, str]  # image, VSS selection


def _scenario(fixture: str, key: str) -> Callable[[pytest.FixtureRequest], Source]:
    return lambda request: (Path(request.getfixturevalue(fixture)[key]), "none")


def _built(
    name: str, build: Callable[[pytest.FixtureRequest], Callable[[Path], Any]]
) -> Callable[[pytest.FixtureRequest], Source]:
    return lambda request: (
        _made(request.getfixturevalue("built"), name, build(request)),
        "none",
    )


def _real(name: str, vss: str) -> Callable[[pytest.FixtureRequest], Source]:
    return lambda request: (request.getfixturevalue("images_dir") / name, vss)


def _after(name: str) -> Callable[[pytest.FixtureRequest], Path]:
    """The image of another case (built first if needed)."""
    return lambda request: IMAGES[name](request)[0]


# The images MftWalker hands to TSKWalker, and what its reason says.
TSK_WALKS = {
    "broken-records": "MFT entry",  # libfsntfs refuses the broken records
    "broken-file": "MFT entry",
    "deep": "deeper than TSK walks",
    "orphans": "MFT entry 73",  # the builder's index erasure breaks its record
    "long-name": "a directory only an index names",  # a name past 256 bytes
}

IMAGES: dict[str, Callable[[pytest.FixtureRequest], Source]] = {
    "demo.E01": _scenario("demo_image", "e01"),
    "workstation.raw": _scenario("workstation_images", "raw"),
    "workstation.E01": _scenario("workstation_images", "e01"),
    "workstation-split.E01": _scenario("workstation_images", "split_e01"),
    "workstation-mbr": _scenario("workstation_images", "mbr"),
    "workstation-gpt": _scenario("workstation_images", "gpt"),
    "traces.raw": _scenario("traces_images", "raw"),
    "traces.E01": _scenario("traces_images", "e01"),
    "ntfs": lambda request: (request.getfixturevalue("ntfs_image"), "none"),
    "ntfs.E01": lambda request: (request.getfixturevalue("ntfs_ewf"), "none"),
    "ntfs-in-gpt": lambda request: (request.getfixturevalue("gpt_image")[0], "none"),
    "broken-records": _built(
        "mft-broken-records.img",
        lambda request: _copy_then(
            request.getfixturevalue("ntfs_image"), _broken_records
        ),
    ),
    "broken-file": _built(
        "mft-broken-file.img",
        lambda request: _copy_then(request.getfixturevalue("ntfs_image"), _broken_file),
    ),
    # Named as test_handover names them: built once for both.
    "many": _built(
        f"handover-{images.build_many_ntfs.__name__}.img",
        lambda _: images.build_many_ntfs,
    ),
    "many-streams": _built(
        f"handover-{images.build_ntfs_many_streams.__name__}.img",
        lambda _: images.build_ntfs_many_streams,
    ),
    "compressed": _built(
        f"handover-{build_ntfs_compressed.__name__}.img",
        lambda _: build_ntfs_compressed,
    ),
    "sparse": _built("mft-sparse.img", lambda _: images.build_ntfs_sparse),
    "orphans": _built("mft-orphans.img", lambda _: images.build_ntfs_orphans),
    "orphans-mended": _built("mft-orphans-mended.img", lambda _: _orphans_mended),
    "orphans-unsure": _built("mft-orphans-unsure.img", lambda _: _orphans_unsure),
    "evtx": _built(
        "mft-evtx.img",
        lambda request: _evtx(request.getfixturevalue("real_data")),
    ),
    "evtx-run-past-end": _built(
        "mft-evtx-run-past-end.img",
        lambda request: _copy_then(_after("evtx")(request), _run_past_end),
    ),
    "cases": _built("mft-cases.img", lambda _: images.build_ntfs_cases),
    "edge-times": _built("mft-edge-times.img", lambda _: images.build_ntfs_edge_times),
    # Deeper than TSK's own walk goes (MftWalker hands it to TSKWalker), and
    # just as deep and as long as it goes.
    "deep": _built("mft-deep.img", lambda _: _deep("d", 132)),
    "deep-127": _built("mft-deep-127.img", lambda _: _deep("d", 125)),
    "long-4095": _built("mft-long-4095.img", lambda _: _deep("n" * 100, 40, 4095)),
    "hostile-names": _built(
        "mft-hostile-names.img", lambda _: _planted(HOSTILE_FOLDERS)
    ),
    "long-name": _built("mft-long-name.img", lambda _: _planted([LONG_FOLDER])),
    "vsstest.qcow2+vss": _real("vsstest.qcow2", "all"),
    "windows_volume.qcow2": _real("windows_volume.qcow2", "none"),
    "vss-in-mbr+vss": lambda request: (
        request.getfixturevalue("vss_in_partition")[0],
        "all",
    ),
}


@pytest.mark.parametrize("case", sorted(IMAGES))
def test_mft_walk_lists_what_tsk_lists(
    case: str, request: pytest.FixtureRequest
) -> None:
    image, vss = IMAGES[case](request)
    doubts: list[str] = []
    compare_walkers(image, vss, doubts)
    # Where the image leaves TSK's answer open, TSK walks it (and so the walks
    # agree); everywhere else the $MFT pass must be what was compared.
    wanted = TSK_WALKS.get(case)
    if wanted is None:
        assert not doubts, f"{case}: MftWalker let TSK walk: {doubts}"
    else:
        assert doubts and all(wanted in doubt for doubt in doubts), doubts


def _keys(items: Iterable[Canon]) -> collections.Counter[tuple[Any, ...]]:
    return collections.Counter((i.path, i.stream, i.inode, i.allocated) for i in items)


def test_mft_walk_lists_names_from_index_slack(
    request: pytest.FixtureRequest,
) -> None:
    """The cases image with every $FILE_NAME time in its INDX buffers set to
    2015: TSK then lists the deleted names left in index slack (it takes a
    slack entry only if its times lie in 1970-2020), and so must MftWalker."""
    plain, _ = IMAGES["cases"](request)
    patched = request.getfixturevalue("built") / "mft-cases-slack-2015.img"
    if not patched.exists():
        shutil.copyfile(plain, patched)
        assert images.set_index_times(patched) > 400
    walked = compare_walkers(patched)
    # What TSK lists only once the times are old enough: the slack names.
    with_slack = _keys(walked[""])
    without = _keys(_walk(plain, "none", "", tsk.TSKWalker)[0])
    slack_only = with_slack - without
    assert slack_only, "TSK lists no name from index slack: the test covers none"
    assert sum(slack_only.values()) >= 20, slack_only
    assert not any(allocated for *_, allocated in slack_only), slack_only
    assert not without - with_slack, without - with_slack


@pytest.mark.parametrize(
    "case", ["cases", "orphans-mended", "sparse", "traces.raw", "broken-file"]
)
def test_workers_walking_ranges_find_what_one_process_finds(
    case: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool scans an NTFS volume in ranges of MFT entries, each walked by the
    worker that scans it: with ranges of 16 entries, every image is cut into
    many, and the scan finds what one process walking the volume finds, the
    streams a range's worker hands back included. On
    broken-file a range meets a record libfsntfs refuses: the ranges' results
    are dropped and TSK's walk of the volume is scanned instead."""
    image, _ = IMAGES[case](request)
    with Evidence(image, warn=lambda *_: None) as evidence:
        (volume,) = evidence.volumes()
        plan = evidence.mft_plan(volume)
        assert plan is not None, "the volume is not walked in ranges"
        entries = evidence.mft_entries(volume, plan, 0, plan.entries, Seen(), print)
        if case == "broken-file":
            with pytest.raises(Doubt, match="MFT entry"):
                list(entries)
    shipped = loader.load([], shipped=True)
    one, _ = scan_image(str(image), shipped, ScanOptions(workers=1))
    monkeypatch.setattr(scan, "MIN_RANGE", 16)
    monkeypatch.setattr(scan, "RANGES_PER_WORKER", 1000)
    # Streams of 4 KiB and more go back to the main process, to be shared.
    monkeypatch.setattr(scan, "HAND_BACK", 4096)
    many, _ = scan_image(str(image), shipped, ScanOptions(workers=2))
    assert timeline(many) == timeline(one)
    assert many.counts == one.counts
    for name in ("unreadable", "skipped", "not_checked", "warnings"):
        assert listed(getattr(many, name)) == listed(getattr(one, name)), name
