"""toolmarks as an OpenRelik worker: the task's name, metadata, input and
output shapes of OpenRelik's worker contract (openrelik-worker-common's
task_utils and file_utils), run through Celery on the demo image."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from toolmarks.engine import openrelik

OUTPUT_FILE_KEYS = {
    "uuid",
    "display_name",
    "extension",
    "data_type",
    "path",
    "original_path",
    "source_file_id",
}
RESULT_KEYS = {
    "output_files",
    "workflow_id",
    "command",
    "meta",
    "task_files",
    "file_reports",
    "task_report",
}


@pytest.fixture(scope="module")
def task() -> Any:
    # No broker is reached: apply() runs the task in this process.
    app = openrelik.make_openrelik_app("redis://127.0.0.1:1/0")
    return app.tasks[openrelik.TASK_NAME]


def run(task: Any, **kwargs: Any) -> dict[str, Any]:
    encoded = task.apply(kwargs=kwargs).get()
    return json.loads(base64.b64decode(encoded))


def test_name_queue_and_metadata(task) -> None:
    assert openrelik.TASK_NAME.startswith(openrelik.QUEUE + ".")
    assert openrelik.QUEUE == "openrelik-worker-toolmarks"
    assert task.app.conf.task_default_queue == openrelik.QUEUE
    options = task.metadata["task_config"]
    assert {o["name"] for o in options} == {
        "unallocated",
        "vss",
        "no_verify",
        "verify_md5",
    }
    for option in options:
        assert {"name", "label", "description", "type", "required"} <= set(option)


def test_demo_image_scanned_into_openrelik_files(
    task, demo_image, tmp_path: Path
) -> None:
    image = {"id": 7, "path": str(demo_image["e01"]), "display_name": "demo.E01"}
    result = run(
        task,
        pipe_result=None,
        input_files=[image],
        output_path=str(tmp_path),
        workflow_id="workflow-1",
        task_config={"no_verify": True},
    )
    assert set(result) == RESULT_KEYS
    assert result["workflow_id"] == "workflow-1"
    files = result["output_files"]
    assert {f["data_type"] for f in files} == set(openrelik.DATA_TYPES.values())
    for item in files:
        assert set(item) == OUTPUT_FILE_KEYS
        path = Path(item["path"])
        # file_utils.create_output_file: <output_path>/<uuid><extension>.
        assert path.parent == tmp_path and path.name == item["uuid"] + item["extension"]
        assert path.is_file() and path.stat().st_size > 0
        assert (item["source_file_id"], item["original_path"]) == (7, image["path"])
    # Only the registered files are left in the output folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        Path(f["path"]).name for f in files
    )
    findings = next(f for f in files if f["data_type"] == "toolmarks:findings:json")
    tools = {
        f["tool"] for f in json.loads(Path(findings["path"]).read_text())["findings"]
    }
    planted = {e["tool"] for f in demo_image["manifest"]["files"] for e in f["expect"]}
    assert tools == planted == {"getmail", "mapiget", "wce"}
    report = result["task_report"]["content"]
    assert all(f"demo.E01: {tool}: " in report for tool in planted)


def test_previous_task_output_is_the_input_and_bad_files_are_said(
    task, demo_image, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a disk image\n")
    previous = base64.b64encode(
        json.dumps(
            {
                "output_files": [
                    {"id": 1, "path": str(notes), "display_name": "notes.txt"},
                    {"id": 2, "path": str(demo_image["e01"]), "display_name": "d.E01"},
                ]
            }
        ).encode()
    ).decode()
    out = tmp_path / "out"
    out.mkdir()
    result = run(
        task,
        pipe_result=previous,
        input_files=[],
        output_path=str(out),
        workflow_id="workflow-2",
        task_config={},
    )
    assert {f["source_file_id"] for f in result["output_files"]} == {2}
    assert len(result["output_files"]) == len(openrelik.DATA_TYPES)
    assert "notes.txt: not scanned: " in result["task_report"]["content"]
