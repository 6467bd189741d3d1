"""Evidence access: disk images, their volumes and file entries, read-only.

Evidence opens an image with dfvfs (raw, split raw, EWF, VMDK, VHD/VHDX,
QCOW; MBR/GPT partitions; VSS stores), lists its file systems as Volumes and
walks each with The Sleuth Kit into FileItems: allocated and deleted entries,
one item per NTFS alternate data stream. FileItem.open() hands out the bytes.
"""

from toolmarks.evidence.evidence import Evidence
from toolmarks.evidence.model import EvidenceError, FileItem, Volume

__all__ = ["Evidence", "EvidenceError", "FileItem", "Volume"]
