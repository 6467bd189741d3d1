"""Opening a disk image read-only and finding its volumes and file systems.

dfvfs' source scanner detects the storage media format (raw, split raw, EWF,
VMDK, VHD/VHDX, QCOW), the volume systems (MBR, GPT, VSS, LVM) and the file
systems. Its building blocks are called one layer at a time here, instead of
its all-in-one Scan(), so that one broken partition is reported and skipped
rather than ending the whole scan.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import logging
import os
import struct
from collections.abc import Callable, Iterator
from typing import Any, Self

import pyewf
import pytsk3
from dfdatetime import filetime as dfdatetime_filetime
from dfvfs.analyzer import analyzer
from dfvfs.helpers import source_scanner
from dfvfs.lib import definitions, raw_helper
from dfvfs.lib import errors as dfvfs_errors
from dfvfs.path import factory as path_spec_factory
from dfvfs.resolver import context as dfvfs_context
from dfvfs.resolver import resolver
from dfvfs.volume import factory as volume_system_factory

from toolmarks.evidence import generic, mft, tsk, verify
from toolmarks.evidence.model import (
    EvidenceError,
    FileItem,
    FileRange,
    SharedReader,
    Volume,
)

logger = logging.getLogger(__name__)

Warn = Callable[[str, str], None]

# Everything dfvfs and the libyal/pytsk3 bindings raise for bad input.
_BACKEND_ERRORS = (
    dfvfs_errors.Error,
    OSError,
    RuntimeError,
    ValueError,
    KeyError,
    TypeError,
    IOError,
)

_FORMATS = {
    definitions.TYPE_INDICATOR_RAW: "raw",
    definitions.TYPE_INDICATOR_OS: "raw",
    definitions.TYPE_INDICATOR_EWF: "ewf",
    definitions.TYPE_INDICATOR_VMDK: "vmdk",
    definitions.TYPE_INDICATOR_VHDI: "vhd",
    definitions.TYPE_INDICATOR_QCOW: "qcow",
    definitions.TYPE_INDICATOR_MODI: "modi",
    definitions.TYPE_INDICATOR_PHDI: "phdi",
}

_PARTITION_TABLES = {
    definitions.TYPE_INDICATOR_TSK_PARTITION: "MBR",
    definitions.TYPE_INDICATOR_GPT: "GPT",
    definitions.TYPE_INDICATOR_APM: "APM",
}

# File systems TSK reads with deleted entries and ADS; dfvfs' own back end is
# the fallback for these and the only reader for the others (XFS, APFS...).
_TSK_FIRST = {"NTFS", "FAT", "EXT", "HFS"}

_ENCRYPTED = {
    definitions.TYPE_INDICATOR_BDE,
    definitions.TYPE_INDICATOR_LUKSDE,
    definitions.TYPE_INDICATOR_ENCRYPTED_STREAM,
}


def _short(exception: BaseException, limit: int = 300) -> str:
    """First part of a (libyal style, very long) error message."""
    text = str(exception).strip() or type(exception).__name__
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_selection(text: str, what: str, prefix: str) -> set[int] | None:
    """None for "all", an empty set for "none", else the chosen numbers."""
    value = (text or "").strip().lower()
    if value == "all":
        return None
    if value == "none":
        return set()
    numbers = set()
    for part in value.split(","):
        part = part.strip()
        part = part.removeprefix(prefix)
        if not part.isdigit() or int(part) < 1:
            raise EvidenceError(
                f"invalid {what} selection {text!r}: use 'all', 'none' or numbers "
                f"like '1,3'"
            )
        numbers.add(int(part))
    return numbers


def _label_number(label: str, prefix: str) -> int | None:
    tail = label[len(prefix) :] if label.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None


class Evidence:
    """A disk image opened read-only: its volumes and their file entries.

    Not thread-safe; open one Evidence per process or worker.
    """

    def __init__(
        self,
        image_path: str | os.PathLike[str],
        *,
        partitions: str = "all",
        vss: str = "none",
        warn: Warn | None = None,
    ) -> None:
        self.image_path = os.fspath(image_path)
        self._warn_callback = warn
        # Every (location, message) reported through warn, for reports.
        self.problems: list[tuple[str, str]] = []
        self._partitions = _parse_selection(partitions, "partition", "p")
        self._vss = _parse_selection(vss, "VSS store", "vss")
        self._context = dfvfs_context.Context()
        self._scanner = source_scanner.SourceScanner(resolver_context=self._context)
        self._volumes: list[Volume] = []
        self._file_systems: dict[str, Any] = {}
        self._media_size: int | None = None
        self._media_spec: Any = None
        self._chunk_log: verify.ChunkLog | None = None
        self._media_file: Any = None  # the EWF file object _chunk_log reads for
        self.image_info: dict[str, Any] = {}
        try:
            self._open()
        except EvidenceError:
            self.close()
            raise
        except _BACKEND_ERRORS as exception:
            self.close()
            raise EvidenceError(
                f"{self.image_path}: cannot open image: {_short(exception)}"
            ) from exception

    # -- public API -------------------------------------------------------

    def volumes(self) -> list[Volume]:
        """The file systems found, in image order, VSS stores after their volume."""
        return list(self._volumes)

    def walk(self, volume: Volume, tsk_only: bool = False) -> Iterator[FileItem]:
        """Every file entry of the volume's file system, deleted ones included
        (tsk_only: NTFS walked by TSK's directory walk, not in $MFT order)."""
        handle = self._handle(volume)
        if isinstance(handle, tsk.TSKFileSystem):
            if tsk_only:
                return tsk.TSKWalker(handle, volume, self._warn).walk()
            return mft.MftWalker(handle, volume, self._warn).walk()
        return generic.DfvfsWalker(handle, volume, self._warn).walk()

    def mft_plan(self, volume: Volume) -> mft.MftPlan | None:
        """What a walk of an NTFS volume in ranges of MFT entries needs (see
        mft.MftWalker.plan); None when walk() must walk it whole."""
        handle = self._handle(volume)
        if not isinstance(handle, tsk.TSKFileSystem):
            return None
        try:
            return mft.MftWalker(handle, volume, self._warn).plan()
        except mft.Doubt:
            return None

    def mft_entries(
        self,
        volume: Volume,
        plan: mft.MftPlan,
        first: int,
        last: int,
        seen: mft.Seen,
        warn: Callable[[str, str], None],
    ) -> Iterator[FileItem]:
        """The items of MFT entries first .. last - 1 (the root's streams with
        the range that starts at 0), their warnings to warn.

        Raises:
          mft.Doubt: the volume must be walked by walk(volume, tsk_only=True).
        """
        walker = mft.MftWalker(self._handle(volume), volume, warn)
        items = walker.entries(plan, first, last, seen)
        if first:
            return items
        return itertools.chain(walker.root_streams(), items)

    def mft_index_names(self, volume: Volume, plan: mft.MftPlan) -> mft.IndexNames:
        """The names the volume's directory indexes hold (see
        mft.MftWalker.index_names).

        Raises:
          mft.Doubt: the volume must be walked by walk(volume, tsk_only=True).
        """
        walker = mft.MftWalker(self._handle(volume), volume, self._warn)
        return walker.index_names(plan)

    def mft_rest(
        self,
        volume: Volume,
        plan: mft.MftPlan,
        waiting: mft.IndexNames,
        seen: list[mft.Seen],
    ) -> Iterator[FileItem]:
        """The items that follow the ranges of entries (see mft.MftWalker.rest)."""
        walker = mft.MftWalker(self._handle(volume), volume, self._warn)
        return walker.rest(plan, waiting, seen)

    def stream_sizes(self, volume: Volume, metadata: bool) -> Iterator[int] | None:
        """An estimate of what walk() lists of an NTFS volume, from its $MFT
        records in order: one size per stream (see FsntfsVolume.stream_sizes);
        None for other file systems."""
        handle = self._handle(volume)
        if not isinstance(handle, tsk.TSKFileSystem) or handle.fallback is None:
            return None
        return handle.fallback.stream_sizes(metadata)

    def hands_over(self, volume: Volume) -> bool:
        """Whether the items of the volume's walk can be made again in another
        process (hand_over, taken_over): TSK file systems, opened by inode."""
        return isinstance(self._handle(volume), tsk.TSKFileSystem)

    @staticmethod
    def hand_over(item: FileItem) -> tuple[Any, ...]:
        """What taken_over needs to make an item of such a volume again."""
        return tsk.hand_over(item)

    def taken_over(self, volume: Volume, key: tuple[Any, ...]) -> FileItem:
        """The item another process's walk of this image handed over."""
        return tsk.taken_over(self._handle(volume), volume, key)

    def lookup(self, volume: Volume, path: str, stream: str = "") -> FileItem | None:
        """The allocated entry at path ("/" separators), or None if absent."""
        handle = self._handle(volume)
        if isinstance(handle, tsk.TSKFileSystem):
            return tsk.lookup(handle, volume, path, stream)
        for item in generic.DfvfsWalker(handle, volume, self._warn).walk():
            if item.path == path and item.stream == stream:
                return item
        return None

    def files_on(
        self, ranges: list[tuple[int, int]]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """The streams with data in the given (first, last) byte ranges of the
        media, and notes on what could not be mapped.

        Each stream: its location, inode, whether allocated, and the (first,
        last) byte ranges of the stream that lie there. Walks the metadata again,
        so it is meant for the few ranges a damaged image reports.
        """
        found: list[dict[str, Any]] = []
        notes: list[str] = []
        for volume in self._volumes:
            where = self._where(volume.label)
            start = volume.offset or 0
            end = start + volume.size - 1 if volume.size else None
            local = [
                (
                    max(first, start) - start,
                    (last if end is None else min(last, end)) - start,
                )
                for first, last in ranges
                if last >= start and (end is None or first <= end)
            ]
            if not local:
                continue
            handle = self._handle(volume)
            if volume.vss_store is not None or not isinstance(
                handle, tsk.TSKFileSystem
            ):
                notes.append(
                    f"{where}: files not mapped to the damaged ranges "
                    + (
                        "(a VSS store's blocks also come from its difference area)"
                        if volume.vss_store is not None
                        else f"(read through dfvfs' {volume.backend} back end)"
                    )
                )
                continue
            for item in self.walk(volume):
                if item.location is None or item.reallocated or not item.size:
                    continue
                try:
                    runs = handle.stream_runs(item.inode, item.stream)
                except OSError as error:
                    notes.append(f"{item.display_path}: runs not read: {error}")
                    continue
                hit = _overlaps(runs, local, item.size)
                if hit:
                    found.append(
                        {
                            "location": item.display_path,
                            "inode": item.inode,
                            "allocated": item.allocated,
                            "stream_ranges": hit,
                        }
                    )
            if any(f["location"] == volume.where("/$MFT") for f in found):
                notes.append(
                    f"{where}: $MFT is damaged: entries in its damaged records, and "
                    "data stored inside them (small files), are unreliable too"
                )
        return found, notes

    def free_space(self, volume: Volume) -> tuple[int, list[tuple[int, int]]] | None:
        """(cluster size, [(offset, length) in volume bytes]) of the volume's
        unallocated clusters; None when toolmarks cannot tell them (only NTFS'
        $Bitmap is read)."""
        handle = self._handle(volume)
        if not isinstance(handle, tsk.TSKFileSystem):
            return None
        extents = handle.free_extents()
        return None if extents is None else (handle.block_size, extents)

    def reused_ranges(self, item: FileItem) -> list[tuple[int, int]] | None:
        """(first, last) byte ranges of a deleted stream whose clusters belong to
        another entry now; None when the file system cannot tell (see
        TSKFileSystem.reused_ranges)."""
        handle = self._handle(item.volume)
        if item.inode is None or not isinstance(handle, tsk.TSKFileSystem):
            return None
        try:
            return handle.reused_ranges(item.inode, item.stream, item.size)
        except OSError:
            return None

    @staticmethod
    def preload() -> None:
        """Imports what the first image opened imports late: dfvfs' resolver
        helpers (0.1 s of CPU), so that processes forked after share them."""
        importlib.import_module("dfvfs.resolver_helpers")

    @property
    def chunk_log(self) -> verify.ChunkLog | None:
        """The EWF chunks this Evidence's reads decoded and the checksum
        failures noted (verify.ChunkLog); None for other formats or when pyewf
        cannot tell its checksum errors."""
        return self._chunk_log

    def open_media(self) -> Any:
        """Read-only file-like object of the whole media (decoded EWF, QCOW...)."""
        return self._open_spec(self._media_spec, self._where(""))

    def open_volume(self, volume: Volume) -> Any:
        """Read-only file-like object of the volume's bytes (partition, VSS store)."""
        self._handle(volume)
        return self._open_spec(volume.path_spec, self._where(volume.label))

    def _open_spec(self, spec: Any, where: str) -> Any:
        try:
            file_object = resolver.Resolver.OpenFileObject(
                spec, resolver_context=self._context
            )
        except _BACKEND_ERRORS as exception:
            raise OSError(f"{where}: cannot open: {_short(exception)}") from exception
        if file_object is None:
            raise OSError(f"{where}: cannot open")
        return SharedReader(file_object, where)

    def close(self) -> None:
        """Releases the image (file objects are closed once unreferenced)."""
        self._file_systems.clear()
        self._context.Empty()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- helpers ----------------------------------------------------------

    def _warn(self, location: str, message: str) -> None:
        self.problems.append((location, message))
        if self._warn_callback is not None:
            self._warn_callback(location, message)
        else:
            logger.warning("%s: %s", location, message)

    def _handle(self, volume: Volume) -> Any:
        try:
            return self._file_systems[volume.label]
        except KeyError:
            raise EvidenceError(
                f"{self.image_path}: no volume labelled {volume.label!r}"
            ) from None

    def _where(self, label: str) -> str:
        return label or os.path.basename(self.image_path)

    # -- opening ----------------------------------------------------------

    def _open(self) -> None:
        path = self.image_path
        if not os.path.exists(path):
            raise EvidenceError(f"{path}: no such file")
        if os.path.isdir(path):
            raise EvidenceError(f"{path}: is a directory, not a disk image file")
        if not os.access(path, os.R_OK):
            raise EvidenceError(f"{path}: permission denied")
        if os.path.getsize(path) == 0:
            raise EvidenceError(f"{path}: empty file, not a disk image")

        os_spec = path_spec_factory.Factory.NewPathSpec(
            definitions.TYPE_INDICATOR_OS, location=os.path.abspath(path)
        )
        try:
            media_spec = self._scanner.ScanForStorageMediaImage(os_spec)
        except _BACKEND_ERRORS as exception:
            raise EvidenceError(
                f"{path}: cannot read image: {_short(exception)}"
            ) from exception
        # No known container: a raw image that does not follow a raw naming
        # scheme; dfvfs reads volume and file systems off the file itself.
        if media_spec is None:
            media_spec = os_spec
        self._media_spec = media_spec
        fmt = _FORMATS.get(media_spec.type_indicator, media_spec.type_indicator.lower())
        self.image_info = {"path": path, "format": fmt}
        self._check_media(media_spec, fmt)
        self._add_format_details(os_spec, media_spec)
        if fmt == "ewf" and verify.can_check_chunks():
            self._chunk_log = self._log_chunks(media_spec)

        self._scan(media_spec, "", 0, self._media_size, top=True)

        if self._partitions and self.image_info.get("partition_table"):
            found = {
                _label_number(part["label"], "p")
                for part in self.image_info.get("partitions", [])
            }
            for number in sorted(self._partitions - found):
                self._warn(self._where(""), f"partition p{number} does not exist")
        elif self._partitions and not self.image_info.get("partition_table"):
            self._warn(
                self._where(""), "no partition table: partition selection ignored"
            )
        # A volume with shadow copies names its missing stores itself.
        if self._vss and "vss_stores" not in self.image_info:
            for number in sorted(self._vss):
                self._warn(
                    self._where(""),
                    f"VSS store {number} does not exist (no volume has readable "
                    "Volume Shadow Copies)",
                )

        self.image_info["volumes"] = [
            {
                "label": volume.label,
                "fs_type": volume.fs_type,
                "offset": volume.offset,
                "size": volume.size,
                "backend": volume.backend,
            }
            for volume in self._volumes
        ]
        if not self._volumes:
            message = self._no_file_system_message(fmt)
            if self.problems:
                location, problem = self.problems[0]
                message += f" (first problem: {location}: {problem})"
            raise EvidenceError(message)

    def _log_chunks(self, media_spec: Any) -> verify.ChunkLog | None:
        """Puts a ChunkLog between dfvfs' EWF file object and its pyewf handle.

        Every layer above (partitions, TSK, libfsntfs) reads through that one
        object, cached in this Evidence's resolver context. Chunks read before
        (by the format scan) are not noted, so the check decodes them again;
        their checksum errors are noted by the same handle all the same.
        """
        file_object = resolver.Resolver.OpenFileObject(
            media_spec, resolver_context=self._context
        )
        handle = getattr(file_object, "_file_object", None)
        if not isinstance(handle, pyewf.handle):
            return None
        self._media_file = file_object  # kept open, and so cached, till close()
        log = verify.ChunkLog(handle, self.image_info.get("segments"))
        file_object._file_object = log
        return log

    def _no_file_system_message(self, fmt: str) -> str:
        path = self.image_path
        parts = self.image_info.get("partitions", [])
        if not self.image_info.get("partition_table"):
            if fmt == "raw":
                return (
                    f"{path}: not a supported disk image: no partition table or "
                    "file system found"
                )
            return f"{path}: no file system found in the {fmt} image"
        listing = ", ".join(
            f"{part['label']} ({part.get('fs_type') or 'no file system'})"
            for part in parts
        )
        if self._partitions is not None:
            chosen = ",".join(str(number) for number in sorted(self._partitions))
            return (
                f"{path}: no file system found in the selected partitions "
                f"({chosen}); partitions: {listing or 'none'}"
            )
        return f"{path}: no file system found in any partition ({listing or 'none'})"

    def _check_media(self, media_spec: Any, fmt: str) -> None:
        path = self.image_path
        try:
            file_object = resolver.Resolver.OpenFileObject(
                media_spec, resolver_context=self._context
            )
        except _BACKEND_ERRORS as exception:
            hint = " (truncated or damaged?)" if fmt != "raw" else ""
            raise EvidenceError(
                f"{path}: cannot open {fmt} image{hint}: {_short(exception)}"
            ) from exception
        size = file_object.get_size()
        self._media_size = size
        self.image_info["size"] = size
        if not size:
            raise EvidenceError(f"{path}: {fmt} image holds no data")
        # Containers open from their headers alone; reading proves that data
        # is there (a truncated E01 opens, then fails on the first read).
        try:
            file_object.seek(0)
            file_object.read(min(size, 512))
        except _BACKEND_ERRORS as exception:
            raise EvidenceError(
                f"{path}: cannot read {fmt} image data (truncated or segment files "
                f"missing?): {_short(exception)}"
            ) from exception
        try:
            file_object.seek(max(0, size - 512))
            file_object.read(512)
        except _BACKEND_ERRORS as exception:
            if fmt == "ewf" and "missing segment file" in str(exception):
                raise EvidenceError(
                    f"{path}: EWF segment files missing: the image needs more "
                    "segments than were found next to it (keep .E01, .E02, ... "
                    "together in one folder)"
                ) from exception
            # A truncated image may still hold readable file systems.
            self._warn(
                self._where(""),
                f"end of the {fmt} image cannot be read (truncated?): "
                f"{_short(exception)}",
            )

    def _add_format_details(self, os_spec: Any, media_spec: Any) -> None:
        info = self.image_info
        indicator = media_spec.type_indicator
        path = os.path.abspath(self.image_path)
        if indicator == definitions.TYPE_INDICATOR_RAW:
            try:
                os_fs = resolver.Resolver.OpenFileSystem(
                    os_spec, resolver_context=self._context
                )
                segments = raw_helper.RawGlobPathSpec(os_fs, media_spec) or []
                info["segments"] = [spec.location for spec in segments]
            except _BACKEND_ERRORS:
                info["segments"] = [path]
        elif indicator == definitions.TYPE_INDICATOR_OS:
            info["segments"] = [path]
        elif indicator == definitions.TYPE_INDICATOR_VHDI:
            try:
                with open(path, "rb") as image_file:
                    if image_file.read(8) == b"vhdxfile":
                        info["format"] = "vhdx"
            except OSError:
                pass
        elif indicator == definitions.TYPE_INDICATOR_EWF:
            info.update(_ewf_details(path))

    # -- scanning ---------------------------------------------------------

    def _scan(
        self, spec: Any, label: str, offset: int | None, size: int | None, top: bool
    ) -> None:
        """Finds volume systems and file systems on one volume."""
        try:
            vs_spec = self._scanner.ScanForVolumeSystem(spec)
        except _BACKEND_ERRORS as exception:
            self._warn(
                self._where(label), f"cannot scan for partitions: {_short(exception)}"
            )
            vs_spec = None

        if vs_spec is not None and vs_spec.type_indicator in _ENCRYPTED:
            self._warn(
                self._where(label),
                f"encrypted volume ({vs_spec.type_indicator}) is not supported",
            )
            return

        if vs_spec is not None and vs_spec.type_indicator != (
            definitions.TYPE_INDICATOR_VSHADOW
        ):
            self._scan_volume_system(vs_spec, label, offset, top)
            return

        if top and vs_spec is None and self._scan_raw_mbr(spec):
            return
        volume = self._add_file_system(spec, label, offset, size, None)
        # A bare image without a file system ends in EvidenceError instead.
        if volume is None and label:
            self._warn(self._where(label), "no supported file system found")
        if vs_spec is not None:
            self._scan_shadow_copies(vs_spec, label, offset)

    def _scan_raw_mbr(self, media_spec: Any) -> bool:
        """Reads the primary entries of an MBR that TSK refused as a whole.

        TSK rejects a whole table for one bad entry (e.g. a partition starting
        past the end of the image); the good partitions are still evidence.
        """
        try:
            reader = self._open_spec(media_spec, self._where(""))
            reader.seek(0)
            sector = reader.read(512)
        except OSError:
            return False
        entries = _mbr_entries(sector)
        if not entries:
            return False
        self._warn(
            self._where(""),
            "the MBR partition table was refused by The Sleuth Kit; its primary "
            "entries are read directly (extended partitions are not)",
        )
        self.image_info["partition_table"] = "MBR"
        self.image_info.setdefault("partitions", [])
        media_size = self._media_size
        for number, (kind, start, size) in entries:
            label = f"p{number}"
            if self._partitions is not None and number not in self._partitions:
                continue
            record = self._record_partition(label, start, size, f"type 0x{kind:02x}")
            if media_size is not None and start >= media_size:
                self._warn(
                    label,
                    f"partition starts (offset {start}) past the end of the image "
                    f"(size {media_size}): skipped",
                )
                continue
            if media_size is not None and start + size > media_size:
                self._warn(
                    label,
                    f"partition (offset {start}, size {size}) extends past the end "
                    f"of the image (size {media_size}); only its first "
                    f"{media_size - start} bytes can be read",
                )
                size = media_size - start
            sub_spec = path_spec_factory.Factory.NewPathSpec(
                definitions.TYPE_INDICATOR_DATA_RANGE,
                range_offset=start,
                range_size=size,
                parent=media_spec,
            )
            count = len(self._volumes)
            self._scan(sub_spec, label, start, size, top=False)
            if len(self._volumes) > count:
                record["fs_type"] = self._volumes[count].fs_type
        return True

    def _sub_volumes(
        self, vs_spec: Any
    ) -> list[tuple[str, Any, int | None, int | None, str]]:
        """(identifier, path spec, offset, size, description) of each volume."""
        volume_system = volume_system_factory.Factory.NewVolumeSystem(
            vs_spec.type_indicator
        )
        volume_system.Open(vs_spec)
        root = resolver.Resolver.OpenFileEntry(vs_spec, resolver_context=self._context)
        by_location = {}
        for sub_entry in root.sub_file_entries:
            location = getattr(sub_entry.path_spec, "location", None)
            if location:
                by_location[location] = sub_entry.path_spec
        result = []
        for volume in volume_system.volumes:
            identifier = volume.identifier
            sub_spec = by_location.get(f"/{identifier}")
            if sub_spec is None:
                continue
            extents = list(volume.extents)
            offset = extents[0].offset if extents else None
            size = sum(extent.size for extent in extents) if extents else None
            description = ""
            attribute = volume.GetAttribute("description")
            if attribute is not None:
                description = str(attribute.value)
            result.append((identifier, sub_spec, offset, size, description))
        return result

    def _scan_volume_system(
        self, vs_spec: Any, label: str, base: int | None, top: bool
    ) -> None:
        where = self._where(label)
        kind = _PARTITION_TABLES.get(vs_spec.type_indicator, vs_spec.type_indicator)
        try:
            sub_volumes = self._sub_volumes(vs_spec)
        except _BACKEND_ERRORS as exception:
            self._warn(where, f"cannot read {kind} volume system: {_short(exception)}")
            return
        if top:
            self.image_info["partition_table"] = kind
            self.image_info.setdefault("partitions", [])
        for identifier, sub_spec, offset, size, description in sub_volumes:
            sub_label = f"{label}/{identifier}" if label else identifier
            absolute = None
            if offset is not None and base is not None:
                absolute = base + offset
            if top:
                number = _label_number(identifier, "p")
                if self._partitions is not None and number not in self._partitions:
                    self._record_partition(sub_label, absolute, size, description)
                    continue
            record = self._record_partition(sub_label, absolute, size, description)
            media_size = self._media_size
            if absolute is not None and media_size is not None:
                if absolute >= media_size:
                    self._warn(
                        self._where(sub_label),
                        f"partition starts (offset {absolute}) past the end of the "
                        f"image (size {media_size}): skipped",
                    )
                    continue
                if size is not None and absolute + size > media_size:
                    self._warn(
                        self._where(sub_label),
                        f"partition (offset {absolute}, size {size}) extends past "
                        f"the end of the image (size {media_size}); only its first "
                        f"{media_size - absolute} bytes can be read",
                    )
            count = len(self._volumes)
            self._scan(sub_spec, sub_label, absolute, size, top=False)
            if len(self._volumes) > count:
                record["fs_type"] = self._volumes[count].fs_type

    def _record_partition(
        self, label: str, offset: int | None, size: int | None, description: str
    ) -> dict[str, Any]:
        record = {
            "label": label,
            "offset": offset,
            "size": size,
            "description": description,
            "fs_type": None,
        }
        self.image_info.setdefault("partitions", []).append(record)
        return record

    def _scan_shadow_copies(self, vs_spec: Any, label: str, offset: int | None) -> None:
        where = self._where(label)
        try:
            stores = self._sub_volumes(vs_spec)
            volume_system = volume_system_factory.Factory.NewVolumeSystem(
                vs_spec.type_indicator
            )
            volume_system.Open(vs_spec)
        except _BACKEND_ERRORS as exception:
            self._warn(where, f"cannot read shadow copies: {_short(exception)}")
            return
        records = self.image_info.setdefault("vss_stores", [])
        for identifier, store_spec, _, size, _ in stores:
            number = _label_number(identifier, "vss")
            record: dict[str, Any] = {"volume": label, "store": number, "size": size}
            store = volume_system.GetVolumeByIdentifier(identifier)
            if store is not None:
                for name in ("identifier", "creation_time"):
                    attribute = store.GetAttribute(name)
                    if attribute is None:
                        continue
                    value = attribute.value
                    if name == "creation_time" and isinstance(value, int):
                        value = dfdatetime_filetime.Filetime(
                            timestamp=value
                        ).CopyToDateTimeStringISO8601()
                    record[name] = value
            records.append(record)
            if self._vss is not None and number not in self._vss:
                continue
            store_label = f"{label}/{identifier}" if label else identifier
            volume = self._add_file_system(
                store_spec, store_label, offset, size, number
            )
            if volume is None:
                self._warn(self._where(store_label), "no supported file system found")
        if self._vss:
            found = {_label_number(ident, "vss") for ident, *_ in stores}
            for number in sorted(self._vss - found):
                self._warn(where, f"VSS store {number} does not exist")

    def _direct_fs_info(
        self, fs_info: Any, offset: int | None, vss_store: int | None
    ) -> tuple[Any, Any] | None:
        """(TSK file system, its image) read by TSK straight from a one-file raw
        image, the same file system dfvfs found at offset; None otherwise.

        dfvfs hands TSK its reads through a Python callback: for 100,000 small
        files that was a fifth of the walk and read (bench/scan_throughput.py
        --small-files).
        """
        segments = self.image_info.get("segments")
        if vss_store is not None or offset is None or segments is None:
            return None
        if len(segments) != 1 or self.image_info.get("format") != "raw":
            return None
        try:
            image = pytsk3.Img_Info(segments[0], type=pytsk3.TSK_IMG_TYPE_RAW)
            direct = pytsk3.FS_Info(image, offset=offset)
        except OSError:
            return None
        mine, theirs = direct.info, fs_info.info
        same = all(
            int(getattr(mine, field)) == int(getattr(theirs, field))
            for field in ("ftype", "block_size", "block_count", "root_inum")
        )
        return (direct, image) if same else None

    def _add_file_system(
        self,
        spec: Any,
        label: str,
        offset: int | None,
        size: int | None,
        vss_store: int | None,
    ) -> Volume | None:
        where = self._where(label)
        try:
            indicators = analyzer.Analyzer.GetFileSystemTypeIndicators(
                spec, resolver_context=self._context
            )
        except _BACKEND_ERRORS as exception:
            self._warn(where, f"cannot scan for a file system: {_short(exception)}")
            return None
        fs_name = None
        if indicators:
            preferred = [name for name in indicators if name in _TSK_FIRST]
            fs_name = preferred[0] if preferred else indicators[0]

        tsk_problem = ""
        if fs_name is None or fs_name in _TSK_FIRST:
            tsk_spec = path_spec_factory.Factory.NewPathSpec(
                definitions.TYPE_INDICATOR_TSK, location="/", parent=spec
            )
            try:
                dfvfs_fs = resolver.Resolver.OpenFileSystem(
                    tsk_spec, resolver_context=self._context
                )
                fs_info, keep_alive = dfvfs_fs.GetFsInfo(), dfvfs_fs
                # libfsntfs reads the NTFS entries TSK cannot load.
                open_volume = functools.partial(self._open_spec, spec, where)
                direct = self._direct_fs_info(fs_info, offset, vss_store)
                if direct is not None:
                    fs_info, keep_alive = direct
                    path = self.image_info["segments"][0]
                    length = os.path.getsize(path) - offset if size is None else size
                    open_volume = functools.partial(
                        FileRange, path, offset, length, where
                    )
                handle = tsk.TSKFileSystem(
                    fs_info, keep_alive=keep_alive, open_volume=open_volume
                )
            except _BACKEND_ERRORS as exception:
                handle = None
                tsk_problem = _short(exception)
            if handle is not None:
                volume = Volume(
                    label=label,
                    path_spec=spec,
                    fs_type=fs_name or handle.fs_type,
                    offset=offset,
                    size=size,
                    fs_path_spec=tsk_spec,
                    backend="TSK",
                    vss_store=vss_store,
                )
                self._file_systems[label] = handle
                self._volumes.append(volume)
                return volume
        if fs_name is None:
            return None

        location = "\\" if fs_name in ("NTFS", "FAT") else "/"
        fs_spec = path_spec_factory.Factory.NewPathSpec(
            fs_name, location=location, parent=spec
        )
        try:
            file_system = resolver.Resolver.OpenFileSystem(
                fs_spec, resolver_context=self._context
            )
        except _BACKEND_ERRORS as exception:
            self._warn(where, f"cannot open {fs_name} file system: {_short(exception)}")
            return None
        if tsk_problem:
            self._warn(
                where,
                f"The Sleuth Kit cannot read this {fs_name} file system "
                f"({tsk_problem}); using dfvfs' {fs_name} back end, which lists "
                "allocated entries only",
            )
        volume = Volume(
            label=label,
            path_spec=spec,
            fs_type=fs_name,
            offset=offset,
            size=size,
            fs_path_spec=fs_spec,
            backend=fs_name,
            vss_store=vss_store,
        )
        self._file_systems[label] = file_system
        self._volumes.append(volume)
        return volume


def _overlaps(
    runs: list[tuple[int, int, int]], ranges: list[tuple[int, int]], size: int
) -> list[tuple[int, int]]:
    """(first, last) stream offsets of the runs' bytes inside ranges (volume
    offsets), up to the stream's size (the rest of a cluster is slack)."""
    out = []
    for offset, where, length in runs:
        for first, last in ranges:
            low, high = max(first, where), min(last, where + length - 1)
            if low <= high and offset + low - where < size:
                out.append((offset + low - where, min(offset + high - where, size - 1)))
    return sorted(out)


def _mbr_entries(sector: bytes) -> list[tuple[int, tuple[int, int, int]]]:
    """(number, (type, byte offset, byte size)) of the used primary MBR entries."""
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
        return []
    # Volume boot records end in 55 AA too: NTFS, FAT12/16, FAT32 and exFAT.
    if sector[3:11] in (b"NTFS    ", b"EXFAT   ") or b"FAT" in (
        sector[0x36:0x39],
        sector[0x52:0x55],
    ):
        return []
    entries = []
    for index in range(4):
        entry = sector[446 + 16 * index : 462 + 16 * index]
        kind = entry[4]
        start, count = struct.unpack_from("<II", entry, 8)
        if entry[0] not in (0, 0x80):
            return []  # not a partition table: a boot sector with code here
        if kind in (0x05, 0x0F, 0x85, 0xEE) or kind == 0 or count == 0:
            continue
        entries.append((index + 1, (kind, start * 512, count * 512)))
    return entries


def _ewf_details(path: str) -> dict[str, Any]:
    """Stored hashes and acquisition metadata of an EWF image (best effort)."""
    details: dict[str, Any] = {}
    handle = pyewf.handle()
    try:
        segments = pyewf.glob(path)
        details["segments"] = list(segments)
        handle.open(segments, "r")
    except (OSError, RuntimeError, TypeError) as exception:
        details["ewf_error"] = _short(exception)
        return details
    try:
        hashes = handle.get_hash_values() or {}
        for name, value in hashes.items():
            if value:
                details[name.lower()] = value
        headers = handle.get_header_values() or {}
        details["acquisition"] = {key: value for key, value in headers.items() if value}
        details["bytes_per_sector"] = handle.get_bytes_per_sector()
        details["media_size"] = handle.get_media_size()
    except (OSError, RuntimeError, TypeError) as exception:
        details["ewf_error"] = _short(exception)
    finally:
        handle.close()
    return details
