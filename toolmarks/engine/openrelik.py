"""toolmarks as an OpenRelik worker: on the queue `openrelik-worker-toolmarks`,
one task that scans every disk image of its input and hands back the scan's
outputs as OpenRelik files.

The contract is OpenRelik's worker contract (openrelik-worker-common's
task_utils and file_utils): the task name starts with the queue name, the task
takes (pipe_result, input_files, output_path, workflow_id, task_config), its
metadata lists the options a user can set, each output file is a dict with its
uuid, display name, extension, data type, path, original path and source file,
placed in output_path as `<uuid><extension>`, and the result is the base64 of
the JSON of output_files, workflow_id, command, meta, task_files, file_reports
and task_report. openrelik-worker-common itself is not used: it pins redis
below 6, and Celery 5.7's kombu needs redis 6.4 or later.

Run it as OpenRelik runs its workers (REDIS_URL names the broker):
`celery --app=toolmarks.engine.openrelik worker --task-events -Q
openrelik-worker-toolmarks`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolmarks.engine.run import run_scan
from toolmarks.engine.scan import ScanOptions
from toolmarks.evidence import EvidenceError
from toolmarks.indicators import loader
from toolmarks.output.findings import findings
from toolmarks.output.writers import WRITERS, write_all

if TYPE_CHECKING:
    from celery import Celery

QUEUE = "openrelik-worker-toolmarks"
TASK_NAME = f"{QUEUE}.tasks.scan"
TASK_METADATA = {
    "display_name": "toolmarks",
    "description": "Marks of attacker tools (pwdump, WCE, SDelete, …) in disk "
    "images: a tagged plaso timeline, findings per tool and a report",
    "task_config": [
        {
            "name": "unallocated",
            "label": "Unallocated clusters",
            "description": "Also match the indicator strings in the unallocated "
            "clusters of NTFS volumes (reads most of the disk)",
            "type": "checkbox",
            "required": False,
        },
        {
            "name": "vss",
            "label": "Volume Shadow Copies",
            "description": "Stores to scan: none, all, or numbers such as 1,2",
            "type": "text",
            "required": False,
        },
        {
            "name": "no_verify",
            "label": "Do not verify E01 images",
            "description": "Skip the check of an E01's chunk checksums",
            "type": "checkbox",
            "required": False,
        },
        {
            "name": "verify_md5",
            "label": "Compare the stored MD5 of E01 images",
            "description": "Also compute an E01's MD5 over its media (ewfverify: a "
            "second decode of every chunk)",
            "type": "checkbox",
            "required": False,
        },
    ],
}
# OpenRelik data types of the outputs, by output file name.
DATA_TYPES = {
    "timeline.plaso": "plaso:log2timeline:plaso_storage",
    "timeline.jsonl": "toolmarks:timeline:jsonl",
    "timeline.csv": "toolmarks:timeline:csv",
    "scan.json": "toolmarks:scan:json",
    "findings.json": "toolmarks:findings:json",
    "report.html": "toolmarks:report:html",
}


def input_files_of(pipe_result: Any, input_files: list[dict]) -> list[dict]:
    """The files to scan: the previous task's outputs when it passed any, else
    the task's own input files (openrelik-worker-common's get_input_files)."""
    results = pipe_result if isinstance(pipe_result, list) else [pipe_result]
    for result in results:
        if isinstance(result, str) and result:
            decoded = json.loads(base64.b64decode(result.encode()).decode())
            input_files = decoded.get("output_files", [])
    return list(input_files)


def encode_result(
    output_files: list[dict],
    workflow_id: str | None,
    command: str,
    meta: dict[str, Any],
    task_report: dict[str, Any],
) -> str:
    """The task's result as OpenRelik reads it (task_utils.create_task_result)."""
    document = {
        "output_files": output_files,
        "workflow_id": workflow_id,
        "command": command,
        "meta": meta,
        "task_files": [],
        "file_reports": [],
        "task_report": task_report,
    }
    return base64.b64encode(json.dumps(document).encode()).decode()


def scan_inputs(
    task: Any,
    pipe_result: Any = None,
    input_files: list[dict] | None = None,
    output_path: str | None = None,
    workflow_id: str | None = None,
    task_config: dict[str, Any] | None = None,
) -> str:
    """The task: every input image scanned, its outputs registered."""
    config = task_config or {}
    files = input_files_of(pipe_result, input_files or [])
    if not output_path:
        raise ValueError("no output_path")
    options = ScanOptions(
        vss=str(config.get("vss") or "none"),
        unallocated=bool(config.get("unallocated")),
        workers=1,
    )
    indicator_set = loader.load()
    output_files: list[dict] = []
    lines: list[str] = []
    for done, item in enumerate(files):
        _progress(task, done, len(files), item)
        name = str(item.get("display_name") or Path(item["path"]).name)
        try:
            outcome = run_scan(
                item["path"],
                indicator_set,
                options,
                verify=not config.get("no_verify"),
                verify_md5=bool(config.get("verify_md5")),
                command_line=f"toolmarks openrelik {name}",
            )
        except EvidenceError as error:
            lines.append(f"{name}: not scanned: {error}")
            continue
        with tempfile.TemporaryDirectory(dir=output_path) as folder:
            write_all(outcome, Path(folder))
            for output in WRITERS:
                output_files.append(
                    _register(Path(folder) / output, output_path, name, item)
                )
        found = findings(outcome.traces, indicator_set.tools)
        lines += [f"{name}: {f.tool}: {f.statement()}" for f in found] or [
            f"{name}: no tool found"
        ]
    _progress(task, len(files), len(files), None)
    return encode_result(
        output_files,
        workflow_id,
        "toolmarks scan",
        {"indicator_set_version": indicator_set.version},
        {
            "title": "toolmarks",
            "summary": f"{len(files)} images",
            "content": "\n".join(lines),
            "priority": 40,
        },
    )


def make_openrelik_app(broker: str) -> Celery:
    """The worker's Celery app: OpenRelik's queue, JSON only, the task."""
    from celery import Celery

    app = Celery(QUEUE, broker=broker, backend=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
    )
    app.task(name=TASK_NAME, bind=True, metadata=TASK_METADATA)(scan_inputs)
    return app


def __getattr__(name: str) -> Any:
    # `celery --app=toolmarks.engine.openrelik` looks for `celery` or `app`.
    if name in ("celery", "app"):
        return make_openrelik_app(os.environ.get("REDIS_URL", "redis://localhost"))
    raise AttributeError(name)


def _register(path: Path, output_path: str, name: str, item: dict) -> dict:
    """An output file moved to `<output_path>/<uuid><extension>` and its dict
    (file_utils.OutputFile.to_dict)."""
    identifier = uuid.uuid4().hex
    extension = path.suffix
    target = Path(output_path) / f"{identifier}{extension}"
    shutil.move(path, target)
    return {
        "uuid": identifier,
        "display_name": f"{name}-{path.name}",
        "extension": extension,
        "data_type": DATA_TYPES[path.name],
        "path": str(target),
        "original_path": item.get("path"),
        "source_file_id": item.get("id"),
    }


def _progress(task: Any, done: int, total: int, item: dict | None) -> None:
    """OpenRelik's progress event, when the task runs in a worker."""
    request = getattr(task, "request", None)
    if request is None or request.called_directly or request.is_eager:
        return
    task.send_event(
        "task-progress",
        data={"done": done, "total": total, "file": (item or {}).get("display_name")},
    )
