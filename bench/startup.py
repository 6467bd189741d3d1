"""Benchmark: the fixed start-up of `toolmarks scan` on the demo image.

Fixed start-up = wall time of the whole `toolmarks scan` process minus the time
spent in `scan_image` (the walk, read and match of the volumes in the worker
pool). It is what every scan pays whatever the image: interpreter, imports,
indicator set load and compile, opening the evidence, writing the outputs.

Cold: an empty toolmarks cache (`$XDG_CACHE_HOME/toolmarks`); warm: the cache
filled by the run before. Bytecode is cached (under a temporary
PYTHONPYCACHEPREFIX) in both, as for an installed package. Best of --runs.
The baseline is `python3 -c pass`; the goal is a fixed start-up under 0.3 s.

    python bench/startup.py [--image test_data/demo/demo.E01] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.3

# Runs the real CLI with scan_image wrapped in a timer; writes the seconds spent
# in it to the file named by the first argument.
DRIVER = """
import sys, time
import toolmarks.engine.run as run
inner, spent = run.scan_image, [0.0]
def timed(*args, **kwargs):
    start = time.perf_counter()
    try:
        return inner(*args, **kwargs)
    finally:
        spent[0] += time.perf_counter() - start
run.scan_image = timed
from toolmarks.cli.main import run
spent_file = sys.argv.pop(1)
import atexit
atexit.register(lambda: open(spent_file, "w").write(repr(spent[0])))
run()
"""


def run(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def scan(image: str, work: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, seconds in scan_image) of one `toolmarks scan`."""
    spent = work / "spent"
    wall = run(
        [
            sys.executable,
            "-c",
            DRIVER,
            str(spent),
            "scan",
            image,
            "-o",
            str(work / "out"),
            "--force",
        ],
        env,
    )
    return wall, float(spent.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=str(ROOT / "test_data/demo/demo.E01"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        env = {**os.environ, "PYTHONPYCACHEPREFIX": str(work / "pyc")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("TOOLMARKS_NO_CACHE", None)
        cache = work / "xdg"
        env["XDG_CACHE_HOME"] = str(cache)
        scan(args.image, work, {**env, "TOOLMARKS_NO_CACHE": "1"})  # bytecode
        baseline = min(
            run([sys.executable, "-c", "pass"], env) for _ in range(args.runs)
        )
        cold, warm = [], []
        for _ in range(args.runs):
            subprocess.run(["rm", "-rf", str(cache)], check=True)
            cold.append(scan(args.image, work, env))
            warm.append(scan(args.image, work, env))
    rows = []
    for name, runs in (("cold (no cache)", cold), ("warm (cache)", warm)):
        wall, inside = min(runs, key=lambda r: r[0] - r[1])
        rows.append((name, wall, inside, wall - inside))
    print(f"image: {args.image}; best of {args.runs}")
    print(f"{'run':18} {'wall s':>7} {'scan s':>7} {'fixed s':>8} {'- baseline':>11}")
    print(f"{'python3 -c pass':18} {baseline:7.3f} {'':>7} {baseline:8.3f} {'':>11}")
    for name, wall, inside, fixed in rows:
        print(
            f"{name:18} {wall:7.3f} {inside:7.3f} {fixed:8.3f} {fixed - baseline:11.3f}"
        )
    fixed = rows[1][3]
    verdict = "PASS" if fixed < GOAL else "FAIL"
    print(f"goal: warm fixed start-up {fixed:.3f} s < {GOAL} s: {verdict}")


if __name__ == "__main__":
    main()
