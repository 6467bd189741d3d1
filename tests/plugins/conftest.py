"""Shared stores of the traces scenario: made once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from plaso_support import log2timeline, script, toolmarks


@pytest.fixture(scope="session")
def plain_store(traces_images, tmp_path_factory) -> Path:
    """What an examiner has: plain plaso's win7 timeline with hashes and the
    YARA rules of toolmarks' export."""
    folder = tmp_path_factory.mktemp("plain")
    rules = folder / "toolmarks.yara"
    done = toolmarks("indicators", "export", "--format", "yara", "-o", str(rules))
    assert done.returncode == 0, done.stderr
    store = folder / "traces.plaso"
    log2timeline(
        script("log2timeline"),
        store,
        str(traces_images["raw"]),
        "--parsers",
        "win7",
        "--hashers",
        "md5,sha1,sha256",
        "--yara_rules",
        str(rules),
    )
    return store


@pytest.fixture(scope="session")
def front_store(traces_images, tmp_path_factory) -> Path:
    """log2timeline --parsers toolmarks of the traces scenario (multi-process)."""
    store = tmp_path_factory.mktemp("front") / "traces.plaso"
    done = toolmarks(
        "log2timeline",
        "--logfile",
        str(store.with_suffix(".log.gz")),
        "--storage_file",
        str(store),
        "--parsers",
        "toolmarks",
        "--status_view",
        "none",
        "--unattended",
        str(traces_images["raw"]),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "added --hashers md5,sha1,sha256 --yara_rules" in done.stderr
    return store
