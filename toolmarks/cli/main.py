"""toolmarks command line: `toolmarks scan|batch|worker|tag|report|indicators|…`.

Exit codes: 0 ran (with or without hits), 2 bad arguments or input, 1 internal error.
"""

from __future__ import annotations

import argparse
import gc
import sys
import traceback

from toolmarks import __version__
from toolmarks.cli import batch, indicators, plaso, report, scan, tag, worker
from toolmarks.cli.common import EXIT_INPUT, EXIT_INTERNAL, EXIT_OK, Parser, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="toolmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks of internal errors"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    indicators.add_parser(commands)
    scan.add_parser(commands)
    batch.add_parser(commands)
    worker.add_parser(commands)
    tag.add_parser(commands)
    report.add_parser(commands)
    plaso.add_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.run(args)
    except UsageError as error:
        print(f"toolmarks: error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("toolmarks: interrupted", file=sys.stderr)
        return EXIT_INTERNAL
    except BrokenPipeError:
        return EXIT_OK
    except Exception as error:  # noqa: BLE001 - the user gets a message, not a trace
        debug = "--debug" in (argv if argv is not None else sys.argv)
        if debug:
            traceback.print_exc()
        print(
            f"toolmarks: internal error: {type(error).__name__}: {error}"
            + ("" if debug else " (run with --debug for details)"),
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def run() -> None:
    """The console script and `python -m toolmarks`: main(), then the exit.

    What main() made is frozen first, so that the interpreter's collections at
    exit pass over it: a scan's objects cost 0.03 s of every scan's wall time
    to collect, and the process ends right after.
    """
    code = main()
    gc.freeze()
    sys.exit(code)
