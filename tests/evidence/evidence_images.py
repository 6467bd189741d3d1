"""Small disk images built for the evidence tests, and raw copies of containers.

NTFS comes from mkntfs and an ntfs-3g FUSE mount (root needed), FAT16 and the
partition tables are written byte by byte here, so the only tools needed are
the ones the project documents (ntfs-3g, sfdisk, ewf-tools, sleuthkit).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# What the NTFS fixture image holds; tests assert these.
NTFS_PLAIN = b"plain file content\n"
NTFS_MAIN = b"main data stream\n"
NTFS_ADS = b"evil stream content: this is hidden\n"
NTFS_DELETED = b"DELETED-TOOL-CONTENT-" * 500  # non-resident: spans clusters
NTFS_NESTED = b"nested file\n"

FAT_FILES = {
    "/TOOL.EXE": b"MZ fake tool " * 300,
    "/README.TXT": b"hello from FAT\n",
    "/DIR1/INNER.TXT": b"inside a directory\n",
}
FAT_DELETED_NAME = "/_ELETED.TXT"  # TSK shows the erased first letter as "_"
FAT_DELETED = b"deleted FAT content " * 200


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, check=True, capture_output=True, **kwargs)
    except FileNotFoundError as exception:
        pytest.fail(f"tool needed by the test is missing: {command[0]} ({exception})")
    except subprocess.CalledProcessError as exception:
        pytest.fail(
            f"{' '.join(command)} failed ({exception.returncode}): {exception.stderr!r}"
        )


@contextlib.contextmanager
def ntfs_mount(image: Path, streams: bool = False) -> Iterator[Path]:
    """Mounts image with ntfs-3g (FUSE) and waits, on exit, until it is written.

    ntfs-3g runs in the foreground (no_detach) so that waiting for it to exit
    guarantees the image file is complete before anyone reads it.
    """
    mount_point = Path(tempfile.mkdtemp(prefix="toolmarks-ntfs-"))
    options = "no_detach,streams_interface=windows" if streams else "no_detach"
    try:
        process = subprocess.Popen(
            ["ntfs-3g", "-o", options, str(image), str(mount_point)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        pytest.fail("tool needed by the test is missing: ntfs-3g")
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(mount_point):
            if process.poll() is not None:
                pytest.fail(f"ntfs-3g could not mount {image} (root and FUSE needed)")
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"ntfs-3g did not mount {image} within 30 s")
            time.sleep(0.05)
        yield mount_point
    finally:
        if os.path.ismount(mount_point):
            subprocess.run(["umount", str(mount_point)], check=False)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail(f"ntfs-3g did not finish writing {image}")
        shutil.rmtree(mount_point, ignore_errors=True)


def build_ntfs(path: Path) -> None:
    """16 MiB NTFS with a file, a file with ADS "evil", a deleted file."""
    _run(["truncate", "-s", "16M", str(path)])
    _run(["mkntfs", "-F", "-Q", "-q", str(path)])
    with ntfs_mount(path, streams=True) as mount_point:
        (mount_point / "plain.txt").write_bytes(NTFS_PLAIN)
        (mount_point / "file.txt").write_bytes(NTFS_MAIN)
        # ntfs-3g's windows streams interface maps "name:stream" to the ADS.
        with open(f"{mount_point}/file.txt:evil", "wb") as stream:
            stream.write(NTFS_ADS)
        nested = mount_point / "Users" / "bob" / "AppData"
        nested.mkdir(parents=True)
        (nested / "nested.txt").write_bytes(NTFS_NESTED)
        victim = mount_point / "Users" / "bob" / "wce.exe"
        victim.write_bytes(NTFS_DELETED)
        os.sync()
        victim.unlink()


def build_many_ntfs(path: Path) -> None:
    """64 MiB NTFS with 2,000 files in 20 folders, some deleted, one folder gone."""
    _run(["truncate", "-s", "64M", str(path)])
    _run(["mkntfs", "-F", "-Q", "-q", str(path)])
    with ntfs_mount(path) as mount_point:
        for folder in range(20):
            directory = mount_point / f"dir{folder:02d}" / "sub"
            directory.mkdir(parents=True)
            for number in range(100):
                (directory / f"file{number:03d}.txt").write_bytes(b"x" * number)
        for folder in range(0, 20, 4):
            for number in range(0, 100, 3):
                (mount_point / f"dir{folder:02d}/sub/file{number:03d}.txt").unlink()
        shutil.rmtree(mount_point / "dir19")


def build_ext2_reused_inode(path: Path, scratch: Path) -> None:
    """ext2 where deleted /tool.exe's inode now belongs to /sub/other.txt.

    Built with mke2fs and debugfs (e2fsprogs), no mount needed.
    """
    source = scratch / "ext-source"
    source.mkdir()
    (source / "keep.txt").write_bytes(b"keep\n")
    tool = scratch / "tool.bin"
    tool.write_bytes(b"secret tool\n")
    other = scratch / "other.bin"
    other.write_bytes(b"innocent file\n")
    _run(["mke2fs", "-q", "-t", "ext2", "-d", str(source), str(path), "4M"])
    commands = scratch / "debugfs.cmd"
    commands.write_text(
        "mkdir sub\n"
        f"write {tool} tool.exe\n"
        f"write {tool} z.txt\n"
        "rm tool.exe\n"
        "cd sub\n"
        f"write {other} other.txt\n"
    )
    _run(["debugfs", "-w", "-f", str(commands), str(path)])


def ntfs_mft_record_offset(image: Path, entry: int) -> int:
    """Byte offset of MFT record entry (MFT of a fresh image is contiguous)."""
    with open(image, "rb") as handle:
        boot = handle.read(512)
    bytes_per_sector = struct.unpack_from("<H", boot, 0x0B)[0]
    sectors_per_cluster = boot[0x0D]
    mft_cluster = struct.unpack_from("<Q", boot, 0x30)[0]
    return mft_cluster * bytes_per_sector * sectors_per_cluster + entry * 1024


def break_ntfs_record(image: Path, entry: int) -> None:
    """Points the first-attribute offset of an MFT record past its end."""
    offset = ntfs_mft_record_offset(image, entry)
    with open(image, "r+b") as handle:
        handle.seek(offset)
        record = bytearray(handle.read(1024))
        assert record[:4] == b"FILE", "not an MFT record"
        record[0x14:0x16] = struct.pack("<H", 0x3F0)
        handle.seek(offset)
        handle.write(record)


# The sparse file of build_ntfs_sparse: 8 GiB on a 64 MiB volume, a WCE string
# (wce.string.credentials_editor) at offset 0 and a gsecdump output line
# (gsecdump.string.output_admin_line) at 4 GiB, zeros (holes) in between.
SPARSE_PATH = "/Windows/Temp/dump.bin"
SPARSE_SIZE = 8 << 30
SPARSE_FAR = 4 << 30
SPARSE_HEAD = b"Windows Credentials Editor"
SPARSE_TAIL = b"Administrator(current):500:"
# A file TSK has no trouble with, and a really empty one, beside it.
SPARSE_PLAIN = b"an ordinary file\n" * 1000
# /notes.txt: ordinary content, a small alternate data stream, and a sparse one
# larger than the volume with the WCE string at SPARSE_ADS_AT: TSK then gives up
# on the whole entry, and fls lists neither stream.
SPARSE_NOTES = b"meeting notes\n" * 100
SPARSE_SMALL = b"a small stream\n"
SPARSE_ADS_SIZE = 128 << 20
SPARSE_ADS_AT = 100 << 20

# build_ntfs_many_streams: two files with STREAM_COUNT alternate data streams.
# /spread.txt's streams are non-resident, one per extension MFT entry (more
# entries than TSK's attribute list parser holds); /packed.txt's are small and
# resident, many per extension entry (more distinct attributes than it holds).
STREAM_COUNT = 500
STREAM_TOOL = b"Windows Credentials Editor"  # in the last stream of each file


def stream_name(number: int) -> str:
    return f"ads{number:03d}"


def stream_content(path: str, number: int) -> bytes:
    body = f"{path} stream {number:03d}\n".encode()
    if path == "/spread.txt":
        body *= 120  # over 3 KiB: non-resident
    if number == STREAM_COUNT - 1:
        body += STREAM_TOOL
    return body


def build_ntfs_sparse(path: Path) -> None:
    """64 MiB NTFS holding the 8 GiB sparse SPARSE_PATH, /plain.txt, /empty.txt
    and /notes.txt with its streams "small" and "hidden" (sparse)."""
    _run(["truncate", "-s", "64M", str(path)])
    _run(["mkntfs", "-F", "-Q", "-q", str(path)])
    with ntfs_mount(path, streams=True) as mount_point:
        target = mount_point / SPARSE_PATH.lstrip("/")
        target.parent.mkdir(parents=True)
        with open(target, "wb") as sparse:
            sparse.write(SPARSE_HEAD)
            sparse.seek(SPARSE_FAR)
            sparse.write(SPARSE_TAIL)
            sparse.truncate(SPARSE_SIZE)
        (mount_point / "plain.txt").write_bytes(SPARSE_PLAIN)
        (mount_point / "empty.txt").write_bytes(b"")
        (mount_point / "notes.txt").write_bytes(SPARSE_NOTES)
        with open(f"{mount_point}/notes.txt:small", "wb") as small:
            small.write(SPARSE_SMALL)
        with open(f"{mount_point}/notes.txt:hidden", "wb") as hidden:
            hidden.seek(SPARSE_ADS_AT)
            hidden.write(SPARSE_HEAD)
            hidden.truncate(SPARSE_ADS_SIZE)


def build_ntfs_many_streams(path: Path) -> None:
    """64 MiB NTFS with /spread.txt and /packed.txt, STREAM_COUNT ADS each."""
    _run(["truncate", "-s", "64M", str(path)])
    _run(["mkntfs", "-F", "-Q", "-q", str(path)])
    with ntfs_mount(path, streams=True) as mount_point:
        for name in ("/spread.txt", "/packed.txt"):
            (mount_point / name[1:]).write_bytes(b"main stream\n")
            for number in range(STREAM_COUNT):
                with open(f"{mount_point}{name}:{stream_name(number)}", "wb") as out:
                    out.write(stream_content(name, number))


# What the image of build_ntfs_direct holds: path (":" and a stream name for an
# ADS) -> content as libfsntfs reads it, each at least 64 KiB unless said.
DIRECT_CHUNK = 64 * 1024
DIRECT_INIT = 100_000  # bytes of /short-init.bin initialised; the rest reads 0


def _seeded(label: str, size: int) -> bytes:
    """size deterministic bytes that do not compress or repeat."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


