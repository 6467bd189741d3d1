"""Benchmark: peak memory of `toolmarks scan` on the images that stress it (#12).

Builds once (cached in --workdir) two NTFS images with mkntfs and an ntfs-3g
FUSE mount, as bench/scan_throughput.py does:

- ``big-sparse``: a 256 MiB volume holding one 10 GiB sparse file with tool
  strings at offset 0, across 4 GiB and in its last bytes (TSK cannot load a
  sparse file larger than its volume: toolmarks reads it through libfsntfs),
  plus a few ordinary files;
- ``wide-dir``: one directory of 100,000 small files (a few with planted tool
  strings or names) and one of 100,000 empty files (two of them named like
  tools),

and measures the existing images of scan_throughput.py too when they are in
the workdir (the 1 GiB bench, the 100,000-file image; never built here), and
``padded-e01``: the 4 GiB bench volume of ``scan_throughput.py --linearity``
padded with zeros to 32 GiB, as an E01 of 1.5 GiB segments (libewf keeps about
160 bytes for every chunk a handle reads, and each worker reads across the
image: 1,048,576 chunks here). Runs
``toolmarks scan IMAGE -o OUT --force`` on each with the default workers,
samples the summed PSS of its process tree and every process's peak RSS, gates
both against 1 GiB, and checks that exactly the planted hits were found, at
their planted offsets. Needs root (ntfs-3g FUSE mount) for the one-time build.
See bench/README.md.

    python bench/memory.py [--workdir DIR]
        [--images big-sparse,wide-dir,existing,padded-e01]
        [--workers N] [--interval S]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import stat
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# Run as `python bench/memory.py`, so its folder is on sys.path.
import scan_throughput as st
from scan_throughput import KIB, MIB, BenchError, FileSpec

GIB = 1024 * MIB
BUDGET = 1 * GIB
# Bumped whenever the generated images change, so cached ones are rebuilt.
MEMORY_LAYOUT_VERSION = 1

BIG_IMAGE_MIB = 256
BIG_FILE = "/data/archive.bin"
BIG_SIZE = 10 * GIB
# (indicator id, value, encoding, offset): one indicator per place, since an
# event reports the first offset of each indicator in a stream. The second
# straddles 4 GiB (a 32-bit offset boundary and an engine read boundary).
BIG_MARKERS = (
    ("wce.string.credentials_editor", "Windows Credentials Editor", "ascii", 0),
    ("dbgview.string.product_name", "Sysinternals DebugView", "wide", 4 * GIB - 11),
    (
        "gsecdump.string.output_admin_line",
        "Administrator(current):500:",
        "ascii",
        BIG_SIZE - 40,
    ),
)
# Ordinary files beside it, read through TSK: one planted string, one tool name.
BIG_DOCS = 16
BIG_DOC_MARKER = ("htran.string.huc_name", "HUC Packet Transmit Tool V", "ascii")
BIG_DOC_NAME = ("pwdump.filename.pwdump_name", "pwdump7.exe")

WIDE_IMAGE_MIB = 1024
WIDE_FILES = 100_000
EMPTY_FILES = 100_000
# Half of them resident in their MFT entry (under about 700 bytes), half not.
WIDE_SIZES = (100, 2000)
WIDE_PLANT_EVERY = 997
EMPTY_NAMES = (
    ("gsecdump.filename.exe", "gsecdump-v2b5.exe"),
    ("wce.filename.exe", "wce.exe"),
)


# --- the images --------------------------------------------------------------


def _cached(workdir: Path, name: str, key: dict, image_mib: int) -> dict | None:
    raw = workdir / f"{name}.raw"
    manifest_path = workdir / f"{name}.json"
    if manifest_path.exists() and raw.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("key") == key and raw.stat().st_size == image_mib * MIB:
            print(f"using cached image {raw}", file=sys.stderr)
            return manifest
    return None


PADDED_GIB = 32


def build_padded_e01(workdir: Path, name: str) -> dict | None:
    """The 4 GiB bench volume padded to PADDED_GIB as an E01, unless cached;
    None when scan_throughput.py --linearity has not built that volume."""
    source = workdir / f"bench-{st.LINEARITY_FACTOR * 1024}M"
    if not (
        source.with_suffix(".raw").exists() and source.with_suffix(".json").exists()
    ):
        print(f"{source}.raw: not in {workdir}, {name} not built", file=sys.stderr)
        return None
    manifest = json.loads(source.with_suffix(".json").read_text())
    key = {
        "version": MEMORY_LAYOUT_VERSION,
        "source": manifest.get("key"),
        "gib": PADDED_GIB,
    }
    e01, done = workdir / f"{name}.E01", workdir / f"{name}.json"
    if e01.exists() and done.exists() and json.loads(done.read_text()) == key:
        print(f"using cached image {e01}", file=sys.stderr)
        return manifest
    if shutil.which("ewfacquirestream") is None:
        raise BenchError("ewfacquirestream is missing (Debian: ewf-tools)")
    done.unlink(missing_ok=True)
    for stale in workdir.glob(f"{name}.E[0-9A-Z][0-9A-Z]"):
        stale.unlink()
    raw = workdir / f"{name}.raw"
    print(f"building {e01} ({PADDED_GIB} GiB of media) ...", file=sys.stderr)
    try:
        st._run(["cp", "--sparse=always", str(source.with_suffix(".raw")), str(raw)])
        with raw.open("r+b") as handle:
            handle.truncate(PADDED_GIB * GIB)
        with raw.open("rb") as stdin:
            st._run(
                ["ewfacquirestream", "-q", "-t", str(workdir / name), "-f", "encase6"]
                + ["-c", "deflate:fast", "-S", "1.5GiB"],
                stdin=stdin,
            )
    finally:
        raw.unlink(missing_ok=True)
    done.write_text(json.dumps(key))
    return manifest


def _new_volume(workdir: Path, name: str, image_mib: int, label: str) -> Path:
    for tool in ("mkntfs", "ntfs-3g", "umount"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is missing (Debian: ntfs-3g, mount)")
    if os.geteuid() != 0:
        raise BenchError("building the image needs root (ntfs-3g FUSE mount)")
    (workdir / f"{name}.json").unlink(missing_ok=True)
    raw = workdir / f"{name}.raw"
    raw.unlink(missing_ok=True)
    with raw.open("wb") as handle:
        handle.truncate(image_mib * MIB)
    st._run(["mkntfs", "--force", "--quick", "--quiet", "--label", label, str(raw)])
    return raw


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _encoded(value: str, encoding: str) -> bytes:
    return value.encode("utf-16-le" if encoding == "wide" else "ascii")


def _planted(
    files: list[FileSpec], names: tuple[tuple[str, str], ...]
) -> tuple[dict[str, list[str]], dict[str, dict[str, int]]]:
    """Planted paths per indicator, and planted string offsets per path."""
    planted: dict[str, list[str]] = {}
    offsets: dict[str, dict[str, int]] = {}
    for spec in files:
        for indicator, _, _, offset in spec.markers:
            planted.setdefault(indicator, []).append(spec.path)
            offsets.setdefault(spec.path, {})[indicator] = offset
        base = spec.path.rsplit("/", 1)[-1]
        for indicator, value in names:
            if base == value:
                planted.setdefault(indicator, []).append(spec.path)
    return planted, offsets


def build_big_sparse(workdir: Path, name: str) -> dict:
    """A small volume with one 10 GiB sparse file, unless cached."""
    key = {
        "memory_layout_version": MEMORY_LAYOUT_VERSION,
        "image_mib": BIG_IMAGE_MIB,
        "big_size": BIG_SIZE,
    }
    manifest = _cached(workdir, name, key, BIG_IMAGE_MIB)
    if manifest:
        return manifest
    rng = random.Random(f"toolmarks-bench-memory-big:{MEMORY_LAYOUT_VERSION}")
    docs = []
    for number in range(BIG_DOCS):
        kind = "random" if number % 2 == 0 else "text"
        base = f"doc{number:02d}.{'bin' if kind == 'random' else 'txt'}"
        if number == 5:
            base = BIG_DOC_NAME[1]
        spec = FileSpec(f"/docs/{base}", rng.randint(1 * KIB, 64 * KIB), kind)
        if number == 3:
            spec.markers.append((*BIG_DOC_MARKER, rng.randrange(0, spec.size - 100)))
        docs.append(spec)
    big = FileSpec(BIG_FILE, BIG_SIZE, "sparse", [*BIG_MARKERS])
    started = time.perf_counter()
    raw = _new_volume(workdir, name, BIG_IMAGE_MIB, "BIGSPARSE")
    print(
        f"building {raw} (one {BIG_SIZE // GIB} GiB sparse file) ...", file=sys.stderr
    )
    mountpoint = Path(tempfile.mkdtemp(prefix="mnt-", dir=workdir))
    try:
        with st.ntfs_mounted(raw, mountpoint):
            (mountpoint / "docs").mkdir()
            (mountpoint / "data").mkdir()
            for number, spec in enumerate(docs):
                _write(mountpoint / spec.path.lstrip("/"), st.content(spec, number))
            fd = os.open(mountpoint / BIG_FILE.lstrip("/"), os.O_WRONLY | os.O_CREAT)
            try:
                # ntfs-3g leaves the unwritten ranges as sparse runs.
                os.ftruncate(fd, BIG_SIZE)
                for _, value, encoding, offset in BIG_MARKERS:
                    os.pwrite(fd, _encoded(value, encoding), offset)
            finally:
                os.close(fd)
            allocated = os.stat(mountpoint / BIG_FILE.lstrip("/")).st_blocks * 512
    finally:
        mountpoint.rmdir()
    planted, offsets = _planted([*docs, big], (BIG_DOC_NAME,))
    manifest = {
        "key": key,
        "files": len(docs) + 1,
        "content_bytes": sum(spec.size for spec in docs) + BIG_SIZE,
        "big_file_allocated_bytes": allocated,
        "planted": planted,
        "offsets": offsets,
        "build_seconds": round(time.perf_counter() - started, 2),
    }
    (workdir / f"{name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def wide_layout() -> list[FileSpec]:
    """The files of /wide, deterministic."""
    rng = random.Random(f"toolmarks-bench-memory-wide:{MEMORY_LAYOUT_VERSION}")
    names = {
        number: name
        for number, (_, name) in zip(range(4999, WIDE_FILES, 33331), st.SMALL_NAMES)
    }
    files = []
    planted = 0
    for number in range(WIDE_FILES):
        kind = "random" if number % 2 == 0 else "text"
        base = names.get(
            number, f"f{number:06d}.{'bin' if kind == 'random' else 'txt'}"
        )
        spec = FileSpec(f"/wide/{base}", rng.randint(*WIDE_SIZES), kind)
        if number % WIDE_PLANT_EVERY == 0:
            spec.size = max(spec.size, 200)
            encoding = "ascii" if planted % 2 == 0 else "wide"
            offset = rng.randrange(0, spec.size - 60)
            spec.markers.append((*st.MAIN_MARKER, encoding, offset))
            planted += 1
        files.append(spec)
    return files


def build_wide_dir(workdir: Path, name: str) -> dict:
    """One directory of 100,000 small files and one of 100,000 empty files,
    unless cached. One writer per directory: creates in one directory are
    serialised by the kernel's directory lock, and 8 writers in one were
    slower than one (measured 6,600 against 9,800 files/s)."""
    key = {
        "memory_layout_version": MEMORY_LAYOUT_VERSION,
        "image_mib": WIDE_IMAGE_MIB,
        "files": WIDE_FILES,
        "empty": EMPTY_FILES,
    }
    manifest = _cached(workdir, name, key, WIDE_IMAGE_MIB)
    if manifest:
        return manifest
    files = wide_layout()
    empty_names = dict(
        zip(range(EMPTY_FILES // 3, EMPTY_FILES, EMPTY_FILES // 3), EMPTY_NAMES)
    )
    empty = [
        f"/empty/{empty_names[n][1] if n in empty_names else f'e{n:06d}.dat'}"
        for n in range(EMPTY_FILES)
    ]
    started = time.perf_counter()
    raw = _new_volume(workdir, name, WIDE_IMAGE_MIB, "WIDEDIR")
    print(f"building {raw} ({WIDE_FILES} + {EMPTY_FILES} files) ...", file=sys.stderr)
    mountpoint = Path(tempfile.mkdtemp(prefix="mnt-", dir=workdir))
    try:
        with st.ntfs_mounted(raw, mountpoint, "big_writes"):
            (mountpoint / "wide").mkdir()
            (mountpoint / "empty").mkdir()
            mounted = time.perf_counter()
            seconds: dict[str, float] = {}

            def write_files() -> None:
                for number, spec in enumerate(files):
                    path = mountpoint / spec.path.lstrip("/")
                    _write(path, st.content(spec, number))
                seconds["write"] = time.perf_counter() - mounted

            def make_empty() -> None:
                # mknod is one FUSE request; open+close are three (measured
                # 18,400 against 13,700 files/s).
                for path in empty:
                    os.mknod(mountpoint / path.lstrip("/"), 0o644 | stat.S_IFREG)
                seconds["mknod"] = time.perf_counter() - mounted

            # One thread per directory: each holds its own directory's lock.
            with ThreadPoolExecutor(2) as pool:
                for future in [pool.submit(write_files), pool.submit(make_empty)]:
                    future.result()
    finally:
        mountpoint.rmdir()
    planted, offsets = _planted(files, st.SMALL_NAMES)
    for path in empty:
        base = path.rsplit("/", 1)[-1]
        for indicator, value in EMPTY_NAMES:
            if base == value:
                planted.setdefault(indicator, []).append(path)
    manifest = {
        "key": key,
        "files": len(files) + len(empty),
        "content_bytes": sum(spec.size for spec in files),
        "planted": planted,
        "offsets": offsets,
        "build_seconds": round(time.perf_counter() - started, 1),
        "write_seconds": round(seconds["write"], 1),
        "mknod_seconds": round(seconds["mknod"], 1),
    }
    (workdir / f"{name}.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# --- measuring ---------------------------------------------------------------


def _status_kib(pid: int, field_name: bytes) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(field_name):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class PeakSampler(st.TreeSampler):
    """scan_throughput's tree PSS sampler, plus every process's peak RSS
    (VmHWM: the kernel's own high-water mark, so peaks between samples count
    while the process lives on to the next sample)."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(pid, interval)
        self.peaks: dict[int, int] = {}  # pid -> VmHWM bytes
        self.commands: dict[int, str] = {}
        self.parents: dict[int, int] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            pids = st._tree(self.pid)
            self.peak = max(self.peak, sum(st._pss(pid) for pid in pids))
            for pid in pids:
                hwm = _status_kib(pid, b"VmHWM:") * KIB
                if hwm:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), hwm)
                # Read again each time: a child seen between fork and exec
                # still shows its parent's command line.
                self.commands[pid] = _cmdline(pid) or self.commands.get(pid, "")
                self.parents.setdefault(pid, _status_kib(pid, b"PPid:"))
            self.stop.wait(self.interval)

    def processes(self) -> list[tuple[str, int]]:
        """(role, peak RSS) of every process seen, largest first: main (the
        scan), worker (forked from it), or the program's name; the GNU time
        wrapper (the sampled root, when used) left out."""
        wrapped = self.commands.get(self.pid, "").startswith("/usr/bin/time ")
        # The scan: the sampled root, or GNU time's child.
        main = self.pid
        if wrapped:
            main = next((p for p, up in self.parents.items() if up == self.pid), 0)
        found = []
        for pid, hwm in self.peaks.items():
            command = self.commands.get(pid, "")
            if wrapped and pid == self.pid:
                continue
            if pid == main:
                role = "main"
            elif command == self.commands.get(main):
                role = "worker"
            else:
                role = Path(command.split(" ", 1)[0]).name or "?"
            found.append((role, hwm))
        return sorted(found, key=lambda item: -item[1])


