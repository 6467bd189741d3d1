"""The report of a plaso store: toolmarks' own events read back into traces,
for `toolmarks report STORE.plaso`. The store is only read."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from dfdatetime import posix_time

from toolmarks.events import NOT_A_TIME, Trace
from toolmarks.indicators.model import IndicatorSet
from toolmarks.output import plaso_storage, report
from toolmarks.plugins.store import TagStore
from toolmarks.plugins.tagging import OWN_PREFIX, own_matches

# What toolmarks' plaso writer adds to a trace's own attributes, and the
# stream attributes plaso keeps beside them.
_WRITER_ATTRIBUTES = plaso_storage.OWN_ATTRIBUTES | {"path_spec", "yara_match"}


def store_report(path: str, indicator_set: IndicatorSet) -> str:
    """The report page of the toolmarks events of a plaso store.

    Events of toolmarks' own data types (`toolmarks scan`, `toolmarks
    log2timeline`) are read back into traces, their matches from the `matches`
    attribute; events of plaso's own parsers that `toolmarks tag` labelled are
    counted in a warning, not shown. Raises StoreError.
    """
    times = plaso_storage.time_attributes()
    traces = []
    versions: dict[str, None] = {}
    foreign = 0
    with TagStore.open(path, for_tagging=False) as store:
        for event in store.events():
            if "toolmarks" not in event.labels:
                continue
            if not event.data_type.startswith(OWN_PREFIX):
                foreign += 1
                continue
            values = event.values
            skip = _WRITER_ATTRIBUTES | set(times.get(event.data_type, {}).values())
            attributes = {}
            for key, value in values.items():
                if key.startswith("_") or key in skip:
                    continue
                attributes[key.removeprefix(plaso_storage.RENAMED_PREFIX)] = value
            if values.get("indicator_set_version"):
                versions[str(values["indicator_set_version"])] = None
            timeless = event.timestamp is None or event.timestamp_desc == NOT_A_TIME
            traces.append(
                Trace(
                    data_type=event.data_type,
                    timestamp=None
                    if timeless
                    else posix_time.PosixTimeInMicroseconds(timestamp=event.timestamp),
                    timestamp_desc=event.timestamp_desc or NOT_A_TIME,
                    source=str(values.get("source_location") or ""),
                    matches=own_matches(values),
                    attributes=attributes,
                )
            )
    summary = _store_summary(path)
    summary["indicator_set"] = {"version": ", ".join(versions)}
    summary["store"] = path
    summary["counts"] = {"events": len(traces)}
    if foreign:
        summary["warnings"] = [
            {
                "location": path,
                "message": f"{foreign} events of plaso's own parsers carry toolmarks' "
                "labels (toolmarks tag); this report shows toolmarks' own events "
                "only",
            }
        ]
    return report.render(traces, indicator_set, summary)


def _store_summary(path: str) -> dict[str, Any]:
    """What the store says of the run that wrote it: the image, the command
    line and the toolmarks version of its last toolmarks session."""
    summary: dict[str, Any] = {"image": {}}
    uri = Path(os.path.abspath(path)).as_uri() + "?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True)
        try:
            for (source,) in connection.execute(
                "SELECT path FROM source_configuration ORDER BY _identifier"
            ):
                summary["image"]["path"] = source
            for arguments, version in connection.execute(
                "SELECT command_line_arguments, product_version FROM session "
                "WHERE product_name = 'toolmarks' ORDER BY _identifier"
            ):
                summary["command_line"] = arguments
                summary["toolmarks_version"] = version
        finally:
            connection.close()
    except sqlite3.Error:
        pass  # older stores keep these elsewhere; the events are what counts
    return summary
