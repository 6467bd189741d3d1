"""Fixtures of the evidence tests: built images and raw copies of real ones."""

from __future__ import annotations

from pathlib import Path

import evidence_images
import pytest


@pytest.fixture(scope="session")
def images_dir(real_data: Path) -> Path:
    path = real_data / "images"
    if not path.is_dir():
        pytest.fail(f"real test images missing: {path}")
    return path


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evidence-images")


@pytest.fixture(scope="session")
def ntfs_image(built: Path) -> Path:
    path = built / "ntfs.img"
    evidence_images.build_ntfs(path)
    return path


@pytest.fixture(scope="session")
def fat_image(built: Path) -> Path:
    path = built / "fat16.img"
    evidence_images.build_fat16(path)
    return path


@pytest.fixture(scope="session")
def gpt_image(built: Path, ntfs_image: Path, fat_image: Path) -> tuple[Path, int, int]:
    path = built / "gpt.img"
    first, second = evidence_images.build_gpt(path, ntfs_image, fat_image)
    return path, first, second


@pytest.fixture(scope="session")
def ntfs_ewf(built: Path, ntfs_image: Path) -> Path:
    return evidence_images.build_ewf(ntfs_image, built / "ntfs-ewf")


@pytest.fixture(scope="session")
def raw_copies(built: Path, images_dir: Path) -> dict[str, Path]:
    """Raw copies of the QCOW images and VSS stores, for fls to read."""
    copies = {}
    for name in ("image.qcow2", "windows_volume.qcow2", "vsstest.qcow2"):
        target = built / f"{name}.raw"
        evidence_images.qcow_to_raw(images_dir / name, target)
        copies[name] = target
    stores = built / "vss"
    stores.mkdir()
    for path in evidence_images.vss_stores_to_raw(images_dir / "vsstest.qcow2", stores):
        copies[f"vsstest.qcow2/{path.stem}"] = path
    return copies


@pytest.fixture(scope="session")
def vss_in_partition(built: Path, raw_copies: dict[str, Path]) -> tuple[Path, int]:
    """vsstest's NTFS volume (with its two VSS stores) as partition 1 of an MBR."""
    target = built / "vss-in-mbr.dd"
    offset = evidence_images.build_mbr_around(raw_copies["vsstest.qcow2"], target)
    return target, offset