DIRECT_FILES = {
    "/big.bin": _seeded("big", 3 * 1024 * 1024 + 17),
    "/fragmented-a.bin": _seeded("a", 12 * DIRECT_CHUNK),
    "/fragmented-b.bin": _seeded("b", 12 * DIRECT_CHUNK + 5),
    "/streams.txt": b"main stream of streams.txt\n",
    "/streams.txt:big": _seeded("ads", 200_000),
    "/exactly-64k.bin": _seeded("edge", DIRECT_CHUNK),
    "/under-64k.bin": _seeded("under", DIRECT_CHUNK - 1),  # read by libfsntfs
    "/holes.bin": _seeded("h1", DIRECT_CHUNK)  # sparse in the middle
    + bytes(4 * DIRECT_CHUNK)
    + _seeded("h2", DIRECT_CHUNK),
    "/short-init.bin": _seeded("init", DIRECT_INIT) + bytes(256 * 1024 - DIRECT_INIT),
}


def build_ntfs_direct(path: Path) -> None:
    """64 MiB NTFS with the streams of DIRECT_FILES: one large file, two files
    written into the holes of a full volume (so fragmented), a large ADS, files of 64 KiB and one byte
    less, a file with a hole, and /short-init.bin, whose $DATA says that only
    its first DIRECT_INIT bytes were written (NTFS reads the rest as zeros)."""
    _run(["truncate", "-s", "64M", str(path)])
    _run(["mkntfs", "-F", "-Q", "-q", str(path)])
    files = DIRECT_FILES
    with ntfs_mount(path, streams=True) as mount_point:
        # First: its record lies where the $MFT of a fresh volume does.
        (mount_point / "short-init.bin").write_bytes(
            _seeded("init", 256 * 1024)  # the bytes past DIRECT_INIT: stale
        )
        for name in ("/big.bin", "/exactly-64k.bin", "/under-64k.bin"):
            (mount_point / name[1:]).write_bytes(files[name])
        (mount_point / "streams.txt").write_bytes(files["/streams.txt"])
        with open(f"{mount_point}/streams.txt:big", "wb") as stream:
            stream.write(files["/streams.txt:big"])
        # The volume filled with 64 KiB files, every other one deleted: the
        # two files written then take the holes, one run each.
        fillers = []
        with contextlib.suppress(OSError):  # no space left: full
            while True:
                filler = mount_point / f"filler{len(fillers):04d}"
                fillers.append(filler)
                filler.write_bytes(bytes(DIRECT_CHUNK))
        for filler in fillers[::2]:
            filler.unlink(missing_ok=True)
        for name in ("/fragmented-a.bin", "/fragmented-b.bin"):
            (mount_point / name[1:]).write_bytes(files[name])
        with open(mount_point / "holes.bin", "wb") as out:
            out.write(files["/holes.bin"][:DIRECT_CHUNK])
            out.seek(5 * DIRECT_CHUNK)
            out.write(files["/holes.bin"][5 * DIRECT_CHUNK :])
    entry = ntfs_entry_of(path, "/short-init.bin")

    def initialised(record: bytearray) -> None:
        attribute = struct.unpack_from("<H", record, 0x14)[0]
        while struct.unpack_from("<I", record, attribute)[0] != 0x80:
            attribute += struct.unpack_from("<I", record, attribute + 4)[0]
        assert record[attribute + 8] == 1, "short-init.bin: $DATA is resident"
        struct.pack_into("<Q", record, attribute + 0x38, DIRECT_INIT)

    patch_ntfs_record(path, entry, initialised)


