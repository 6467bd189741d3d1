"""`toolmarks worker --broker URL`: a Celery worker scanning the images
`toolmarks batch --broker` sends."""

from __future__ import annotations

import argparse
import os
import socket
from pathlib import Path

from toolmarks.cli.common import UsageError

BROKER_ENV = "TOOLMARKS_BROKER"


def broker_url(args: argparse.Namespace) -> str:
    """--broker, else $TOOLMARKS_BROKER (keeps a password out of `ps`)."""
    url = args.broker or os.environ.get(BROKER_ENV, "")
    if not url:
        raise UsageError(f"no broker: give --broker URL or set {BROKER_ENV}")
    return url


def run(args: argparse.Namespace) -> int:
    from toolmarks.engine.distributed import (
        BrokerError,
        make_app,
        run_worker,
    )

    url = broker_url(args)
    root = Path(args.evidence_root or os.getcwd()).resolve()
    if not root.is_dir():
        raise UsageError(f"{root}: the evidence root is not a folder")
    if args.concurrency < 1 or args.time_limit < 61:
        raise UsageError("--concurrency must be 1 or more, --time-limit over 60")
    name = args.name or f"toolmarks-{os.getpid()}@{socket.gethostname()}"
    try:
        app = make_app(
            url,
            evidence_root=root,
            time_limit=args.time_limit,
            visibility_timeout=args.visibility_timeout,
        )
        run_worker(
            app, url, concurrency=args.concurrency, name=name, loglevel=args.loglevel
        )
    except BrokerError as error:
        raise UsageError(str(error)) from None
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "worker",
        help="scan the images `toolmarks batch --broker` sends (Celery + Redis)",
        description="Starts a Celery worker on the toolmarks queue of a Redis "
        "broker. Images, case folders and indicator files are named relative to "
        "the evidence root (shared storage seen by every worker and the client); "
        "a task naming anything outside it is refused. JSON messages only.",
    )
    parser.add_argument(
        "--broker",
        metavar="URL",
        help=f"redis://[:PASSWORD@]HOST:PORT/N (default: ${BROKER_ENV})",
    )
    parser.add_argument(
        "--evidence-root",
        metavar="DIR",
        help="the shared folder holding images and case folders (default: the "
        "working directory)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="images scanned at once"
    )
    parser.add_argument(
        "--name", help="the worker's name (default: toolmarks-PID@HOST)"
    )
    parser.add_argument(
        "--time-limit",
        type=int,
        default=6 * 3600,
        metavar="SECONDS",
        help="one image's limit; its task is killed after it (default: 6 hours)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        metavar="SECONDS",
        help="a task taken by a worker that vanished goes to another after this "
        "(default: the time limit plus 10 minutes); a scan running longer is "
        "also given out again, which only wastes work",
    )
    parser.add_argument(
        "--loglevel",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="Celery's log level",
    )
    parser.set_defaults(run=run)