@dataclass
class Run:
    image: str
    files: int
    wall: float = 0.0
    other_cpu: float = 0.0  # s: what the rest of the machine used meanwhile
    tree_pss: int = 0  # bytes: sampled sum over the tree
    max_rss: int = 0  # bytes: largest single process (GNU time/wait4, VmHWM)
    processes: list[tuple[str, int]] = field(default_factory=list)
    ok: bool = False
    check: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def within(self) -> bool:
        return self.tree_pss < BUDGET and self.max_rss < BUDGET


def run_scan(
    image: Path,
    outdir: Path,
    extra: list[str],
    log: Path,
    interval: float,
) -> tuple[float, float, int, int, list[tuple[str, int]]]:
    """(wall, CPU seconds of other processes meanwhile, peak tree PSS, peak
    single-process RSS, per-process peaks)."""
    shutil.rmtree(outdir, ignore_errors=True)
    command = [sys.executable, "-m", "toolmarks", "scan", str(image)]
    command += ["-o", str(outdir), "--force", *extra]
    samplers: list[PeakSampler] = []

    def sampler(pid: int) -> PeakSampler:
        samplers.append(PeakSampler(pid, interval))
        return samplers[-1]

    run = st.measure(image.name, command, 1, log=log, sampler=sampler)
    processes = samplers[-1].processes()
    max_rss = max([run.max_rss] + [hwm for _, hwm in processes])
    return run.wall, run.other_cpu[0], run.tree_pss, max_rss, processes


