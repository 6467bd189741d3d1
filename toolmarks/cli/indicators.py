"""`toolmarks indicators list|show|validate|export|import`."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from toolmarks.cli.common import UsageError, add_indicator_options, load_set
from toolmarks.indicators import loader
from toolmarks.indicators.formats.common import ImportProblem
from toolmarks.indicators.model import SECTIONS, IndicatorSet

EXPORTS = ("yara", "plaso-tagging", "hashes", "stix2", "misp", "json")
IMPORTS = ("hashes", "stix2", "misp")


def _list(args: argparse.Namespace) -> int:
    indicator_set = load_set(args)
    print(
        f"indicator set {indicator_set.version}: {len(indicator_set.tools)} tools, "
        f"{len(indicator_set.indicators())} indicators"
    )
    header = ("tool", "stages", "dual", *SECTIONS)
    rows = [header]
    for tool in sorted(indicator_set.tools.values(), key=lambda t: t.id):
        counts = Counter(ind.section for ind in tool.indicators)
        rows.append(
            (
                tool.id,
                ",".join(tool.stages),
                "yes" if tool.dual_use else "",
                *(str(counts[s] or "") for s in SECTIONS),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return 0


def _show(args: argparse.Namespace) -> int:
    # yaml and the compiler are imported where used: `toolmarks scan` imports
    # this module and needs neither at start-up.
    import yaml

    indicator_set = load_set(args)
    tool = indicator_set.tools.get(args.id)
    if tool is None:
        try:
            indicator = indicator_set.indicator(args.id)
        except KeyError:
            raise UsageError(f"no tool or indicator with id {args.id!r}")
        print(f"# {indicator.origin}")
        print(
            yaml.safe_dump(indicator.fields, allow_unicode=True, sort_keys=False),
            end="",
        )
        return 0
    print(f"# {tool.path}")
    print(yaml.safe_dump(tool.data, allow_unicode=True, sort_keys=False), end="")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from toolmarks.indicators import compiler

    paths = args.paths or [str(loader.shipped_path())]
    try:
        indicator_set = loader.load(paths, shipped=args.with_shipped)
        compiler.compile_set(indicator_set)
    except loader.IndicatorError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        print(f"toolmarks: {len(error.problems)} problem(s) found", file=sys.stderr)
        return 2
    print(
        f"ok: {len(indicator_set.tools)} tools, "
        f"{len(indicator_set.indicators())} indicators"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    # Imported here: stix2 and plaso take a good part of a second to load, which
    # every `toolmarks scan` would pay otherwise.
    from toolmarks.indicators import compiler
    from toolmarks.indicators.formats import hashes, misp, plaso_tagging, stix

    indicator_set = load_set(args)
    exporters: dict[str, Callable[[IndicatorSet], str]] = {
        "yara": lambda s: compiler.compile_set(s).yara_source,
        "plaso-tagging": plaso_tagging.export,
        "hashes": hashes.export,
        "stix2": stix.export,
        "misp": misp.export,
        "json": lambda s: (
            json.dumps(
                {"version": s.version, "tools": [t.data for t in s.tools.values()]},
                indent=2,
                ensure_ascii=False,
            )
            + "\n"
        ),
    }
    _write(exporters[args.format](indicator_set), args.output)
    return 0


def _import(args: argparse.Namespace) -> int:
    import yaml

    from toolmarks.indicators.formats import hashes, misp, stix

    path = Path(args.file)
    try:
        if path.stat().st_size > loader.MAX_FILE_SIZE:
            raise UsageError(f"{path}: too large for an indicator list")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: cannot read: {error}")
    tool_id, title = args.tool_id, args.title or args.tool_id
    try:
        if args.format == "hashes":
            tools = hashes.import_(text, path.name, tool_id, title, args.hash_type)
        elif args.format == "stix2":
            tools = stix.import_(text, path.name, tool_id, title)
        else:
            tools = misp.import_(
                text,
                path.name,
                args.tool_id if args.tool_id != "imported" else None,
                args.title,
            )
    except ImportProblem as error:
        raise UsageError(str(error))
    documents = [yaml.safe_dump(t, allow_unicode=True, sort_keys=False) for t in tools]
    if args.output and len(tools) > 1 or args.output and Path(args.output).is_dir():
        folder = Path(args.output)
        folder.mkdir(parents=True, exist_ok=True)
        for tool, document in zip(tools, documents):
            (folder / f"{tool['id']}.yaml").write_text(document, encoding="utf-8")
    elif len(tools) > 1:
        raise UsageError(f"{len(tools)} tools found: give -o FOLDER for one file each")
    else:
        _write(documents[0], args.output)
    print(
        f"imported {len(tools)} tool(s): "
        + ", ".join(
            f"{t['id']} ({len(t.get('hashes', []))} hashes, "
            f"{len(t.get('filenames', []))} names)"
            for t in tools
        ),
        file=sys.stderr,
    )
    return 0


def _write(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("indicators", help="the indicator library")
    sub = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))

    p = sub.add_parser("list", help="tools and their indicator counts")
    add_indicator_options(p)
    p.set_defaults(run=_list)

    p = sub.add_parser("show", help="one tool or indicator, as YAML")
    p.add_argument("id")
    add_indicator_options(p)
    p.set_defaults(run=_show)

    p = sub.add_parser("validate", help="check indicator files (default: shipped)")
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument(
        "--with-shipped",
        action="store_true",
        help="also check conflicts with the shipped set",
    )
    p.set_defaults(run=_validate)

    p = sub.add_parser("export", help="write the set in another format")
    p.add_argument("--format", required=True, choices=EXPORTS)
    p.add_argument("-o", "--output", metavar="FILE")
    add_indicator_options(p)
    p.set_defaults(run=_export)

    p = sub.add_parser("import", help="turn a hash list, STIX or MISP file into YAML")
    p.add_argument("--format", required=True, choices=IMPORTS)
    p.add_argument("file")
    p.add_argument(
        "--tool-id",
        default="imported",
        help="tool id for indicators not tied to a tool",
    )
    p.add_argument("--title", help="tool title (default: the tool id)")
    p.add_argument(
        "--hash-type",
        choices=("md5", "sha1", "sha256", "imphash"),
        help="hash type of a plain list (default: by length)",
    )
    p.add_argument("-o", "--output", metavar="FILE_OR_FOLDER")
    p.set_defaults(run=_import)
