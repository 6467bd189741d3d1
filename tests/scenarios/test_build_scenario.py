"""Tests of scripts/build_scenario.py: the built images hold what the manifest says.

Every check reads the images with sleuthkit (fls, icat, mmls) and libewf
(ewfverify, ewfinfo), tools independent of the ntfs-3g mount that wrote them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TRACES_PATH = REPO_ROOT / ".." / "shared" / "research" / "traces.yaml"
FORMATS = ("raw", "e01", "split_e01", "mbr", "gpt")
SECTOR = 512
# traces.yaml tool names -> the tool ids used in the descriptions' expect lists.
TOOL_IDS = {
    "GETMAIL": "getmail",
    "mapiget": "mapiget",
    "ZXHttpServer": "zxhttpserver",
    "Windows Credential Editor (WCE)": "wce",
}
_FLS_LINE = re.compile(
    r"^(?P<kind>\S+) (?P<deleted>\* )?(?P<addr>[\d-]+)(?:\(realloc\))?:\t(?P<path>.*)$"
)


def _need(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing tool(s): {', '.join(missing)}")


def _run(*command: str | Path) -> str:
    result = subprocess.run(
        [str(part) for part in command], check=True, capture_output=True
    )
    return result.stdout.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class FsEntry:
    """One line of `fls -r -p`."""

    kind: str
    deleted: bool
    addr: str
    path: str

    @property
    def inode(self) -> int:
        return int(self.addr.split("-")[0])


def fls(image: Path, volume_offset: int, *options: str) -> dict[str, FsEntry]:
    """Files of the volume by path ("dir/name" or "dir/name:stream")."""
    command: list[str | Path] = ["fls", "-r", "-p", *options]
    if volume_offset:
        command += ["-o", str(volume_offset // SECTOR)]
    entries = {}
    for line in _run(*command, image).splitlines():
        match = _FLS_LINE.match(line)
        if match and not match["path"].startswith("$"):
            entries[match["path"]] = FsEntry(
                match["kind"], bool(match["deleted"]), match["addr"], match["path"]
            )
    return entries


def icat(image: Path, volume_offset: int, addr: str) -> bytes:
    command = ["icat"]
    if volume_offset:
        command += ["-o", str(volume_offset // SECTOR)]
    return subprocess.run(
        [*command, str(image), addr], check=True, capture_output=True
    ).stdout


def fs_name(planted: dict[str, Any]) -> str:
    """The manifest entry's name as fls prints it."""
    name = planted["path"].lstrip("/")
    return f"{name}:{planted['stream']}" if planted["stream"] else name


def marker_bytes(marker: dict[str, Any]) -> bytes:
    if marker["encoding"] == "hex":
        return bytes.fromhex(marker["value"])
    codec = "utf-16-le" if marker["encoding"] == "utf-16le" else marker["encoding"]
    return marker["value"].encode(codec)


def check_planted(image: Path, manifest: dict[str, Any], fmt: str) -> list[str]:
    """Compare the volume in image with the manifest; return the differences."""
    offset = manifest["images"][fmt]["volume_offset"]
    listing = fls(image, offset)
    problems = []
    for planted in manifest["files"]:
        name = fs_name(planted)
        entry = listing.get(name)
        if entry is None:
            problems.append(f"{name}: not listed by fls")
            continue
        if entry.inode != planted["mft_entry"]:
            problems.append(
                f"{name}: MFT entry {entry.inode} != {planted['mft_entry']}"
            )
        if entry.deleted == planted["allocated"]:
            problems.append(f"{name}: deleted={entry.deleted} but manifest allocated")
        data = icat(image, offset, entry.addr)
        if len(data) != planted["size"]:
            problems.append(f"{name}: {len(data)} bytes != {planted['size']}")
        if hashlib.md5(data).hexdigest() != planted["md5"]:
            problems.append(f"{name}: md5 differs from the manifest")
        for marker in planted["markers"]:
            expected = marker_bytes(marker)
            start = marker["offset"]
            if data[start : start + len(expected)] != expected:
                problems.append(f"{name}: marker {marker['value']!r} not at {start}")
    # Exactly the planted files: nothing more on the volume.
    planted_names = {fs_name(p) for p in manifest["files"]}
    extra = {
        path
        for path, entry in listing.items()
        if not entry.kind.endswith("d") and path not in planted_names
    }
    if extra:
        problems.append(f"files not in the manifest: {sorted(extra)}")
    directories = {p for p, e in listing.items() if e.kind == "d/d"}
    wanted = {d.lstrip("/") for d in manifest["directories"]}
    if directories != wanted:
        problems.append(f"directories differ: {sorted(directories ^ wanted)}")
    return problems