def build_ntfs_evtx(path: Path, evtx: Path, inside: str) -> None:
    """16 MiB NTFS with a copy of the event log evtx at the path inside."""
    _run(["truncate", "-s", "16M", str(path)])
    _run(["mkntfs", "-F", "-Q", "-q", str(path)])
    with ntfs_mount(path) as mount_point:
        target = mount_point / inside.lstrip("/")
        target.parent.mkdir(parents=True)
        target.write_bytes(evtx.read_bytes())


def ntfs_entry_of(image: Path, inside: str) -> int:
    """The MFT entry of a path, by sleuthkit's ifind."""
    result = _run(["ifind", "-n", inside, str(image)])
    return int(result.stdout.split()[0])


def patch_ntfs_record(image: Path, entry: int, edit) -> None:
    """Applies edit(record) to MFT record entry with its fixups undone, then
    redoes them: the last two bytes of each sector go back into the update
    sequence array and the update sequence number takes their place."""
    offset = ntfs_mft_record_offset(image, entry)
    with open(image, "r+b") as handle:
        handle.seek(offset)
        record = bytearray(handle.read(1024))
        assert record[:4] == b"FILE", "not an MFT record"
        array, count = struct.unpack_from("<HH", record, 4)
        number = bytes(record[array : array + 2])
        for index in range(1, count):
            end = index * 512
            assert record[end - 2 : end] == number, "fixup mismatch"
            record[end - 2 : end] = record[array + 2 * index : array + 2 * index + 2]
        edit(record)
        for index in range(1, count):
            end = index * 512
            record[array + 2 * index : array + 2 * index + 2] = record[end - 2 : end]
            record[end - 2 : end] = number
        handle.seek(offset)
        handle.write(record)


def move_first_data_run_past_the_end(image: Path, entry: int) -> None:
    """Points the first data run of the unnamed non-resident $DATA of MFT entry
    entry at a cluster past the end of the volume (same field widths)."""

    def edit(record: bytearray) -> None:
        attribute = struct.unpack_from("<H", record, 0x14)[0]
        while True:
            kind, length = struct.unpack_from("<II", record, attribute)
            assert kind != 0xFFFFFFFF and length, "no non-resident unnamed $DATA"
            if (
                kind == 0x80
                and record[attribute + 8] == 1
                and not record[attribute + 9]
            ):
                break
            attribute += length
        run = attribute + struct.unpack_from("<H", record, attribute + 0x20)[0]
        length_size, offset_size = record[run] & 0x0F, record[run] >> 4
        assert offset_size >= 2, "run offset field too small to move far"
        start = run + 1 + length_size
        far = (0x7F << (8 * (offset_size - 1))) | 1
        record[start : start + offset_size] = far.to_bytes(offset_size, "little")

    patch_ntfs_record(image, entry, edit)


