"""toolmarks command line: `toolmarks scan|indicators …`.

Exit codes: 0 ran (with or without hits), 2 bad arguments or input, 1 internal error.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from toolmarks import __version__
from toolmarks.cli import indicators as indicators_command

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or unreadable input: exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep one format
        self.print_usage(sys.stderr)
        raise UsageError(message)


def add_indicator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--indicators",
        action="append",
        default=[],
        metavar="PATH",
        help="an indicator YAML file or folder, loaded with the shipped set "
        "(repeatable)",
    )
    parser.add_argument(
        "--no-shipped",
        action="store_true",
        help="use only the --indicators files, not the shipped set",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="toolmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks of internal errors"
    )
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    indicators_command.add_parser(commands, add_indicator_options)
    try:
        from toolmarks.cli import scan as scan_command
    except ImportError:  # the scanner is optional until it exists
        scan_command = None
    if scan_command:
        scan_command.add_parser(commands, add_indicator_options)
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
