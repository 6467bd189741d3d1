"""Shared pytest fixtures: real test data, and scenario images built once.

Scenario images are cached under .cache/scenarios/, keyed on a hash of the builder
script, the description and the formats: editing either rebuilds, anything else
reuses the cached images across test runs.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILDER_PATH = REPO_ROOT / "scripts" / "build_scenario.py"
SCENARIOS_DIR = REPO_ROOT / "test_data" / "scenarios"
DEMO_DIR = REPO_ROOT / "test_data" / "demo"
CACHE_DIR = REPO_ROOT / ".cache" / "scenarios"
# toolmarks' own cache (indicator sets, Hyperscan databases) of this test run,
# for every toolmarks run inside it: never the user's ~/.cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="toolmarks-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)


@functools.cache
def load_builder() -> ModuleType:
    """Import scripts/build_scenario.py (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_scenario", BUILDER_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules while the class is made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def cache_key(description: Path, formats: Iterable[str]) -> str:
    """Hash of everything that decides the build's output."""
    digest = hashlib.sha256()
    digest.update(BUILDER_PATH.read_bytes())
    digest.update(b"\0")
    digest.update(description.read_bytes())
    digest.update(b"\0" + ",".join(formats).encode())
    return digest.hexdigest()[:16]


def images_from_manifest(manifest_path: Path) -> dict[str, Any]:
    """Return format -> image path (first segment for E01s), plus the manifest."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    directory = manifest_path.parent
    result: dict[str, Any] = {
        fmt: directory / info["files"][0] for fmt, info in manifest["images"].items()
    }
    result["manifest"] = manifest
    result["manifest_path"] = manifest_path
    return result


def build_cached(name: str, formats: Iterable[str] | None = None) -> dict[str, Any]:
    """Build test_data/scenarios/NAME.yaml unless a matching build is cached.

    Skips the calling test when the build needs root or tools that are missing.
    """
    builder = load_builder()
    description = SCENARIOS_DIR / f"{name}.yaml"
    wanted = builder.parse_formats(formats)
    target = CACHE_DIR / f"{name}-{cache_key(description, wanted)}"
    manifests = sorted(target.glob("*.manifest.json"))
    if manifests:
        return images_from_manifest(manifests[0])

    try:
        builder.check_prerequisites(wanted)
    except builder.ScenarioError as error:
        pytest.fail(f"cannot build scenario images: {error}")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    # Build aside and rename, so a crashed or concurrent build never leaves a
    # half-written directory under the final name.
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=CACHE_DIR))
    try:
        builder.build(description, work, wanted)
        work.chmod(0o755)  # mkdtemp makes it private; the images are not secret
        work.rename(target)
    except OSError:
        if not any(target.glob("*.manifest.json")):
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for stale in CACHE_DIR.glob(f"{name}-*"):
        # Older builds of this scenario are dead weight (~200 MiB each).
        if stale != target and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    return images_from_manifest(next(target.glob("*.manifest.json")))


@pytest.fixture(scope="session")
def scenario_builder() -> ModuleType:
    """The scripts/build_scenario.py module."""
    return load_builder()


@pytest.fixture(scope="session")
def workstation_images() -> dict[str, Any]:
    """The workstation scenario in every format, built once and cached.

    Keys: raw, e01, split_e01, mbr, gpt (paths), manifest (dict), manifest_path.
    """
    return build_cached("workstation")


@pytest.fixture(scope="session")
def traces_images() -> dict[str, Any]:
    """The traces scenario (planted hives and prefetch files) as raw and E01."""
    return build_cached("traces", ["raw", "e01"])


@pytest.fixture(scope="session")
def demo_image() -> dict[str, Any]:
    """The committed demo image: e01 (path), manifest (dict), manifest_path.

    Needs neither root nor a build.
    """
    manifest_path = DEMO_DIR / "demo.manifest.json"
    if not manifest_path.is_file():
        pytest.fail(f"{manifest_path} is missing")
    return images_from_manifest(manifest_path)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """../shared/test_data/real beside the project root; missing data fails."""
    path = REPO_ROOT.parent / "shared" / "test_data" / "real"
    if not path.is_dir():
        pytest.fail(f"real test data missing: {path}")
    return path