def region_md5(image: Path, offset: int, size: int) -> str:
    digest = hashlib.md5()
    with image.open("rb") as handle:
        handle.seek(offset)
        remaining = size
        while remaining:
            block = handle.read(min(remaining, 1 << 20))
            assert block, "image ends inside the volume"
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def _files(manifest: dict[str, Any], path: str) -> list[dict[str, Any]]:
    return [f for f in manifest["files"] if f["path"] == path]


# --- the workstation scenario ---------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_planted_files_match_manifest(
    workstation_images: dict[str, Any], fmt: str
) -> None:
    _need("fls", "icat")
    problems = check_planted(
        workstation_images[fmt], workstation_images["manifest"], fmt
    )
    assert not problems, "\n".join(problems)


def test_manifest_records_the_described_facts(
    workstation_images: dict[str, Any],
) -> None:
    manifest = workstation_images["manifest"]
    for planted in manifest["files"]:
        assert planted["path"].startswith("/") and "\\" not in planted["path"]
        assert isinstance(planted["expect"], list)
        assert re.fullmatch(r"[0-9a-f]{32}", planted["md5"])
        assert re.fullmatch(r"[0-9a-f]{40}", planted["sha1"])
        assert re.fullmatch(r"[0-9a-f]{64}", planted["sha256"])
    (big,) = _files(manifest, "/Windows/Temp/big.bin")
    assert big["size"] == 40 * 1024 * 1024
    assert big["markers"][0]["offset"] == big["size"] - 100
    assert big["expect"][0]["tool"] == "wce"
    (tool,) = _files(manifest, "/Users/alice/Downloads/tool.bin")
    assert tool["size"] == 64 * 1024
    assert tool["expect"] == [{"kind": "md5", "test_indicator": True}]
    (zx,) = _files(manifest, "/ProgramData/zx/zxhttp.dat")
    assert zx["markers"][0]["encoding"] == "utf-16le"
    (deleted,) = _files(manifest, "/Users/alice/AppData/Local/Temp/deleted_gm.tmp")
    assert deleted["allocated"] is False
    main, hidden = _files(manifest, "/Users/alice/Documents/report.txt")
    assert (main["stream"], main["expect"]) == ("", [])
    assert hidden["stream"] == "hidden" and hidden["expect"][0]["tool"] == "mapiget"
    for decoy in ("12-attach.doc", "attach.doc", "mail.txt.bak", "credentials.txt"):
        (entry,) = _files(manifest, f"/Users/alice/Documents/{decoy}")
        assert entry["expect"] == []


def test_deleted_file_is_listed_as_deleted_and_readable(
    workstation_images: dict[str, Any],
) -> None:
    _need("fls", "icat")
    raw = workstation_images["raw"]
    deleted = [f for f in workstation_images["manifest"]["files"] if not f["allocated"]]
    assert deleted
    listing = fls(raw, 0, "-d")
    for planted in deleted:
        entry = listing[fs_name(planted)]
        assert entry.deleted
        data = icat(raw, 0, entry.addr)
        assert hashlib.md5(data).hexdigest() == planted["md5"]
        assert b"Lu's Crazy Profile (democode)" in data


def test_alternate_data_stream_holds_the_string(
    workstation_images: dict[str, Any],
) -> None:
    _need("fls", "icat")
    raw = workstation_images["raw"]
    listing = fls(raw, 0)
    main = listing["Users/alice/Documents/report.txt"]
    hidden = listing["Users/alice/Documents/report.txt:hidden"]
    assert main.inode == hidden.inode and main.addr != hidden.addr
    assert b"WNetCancelConnection2W" in icat(raw, 0, hidden.addr)
    assert b"WNetCancelConnection2W" not in icat(raw, 0, main.addr)


def _epoch(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp())


