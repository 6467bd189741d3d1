"""Small NTFS volumes made with mkntfs and ntfs-3g for tests of hostile names."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def plant_ntfs(raw: Path, folders: list[str], mount: Path) -> None:
    """A real 8 MiB NTFS volume holding FOLDER/1234-attach.doc for each name,
    written through ntfs-3g without its windows_names check (the scenario
    builder refuses names Windows would)."""
    with raw.open("wb") as handle:
        handle.truncate(8 * 2**20)
    subprocess.run(["mkntfs", "-F", "-Q", "-q", str(raw)], check=True)
    mount.mkdir()
    # no_detach: waiting for ntfs-3g after umount means the volume is written.
    daemon = subprocess.Popen(["ntfs-3g", "-o", "no_detach", str(raw), str(mount)])
    try:
        for _ in range(200):
            if os.path.ismount(mount):
                break
            time.sleep(0.05)
        assert os.path.ismount(mount), "ntfs-3g did not mount the volume"
        for folder in folders:
            (mount / folder).mkdir()
            (mount / folder / "1234-attach.doc").write_text("x")
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        daemon.wait(timeout=60)
