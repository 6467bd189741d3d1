"""Reading plaso stores and running plaso's scripts, for tests of both fronts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from plaso.containers import events as plaso_events
from plaso.storage import factory as storage_factory


def script(name: str) -> str:
    """A console script: beside this Python first, else on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    if not found:
        pytest.fail(f"console script {name} not found")
    return found


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False
    )


def read_store(path: Path) -> list[dict[str, Any]]:
    """Every event with its event data, stream and labels, in time order."""
    reader = storage_factory.StorageFactory.CreateStorageReaderForFile(str(path))
    assert reader is not None
    try:
        rows = []
        for event in reader.GetSortedEvents():
            event_data = reader.GetAttributeContainerByIdentifier(
                plaso_events.EventData.CONTAINER_TYPE, event.GetEventDataIdentifier()
            )
            stream_identifier = event_data.GetEventDataStreamIdentifier()
            stream = None
            if stream_identifier:
                stream = reader.GetAttributeContainerByIdentifier(
                    plaso_events.EventDataStream.CONTAINER_TYPE, stream_identifier
                )
            tag = reader.GetEventTagByEventIdentifer(event.GetIdentifier())
            rows.append(
                {
                    "event": event,
                    "data": event_data,
                    "stream": stream,
                    "labels": tag.labels if tag else None,
                }
            )
        return rows
    finally:
        reader.Close()


def toolmarks(*args: str) -> Any:
    return run(sys.executable, "-m", "toolmarks", *args)


def log2timeline(binary: str, store: Path, source: str, *options: str) -> None:
    done = run(
        binary,
        "--status_view",
        "none",
        "--unattended",
        "--logfile",
        str(store.with_suffix(".log.gz")),
        "--storage_file",
        str(store),
        *options,
        source,
    )
    assert done.returncode == 0, done.stdout + done.stderr