def test_times_are_the_described_ones(workstation_images: dict[str, Any]) -> None:
    _need("fls")
    manifest = workstation_images["manifest"]
    body = _run("fls", "-r", "-p", "-m", "/", workstation_images["raw"])
    # bodyfile: md5|name|inode|mode|uid|gid|size|atime|mtime|ctime|crtime
    times = {}
    for line in body.splitlines():
        fields = line.split("|")
        if "($FILE_NAME)" not in fields[1]:
            name = fields[1].removesuffix(" (deleted)")
            times[name] = {
                "accessed": int(fields[7]),
                "modified": int(fields[8]),
                "created": int(fields[10]),
            }
    for planted in manifest["files"]:
        name = "/" + fs_name(planted)
        expected = {key: _epoch(value) for key, value in planted["times"].items()}
        assert times[name] == expected, name
    stamp = _epoch(manifest["timestamp"])
    for directory in manifest["directories"]:
        assert set(times[directory].values()) == {stamp}, directory


@pytest.mark.parametrize("fmt", ["e01", "split_e01"])
def test_e01_verifies(workstation_images: dict[str, Any], fmt: str) -> None:
    _need("ewfverify", "ewfinfo")
    manifest = workstation_images["manifest"]
    image = workstation_images[fmt]
    output = _run("ewfverify", "-q", image)
    assert "ewfverify: SUCCESS" in output
    stored = re.search(r"MD5 hash stored in file:\s+([0-9a-f]{32})", output)
    assert stored and stored[1] == manifest["volume"]["md5"]
    info = _run("ewfinfo", image)
    assert manifest["images"][fmt]["case_number"] in info
    assert f"Media size:\t\t{manifest['volume']['size'] // (1 << 20)} MiB" in info


def test_split_e01_has_several_segments(workstation_images: dict[str, Any]) -> None:
    info = workstation_images["manifest"]["images"]["split_e01"]
    directory = workstation_images["split_e01"].parent
    assert len(info["files"]) >= 2
    assert [Path(f).suffix for f in info["files"]][:2] == [".E01", ".E02"]
    for name in info["files"]:
        assert (directory / name).stat().st_size <= info["segment_size"]


