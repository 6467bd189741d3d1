"""Benchmark: load and compile a large indicator set (100,000 hashes, 1,000 strings).

Prints the time of each step and the ratio to a baseline measured in the same run:
the floor of this design (a Python set of the hash values plus one Hyperscan
compile of the same strings).

    python bench/compile_indicators.py [--hashes 100000] [--strings 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import hyperscan
import yaml

from toolmarks.indicators import compiler, loader


def make_file(folder: Path, n_hashes: int, n_strings: int) -> Path:
    tool = {
        "id": "benchset",
        "title": "Bench set",
        "description": "generated",
        "stages": ["attack"],
        "dual_use": False,
        "references": ["bench"],
        "hashes": [
            {
                "id": f"benchset.md5.h{i}",
                "type": "md5",
                "value": hashlib.md5(str(i).encode()).hexdigest(),
                "source": "bench",
                "confidence": "primary",
            }
            for i in range(n_hashes)
        ],
        "strings": [
            {
                "id": f"benchset.string.s{i}",
                "value": f"bench marker string {i:06d}",
                "encodings": ["ascii", "wide"],
                "source": "bench",
                "confidence": "primary",
            }
            for i in range(n_strings)
        ],
    }
    path = folder / "benchset.yaml"
    path.write_text(yaml.safe_dump(tool, sort_keys=False))
    return path


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hashes", type=int, default=100_000)
    parser.add_argument("--strings", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = make_file(Path(folder), args.hashes, args.strings)
        size = path.stat().st_size
        indicator_set, load_time = timed(lambda: loader.load([path], shipped=False))
        compiled, compile_time = timed(lambda: compiler.compile_set(indicator_set))
        hash_list = Path(folder) / "benchlist.txt"
        hash_list.write_text(
            "\n".join(i.value for i in indicator_set.indicators("hashes")) + "\n"
        )
        _, list_time = timed(lambda: loader.load([hash_list], shipped=False))
        values = [i.value for i in indicator_set.indicators("hashes")]
        strings = [i.fields["value"] for i in indicator_set.indicators("strings")]
        patterns = [
            b"".join(b"\\x%02x" % byte for byte in s.encode(encoding))
            for s in strings
            for encoding in ("ascii", "utf-16-le")
        ]

        def baseline():
            set(values)
            database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            database.compile(expressions=patterns, elements=len(patterns))

        _, baseline_time = timed(baseline)
        probe = values[len(values) // 2]
        _, lookup_time = timed(
            lambda: [compiled.match_hash("md5", probe) for _ in range(100_000)]
        )
    print(
        f"indicator file: {args.hashes} hashes, {args.strings} strings, "
        f"{size / 2**20:.1f} MiB of YAML"
    )
    print(f"load YAML (parse+schema+checks): {load_time:6.3f} s")
    print(f"load same hashes as a .txt list: {list_time:6.3f} s")
    print(f"compile (dicts + Hyperscan + regex): {compile_time:7.3f} s")
    print(f"baseline (set + Hyperscan alone):  {baseline_time:7.3f} s")
    print(f"compile / baseline ratio:       {compile_time / baseline_time:7.2f}x")
    print(f"hash lookup: {lookup_time / 100_000 * 1e9:.0f} ns per file")


if __name__ == "__main__":
    main()
