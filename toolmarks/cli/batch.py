"""`toolmarks batch IMAGE… -o CASEDIR`: many images, one case."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from toolmarks.cli.common import (
    UsageError,
    add_indicator_options,
    load_set,
    output_folder,
    positive_int,
    selection,
    size,
)
from toolmarks.cli.worker import BROKER_ENV, broker_url
from toolmarks.output.text import printable

# distributed.DEFAULT_SHARES, not imported: the CLI loads the engine only to run.
DEFAULT_SHARES = 8

if TYPE_CHECKING:
    from toolmarks.engine.batch import BatchOptions
    from toolmarks.indicators.model import IndicatorSet
    from toolmarks.output.case import CaseImage


def _from_list(path: str) -> list[str]:
    """Image paths, one a line; blank lines and `#` comments ignored; relative
    paths are relative to the list's folder."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: cannot read the image list: {error}")
    base = Path(path).parent
    images = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            images.append(line if Path(line).is_absolute() else str(base / line))
    return images


def _on_broker(
    args: argparse.Namespace,
    images: list[str],
    case_dir: Path,
    indicator_set: IndicatorSet,
    options: BatchOptions,
    done: Callable[[CaseImage], None],
) -> list[CaseImage]:
    """The batch as Celery tasks; broker problems exit 2 with a message."""
    from toolmarks.engine.distributed import (
        BrokerError,
        scan_images_on_broker,
        scan_images_split,
        scrub,
    )

    url = broker_url(args)
    root = Path(args.evidence_root or os.getcwd())
    # scan.json and the plaso store keep the command line: not the password.
    command_line = scrub(shlex.join(["toolmarks", *sys.argv[1:]]), url)

    def started(name: str, worker: str) -> None:
        print(
            f"toolmarks: {printable(name)}: started on {printable(worker)}",
            file=sys.stderr,
        )

    try:
        if args.split_images:
            return scan_images_split(
                images,
                case_dir,
                indicator_set,
                options,
                broker=url,
                evidence_root=root,
                shares=args.split_images,
                indicators=args.indicators,
                shipped=not args.no_shipped,
                rescan=args.rescan,
                command_line=command_line,
                done=done,
            )
        return scan_images_on_broker(
            images,
            case_dir,
            indicator_set,
            options,
            broker=url,
            evidence_root=root,
            indicators=args.indicators,
            shipped=not args.no_shipped,
            rescan=args.rescan,
            command_line=command_line,
            done=done,
            started=started,
        )
    except (BrokerError, ValueError) as error:
        raise UsageError(str(error)) from None


