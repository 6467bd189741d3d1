"""`toolmarks log2timeline` and `toolmarks psort`: plaso's own tools, with
toolmarks' parsers, timeliner definitions and analysis plugin registered.

Everything registers on import of this module, before plaso builds a single
parser: plaso instantiates parsers in worker processes, and under the
`spawn`/`forkserver` start methods a registration made later (or inside a
main function) would be missing there, silently. Workers are forked, so they
inherit the registrations and the chosen indicator set.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile

from plaso.scripts import log2timeline as plaso_log2timeline
from plaso.scripts import psort as plaso_psort

from toolmarks.indicators.loader import IndicatorError
from toolmarks.indicators.model import HASH_TYPES
from toolmarks.plugins import analysis, indicator_set, parsers, timeliner  # noqa: F401

# toolmarks' own options; every other argument goes to plaso unchanged.
_OWN = ("--indicators", "--no-shipped")


def _own_options(argv: list[str]) -> tuple[list[str], list[str], bool]:
    rest, paths, no_shipped = [], [], False
    arguments = iter(argv)
    for argument in arguments:
        if argument == "--no-shipped":
            no_shipped = True
        elif argument == "--indicators":
            paths.append(next(arguments, ""))
        elif argument.startswith("--indicators="):
            paths.append(argument.split("=", 1)[1])
        else:
            rest.append(argument)
    return rest, paths, no_shipped


def _prepare(argv: list[str] | None) -> list[str] | None:
    """plaso's arguments, with the indicator set loaded; None if it is bad."""
    rest, paths, no_shipped = _own_options(list(sys.argv[1:] if argv is None else argv))
    try:
        indicator_set.configure(paths, no_shipped)
    except IndicatorError as error:
        print(f"toolmarks: error: bad indicator files:\n{error}", file=sys.stderr)
        return None
    if "fork" in multiprocessing.get_all_start_methods():
        multiprocessing.set_start_method("fork", force=True)
    return rest


def _has(arguments: list[str], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in arguments)


def log2timeline_main(argv: list[str] | None = None) -> int:
    """log2timeline; without --hashers or --yara_rules, the hashes and YARA
    rules of toolmarks' indicator set are added, so files are matched too."""
    arguments = _prepare(argv)
    if arguments is None:
        return 2
    added: list[str] = []
    rules_path = None
    listing = "list" in arguments or _has(arguments, "--info")
    if not listing and not _has(arguments, "--hashers"):
        compiled = indicator_set.compiled()
        used = [t for t in HASH_TYPES if t != "imphash" and compiled.hashes[t]]
        added += ["--hashers", ",".join(used or ["md5"])]
    if not listing and not _has(arguments, "--yara_rules"):
        compiled = indicator_set.compiled()
        with tempfile.NamedTemporaryFile(
            "w", suffix=".yara", prefix="toolmarks-", delete=False
        ) as file:
            file.write(compiled.yara_source)
        rules_path = file.name
        added += ["--yara_rules", rules_path]
    if added:
        print(f"toolmarks: added {' '.join(added)}", file=sys.stderr)
    sys.argv = ["log2timeline", *added, *arguments]
    try:
        return plaso_log2timeline.Main()
    finally:
        if rules_path:
            os.unlink(rules_path)


def psort_main(argv: list[str] | None = None) -> int:
    """psort, with the `toolmarks` analysis plugin and toolmarks' formatters."""
    arguments = _prepare(argv)
    if arguments is None:
        return 2
    from toolmarks.output.plaso_storage import FORMATTERS_PATH

    if not _has(arguments, "--custom_formatter_definitions"):
        arguments = ["--custom_formatter_definitions", FORMATTERS_PATH, *arguments]
    # plaso picks the analysis plugins' option helpers from sys.argv.
    sys.argv = ["psort", *arguments]
    return plaso_psort.Main()


def log2timeline_script() -> None:
    sys.exit(log2timeline_main())


def psort_script() -> None:
    sys.exit(psort_main())
