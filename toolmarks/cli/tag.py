"""`toolmarks tag STORE.plaso`: tags an existing plaso super-timeline."""

from __future__ import annotations

import argparse
import sys

from toolmarks.cli.common import EXIT_INPUT, EXIT_OK, add_indicator_options, load_set
from toolmarks.output.text import printable


def run(args: argparse.Namespace) -> int:
    from toolmarks.indicators.compiler import compile_set
    from toolmarks.plugins.store import StoreError
    from toolmarks.plugins.tag import tag_store

    # A bad indicator set is refused before the store is opened.
    compiled = compile_set(load_set(args))
    try:
        outcome = tag_store(args.store, compiled)
    except StoreError as error:
        print(f"toolmarks: error: {printable(str(error))}", file=sys.stderr)
        return EXIT_INPUT
    print(
        f"{args.store}: format {outcome.format_version}, {outcome.events} events, "
        f"{outcome.tagged} meet toolmarks indicators, {outcome.newly_tagged} "
        "newly tagged"
    )
    for title, counter in (
        ("per tool", outcome.per_tool),
        ("per kind", outcome.per_kind),
    ):
        if counter:
            print(f"tagged events {title}:")
            for name, number in sorted(counter.items()):
                print(f"  {name}: {number}")
    return EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "tag",
        help="add toolmarks' tags to a plaso storage file made by plain plaso",
        description="Tags, in place, the events of a plaso storage file (format "
        "20230327 of plaso 2023 to 2026-05, or 20260516) that meet the indicator "
        "set: file events by hash, YARA match and name; prefetch, registry and "
        "event log events by the artefact indicators. The file is rewritten only "
        "after a complete read; running it twice adds nothing.",
    )
    parser.add_argument("store", metavar="STORE.plaso")
    add_indicator_options(parser)
    parser.set_defaults(run=run)