def run(args: argparse.Namespace) -> int:
    from toolmarks.engine.batch import BatchOptions, scan_images
    from toolmarks.engine.scan import ScanOptions, default_workers
    from toolmarks.output.case import CASE_HTML, write_case

    images = list(args.images)
    for path in args.from_list:
        images.extend(_from_list(path))
    if not images:
        raise UsageError("no images: name them or give --from-list FILE")
    if args.split_images is not None and not (
        args.broker or os.environ.get(BROKER_ENV)
    ):
        raise UsageError("--split-images needs --broker")
    case_dir: Path = args.output
    for image in images:
        resolved = Path(image).resolve()
        if resolved == case_dir.resolve() or case_dir.resolve() in resolved.parents:
            raise UsageError(f"{case_dir}: the case folder must not hold the evidence")
    indicator_set = load_set(args)
    options = BatchOptions(
        scan=ScanOptions(
            partitions=args.partitions,
            vss=args.vss,
            max_file_size=args.max_file_size,
            artefacts=not args.no_artefacts,
            leads=not args.no_leads,
            scan_metadata=args.scan_metadata,
            unallocated=args.unallocated,
        ),
        verify=not args.no_verify,
        verify_md5=args.verify_md5,
    )
    total = len(dict.fromkeys(images))
    seen = 0

    def done(result: CaseImage) -> None:
        nonlocal seen
        seen += 1
        where = f"[{seen}/{total}] {printable(result.name)}"
        if result.status != "ok":
            text = f"FAILED: {printable(result.error or '')}"
        elif result.skipped:
            text = "skipped: already scanned with the same versions and options"
        else:
            text = f"scanned in {result.seconds} s, {result.warnings} warnings"
        print(f"toolmarks: {where}: {text}", file=sys.stderr)

    command_line = shlex.join(["toolmarks", *sys.argv[1:]])
    if args.broker or os.environ.get(BROKER_ENV):
        results = _on_broker(args, images, case_dir, indicator_set, options, done)
    else:
        results = scan_images(
            images,
            case_dir,
            indicator_set,
            options,
            workers=args.workers or default_workers(),
            rescan=args.rescan,
            command_line=command_line,
            done=done,
        )
    view = write_case(case_dir, results)
    skipped = sum(r.skipped for r in results)
    failed = view["images_failed"]
    print(
        f"toolmarks: {len(results)} images: {len(results) - skipped - len(failed)} "
        f"scanned, {skipped} skipped, {len(failed)} failed -> {case_dir / CASE_HTML}",
        file=sys.stderr,
    )
    for tool, item in view["tools"].items():
        hosts = ", ".join(printable(h["host"]) for h in item["hosts"])
        print(f"toolmarks: {tool}: {hosts}", file=sys.stderr)
    if failed:
        names = ", ".join(printable(name) for name in failed)
        print(
            f"toolmarks: failed images (why: case.json): {names}",
            file=sys.stderr,
        )
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "batch",
        help="scan many images into one case",
        description="Scans every image into CASEDIR/<image name>/ (the outputs of "
        "`toolmarks scan`), several at once on a local process pool, and writes "
        "the case view: case.json, case.html (which tools on which host, and "
        "when) and case.jsonl (every image's timeline, for Timesketch). Images "
        "already scanned with the same toolmarks version, indicator set and "
        "options are skipped unless --rescan.",
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE")
    parser.add_argument(
        "-o", "--output", required=True, type=output_folder, metavar="CASEDIR"
    )
    parser.add_argument(
        "--from-list",
        action="append",
        default=[],
        metavar="FILE",
        help="a file naming one image a line (relative to the file's folder; "
        "# comments); repeatable",
    )
    parser.add_argument(
        "--rescan",
        action="store_true",
        help="scan every image again, even those already scanned",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        help="processes in all (default: one per core); images are scanned in "
        "parallel, leftover processes go to the scans of fewer, larger images",
    )
    parser.add_argument(
        "--broker",
        metavar="URL",
        help=f"redis://[:PASSWORD@]HOST:PORT/N: send the images to `toolmarks "
        f"worker` processes instead of the local pool (or set ${BROKER_ENV})",
    )
    parser.add_argument(
        "--evidence-root",
        metavar="DIR",
        help="with --broker: the workers' evidence root as seen here (default: "
        "the working directory); images, CASEDIR and --indicators files must be "
        "under it",
    )
    parser.add_argument(
        "--split-images",
        type=positive_int,
        nargs="?",
        const=DEFAULT_SHARES,
        metavar="N",
        help="with --broker: cut each image into N shares of each volume "
        f"(default {DEFAULT_SHARES}), one task each, so one large image is spread "
        "over every worker; images are then scanned one after the other and "
        "the outputs are written here (the same bytes as a local scan)",
    )
    parser.add_argument(
        "--partitions",
        default="all",
        type=selection("partition", "p"),
        help="as for scan",
    )
    parser.add_argument(
        "--vss", default="none", type=selection("VSS store", "vss"), help="as for scan"
    )
    parser.add_argument(
        "--max-file-size", type=size, metavar="SIZE", help="as for scan"
    )
    parser.add_argument("--no-artefacts", action="store_true", help="as for scan")
    parser.add_argument("--no-leads", action="store_true", help="as for scan")
    parser.add_argument("--scan-metadata", action="store_true", help="as for scan")
    parser.add_argument("--unallocated", action="store_true", help="as for scan")
    verification = parser.add_mutually_exclusive_group()
    verification.add_argument("--no-verify", action="store_true", help="as for scan")
    verification.add_argument("--verify-md5", action="store_true", help="as for scan")
    add_indicator_options(parser)
    parser.set_defaults(run=run)