def check_offsets(outdir: Path, offsets: dict[str, dict[str, int]]) -> list[str]:
    """Planted strings reported at another offset than planted."""
    found: dict[tuple[str, str], set[int]] = {}
    with open(outdir / "timeline.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row.get("path") not in offsets:
                continue
            for match in row.get("matches", []):
                if match.get("kind") == "string":
                    where = (row["path"], match["indicator"])
                    found.setdefault(where, set()).add(match["detail"]["offset"])
    wrong = []
    for path, planted in offsets.items():
        for indicator, offset in planted.items():
            got = found.get((path, indicator), set())
            if got and got != {offset}:
                wrong.append(f"{path} {indicator} at {sorted(got)}, planted {offset}")
    return wrong


def measure_image(
    workdir: Path, image: Path, manifest: dict, args: argparse.Namespace
) -> Run:
    name = image.name
    run = Run(name, manifest["files"])
    outdir = workdir / f"out-memory-{name}"
    extra = ["--workers", str(args.workers)] if args.workers else []
    if manifest.get("hash_list"):
        extra += ["--indicators", str(workdir / manifest["hash_list"])]
    print(f"scanning {image.name} ...", file=sys.stderr)
    st.warm([image])
    run.wall, run.other_cpu, run.tree_pss, run.max_rss, run.processes = run_scan(
        image, outdir, extra, workdir / f"log-memory-{name}.txt", args.interval
    )
    run.ok, run.check = st.check_findings(outdir, manifest["planted"])
    problems = st.unplanted(outdir, manifest["planted"])
    problems += check_offsets(outdir, manifest.get("offsets", {}))
    if problems:
        run.ok = False
        run.check += "; " + "; ".join(problems[:5])
    scan = json.loads((outdir / "scan.json").read_text())
    run.warnings = [
        f"{w.get('location', '')}: {w.get('message', '')}" for w in scan["warnings"]
    ]
    return run


def print_report(runs: list[Run], manifests: dict[str, dict]) -> None:
    print(
        f"\nbudget {BUDGET // MIB} MiB for the tree PSS (summed proportional set "
        "size, shared pages once) and for every single process's peak RSS; "
        f"{os.cpu_count()} cores\n"
    )
    width = max(len(run.image) for run in runs)
    print(
        f"{'image':<{width}}  {'files':>7}  {'wall s':>7}  {'other CPU s':>11}  "
        f"{'tree PSS MiB':>12}  {'max RSS MiB':>11}  budget  hits"
    )
    for run in runs:
        print(
            f"{run.image:<{width}}  {run.files:7d}  {run.wall:7.1f}  "
            f"{run.other_cpu:11.1f}  "
            f"{run.tree_pss / MIB:12.0f}  {run.max_rss / MIB:11.0f}  "
            f"{'PASS' if run.within else 'FAIL':>6}  {'ok' if run.ok else 'FAIL'}"
        )
    busy = [run.image for run in runs if run.other_cpu > 0.25 * run.wall]
    if busy:
        print(
            "NOTE: other processes used over a quarter of a core during "
            f"{', '.join(busy)}: those wall times are pessimistic (memory is not)."
        )
    print()
    for run in runs:
        peaks = ", ".join(f"{role} {hwm / MIB:.0f}" for role, hwm in run.processes)
        print(f"{run.image}: peak RSS per process (MiB): {peaks}")
        print(f"  findings: {run.check}")
        build = manifests[run.image]
        times = f"built in {build.get('build_seconds', '?')} s"
        if "write_seconds" in build and "mknod_seconds" in build:
            times += (
                f" (small files {build['write_seconds']} s, empty files "
                f"{build['mknod_seconds']} s)"
            )
        if "big_file_allocated_bytes" in build:
            times += (
                f"; {BIG_FILE}: {build['big_file_allocated_bytes'] // KIB} KiB "
                "allocated"
            )
        print(f"  {times}; {len(run.warnings)} warning(s)")
        for warning in run.warnings[:3]:
            print(f"    {warning[:300]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "toolmarks-bench",
        help="where the images (cached), outputs and results go (default: %(default)s)",
    )
    parser.add_argument(
        "--images",
        default="big-sparse,wide-dir,existing,padded-e01",
        help="comma-separated: big-sparse, wide-dir, existing (scan_throughput's "
        "images found in the workdir), padded-e01 (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="passed to scan (default: its own)"
    )
    parser.add_argument(
        "--interval", type=float, default=0.1, help="sampling period, s (0.1)"
    )
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    wanted = {name.strip() for name in args.images.split(",") if name.strip()}
    unknown = wanted - {"big-sparse", "wide-dir", "existing", "padded-e01"}
    if unknown:
        parser.error(f"unknown images: {', '.join(sorted(unknown))}")
    try:
        manifests: dict[str, dict] = {}  # by image file name
        if "big-sparse" in wanted:
            name = "memory-big-sparse"
            manifests[f"{name}.raw"] = build_big_sparse(workdir, name)
        if "wide-dir" in wanted:
            name = "memory-wide-dir"
            manifests[f"{name}.raw"] = build_wide_dir(workdir, name)
        if "padded-e01" in wanted:
            name = "memory-padded-e01"
            padded = build_padded_e01(workdir, name)
            if padded is not None:
                manifests[f"{name}.E01"] = padded
        if "existing" in wanted:
            for name in ("bench-1024M", f"bench-small-{st.SMALL_FILES // 1000}k"):
                path = workdir / f"{name}.json"
                if not (path.exists() and (workdir / f"{name}.raw").exists()):
                    print(f"{name}: not in {workdir}, not measured", file=sys.stderr)
                    continue
                for suffix in (".raw", ".E01"):
                    if (workdir / f"{name}{suffix}").exists():
                        manifests[f"{name}{suffix}"] = json.loads(path.read_text())
        runs = [
            measure_image(workdir, workdir / image, manifest, args)
            for image, manifest in manifests.items()
        ]
    except BenchError as error:
        print(f"memory: error: {error}", file=sys.stderr)
        return 2
    if not runs:
        print("memory: no image to measure", file=sys.stderr)
        return 2
    print_report(runs, manifests)
    results = {
        run.image: {
            "files": run.files,
            "wall_s": round(run.wall, 2),
            "other_cpu_s": round(run.other_cpu, 1),
            "tree_pss_mib": round(run.tree_pss / MIB, 1),
            "max_rss_mib": round(run.max_rss / MIB, 1),
            "processes_mib": [[role, round(b / MIB, 1)] for role, b in run.processes],
            "within_budget": run.within,
            "hits_ok": run.ok,
            "check": run.check,
            "warnings": run.warnings,
            "build": {k: v for k, v in manifests[run.image].items() if "sec" in k},
        }
        for run in runs
    }
    (workdir / "results-memory.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(run.within and run.ok for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
