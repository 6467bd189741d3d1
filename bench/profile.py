"""Where a scan's time goes: py-spy samples of a one-worker engine scan.

Prints the functions with the most samples of their own (the line that ran)
and, among toolmarks' functions, the most samples including what they called.
One worker, so the walk, the reads and the matching share one process; the
default image is the 100,000-file image of `scan_throughput.py --small-files`
(built there first).

    python bench/profile.py [--image IMAGE] [--rate 200] [--top 15]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_IMAGE = Path(tempfile.gettempdir()) / "toolmarks-bench/bench-small-100k.raw"
DRIVER = """
import sys
from toolmarks.engine.scan import ScanOptions, scan_image
from toolmarks.indicators import loader
result, _ = scan_image(sys.argv[1], loader.load([], shipped=True), ScanOptions())
print(result.counts.get("files", 0), "files", len(result.traces), "traces")
"""


def profile(image: Path, rate: int) -> collections.Counter[tuple[str, ...]]:
    """Sample stacks (outermost frame first) and their counts."""
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "samples.txt"
        command = ["py-spy", "record", "-r", str(rate), "-f", "raw", "-o", str(raw)]
        command += ["--", sys.executable, "-c", DRIVER, str(image)]
        subprocess.run(command, check=True, stdout=sys.stdout, stderr=subprocess.STDOUT)
        stacks: collections.Counter[tuple[str, ...]] = collections.Counter()
        for line in raw.read_text().splitlines():
            stack, count = line.rsplit(" ", 1)
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def report(stacks: collections.Counter[tuple[str, ...]], top: int) -> None:
    total = sum(stacks.values())
    own: collections.Counter[str] = collections.Counter()
    including: collections.Counter[str] = collections.Counter()
    for frames, count in stacks.items():
        own[frames[-1]] += count
        # A function counts once per sample, however deep its recursion.
        for name in {frame.split(" (")[0] + " (" + _file(frame) for frame in frames}:
            including[name] += count
    print(f"\n{total} samples\n\nown time (the line running)")
    for frame, count in own.most_common(top):
        print(f"  {100 * count / total:5.1f} %  {frame}")
    print("\ntoolmarks functions, including their callees")
    ours = [(n, c) for n, c in including.most_common() if "toolmarks/" in n]
    for name, count in ours[:top]:
        print(f"  {100 * count / total:5.1f} %  {name}")


def _file(frame: str) -> str:
    """The frame's file without its line number: 'path)'."""
    where = frame.rsplit(" (", 1)[-1]
    return where.rsplit(":", 1)[0] + ")"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    if shutil.which("py-spy") is None:
        print("profile: py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    if not args.image.is_file():
        print(
            f"profile: {args.image}: no such image (build it with "
            "`python bench/scan_throughput.py --small-files`)",
            file=sys.stderr,
        )
        return 2
    report(profile(args.image, args.rate), args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