def _dos_date_time(year: int, month: int, day: int, hour: int, minute: int) -> bytes:
    date = ((year - 1980) << 9) | (month << 5) | day
    time = (hour << 11) | (minute << 5)
    return struct.pack("<HH", time, date)


def _dir_entry(name: str, attr: int, cluster: int, size: int) -> bytes:
    if name in (".", "..") or attr == 0x08:
        short = name.ljust(11).encode("ascii")  # label and dot entries: no 8.3 split
    else:
        stem, _, ext = name.partition(".")
        short = stem.ljust(8).encode("ascii") + ext.ljust(3).encode("ascii")
    time_date = _dos_date_time(2013, 5, 17, 10, 30)
    time, date = time_date[:2], time_date[2:]
    return (
        short
        + bytes([attr, 0, 0])
        + time
        + date  # creation
        + date  # access
        + struct.pack("<H", 0)  # high cluster
        + time
        + date  # modification
        + struct.pack("<HI", cluster, size)
    )


def build_fat16(path: Path) -> None:
    """16 MiB FAT16: FAT_FILES, a subdirectory and one deleted file."""
    sector, per_cluster, reserved, fats, root_entries = 512, 4, 1, 2, 512
    total = 32768
    fat_sectors = 32
    root_start = reserved + fats * fat_sectors
    data_start = root_start + root_entries * 32 // sector
    cluster_size = sector * per_cluster
    image = bytearray(total * sector)

    boot = bytearray(sector)
    boot[0:3] = b"\xeb\x3c\x90"
    boot[3:11] = b"MSDOS5.0"
    struct.pack_into(
        "<HBHBHHBHHHII", boot, 11,
        sector, per_cluster, reserved, fats, root_entries, total, 0xF8,
        fat_sectors, 32, 64, 0, 0,
    )  # fmt: skip
    boot[36:39] = b"\x80\x00\x29"
    boot[39:43] = b"\x12\x34\x56\x78"
    boot[43:54] = b"TOOLMARKS  "
    boot[54:62] = b"FAT16   "
    boot[510:512] = b"\x55\xaa"
    image[0:sector] = boot

    fat = [0] * (fat_sectors * sector // 2)
    fat[0], fat[1] = 0xFFF8, 0xFFFF
    next_cluster = 2

    def store(data: bytes, chain: bool = True) -> int:
        nonlocal next_cluster
        first = next_cluster
        count = max(1, -(-len(data) // cluster_size))
        for index in range(count):
            cluster = first + index
            if chain:
                fat[cluster] = 0xFFFF if index == count - 1 else cluster + 1
            offset = (data_start + (cluster - 2) * per_cluster) * sector
            piece = data[index * cluster_size : (index + 1) * cluster_size]
            image[offset : offset + len(piece)] = piece
        next_cluster += count
        return first

    root = [_dir_entry("TOOLMARKS", 0x08, 0, 0)]
    tool = FAT_FILES["/TOOL.EXE"]
    root.append(_dir_entry("TOOL.EXE", 0x20, store(tool), len(tool)))
    readme = FAT_FILES["/README.TXT"]
    root.append(_dir_entry("README.TXT", 0x20, store(readme), len(readme)))
    # Deleted as Windows does it: first byte 0xE5, FAT chain freed.
    deleted_cluster = store(FAT_DELETED, chain=False)
    entry = bytearray(
        _dir_entry("DELETED.TXT", 0x20, deleted_cluster, len(FAT_DELETED))
    )
    entry[0] = 0xE5
    root.append(bytes(entry))
    inner = FAT_FILES["/DIR1/INNER.TXT"]
    inner_cluster = store(inner)
    dir_cluster = next_cluster
    directory = (
        _dir_entry(".", 0x10, dir_cluster, 0)
        + _dir_entry("..", 0x10, 0, 0)
        + _dir_entry("INNER.TXT", 0x20, inner_cluster, len(inner))
    )
    assert store(directory) == dir_cluster
    root.append(_dir_entry("DIR1", 0x10, dir_cluster, 0))

    root_bytes = b"".join(root)
    image[root_start * sector : root_start * sector + len(root_bytes)] = root_bytes
    fat_bytes = struct.pack(f"<{len(fat)}H", *fat)
    for copy in range(fats):
        start = (reserved + copy * fat_sectors) * sector
        image[start : start + len(fat_bytes)] = fat_bytes
    path.write_bytes(bytes(image))


def build_gpt(path: Path, ntfs: Path, fat: Path) -> tuple[int, int]:
    """GPT disk with ntfs in p1 and fat in p2; returns their start sectors."""
    ntfs_sectors = ntfs.stat().st_size // 512
    fat_sectors = fat.stat().st_size // 512
    first, second = 2048, 2048 + ntfs_sectors
    total = (second + fat_sectors + 2048) * 512
    _run(["truncate", "-s", str(total), str(path)])
    layout = (
        "label: gpt\n"
        f"start={first}, size={ntfs_sectors}, "
        "type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n"
        f"start={second}, size={fat_sectors}, "
        "type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n"
    )
    _run(["sfdisk", "-q", str(path)], input=layout.encode())
    with open(path, "r+b") as disk:
        for start, source in ((first, ntfs), (second, fat)):
            disk.seek(start * 512)
            disk.write(source.read_bytes())
    return first, second


def build_mbr_past_end(path: Path, ext_image: Path) -> None:
    """4 MiB MBR disk: p1 holds ext_image, p2 runs past the end, p3 starts past it."""
    size = 4 * 1024 * 1024
    disk = bytearray(size)
    data = ext_image.read_bytes()
    disk[2048 * 512 : 2048 * 512 + len(data)] = data

    def entry(kind: int, start: int, count: int) -> bytes:
        return bytes([0, 0, 0, 0, kind, 0, 0, 0]) + struct.pack("<II", start, count)

    table = (
        entry(0x83, 2048, 2048)
        + entry(0x83, 4096, 1_000_000)
        + entry(0x07, 9_000_000, 2048)
        + bytes(16)
    )
    disk[446:510] = table
    disk[510:512] = b"\x55\xaa"
    path.write_bytes(bytes(disk))


def build_mbr_around(volume: Path, target: Path) -> int:
    """Sparse MBR disk with volume as partition 1 at sector 2048; returns offset."""
    offset = 2048 * 512
    size = volume.stat().st_size
    sectors = -(-size // 512)
    table = bytes([0, 0, 0, 0, 0x07, 0, 0, 0]) + struct.pack("<II", 2048, sectors)
    with open(volume, "rb") as source:
        _write_sparse(
            lambda length, at: _read_at(source, at - offset, length, offset),
            offset + sectors * 512,
            target,
        )
    with open(target, "r+b") as disk:
        disk.seek(446)
        disk.write(table + bytes(48))
        disk.write(b"\x55\xaa")
    return offset


def _read_at(source, at: int, length: int, offset: int) -> bytes:
    """Reads the volume for the disk range [at, at + length), zeros before it."""
    if at < 0:
        head = min(-at, length)
        return bytes(head) + _read_at(source, 0, length - head, offset)
    source.seek(at)
    data = source.read(length)
    return data + bytes(length - len(data))


def build_ewf(raw: Path, target: Path) -> Path:
    """Split E01 (4 MiB segments) of raw by ewfacquirestream; returns the .E01."""
    with open(raw, "rb") as source:
        _run(
            [
                "ewfacquirestream", "-q", "-d", "sha1", "-S", str(4 * 1024 * 1024),
                "-C", "case-42", "-D", "toolmarks test", "-E", "ev-1",
                "-e", "examiner", "-N", "notes", "-t", str(target),
            ],
            stdin=source,
        )  # fmt: skip
    return target.with_suffix(".E01")


def _write_sparse(read_at, size: int, target: Path) -> None:
    """Copies size bytes from read_at(length, offset) without the zero blocks."""
    block = 1 << 20
    zero = bytes(block)
    with open(target, "wb") as out:
        offset = 0
        while offset < size:
            data = read_at(min(block, size - offset), offset)
            if not data:
                raise AssertionError(f"short read at {offset} while copying")
            if data != zero[: len(data)]:
                out.seek(offset)
                out.write(data)
            offset += len(data)
        out.truncate(size)


def qcow_to_raw(source: Path, target: Path) -> None:
    """Raw copy of a QCOW image through pyqcow (for fls, which cannot read QCOW)."""
    import pyqcow

    qcow = pyqcow.file()
    qcow.open(str(source))
    try:
        _write_sparse(qcow.read_buffer_at_offset, qcow.get_media_size(), target)
    finally:
        qcow.close()


def vss_stores_to_raw(source: Path, directory: Path) -> list[Path]:
    """Raw copies of every VSS store of a QCOW-wrapped NTFS volume (pyvshadow)."""
    import pyqcow
    import pyvshadow

    qcow = pyqcow.file()
    qcow.open(str(source))
    volume = pyvshadow.volume()
    volume.open_file_object(qcow)
    paths = []
    try:
        for index in range(volume.number_of_stores):
            store = volume.get_store(index)
            target = directory / f"vss{index + 1}.raw"
            _write_sparse(store.read_buffer_at_offset, store.volume_size, target)
            paths.append(target)
    finally:
        volume.close()
        qcow.close()
    return paths


def digest_of(path: Path, name: str = "md5") -> str:
    digest = hashlib.new(name)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# build_ntfs_orphans: deleted entries no name points to any more, as TSK lists
# them under /$OrphanFiles (paths there, the planted content of each).
ORPHAN_FILES = {
    "/$OrphanFiles/gone/early.bin": b"EARLY-ORPHAN " * 10,
    "/$OrphanFiles/gone/a.txt": b"orphan a\n",
    "/$OrphanFiles/gone/b.bin": b"ORPHAN-B-CONTENT-" * 400,
    "/$OrphanFiles/gone/sub/c.txt": b"deep orphan\n",
    "/$OrphanFiles/old.txt": b"old orphan\n",
    "/$OrphanFiles/tool.bin": b"ORPHAN-TOOL-" * 800,
    "/$OrphanFiles/^d^txt": b"odd name\n",
}
ORPHAN_ADS = ("/$OrphanFiles/gone/a.txt", "evil", b"orphan stream\n")
# 100 three-byte characters: TSK cuts the orphan's name to 256 bytes, inside
# the 86th character.
ORPHAN_LONG = "\u65e5" * 100 + ".txt"
ORPHAN_LONG_PATH = "/$OrphanFiles/" + "\u65e5" * 85 + "\\xe6"
ORPHAN_NAMED_DELETED = "/keep/deleted.txt"


def _file_names(record: bytearray) -> list[int]:
    """Offsets of the contents of the $FILE_NAME attributes of an MFT record."""
    found = []
    attribute = struct.unpack_from("<H", record, 0x14)[0]
    while True:
        kind, length = struct.unpack_from("<II", record, attribute)
        if kind == 0xFFFFFFFF or not length:
            return found
        if kind == 0x30:
            found.append(
                attribute + struct.unpack_from("<H", record, attribute + 0x14)[0]
            )
        attribute += length


def _orphan_entry(image: Path, entry: int, name: list[int] | None = None, dos=False):
    """Makes a deleted entry an orphan as a reused parent directory would (its
    $FILE_NAME's parent sequence number no longer matches), and optionally
    rewrites its name (UTF-16 units, same length) or marks it a DOS name."""

    def edit(record: bytearray) -> None:
        (content,) = _file_names(record)
        seq = struct.unpack_from("<H", record, content + 6)[0]
        struct.pack_into("<H", record, content + 6, (seq + 7) & 0xFFFF)
        if name is not None:
            assert record[content + 0x40] == len(name)
            struct.pack_into(f"<{len(name)}H", record, content + 0x42, *name)
        if dos:
            record[content + 0x41] = 2  # the DOS namespace

    patch_ntfs_record(image, entry, edit)


def _erase_index_entries(image: Path, name: str) -> None:
    """Zeroes every directory index entry (live or in slack) naming name, the
    last two bytes of each sector left alone (update sequence numbers)."""
    data = bytearray(image.read_bytes())
    wanted = name.encode("utf-16-le")
    at = data.find(wanted)
    while at != -1:
        start = at - 0x42 - 0x10  # index entry header, then $FILE_NAME
        attribute = struct.unpack_from("<I", data, at - 0x42 - 0x18)[0]
        if start >= 0 and data[at - 2] == len(name) and attribute != 0x30:
            for index in range(start, at + len(wanted)):
                if index % 512 < 510:
                    data[index] = 0
        at = data.find(wanted, at + 1)
    image.write_bytes(data)


def build_ntfs_orphans(path: Path) -> dict[str, int]:
    """32 MiB NTFS with orphan files (ORPHAN_FILES, ORPHAN_LONG, a DOS-named one
    and a deleted file whose names and 40 streams spilled into extension MFT
    entries), an orphan directory holding files, an ADS and a subdirectory,
    and a deleted file still named (ORPHAN_NAMED_DELETED). Returns the MFT
    entries of the orphans made by patching, by name."""
    _run(["truncate", "-s", "32M", str(path)])
    _run(["mkntfs", "-F", "-Q", "-q", str(path)])
    with ntfs_mount(path, streams=True) as mount:
        # Made before its directory: a lower MFT entry than the directory's,
        # so TSK lists it at the top first and takes it out again.
        (mount / "early.bin").write_bytes(ORPHAN_FILES["/$OrphanFiles/gone/early.bin"])
        gone = mount / "gone"
        gone.mkdir()
        for name in ("a.txt", "b.bin"):
            (gone / name).write_bytes(ORPHAN_FILES[f"/$OrphanFiles/gone/{name}"])
        with open(f"{gone}/a.txt:{ORPHAN_ADS[1]}", "wb") as stream:
            stream.write(ORPHAN_ADS[2])
        (gone / "sub").mkdir()
        (gone / "sub" / "c.txt").write_bytes(
            ORPHAN_FILES["/$OrphanFiles/gone/sub/c.txt"]
        )
        os.rename(mount / "early.bin", gone / "early.bin")
        keep = mount / "keep"
        keep.mkdir()
        (keep / "stay.txt").write_bytes(b"stay\n")
        (keep / "deleted.txt").write_bytes(b"deleted but still named\n")
        reuse = mount / "reuse"
        reuse.mkdir()
        (reuse / "old.txt").write_bytes(ORPHAN_FILES["/$OrphanFiles/old.txt"])
        (reuse / "tool.bin").write_bytes(ORPHAN_FILES["/$OrphanFiles/tool.bin"])
        (reuse / "odd.txt").write_bytes(ORPHAN_FILES["/$OrphanFiles/^d^txt"])
        (reuse / ORPHAN_LONG).write_bytes(b"long name\n")
        (reuse / "dos.txt").write_bytes(b"dos name\n")
        spill = mount / "spill.txt"
        spill.write_bytes(b"main\n")
        for number in range(40):
            with open(f"{spill}:s{number:02d}", "wb") as stream:
                stream.write(bytes([65 + number % 26]) * 3000)
        (mount / "late.txt").write_bytes(b"late\n")
        names = ["gone", "old.txt", "tool.bin", "odd.txt", ORPHAN_LONG, "dos.txt"]
        entries = {
            name: os.stat(
                mount / ("gone" if name == "gone" else f"reuse/{name}")
            ).st_ino
            for name in names
        }
        os.sync()
        (keep / "deleted.txt").unlink()
        shutil.rmtree(gone)
        shutil.rmtree(reuse)
        spill.unlink()
    for name, entry in entries.items():
        _erase_index_entries(path, name)
        if name == "odd.txt":
            # A lone high surrogate (TSK drops the unit after it too) and a
            # lone low one: "^d^txt".
            units = [0xD83D, ord("d"), ord("d"), 0xDC00, ord("t"), ord("x"), ord("t")]
            _orphan_entry(path, entry, units)
        else:
            _orphan_entry(path, entry, dos=name == "dos.txt")
    return entries


def build_ntfs_cases(path: Path) -> None:
    """64 MiB NTFS with the cases where an $MFT-order walk and TSK's directory
    walk may part: hard links, a DOS name, a rename and a move (old names left
    in index slack), deleted entries reused by new files, a deleted tree, a
    400-file directory with half its files deleted, streams on a directory and
    on a deleted file."""
    _run(["truncate", "-s", "64M", str(path)])
    _run(["mkntfs", "-F", "-Q", "-q", str(path)])
    with ntfs_mount(path, streams=True) as mount:
        docs = mount / "docs"
        docs.mkdir()
        other = mount / "other"
        other.mkdir()
        # One entry, three names in two directories.
        (docs / "linked.txt").write_bytes(b"linked\n")
        os.link(docs / "linked.txt", other / "link2.txt")
        os.link(docs / "linked.txt", docs / "link3.txt")
        # Win32 and DOS $FILE_NAMEs apart.
        long_name = docs / "Long File Name.txt"
        long_name.write_bytes(b"long\n")
        os.setxattr(long_name, "system.ntfs_dos_name", b"LONGFI~1.TXT")
        (docs / "before.txt").write_bytes(b"renamed\n")
        os.rename(docs / "before.txt", docs / "after.txt")
        (docs / "moved.txt").write_bytes(b"moved\n")
        os.rename(docs / "moved.txt", other / "moved.txt")
        # Deleted, its MFT entry then taken by a new file elsewhere.
        (docs / "victim.txt").write_bytes(b"victim\n")
        os.sync()
        (docs / "victim.txt").unlink()
        (other / "newcomer.txt").write_bytes(b"newcomer\n")
        (docs / "gone.txt").write_bytes(b"gone\n")
        with open(f"{docs}/gone.txt:secret", "wb") as stream:
            stream.write(b"secret stream\n")
        with open(f"{docs}:dirstream", "wb") as stream:
            stream.write(b"on a directory\n")
        tree = mount / "tree"
        (tree / "sub").mkdir(parents=True)
        for number in range(5):
            (tree / f"t{number}.txt").write_bytes(b"t" * 100)
            (tree / "sub" / f"s{number}.txt").write_bytes(b"s" * 100)
        # Large enough for $INDEX_ALLOCATION: deleted names stay in INDX slack.
        big = mount / "big"
        big.mkdir()
        for number in range(400):
            (big / f"file-{number:04d}-with-a-longish-name.txt").write_bytes(
                b"x" * (number % 50)
            )
        os.sync()
        (docs / "gone.txt").unlink()
        shutil.rmtree(tree)
        for number in range(0, 400, 2):
            (big / f"file-{number:04d}-with-a-longish-name.txt").unlink()
        # The entries freed above, reused by new files in another directory.
        fresh = mount / "fresh"
        fresh.mkdir()
        for number in range(30):
            (fresh / f"n{number}.txt").write_bytes(b"new\n")


# 2015-06-01 12:00:00 UTC as an NTFS FILETIME (100 ns units since 1601).
FILETIME_2015 = (1433160000 + 11644473600) * 10**7
# 2020-01-01 00:00:00 UTC: TSK takes a deleted index entry only if its times
# lie in 1970-2020, and ntfs-3g writes the times of the day it runs.
_FILETIME_2020 = (1577836800 + 11644473600) * 10**7
_FILETIME_2100 = (4102444800 + 11644473600) * 10**7


def _index_record_size(boot: bytes) -> int:
    cluster = struct.unpack_from("<H", boot, 0x0B)[0] * boot[0x0D]
    clusters = struct.unpack_from("<b", boot, 0x44)[0]
    return clusters * cluster if clusters > 0 else 1 << -clusters


def set_index_times(image: Path, filetime: int = FILETIME_2015) -> int:
    """Sets the creation, modification, change and access times of every
    $FILE_NAME in the image's INDX buffers (live index entries and the old
    ones in slack) that lies after 2020 to filetime; returns how many were
    set. Each buffer's fixups are undone first and redone after, so the last
    two bytes of each sector keep the update sequence number."""
    data = bytearray(image.read_bytes())
    size = _index_record_size(data[:512])
    sectors = size // 512
    changed = 0
    at = data.find(b"INDX")
    while at != -1:
        if at % 512 == 0 and at + size <= len(data):
            changed += _set_buffer_times(data, at, size, sectors, filetime)
        at = data.find(b"INDX", at + 4)
    image.write_bytes(data)
    return changed


def _set_buffer_times(
    data: bytearray, start: int, size: int, sectors: int, filetime: int
) -> int:
    array, count = struct.unpack_from("<HH", data, start + 4)
    if count != sectors + 1 or array + 2 * count > size:
        return 0
    record = data[start : start + size]
    number = bytes(record[array : array + 2])
    for index in range(1, count):
        end = index * 512
        if record[end - 2 : end] != number:
            return 0  # not a whole index buffer (torn, or a copy elsewhere)
        record[end - 2 : end] = record[array + 2 * index : array + 2 * index + 2]
    changed = 0
    # An index entry: 16 bytes of header, then the $FILE_NAME, whose four
    # times start at +8; entries in slack stay where they were, 8-aligned.
    for entry in range(0x18, size - 0x52, 8):
        times = struct.unpack_from("<4Q", record, entry + 24)
        name_length, namespace = record[entry + 16 + 64], record[entry + 16 + 65]
        if (
            all(_FILETIME_2020 <= value < _FILETIME_2100 for value in times)
            and name_length
            and namespace <= 3
        ):
            struct.pack_into("<4Q", record, entry + 24, *[filetime] * 4)
            changed += 1
    for index in range(1, count):
        end = index * 512
        record[array + 2 * index : array + 2 * index + 2] = record[end - 2 : end]
        record[end - 2 : end] = number
    data[start : start + size] = record
    return changed


def end_zeroed_attribute_lists(image: Path) -> list[int]:
    """Ends the attribute list of every MFT record where it runs into zeros
    (an attribute of type 0) with the end marker; returns those records.

    build_ntfs_orphans' _erase_index_entries zeroes stale index entries left
    after a record's used part, and with them the attributes they straddle
    (the deleted directory's $BITMAP and end marker): libfsntfs then refuses
    the record, TSK reads it."""
    with open(image, "rb") as handle:
        handle.seek(ntfs_mft_record_offset(image, 0))
        mft = handle.read(1024)
    # $MFT's own size, from its unnamed $DATA (non-resident, real size at +0x30).
    attribute = struct.unpack_from("<H", mft, 0x14)[0]
    while struct.unpack_from("<I", mft, attribute)[0] != 0x80:
        attribute += struct.unpack_from("<I", mft, attribute + 4)[0]
    records = struct.unpack_from("<Q", mft, attribute + 0x30)[0] // 1024
    mended = []
    for entry in range(records):
        offset = ntfs_mft_record_offset(image, entry)
        with open(image, "rb") as handle:
            handle.seek(offset)
            head = handle.read(1024)
        if head[:4] != b"FILE":
            continue
        attribute = struct.unpack_from("<H", head, 0x14)[0]
        while attribute + 8 <= 1024:
            kind, length = struct.unpack_from("<II", head, attribute)
            if kind == 0xFFFFFFFF or not kind or not length:
                break
            attribute += length
        if attribute + 8 > 1024 or kind == 0xFFFFFFFF:
            continue

        def edit(record: bytearray, at: int = attribute) -> None:
            struct.pack_into("<II", record, at, 0xFFFFFFFF, 0)
            struct.pack_into("<I", record, 0x18, at + 8)

        patch_ntfs_record(image, entry, edit)
        mended.append(entry)
    return mended


def set_standard_times(image: Path, entry: int, times: tuple[int, ...]) -> None:
    """Sets the $STANDARD_INFORMATION FILETIMEs of MFT record entry: created,
    modified, MFT entry modified, accessed (any 64-bit values)."""

    def edit(record: bytearray) -> None:
        attribute = struct.unpack_from("<H", record, 0x14)[0]
        while struct.unpack_from("<I", record, attribute)[0] != 0x10:
            length = struct.unpack_from("<I", record, attribute + 4)[0]
            assert length, "no $STANDARD_INFORMATION"
            attribute += length
        content = attribute + struct.unpack_from("<H", record, attribute + 0x14)[0]
        struct.pack_into("<4Q", record, content, *times)

    patch_ntfs_record(image, entry, edit)


# Times at the edges of TSK's conversion to POSIX seconds and nanoseconds
# (nt2unixtime, nt2nano): none, before 1970, past 2038 and past 2106 (more
# seconds than 32 bits hold), the largest 64-bit values.
_EPOCH = 116_444_736_000_000_000  # 1970-01-01 as a FILETIME
EDGE_TIMES = {
    "/plain.txt": (0, 1, _EPOCH - 1, _EPOCH),
    "/file.txt": (_EPOCH + 1, (2**31 + 5) * 10**7 + _EPOCH, 2**63 - 1, 2**64 - 1),
    "/Users/bob/AppData/nested.txt": (
        (2**32 + 7) * 10**7 + _EPOCH + 1234567,
        2**63,
        (2**32 - 1) * 10**7 + _EPOCH + 9_999_999,
        0,
    ),
}


def build_ntfs_edge_times(path: Path) -> None:
    """build_ntfs's image with EDGE_TIMES in three files' $STANDARD_INFORMATION."""
    build_ntfs(path)
    for inside, times in EDGE_TIMES.items():
        set_standard_times(path, ntfs_entry_of(path, inside), times)


def build_ntfs_deep(path: Path, name: str, levels: int, last: int = 0) -> str:
    """32 MiB NTFS with /deep/NAME/NAME/... levels deep (TSK's own walk stops
    at 128 levels and at paths of 4,096 bytes), the file f<level>.txt in each
    level and deleted in every other one, a file whose path is last bytes
    long in the deepest directory (if last), and two names in /case apart
    only in case (POSIX name space). Returns the deepest file's path."""
    _run(["truncate", "-s", "32M", str(path)])
    _run(["mkntfs", "-F", "-Q", "-q", str(path)])
    inside = "/deep"
    with ntfs_mount(path) as mount:
        (mount / "deep").mkdir()
        # By directory descriptor: the paths pass Linux's PATH_MAX.
        parent = os.open(mount / "deep", os.O_RDONLY | os.O_DIRECTORY)
        files = []
        for level in range(levels):
            os.mkdir(name, dir_fd=parent)
            here = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=parent)
            os.close(parent)
            parent = here
            inside += f"/{name}"
            files.append(f"f{level}.txt")
            if level == levels - 1 and last:
                files.append("x" * (last - len(inside) - 1))
            for file in files:
                handle = os.open(file, os.O_WRONLY | os.O_CREAT, dir_fd=parent)
                os.write(handle, b"level %d\n" % level)
                os.close(handle)
            if level % 2:
                os.sync()
                os.unlink(files[0], dir_fd=parent)
            files = []
        os.close(parent)
        case = mount / "case"
        case.mkdir()
        (case / "a.txt").write_bytes(b"lower\n")
        (case / "A.txt").write_bytes(b"upper\n")
    return inside
