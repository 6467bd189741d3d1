"""Benchmark: time spent in the registry, prefetch, event log and journal parsers.

Parses the real hives, prefetch files and event logs of ../shared/test_data/real
with the shipped indicator set and prints keys, files or records per second, with
a baseline measured in the same run: reading the same bytes and hashing them with
MD5 (what the content scan costs for those files anyway). Artefact detection must
stay a small share of a scan.

    python bench/parsers.py [--image IMAGE]

With --image it also scans IMAGE (e.g. the traces scenario, .cache/scenarios/
traces-*/traces.raw, built by the tests) and prints the share of the scan spent
in each parser.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import lzma
import os
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from toolmarks.indicators import compiler, loader
from toolmarks.parsers import eventlog, prefetch, registry, usn

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "test_data" / "real"


def hive_bytes() -> dict[str, bytes]:
    hives = {}
    for path in sorted((REAL / "registry").rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            hives[path.name] = lzma.decompress(data) if path.suffix == ".xz" else data
    return hives


def timed(function) -> tuple[object, float]:
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def parse_all(folder: str, pattern: str, parse, compiled) -> tuple:
    """(files, results, parse seconds, md5 seconds, MiB) of one kind of file."""
    files = sorted(p for p in (REAL / folder).rglob(pattern) if p.is_file())
    contents = [p.read_bytes() for p in files]
    results, seconds = timed(
        lambda: [
            parse(io.BytesIO(data), str(path), compiled)
            for path, data in zip(files, contents)
        ]
    )
    _, md5_seconds = timed(lambda: [hashlib.md5(d).hexdigest() for d in contents])
    return files, results, seconds, md5_seconds, sum(map(len, contents)) / 2**20


def scan_share(image: str) -> None:
    from toolmarks.engine.scan import ScanOptions, scan_image

    start = time.perf_counter()
    result, _ = scan_image(image, loader.load(), ScanOptions(workers=1))
    total = time.perf_counter() - start
    for kind, seconds in sorted(result.parser_seconds.items()):
        files = result.counts.get(f"{kind}_files", 0)
        print(
            f"scan of {image}: {kind} parser {seconds:.3f} s for {files} files, "
            f"{seconds / total:.1%} of the {total:.2f} s scan"
        )


USN_SIZE = 1024 * 2**20  # a 1 GiB $J, as Windows 10 sizes it by default
USN_RECORDS = 32 * 2**20  # of records at its end; the rest is sparse zeros
_USN_V2 = struct.Struct("<IHHQQqqIIIIHH")
# A realistic run: browser caches, logs, temp files; one tool name in 1,000.
_USN_NAMES = [
    "f_00a3c1",
    "data_1",
    "index.dat",
    "Microsoft-Windows-Kernel-PnP%4Configuration.evtx",
    "~WRS{4C3B8A0E-8D6C-4B8E-9A4F-1D2E3F405162}.tmp",
    "NTUSER.DAT.LOG1",
    "report final (2).docx",
    "WebCacheV01.dat",
    "Cookies-journal",
    "settings.dat",
]
_USN_REASONS = [0x100, 0x102, 0x80000102, 0x2, 0x80000002, 0x200, 0x80000200]


def _usn_records(size: int) -> bytes:
    """Records as Windows writes them: in 4096-byte blocks, zero padded."""
    out = bytearray()
    number = 0
    while len(out) < size:
        name = _USN_NAMES[number % len(_USN_NAMES)]
        if number % 1000 == 999:
            name = "wceaux.dll"
        encoded = name.encode("utf-16-le")
        length = (60 + len(encoded) + 7) // 8 * 8
        room = 4096 - len(out) % 4096
        if length > room:
            out += bytes(room)
        record = _USN_V2.pack(
            length,
            2,
            0,
            1000 + number // 7 | 3 << 48,
            400 | 1 << 48,
            len(out),
            132580000000000000 + number * 10_000,
            _USN_REASONS[number % len(_USN_REASONS)],
            0,
            0,
            0x20,
            len(encoded),
            60,
        )
        out += (record + encoded).ljust(length, b"\0")
        number += 1
    return bytes(out[: size - size % 4096])


def usn_journal(compiled: compiler.CompiledSet) -> None:
    """The journal parser on a synthetic 1 GiB $J (mostly sparse), against
    `cat FILE > /dev/null` and reading it twice in Python. The parser reads
    only the data ranges of the file (SEEK_DATA, as it reads TSK's data runs in
    an image)."""
    with tempfile.TemporaryDirectory(prefix="toolmarks-bench-usn-") as folder:
        path = Path(folder) / "J"
        records = _usn_records(USN_RECORDS)
        with path.open("wb") as handle:
            handle.seek(USN_SIZE - len(records))
            handle.write(records)
        del records

        def cat() -> None:
            with path.open("rb") as source, open(os.devnull, "wb") as sink:
                subprocess.run(["cat"], stdin=source, stdout=sink, check=True)

        def read_twice() -> None:
            for _ in range(2):
                with path.open("rb", buffering=0) as handle:
                    while handle.read(usn.CHUNK_SIZE):
                        pass

        def parse() -> usn.UsnResult:
            with path.open("rb", buffering=0) as handle:
                return usn.parse_usn(handle, str(path), compiled)

        cat()  # page cache warm for every run below
        runs = {"cat": cat, "read twice": read_twice, "parse": parse}
        best = {name: min(timed(f)[1] for _ in range(2)) for name, f in runs.items()}
        result = parse()
    size = USN_SIZE / 2**20
    print(
        f"usn journal: {size:.0f} MiB $J, {USN_RECORDS / 2**20:.0f} MiB of "
        f"records ({result.records} records, {len(result.traces)} traces, "
        f"{len(result.warnings)} warnings); "
        f"{result.hole_bytes / 2**20:.0f} MiB sparse, not read; best of 2"
    )
    print(f"{'run':24} {'s':>7} {'records/s':>11} {'MiB/s':>8} vs read twice")
    for name, seconds in best.items():
        rate = f"{result.records / seconds:11.0f}" if name == "parse" else " " * 11
        print(
            f"{name:24} {seconds:7.3f} {rate} {size / seconds:8.0f} "
            f"{seconds / best['read twice']:.2f}x"
        )


def process_creation(compiled: compiler.CompiledSet) -> None:
    """Matching of process records (Sysmon 1, its command lines read through
    cmd /c and the like) against reading their XML, on the real Sysmon logs."""
    import pyevtx

    records = []
    for path in sorted((REAL / "evtx").rglob("*Sysmon*.evtx")):
        log = pyevtx.file()
        log.open(str(path))
        for index in range(log.number_of_records):
            record = log.get_record(index)
            if record.event_identifier == 1:
                records.append((record.channel_name, record.xml_string))
        log.close()
    rounds = max(1, 100_000 // len(records))

    def read_xml() -> None:
        for _ in range(rounds):
            for _, xml in records:
                eventlog.event_data(xml)

    fields = [(channel, eventlog.event_data(xml)) for channel, xml in records]

    def match() -> int:
        hits = 0
        for _ in range(rounds):
            for channel, values in fields:
                hits += bool(eventlog.record_matches(channel, 1, "", values, compiled))
        return hits

    read_s = min(timed(read_xml)[1] for _ in range(2))
    hits, match_s = min((timed(match) for _ in range(2)), key=lambda r: r[1])
    count = rounds * len(records)
    print(
        f"process records: {len(records)} Sysmon 1 records of the real logs x "
        f"{rounds} ({count} records, {hits} matched); best of 2"
    )
    print(
        f"  fields from XML   {read_s:7.3f} s {count / read_s:9.0f} records/s\n"
        f"  matching          {match_s:7.3f} s {count / match_s:9.0f} records/s "
        f"({match_s / read_s:.2f}x reading)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", help="also scan this image and show the share")
    args = parser.parse_args()
    compiled = compiler.compile_set(loader.load())
    print(f"{'file':40} {'MiB':>7} {'keys':>8} {'parse s':>8} {'md5 s':>7} ratio")
    total_parse = total_md5 = 0.0
    for name, data in hive_bytes().items():
        start = time.perf_counter()
        result = registry.parse_hive(
            io.BytesIO(data), name, compiled, file_name=name.removesuffix(".xz")
        )
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        hashlib.md5(data).hexdigest()
        md5_seconds = time.perf_counter() - start
        total_parse += seconds
        total_md5 += md5_seconds
        print(
            f"{name:40} {len(data) / 2**20:7.2f} {result.info.keys:8} "
            f"{seconds:8.3f} {md5_seconds:7.4f} {seconds / md5_seconds:6.0f}x"
        )
    print(f"{'all hives':40} {'':7} {'':8} {total_parse:8.3f} {total_md5:7.4f}")

    files, results, seconds, md5_seconds, size = parse_all(
        "prefetch", "*.pf", prefetch.parse_prefetch, compiled
    )
    print(
        f"prefetch: {len(files)} files, {size:.2f} MiB in {seconds:.3f} s "
        f"({len(files) / seconds:.0f} files/s; md5 of the same bytes "
        f"{md5_seconds:.4f} s)"
    )
    files, results, seconds, md5_seconds, size = parse_all(
        "evtx", "*.evtx", eventlog.parse_eventlog, compiled
    )
    records = sum(r.records + r.recovered_records for r in results)
    print(
        f"event logs: {len(files)} files, {records} records, {size:.2f} MiB in "
        f"{seconds:.3f} s ({records / seconds:.0f} records/s; md5 of the same "
        f"bytes {md5_seconds:.4f} s)"
    )
    process_creation(compiled)
    usn_journal(compiled)
    if args.image:
        scan_share(args.image)


if __name__ == "__main__":
    main()
