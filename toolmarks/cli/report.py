"""`toolmarks report OUTDIR|STORE.plaso`: renders the report again, from a
scan's outputs or from a plaso store toolmarks wrote or tagged."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from toolmarks.cli.common import EXIT_INPUT, EXIT_OK, add_indicator_options, load_set
from toolmarks.output.text import printable


def run(args: argparse.Namespace) -> int:
    from toolmarks.output import report
    from toolmarks.output.timeline import TimelineError
    from toolmarks.plugins.report_store import store_report
    from toolmarks.plugins.store import StoreError

    indicator_set = load_set(args)
    source = Path(args.source)
    try:
        if source.is_dir():
            page = report.render_outdir(source, indicator_set)
            default = source / "report.html"
        else:
            page = store_report(str(source), indicator_set)
            default = source.with_name(source.stem + ".report.html")
    except (OSError, StoreError, TimelineError, report.ReportInputError) as error:
        print(f"toolmarks: error: {printable(str(error))}", file=sys.stderr)
        return EXIT_INPUT
    target = Path(args.output) if args.output else default
    try:
        report.write_atomically(target, page)
    except OSError as error:
        print(f"toolmarks: error: {printable(str(error))}", file=sys.stderr)
        return EXIT_INPUT
    print(target)
    return EXIT_OK


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "report",
        help="render report.html again from a scan's OUTDIR or a plaso store",
        description="Renders the offline HTML report again: from OUTDIR's "
        "timeline.jsonl and scan.json (e.g. after a new toolmarks version; "
        "written to OUTDIR/report.html, replacing it), or from a plaso store "
        "toolmarks wrote (its events labelled toolmarks; written beside it as "
        "NAME.report.html). Tool titles, stages and indicator sources come from "
        "the indicator set of this run.",
    )
    parser.add_argument("source", metavar="OUTDIR|STORE.plaso")
    parser.add_argument("-o", "--output", metavar="REPORT.html")
    add_indicator_options(parser)
    parser.set_defaults(run=run)
