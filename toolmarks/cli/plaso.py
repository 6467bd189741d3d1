"""`toolmarks log2timeline|psort ARGS…`: plaso's own tools, with toolmarks in.

Every argument goes to plaso unchanged, but `--indicators PATH` and
`--no-shipped`, which choose the indicator set as for `toolmarks scan`.
"""

from __future__ import annotations

import argparse


def _log2timeline(args: argparse.Namespace) -> int:
    from toolmarks.plugins import launchers

    return launchers.log2timeline_main(args.arguments)


def _psort(args: argparse.Namespace) -> int:
    from toolmarks.plugins import launchers

    return launchers.psort_main(args.arguments)


def add_parsers(commands: argparse._SubParsersAction) -> None:
    for name, run, text in (
        (
            "log2timeline",
            _log2timeline,
            "plaso's log2timeline with toolmarks' parsers (--parsers toolmarks)",
        ),
        (
            "psort",
            _psort,
            "plaso's psort with the toolmarks analysis plugin (--analysis toolmarks)",
        ),
    ):
        parser = commands.add_parser(name, help=text, add_help=False, prefix_chars="\0")
        parser.add_argument("arguments", nargs=argparse.REMAINDER)
        parser.set_defaults(run=run)
