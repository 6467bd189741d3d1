"""One image split over two real `toolmarks worker` processes (a real
redis-server): the merged units give the same bytes as a local `toolmarks
scan` of it, and a unit delivered twice counts once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from dfdatetime import interface as dfdatetime_interface
from plaso_support import read_store
from test_celery import Cluster, toolmarks

from toolmarks.engine import wire
from toolmarks.engine.scan import ScanOptions, Unit, UnitResult, scan_image
from toolmarks.output.timeline import sort_key

COMPARED = ("findings.json", "timeline.jsonl", "timeline.csv")
SHARES = 3


@pytest.fixture(scope="module")
def split_cluster(tmp_path_factory, traces_images) -> Any:
    found = Cluster(tmp_path_factory.mktemp("split"))
    (found.root / "traces.raw").symlink_to(traces_images["raw"])
    try:
        found.start_redis()
        found.start_worker("w1")
        found.start_worker("w2")
        yield found
    finally:
        found.close()


def comparable(value: Any) -> Any:
    if isinstance(value, dfdatetime_interface.DateTimeValues):
        return type(value), value.CopyToDateTimeString()
    if isinstance(value, (list, tuple)):
        return [comparable(item) for item in value]
    return value


def store_events(path: Path) -> list[tuple[Any, ...]]:
    """Events with their data and labels; the store's identifiers left out."""
    out = []
    for row in read_store(path):
        data = sorted(
            (name, comparable(value))
            for name, value in row["data"].GetAttributes()
            if not name.endswith("_identifier")
        )
        event = row["event"]
        out.append((event.timestamp, event.timestamp_desc, data, row["labels"]))
    return out


def test_split_image_gives_the_local_scan_outputs(split_cluster: Cluster) -> None:
    image = str(split_cluster.root / "traces.raw")
    local = split_cluster.root / "local"
    scanned = toolmarks("scan", image, "-o", str(local))
    assert scanned.returncode == 0, scanned.stderr
    case = split_cluster.root / "case"
    run = toolmarks(
        "batch",
        image,
        "-o",
        str(case),
        "--broker",
        split_cluster.url,
        "--evidence-root",
        str(split_cluster.root),
        "--split-images",
        str(SHARES),
    )
    assert run.returncode == 0, run.stderr
    assert "1 scanned, 0 skipped, 0 failed" in run.stderr
    for name in COMPARED:
        assert (case / "traces.raw" / name).read_bytes() == (
            local / name
        ).read_bytes(), name
    events = store_events(local / "timeline.plaso")
    assert events
    assert store_events(case / "traces.raw" / "timeline.plaso") == events
    # The units went to the workers: SHARES per volume, each once.
    received = len(
        re.findall(
            r"Task toolmarks\.scan_unit\[\S+\] received", split_cluster.log_text()
        )
    )
    assert received > 0 and received % SHARES == 0
    # Rerun: current, skipped.
    again = toolmarks(
        "batch",
        image,
        "-o",
        str(case),
        "--broker",
        split_cluster.url,
        "--evidence-root",
        str(split_cluster.root),
        "--split-images",
        str(SHARES),
    )
    assert "0 scanned, 1 skipped, 0 failed" in again.stderr, again.stderr


def test_a_unit_delivered_twice_counts_once(split_cluster: Cluster) -> None:
    from toolmarks.engine.distributed import (
        QUEUE,
        UNIT_TASK_NAME,
        gather_units,
        make_app,
        unit_payload,
    )
    from toolmarks.evidence import Evidence
    from toolmarks.indicators import loader

    shipped = loader.load([], shipped=True)
    image = str(split_cluster.root / "traces.raw")
    options = ScanOptions(workers=2)
    with Evidence(image, warn=lambda *_: None) as evidence:
        labels = [volume.label for volume in evidence.volumes()]
    units = [Unit(image, label, i, 2) for label in labels for i in range(2)]
    app = make_app(split_cluster.url)
    try:
        sent = [
            (
                number,
                app.send_task(
                    UNIT_TASK_NAME,
                    args=[unit_payload(unit, "traces.raw", shipped, [], True, options)],
                    queue=QUEUE,
                ),
            )
            for number, unit in enumerate(units)
            for _ in range(2)  # every unit delivered twice
        ]
        results = gather_units(app, sent, len(units))
    finally:
        app.close()
    assert len(results) == len(units)
    merged = UnitResult()
    for found in results:
        merged.merge(found)
    local, _ = scan_image(image, shipped, options)
    assert local.traces
    # In timeline order, as every output holds them: the local pool cuts an
    # NTFS volume into ranges of MFT entries, Celery units into shares.
    assert [wire.encode_trace(t) for t in sorted(merged.traces, key=sort_key)] == [
        wire.encode_trace(t) for t in sorted(local.traces, key=sort_key)
    ]
