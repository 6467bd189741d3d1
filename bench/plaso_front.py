"""Benchmark: the plaso front against plain plaso, in the same run.

1. `toolmarks tag` on a store of at least 1,000,000 events with the shipped set
   plus 100,000 extra MD5 hashes, against `psort -o dynamic` with no analysis
   on the same store (goal: tagging costs less than 20 % of reading the store
   that way). The store is a plain log2timeline run over IMAGE whose event
   data and events are copied in SQL until it holds --events events.
2. `toolmarks log2timeline --parsers win7,toolmarks` against plain
   `log2timeline --parsers win7` on IMAGE, both with the same hashers and YARA
   rules (toolmarks' export), multi-process as examiners run it.

    python bench/plaso_front.py IMAGE [--events 1000000] [--workdir DIR]

IMAGE: e.g. the traces scenario the tests build (.cache/scenarios/traces-*/
traces.raw). Takes about 10 minutes at the default size on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXTRA_HASHES = 100_000


def timed(command: list[str], **kwargs) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, **kwargs
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(
            f"failed: {' '.join(command)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return seconds


def log2timeline(command: list[str], image: str, store: Path, rules: Path) -> float:
    store.unlink(missing_ok=True)
    return timed(
        [
            *command,
            "--status_view",
            "none",
            "--unattended",
            "--hashers",
            "md5,sha1,sha256",
            "--yara_rules",
            str(rules),
            "--logfile",
            str(store.with_suffix(".log.gz")),
            "--storage_file",
            str(store),
            image,
        ]
    )


def grow(store: Path, events: int) -> int:
    """Copies event data and events until the store holds `events` events."""
    connection = sqlite3.connect(store)
    with connection:
        (data_rows,) = connection.execute("SELECT COUNT(*) FROM event_data").fetchone()
        (top,) = connection.execute(
            "SELECT MAX(_identifier) FROM event_data"
        ).fetchone()
        assert top == data_rows, "event data row ids are not contiguous"
        (event_rows,) = connection.execute("SELECT COUNT(*) FROM event").fetchone()
        copies = 0
        while event_rows * (copies + 1) < events:
            copies += 1
            connection.execute(
                "INSERT INTO event_data (_data) SELECT _data FROM event_data "
                "WHERE _identifier <= ? ORDER BY _identifier",
                (data_rows,),
            )
            connection.execute(
                "INSERT INTO event (_event_data_identifier, date_time, timestamp, "
                "timestamp_desc) SELECT 'event_data.' || (CAST(substr("
                "_event_data_identifier, 12) AS INTEGER) + ?), date_time, timestamp, "
                "timestamp_desc FROM event WHERE _identifier <= ? ORDER BY _identifier",
                (copies * data_rows, event_rows),
            )
        (total,) = connection.execute("SELECT COUNT(*) FROM event").fetchone()
    connection.close()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--workdir",
        default=os.path.join(tempfile.gettempdir(), "toolmarks-bench-plaso"),
    )
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    plaso_l2t = (
        str(bindir / "log2timeline")
        if (bindir / "log2timeline").exists()
        else "log2timeline"
    )
    psort = str(bindir / "psort") if (bindir / "psort").exists() else "psort"
    toolmarks = [sys.executable, "-m", "toolmarks"]

    rules = work / "toolmarks.yara"
    timed([*toolmarks, "indicators", "export", "--format", "yara", "-o", str(rules)])
    hashes = work / "extra_hashes.txt"
    rng = random.Random(20261129)
    hashes.write_text(
        "".join(f"{rng.getrandbits(128):032x}\n" for _ in range(EXTRA_HASHES))
    )

    plain = work / "plain.plaso"
    ours = work / "toolmarks.plaso"
    plain_s = log2timeline([plaso_l2t, "--parsers", "win7"], args.image, plain, rules)
    ours_s = log2timeline(
        [*toolmarks, "log2timeline", "--parsers", "win7,toolmarks"],
        args.image,
        ours,
        rules,
    )
    size = os.path.getsize(args.image) / 2**20
    print(f"image {args.image}: {size:.0f} MiB")
    print(f"{'run':58} {'seconds':>8} {'ratio':>7}")
    print(
        f"{'log2timeline --parsers win7 (plain plaso)':58} {plain_s:8.1f} {'1.00':>7}"
    )
    print(
        f"{'toolmarks log2timeline --parsers win7,toolmarks':58} {ours_s:8.1f} "
        f"{ours_s / plain_s:7.2f}"
    )

    big = work / "big.plaso"
    shutil.copy(plain, big)
    events = grow(big, args.events)
    tag_copy = work / "big-tag.plaso"
    shutil.copy(big, tag_copy)
    (work / "big.csv").unlink(missing_ok=True)
    psort_s = timed(
        [
            psort,
            "--logfile",
            str(work / "psort.log.gz"),
            "-o",
            "dynamic",
            "-w",
            str(work / "big.csv"),
            str(big),
        ]
    )
    tag_s = timed([*toolmarks, "tag", "--indicators", str(hashes), str(tag_copy)])
    print(f"store: {events:,} events")
    print(f"{'psort -o dynamic, no analysis':58} {psort_s:8.1f} {'1.00':>7}")
    print(
        f"{'toolmarks tag, shipped set + 100,000 hashes':58} {tag_s:8.1f} "
        f"{tag_s / psort_s:7.2f}"
    )
    verdict = "PASS" if tag_s < 0.2 * psort_s else "FAIL"
    print(f"goal: tag < 20 % of psort: {verdict} ({100 * tag_s / psort_s:.1f} %)")


if __name__ == "__main__":
    main()