@pytest.mark.parametrize(
    ("fmt", "table"),
    [("mbr", "DOS Partition Table"), ("gpt", "GUID Partition Table")],
)
def test_partition_table_places_the_volume(
    workstation_images: dict[str, Any], fmt: str, table: str
) -> None:
    _need("mmls")
    manifest = workstation_images["manifest"]
    image = workstation_images[fmt]
    output = _run("mmls", image)
    assert table in output
    rows = re.findall(
        r"^\d+:\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(.*)$", output, re.MULTILINE
    )
    slots = {
        (int(start), int(length)): description
        for slot, start, _end, length, description in rows
        if slot not in ("Meta", "-------")
    }
    partitions = manifest["images"][fmt]["partitions"]
    assert len(slots) == len(partitions)
    for partition in partitions:
        key = (partition["offset"] // SECTOR, partition["size"] // SECTOR)
        assert key in slots, f"partition {partition['number']} not at {key}"
    ntfs = partitions[0]
    assert ntfs["offset"] == 1 << 20 == manifest["images"][fmt]["volume_offset"]
    label = "NTFS" if fmt == "mbr" else "Basic data partition"
    assert label in slots[(ntfs["offset"] // SECTOR, ntfs["size"] // SECTOR)]
    md5 = region_md5(image, ntfs["offset"], ntfs["size"])
    assert md5 == manifest["volume"]["md5"]


def _traces() -> list[dict[str, Any]]:
    if not TRACES_PATH.is_file():
        pytest.fail(f"{TRACES_PATH} is missing")
    return yaml.safe_load(TRACES_PATH.read_text(encoding="utf-8"))["tools"]


def test_expectations_agree_with_research_traces(
    workstation_images: dict[str, Any],
) -> None:
    """Hits and decoys are what they claim: no traces.yaml string or filename
    pattern matches where expect does not say so, and every expected one does."""
    _need("fls", "icat")
    strings = []
    patterns = []
    for tool in _traces():
        tool_id = TOOL_IDS.get(tool["name"], tool["name"])
        for item in tool.get("strings") or []:
            value = item["value"]
            strings.append((tool_id, value, value.encode(), value.encode("utf-16-le")))
        for item in tool.get("filename_patterns") or []:
            flags = re.IGNORECASE if "i" in str(item.get("flags", "")) else 0
            patterns.append((tool_id, re.compile(item["regex"], flags)))
    raw = workstation_images["raw"]
    listing = fls(raw, 0)
    problems = []
    for planted in workstation_images["manifest"]["files"]:
        name = fs_name(planted)
        data = icat(raw, 0, listing[name].addr)
        found = {
            (tool_id, value)
            for tool_id, value, ascii_form, wide_form in strings
            if ascii_form in data or wide_form in data
        }
        wanted = {
            (e["tool"], e["value"])
            for e in planted["expect"]
            if e.get("kind") == "string"
        }
        if found != wanted:
            problems.append(f"{name}: strings found {found}, expected {wanted}")
        if planted["stream"]:
            continue
        windows_path = "C:" + planted["path"].replace("/", "\\")
        found_tools = {t for t, regex in patterns if regex.search(windows_path)}
        wanted_tools = {
            e["tool"] for e in planted["expect"] if e.get("kind") == "filename"
        }
        if found_tools != wanted_tools:
            problems.append(f"{name}: names hit {found_tools}, expected {wanted_tools}")
    assert not problems, "\n".join(problems)


# --- the committed demo image -------------------------------------------------------


def test_demo_image_is_small_and_verifies(demo_image: dict[str, Any]) -> None:
    _need("ewfverify")
    manifest = demo_image["manifest"]
    assert demo_image["e01"].stat().st_size < 1 << 20
    assert manifest["volume"]["size"] <= 8 << 20
    assert len({f["path"] for f in manifest["files"]}) <= 15
    assert any(not f["allocated"] for f in manifest["files"])
    assert any(f["stream"] for f in manifest["files"])
    output = _run("ewfverify", "-q", demo_image["e01"])
    assert "ewfverify: SUCCESS" in output
    assert manifest["volume"]["md5"] in output


def test_demo_planted_files_match_manifest(demo_image: dict[str, Any]) -> None:
    _need("fls", "icat")
    problems = check_planted(demo_image["e01"], demo_image["manifest"], "e01")
    assert not problems, "\n".join(problems)


def test_demo_image_is_up_to_date(
    demo_image: dict[str, Any], scenario_builder: ModuleType, tmp_path: Path
) -> None:
    """A fresh build of demo.yaml plants the same files as the committed image."""
    try:
        scenario_builder.check_prerequisites(["raw"])
    except scenario_builder.ScenarioError as error:
        pytest.fail(str(error))
    description = REPO_ROOT / "test_data" / "scenarios" / "demo.yaml"
    subprocess.run(
        [sys.executable, scenario_builder.__file__, description, "-o", tmp_path]
        + ["--formats", "raw"],
        check=True,
        capture_output=True,
    )
    fresh = json.loads((tmp_path / "demo.manifest.json").read_text())
    committed = demo_image["manifest"]
    hint = "rebuild test_data/demo (see test_data/scenarios/README.md)"
    assert fresh["files"] == committed["files"], hint
    assert fresh["directories"] == committed["directories"], hint


# --- description parsing and prerequisites ------------------------------------------

_VOLUME = "volume: {size_mib: 8}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "files: [{path: a.txt, text: x, expect: [], colour: red}]",
            "unknown key(s): colour",
        ),
        ("files: [{path: a.txt, text: x}]", "missing 'expect'"),
        ("files: [{path: a.txt, text: x, hex: '00', expect: []}]", "exactly one of"),
        (
            (
                "files: [{path: a.bin, random: {size: 10, seed: 1}, expect: [],"
                " strings: [{offset: 5, value: abcdefghij}]}]"
            ),
            "do not fit",
        ),
        ("files: [{path: 'a\\b.txt', text: x, expect: []}]", "'/' separators"),
        (
            (
                "files: [{path: Docs/a.txt, text: x, expect: []},"
                " {path: docs/b.txt, text: y, expect: []}]"
            ),
            "in case",
        ),
        (
            "files: [{path: a.txt, copy: ../shared/nothing/here, expect: []}]",
            "is not a file",
        ),
        ("e01: {segment_size_mib: 0.5}\nfiles: []", "segment_size_mib must be >= 1"),
        ("files: [{path: a.bin, random: {size: 9 MiB, seed: 1}, expect: []}]", "fit"),
        (
            (
                "files: [{path: j, expect: [], usn: {records: [{name: a, file: 1-1,"
                " parent: 5-5, time: 2021-01-01, reasons: [OPEN]}]}}]"
            ),
            "unknown flag(s) OPEN",
        ),
        (
            (
                "files: [{path: j, expect: [], usn: {records: [{name: a, file: 1,"
                " parent: 5-5, time: 2021-01-01, reasons: [CLOSE]}]}}]"
            ),
            "not an MFT reference",
        ),
        ("files: [{path: j, expect: [], usn: {sparse: 100, records: []}}]", "multiple"),
    ],
)
def test_bad_descriptions_are_rejected(
    scenario_builder: ModuleType, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(_VOLUME + text + "\n")
    with pytest.raises(scenario_builder.ScenarioError, match=re.escape(message)):
        scenario_builder.load_description(path)


def test_content_is_deterministic(scenario_builder: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        _VOLUME
        + "files:\n"
        + "  - path: d/a.bin\n"
        + "    random: {size: 1 KiB, seed: 7}\n"
        + "    strings: [{offset: -100, value: AB, encoding: wide}]\n"
        + "    expect: [{tool: t, kind: string}]\n"
    )
    scenario = scenario_builder.load_description(path)
    (stream,) = scenario.files[0].streams
    assert len(stream.data) == 1024
    assert stream.data[924:928] == "AB".encode("utf-16-le")
    assert stream.markers == [
        {"offset": 924, "length": 4, "value": "AB", "encoding": "utf-16le"}
    ]
    seed = hashlib.shake_256(b"toolmarks-scenario:7").digest(1024)
    assert stream.data[:924] == seed[:924]
    assert scenario.e01["case_number"] == "TOOLMARKS-ok"


def test_missing_tools_and_root_are_reported(
    scenario_builder: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        scenario_builder.shutil,
        "which",
        lambda tool: None if tool == "ewfacquirestream" else real_which(tool),
    )
    monkeypatch.setattr(scenario_builder.os, "geteuid", lambda: 0)
    if real_which("mkntfs") and real_which("ntfs-3g") and real_which("umount"):
        with pytest.raises(scenario_builder.ScenarioError, match="ewf-tools"):
            scenario_builder.check_prerequisites(["raw", "e01"])
    monkeypatch.setattr(scenario_builder.shutil, "which", lambda tool: "/bin/true")
    monkeypatch.setattr(scenario_builder.os, "geteuid", lambda: 1000)
    with pytest.raises(scenario_builder.ScenarioError, match="must run as root"):
        scenario_builder.check_prerequisites(["raw"])


def test_cli_rejects_unknown_format(scenario_builder: ModuleType) -> None:
    description = REPO_ROOT / "test_data" / "scenarios" / "demo.yaml"
    result = subprocess.run(
        [sys.executable, scenario_builder.__file__, description, "-o", "/nonexistent"]
        + ["--formats", "raw,vhdx"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "unknown format(s) vhdx" in result.stderr


def test_usn_journal_is_planted_sparse_and_readable(
    traces_images: dict[str, Any],
) -> None:
    """$Extend/$UsnJrnl:$J as Windows keeps it: a sparse stream whose records
    libfsntfs (pyfsntfs) reads from the volume, independently of the builder."""
    import pyfsntfs

    raw = traces_images["raw"]
    [planted] = [
        f
        for f in traces_images["manifest"]["files"]
        if (f["path"], f["stream"]) == ("/$Extend/$UsnJrnl", "$J")
    ]
    lines = _run("fls", "-r", "-p", raw).splitlines()
    [addr] = [
        m["addr"]
        for m in map(_FLS_LINE.match, lines)
        if m and m["path"] == "$Extend/$UsnJrnl:$J"
    ]
    data = icat(raw, 0, addr)
    assert hashlib.sha256(data).hexdigest() == planted["sha256"]
    assert data[: 64 * 1024] == bytes(64 * 1024)
    assert "Name: $J   Non-Resident, Sparse" in _run("istat", raw, addr.split("-")[0])
    description = yaml.safe_load(
        (REPO_ROOT / "test_data" / "scenarios" / "traces.yaml").read_text()
    )
    [spec] = [f for f in description["files"] if f["path"] == "$Extend/$UsnJrnl"]
    [journal_spec] = [s for s in spec["streams"] if s["name"] == "$J"]
    volume = pyfsntfs.volume()
    volume.open(str(raw))
    try:
        journal = volume.get_usn_change_journal()
        count = 0
        while journal.read_usn_record():
            count += 1
    finally:
        volume.close()
    # The 19 real records (MANIFEST usn/UsnJrnl.raw) and every planted one.
    assert count == 19 + len(journal_spec["usn"]["records"])
