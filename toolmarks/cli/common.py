"""What every subcommand shares: exit codes, usage errors, indicator options."""

from __future__ import annotations

import argparse
import sys

from toolmarks.indicators import loader
from toolmarks.indicators.model import IndicatorSet

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or unreadable input: exit code 2."""


class Parser(argparse.ArgumentParser):
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


def load_set(args: argparse.Namespace) -> IndicatorSet:
    """The indicator set the options name; problems become a usage error."""
    try:
        return loader.load(args.indicators, shipped=not args.no_shipped)
    except loader.IndicatorError as error:
        raise UsageError("bad indicator files:\n" + str(error))
