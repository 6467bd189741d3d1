"""A unit's result through JSON and back (what a Celery worker returns for
one share of an image): every trace of the scenario images' real scans equal
after the round trip, timestamps of the same dfdatetime class and fields, and
the outputs of the round-tripped scan byte-identical to the direct one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dfdatetime import interface as dfdatetime_interface
from plaso_support import read_store

from toolmarks.engine import wire
from toolmarks.engine.run import run_scan
from toolmarks.engine.scan import ScanOptions, Unit, UnitResult, run_unit, scan_image
from toolmarks.indicators import loader
from toolmarks.output.writers import write_all

# Outputs compared byte for byte; scan.json holds the run's own time and the
# plaso store its session's, so those two are compared by content.
SAME_BYTES = ("timeline.jsonl", "timeline.csv", "findings.json")


@pytest.fixture(scope="module")
def shipped() -> Any:
    return loader.load([], shipped=True)


def round_trip(result: UnitResult) -> UnitResult:
    return wire.decode_result(json.loads(json.dumps(wire.encode_result(result))))


def time_fields(value: Any) -> Any:
    if value is None:
        return None
    fields = {k: v for k, v in vars(value).items() if k not in wire._CACHES}
    return type(value), fields


@pytest.fixture(scope="module", params=["traces raw", "demo e01", "workstation e01"])
def image(request, traces_images, demo_image, workstation_images) -> str:
    return str(
        {
            "traces raw": traces_images["raw"],
            "demo e01": demo_image["e01"],
            "workstation e01": workstation_images["e01"],
        }[request.param]
    )


def test_every_trace_survives_the_round_trip(image: str, shipped: Any) -> None:
    options = ScanOptions(unallocated=True)
    result, _ = scan_image(image, shipped, options)
    assert result.traces, "the scenario images have traces"
    back = round_trip(result)
    assert len(back.traces) == len(result.traces)
    for before, after in zip(result.traces, back.traces, strict=True):
        assert after == before
        assert time_fields(after.timestamp) == time_fields(before.timestamp)
        assert after.attributes == before.attributes
        for name, value in before.attributes.items():
            assert type(after.attributes[name]) is type(value), name
        for a, b in zip(after.matches, before.matches, strict=True):
            assert a.detail == b.detail
            assert [type(v) for _, v in a.detail] == [type(v) for _, v in b.detail]
    for name in ("warnings", "unreadable", "skipped", "not_checked", "counts"):
        assert getattr(back, name) == getattr(result, name), name
    # An E01's decoded chunks and checksum failures, which the client checks.
    assert bool(result.chunks_read) == image.endswith(".E01")
    assert back.chunks_read == result.chunks_read
    assert back.bad_sectors == result.bad_sectors
    assert back.parser_seconds == result.parser_seconds
    # Tuples, Decimals, bytes and odd keys keep their types.
    odd = UnitResult()
    odd.traces = [wire.decode_trace(wire.encode_trace(t)) for t in result.traces[:1]]
    odd.traces[0].attributes["nested"] = {
        1: (b"\x00", {"$x": [1.5, float("inf")]}),
        "d": __import__("decimal").Decimal("6E-9"),
    }
    again = round_trip(odd)
    assert again.traces[0].attributes["nested"] == odd.traces[0].attributes["nested"]


def comparable(value: Any) -> Any:
    if isinstance(value, dfdatetime_interface.DateTimeValues):
        return time_fields(value)
    if isinstance(value, (list, tuple)):
        return [comparable(item) for item in value]
    return value


def attributes(container: Any) -> list[tuple[str, Any]]:
    # Identifiers are the store's row numbers, not the event's content.
    return sorted(
        (k, comparable(v))
        for k, v in container.GetAttributes()
        if not k.endswith("_identifier")
    )


def store_events(path: Path) -> list[tuple[Any, ...]]:
    """The store's events as comparable values: time, description, event data
    and stream attributes, labels (identifiers and session left out)."""
    out = []
    for row in read_store(path):
        event, data, stream = row["event"], row["data"], row["stream"]
        out.append(
            (
                event.timestamp,
                event.timestamp_desc,
                attributes(data),
                attributes(stream) if stream else None,
                tuple(row["labels"] or ()),
            )
        )
    return out


def test_outputs_of_the_round_tripped_units_are_identical(
    image: str, shipped: Any, tmp_path: Path
) -> None:
    options = ScanOptions(workers=3)

    def through_json(units: list[Unit]) -> list[UnitResult]:
        return [round_trip(run_unit(unit, shipped, options)) for unit in units]

    direct = run_scan(image, shipped, options, verify=True)
    split = run_scan(image, shipped, options, verify=True, run_units=through_json)
    write_all(direct, tmp_path / "direct")
    write_all(split, tmp_path / "split")
    for name in SAME_BYTES:
        assert (tmp_path / "split" / name).read_bytes() == (
            tmp_path / "direct" / name
        ).read_bytes(), name
    events = store_events(tmp_path / "direct" / "timeline.plaso")
    assert events and store_events(tmp_path / "split" / "timeline.plaso") == events
    assert split.counts == direct.counts
    # The E01 is verified on the client either way (its time differs).
    checked = split.image_info.pop("verification", {})
    reference = direct.image_info.pop("verification", {})
    assert split.image_info == direct.image_info
    for name in ("ok", "computed_md5", "bad_sectors", "method", "chunks"):
        assert checked.get(name) == reference.get(name), name


@pytest.mark.parametrize(
    "ranges",
    [
        [[5, 2]],
        [[-1, 3]],
        [[1, 2, 3]],
        [["1", 2]],
        [[1.0, 2]],
        [[True, 2]],
        "1-2",
        None,
    ],
)
def test_a_result_with_bad_chunk_ranges_is_refused(ranges: Any) -> None:
    """A worker's chunk runs and bad sectors decide what the client checks
    again: anything but (first, last) pairs of numbers is not taken."""
    for name in ("chunks_read", "bad_sectors"):
        message = wire.encode_result(UnitResult())
        message[name] = ranges
        with pytest.raises(wire.WireError, match=name):
            wire.decode_result(message)
        # Chunks said decoded without the failures noted would pass unchecked.
        del message[name]
        with pytest.raises(wire.WireError, match=name):
            wire.decode_result(message)
