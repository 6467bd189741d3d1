"""What every subcommand shares: exit codes, usage errors, indicator options."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from toolmarks.indicators import loader
from toolmarks.indicators.model import IndicatorSet

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT = 0, 1, 2


class UsageError(Exception):
    """Bad arguments or unreadable input: exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep one format
        self.print_usage(sys.stderr)
        raise UsageError(message)


# Option values, as argparse `type=` functions: a bad value is a usage error
# (exit 2) naming the option, before anything is opened or written.


def positive_int(text: str) -> int:
    """A count of 1 or more (--workers, --split-images)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be 1 or more")
    return value


def size(text: str) -> int:
    """Bytes, with an optional k/m/g (KiB, MiB, GiB) unit; at least 1 byte, as 0
    would skip the content of every file (leave the option out for no cap)."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    value = text.strip().lower().removesuffix("b").removesuffix("i")
    factor = units.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in units else value
    try:
        amount = float(number) * factor
    except ValueError:
        amount = math.nan
    if not math.isfinite(amount):
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    if amount < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: must be 1 byte or more (leave the option out for no cap)"
        )
    return int(amount)


def selection(what: str, prefix: str) -> Callable[[str], str]:
    """A --partitions or --vss value, checked by the evidence layer's own
    grammar; kept as text, which the scan options carry."""

    def check(text: str) -> str:
        from toolmarks.evidence import EvidenceError
        from toolmarks.evidence.evidence import _parse_selection

        try:
            _parse_selection(text, what, prefix)
        except EvidenceError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return text

    return check


def output_folder(text: str) -> Path:
    """A folder that exists or can be made: not a file, not under one."""
    path = Path(text)
    if path.is_symlink() and not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: is a broken symbolic link")
    if path.exists():
        if not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: exists and is not a folder")
        return path
    for parent in path.absolute().parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(
                    f"{text}: cannot be made: {parent} is not a folder"
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise argparse.ArgumentTypeError(
                    f"{text}: cannot be made: {parent} is not writable"
                )
            break
    return path


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
