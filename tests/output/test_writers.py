"""write_all: every output of a real scan of the demo image, the slow ones in
forked processes; a writer that fails is named with its error, the others are
written, and nothing half-written is left."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from toolmarks.engine.run import run_scan
from toolmarks.engine.scan import ScanOptions
from toolmarks.indicators import loader
from toolmarks.outcome import ScanOutcome
from toolmarks.output import writers


@pytest.fixture(scope="module")
def outcome(demo_image: dict[str, Any]) -> ScanOutcome:
    return run_scan(
        str(demo_image["e01"]), loader.load(), ScanOptions(workers=1), verify=False
    )


def test_every_output_written(outcome: ScanOutcome, tmp_path: Path) -> None:
    written = writers.write_all(outcome, tmp_path)
    assert [path.name for path in written] == list(writers.WRITERS)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(writers.WRITERS)
    assert json.loads((tmp_path / "findings.json").read_text())["findings"]
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("failing", ["report.html", "timeline.jsonl"])
def test_a_failing_writer_is_named_and_the_others_written(
    outcome: ScanOutcome,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
) -> None:
    def broken(_outcome: ScanOutcome, path: Path) -> None:
        path.write_text("half")
        raise ValueError("disk full at byte 4")

    monkeypatch.setitem(writers.WRITERS, failing, broken)
    with pytest.raises(writers.OutputError) as raised:
        writers.write_all(outcome, tmp_path)
    assert str(raised.value) == f"{failing}: ValueError: disk full at byte 4"
    others = sorted(name for name in writers.WRITERS if name != failing)
    assert sorted(path.name for path in tmp_path.iterdir()) == others
