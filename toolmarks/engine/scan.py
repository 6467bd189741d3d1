"""The scan engine: walks an image once, reads every stream once, runs the parsers.

Work is cut into shares (one contiguous share of each batch of a volume's
entries in disk order). In the local process pool the main process walks each
volume once and hands the shares to the workers, which open the image
themselves, read-only; an NTFS volume is instead cut into ranges of MFT
records, each walked by the worker that scans it (_scan_mft). Units of work
elsewhere (Celery) walk the volume each.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import itertools
import multiprocessing
import os
import pickle
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from queue import Empty
from typing import Any, Self

from toolmarks.events import NOT_A_TIME, Match, Trace
from toolmarks.evidence import Evidence, FileItem, Volume, mft
from toolmarks.evidence.verify import Runs
from toolmarks.indicators.compiler import CompiledSet, compile_set
from toolmarks.indicators.model import IndicatorSet
from toolmarks.parsers import content, leads, manager
from toolmarks.parsers.content import DATA_TYPE_FILE, DATA_TYPE_UNALLOCATED

# Artefacts handed to a parser are held in memory so the parser and the content
# scan share one read; larger ones are parsed from a second open of the stream.
MAX_BUFFERED = 128 * 1024 * 1024
# NTFS keeps every file name in $MFT (and recent ones in $LogFile and $UsnJrnl), so
# their content would echo each name-like string as a hit on the metadata file.
# They are matched by name only unless asked for, and counted in scan.json.
_NTFS_METADATA = re.compile(
    r"^/\$(MFT|MFTMirr|LogFile|Volume|AttrDef|Bitmap|Boot|"
    r"BadClus|Secure|UpCase|Extend(/.*)?)$"
)
# File system times by the name FileItem.times gives them, in plaso's words.
_FILE_TIMES = manager.by_data_type(DATA_TYPE_FILE).times
TIME_DESCRIPTIONS = {
    name: _FILE_TIMES[f"{name}_time"]
    for name in ("creation", "modification", "access", "change")
}


# Unallocated space is matched in regions of this size: each region reports the
# first hit of each string, so two copies of a tool far apart are two events
# while one file full of the string is not thousands.
REGION_SIZE = 8 * 1024 * 1024


@dataclasses.dataclass
class ScanOptions:
    partitions: str = "all"
    vss: str = "none"
    max_file_size: int | None = None  # None: no cap
    workers: int = 1
    chunk_size: int = content.CHUNK_SIZE
    artefacts: bool = True  # registry hives and prefetch files
    leads: bool = True  # odd names, unknown builds, programs gone (parsers.leads)
    scan_metadata: bool = False  # content of NTFS metadata files ($MFT, …)
    unallocated: bool = False  # strings in unallocated clusters (NTFS)
    region_size: int = REGION_SIZE


@dataclasses.dataclass
class UnitResult:
    """What one unit of work found; units merge into the scan's result."""

    traces: list[Trace] = dataclasses.field(default_factory=list)
    warnings: list[dict[str, str]] = dataclasses.field(default_factory=list)
    unreadable: list[dict[str, str]] = dataclasses.field(default_factory=list)
    skipped: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    not_checked: list[dict[str, str]] = dataclasses.field(default_factory=list)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    parser_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    # EWF images: the chunk runs its reads decoded and the (first, last) sectors
    # of those that failed their checksum (evidence.verify.check_chunks).
    chunks_read: Runs = dataclasses.field(default_factory=list)
    bad_sectors: Runs = dataclasses.field(default_factory=list)

    def count(self, name: str, amount: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + amount

    def merge(self, other: UnitResult) -> None:
        self.traces += other.traces
        self.warnings += other.warnings
        self.unreadable += other.unreadable
        self.skipped += other.skipped
        self.not_checked += other.not_checked
        for name, value in other.counts.items():
            self.count(name, value)
        for name, value in other.parser_seconds.items():
            self.parser_seconds[name] = self.parser_seconds.get(name, 0.0) + value
        self.chunks_read += other.chunks_read
        self.bad_sectors += other.bad_sectors

    def note_chunks(self, evidence: Evidence) -> None:
        """Adds the EWF chunks the evidence decoded since it was last asked."""
        if evidence.chunk_log is not None:
            runs, bad = evidence.chunk_log.take()
            self.chunks_read += runs
            self.bad_sectors += bad


def windows_path(item: FileItem) -> str:
    """The path filename indicators are matched on: \\-separated, no volume."""
    return item.path.replace("/", "\\")


def artefact_parser(item: FileItem) -> manager.ParserDefinition | None:
    """The registered parser that takes this item, or None; a stream is taken
    by its path as `<file path>:<stream name>` (the USN journal's `$J`)."""
    return manager.parser_for(
        f"{item.path}:{item.stream}" if item.stream else item.path
    )


def not_read(item: FileItem, options: ScanOptions) -> str | None:
    """Why the item's content is not read ("empty", "reallocated", "metadata",
    "cap"), or None when it is."""
    if not (item.is_file and item.size > 0 and item.has_metadata):
        return "empty"
    if item.reallocated:
        return "reallocated"
    if not options.scan_metadata and _NTFS_METADATA.match(item.path):
        return "metadata"
    if options.max_file_size is not None and item.size > options.max_file_size:
        return "cap"
    return None


class Scanner:
    """Scans the file items of volumes against one compiled indicator set."""

    def __init__(
        self,
        compiled: CompiledSet,
        options: ScanOptions,
        reused: Callable[[FileItem], list[tuple[int, int]] | None] | None = None,
    ) -> None:
        self.compiled = compiled
        self.options = options
        # Evidence.reused_ranges: which bytes of a deleted stream lie in clusters
        # another entry owns now.
        self._reused = reused
        # (program path, artefact, its last run) of every program an artefact
        # says ran, checked against the volume's files at the end of the unit.
        self.programs: list[tuple[str, str, Any]] = []

    def scan_items(
        self,
        items: Iterator[FileItem],
        result: UnitResult,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        for item in items:
            if item.is_dir and not item.stream:
                result.count("directories")
            else:
                result.count("files")
            skip = not_read(item, self.options)
            try:
                self._scan_item(item, skip, result)
            except Exception as error:  # noqa: BLE001 - one bad file never stops a scan
                result.unreadable.append(
                    {
                        "location": item.display_path,
                        "problem": f"{type(error).__name__}: {error}",
                    }
                )
            if progress:
                progress(1, 0 if skip else item.size)

    def _scan_item(self, item: FileItem, skip: str | None, result: UnitResult) -> None:
        matches: list[Match] = []
        path = windows_path(item)
        if not item.stream:
            for ind in self.compiled.filenames.match(path):
                matches.append(Match.of(ind, path))
        attributes: dict[str, Any] = {}
        if item.allocated and not item.has_metadata:
            result.unreadable.append(
                {
                    "location": item.display_path,
                    "problem": f"entry {item.inode}: metadata cannot be read (corrupted "
                    "or missing): only the name in its directory is known",
                }
            )
        if skip == "reallocated":
            # The entry now holds another file's content, scanned under that
            # file's own name; here it would be a hit under a wrong name.
            result.count("reallocated_entries_not_content_scanned")
        elif skip == "metadata":
            result.count("metadata_files_not_content_scanned")
            # Not string-scanned, but a parser may read it (the USN journal).
            parser = artefact_parser(item) if self.options.artefacts else None
            if parser:
                self._parse_artefact(parser, item, None, result)
        elif skip == "cap":
            result.skipped.append(
                {
                    "location": item.display_path,
                    "reason": f"{item.size} bytes, larger than --max-file-size "
                    f"{self.options.max_file_size}",
                }
            )
        elif skip is None:
            before = len(result.traces)
            matches += self._scan_content(item, attributes, result)
            if not item.allocated and (matches or len(result.traces) > before):
                self._mark_reused(item, attributes, result.traces[before:])
        if matches:
            result.traces += file_traces(item, matches, attributes)
        if self.options.leads and skip is None and not item.stream:
            for lead in leads.file_leads(path, matches, self.compiled.tools):
                reason = dict(lead.detail)["reason"]
                result.traces += file_traces(
                    item,
                    [lead],
                    {**attributes, "lead": lead.indicator, "reason": reason},
                    leads.DATA_TYPE,
                )

    def _mark_reused(
        self, item: FileItem, attributes: dict[str, Any], traces: list[Trace]
    ) -> None:
        """Says on a deleted stream's traces which of its bytes were read from
        clusters another entry owns now (they may hold that entry's data)."""
        ranges = self._reused(item) if self._reused else None
        if not ranges:
            return
        text = (
            "bytes "
            + ", ".join(f"{a}-{b}" for a, b in ranges)
            + " of this deleted stream lie in clusters allocated to another "
            "entry now: what was read there may be that entry's content"
        )
        attributes["reused_clusters"] = text
        for trace in traces:
            trace.attributes["reused_clusters"] = text

    def _scan_content(
        self, item: FileItem, attributes: dict[str, Any], result: UnitResult
    ) -> list[Match]:
        parser = artefact_parser(item) if self.options.artefacts else None
        try:
            stream = item.open()
        except OSError as error:
            result.unreadable.append(
                {"location": item.display_path, "problem": str(error)}
            )
            return []
        data = None
        if parser and item.size <= MAX_BUFFERED:
            try:
                data = stream.read()
            except OSError as error:
                result.unreadable.append(
                    {"location": item.display_path, "problem": str(error)}
                )
                return []
            stream = io.BytesIO(data)
        found = content.scan_stream(
            stream, self.compiled, chunk_size=self.options.chunk_size
        )
        result.count("bytes", found.size)
        if found.error:
            result.unreadable.append(
                {"location": item.display_path, "problem": found.error}
            )
        for note in found.notes:
            result.not_checked.append({"location": item.display_path, "reason": note})
        attributes.update(
            {f"{name}_hash": value for name, value in found.hashes.items()}
        )
        if found.imphash:
            attributes["imphash"] = found.imphash
        matches = []
        for name, value in found.hashes.items():
            matches += [
                Match.of(ind, value) for ind in self.compiled.match_hash(name, value)
            ]
        if found.imphash:
            matches += [
                Match.of(ind, found.imphash)
                for ind in self.compiled.match_hash("imphash", found.imphash)
            ]
        for hit in found.strings:
            matches.append(
                Match.of(
                    hit.indicator,
                    hit.indicator.fields["value"],
                    rule=hit.rule,
                    offset=hit.offset,
                    encoding=hit.encoding,
                )
            )
        if parser and found.error is None:
            self._parse_artefact(parser, item, data, result)
        return matches

    def _parse_artefact(
        self,
        parser: manager.ParserDefinition,
        item: FileItem,
        data: bytes | None,
        result: UnitResult,
    ) -> None:
        started = time.perf_counter()
        try:
            stream = io.BytesIO(data) if data is not None else item.open()
        except OSError as error:
            result.unreadable.append(
                {"location": item.display_path, "problem": str(error)}
            )
            return
        source = item.display_path
        name = item.path.rsplit("/", 1)[-1]
        parsed = parser.parse(stream, source, self.compiled, name)
        kind = parser.name
        result.count(f"{kind}_files")
        for message in parsed.warnings:
            # The parsers name the source themselves; the location already does.
            message = message.removeprefix(f"{source}: ")
            result.warnings.append({"location": source, "message": message})
        for trace in parsed.traces:
            trace.attributes.setdefault("allocated", item.allocated)
            trace.attributes.setdefault("volume", item.volume.label)
        for program, when in getattr(parsed, "programs", ()):
            self.programs.append((program, source, when))
        result.traces += parsed.traces
        elapsed = time.perf_counter() - started
        result.parser_seconds[kind] = result.parser_seconds.get(kind, 0.0) + elapsed


def file_traces(
    item: FileItem,
    matches: list[Match],
    attributes: dict[str, Any],
    data_type: str = DATA_TYPE_FILE,
) -> list[Trace]:
    """One trace per file system time of a matched file, all with every match."""
    attributes = {
        "path": item.path,
        "file_name": item.path.rsplit("/", 1)[-1],
        "stream": item.stream,
        "volume": item.volume.label,
        "inode": item.inode,
        "size": item.size,
        "allocated": item.allocated,
        **attributes,
    }
    times = [
        (name, item.times[name])
        for name in TIME_DESCRIPTIONS
        if item.times.get(name) is not None
    ]
    if not times:
        times = [(None, None)]
    return [
        Trace(
            data_type,
            timestamp,
            TIME_DESCRIPTIONS.get(name, NOT_A_TIME),
            item.display_path,
            list(matches),
            dict(attributes),
        )
        for name, timestamp in times
    ]


def scan_unallocated(
    evidence: Evidence,
    volume: Volume,
    unit: Unit,
    compiled: CompiledSet,
    options: ScanOptions,
    result: UnitResult,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Matches the strings in this unit's share of the volume's unallocated
    clusters, region by region; one trace per region with hits."""
    free = evidence.free_space(volume)
    if free is None:
        if unit.index == 0:
            result.warnings.append(
                {
                    "location": volume.where("/"),
                    "message": f"unallocated space not scanned: {volume.fs_type} "
                    "(toolmarks reads the allocation of NTFS volumes only)",
                }
            )
        return
    cluster_size, extents = free
    regions = [
        (start, min(options.region_size, offset + length - start), offset + length)
        for offset, length in extents
        for start in range(offset, offset + length, options.region_size)
    ]
    total = sum(length for _, length, _ in regions)
    low, high = total * unit.index / unit.stride, total * (unit.index + 1) / unit.stride
    # Room after a region's end for a string that starts inside it, plus the
    # characters a fullword string is checked against.
    overlap = compiled.strings.overlap + 2
    volume_file = None
    before = 0
    for start, length, extent_end in regions:
        mine = low <= before < high
        before += length
        if not mine:
            continue
        where = volume.where(f"<unallocated bytes {start}-{start + length - 1}>")
        try:
            if volume_file is None:
                volume_file = evidence.open_volume(volume)
            volume_file.seek(start)
            data = volume_file.read(min(length + overlap, extent_end - start))
        except Exception as error:  # noqa: BLE001 - any back end error
            result.unreadable.append({"location": where, "problem": str(error)})
            continue
        result.count("unallocated_bytes", length)
        hits = [h for h in content.scan_buffer(data, compiled) if h.offset < length]
        if hits:
            matches = [
                Match.of(
                    hit.indicator,
                    hit.indicator.fields["value"],
                    rule=hit.rule,
                    volume_offset=start + hit.offset,
                    encoding=hit.encoding,
                )
                for hit in hits
            ]
            attributes = {
                "volume": volume.label,
                "volume_offset": start,
                "size": length,
                "first_cluster": start // cluster_size,
                "last_cluster": (start + length - 1) // cluster_size,
            }
            result.traces.append(
                Trace(
                    DATA_TYPE_UNALLOCATED,
                    None,
                    NOT_A_TIME,
                    where,
                    matches,
                    attributes,
                )
            )
        if progress:
            progress(0, length)


# --- units of work -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Unit:
    """Share `index` of `stride` of one volume of one image.

    Each batch of entries, sorted by where their data lies, is cut into
    `stride` contiguous shares of about equal bytes: each unit reads its own
    region of the disk in order, so no two decode the same E01 chunks and the
    reads run forward. A unit run on its own walks the volume's metadata itself.
    """

    image: str
    volume_label: str
    index: int
    stride: int


BATCH = 4096
FIRST_BATCH = 256
# Net allocations between two young-generation collections during a scan
# (Python's default is 700); see _fewer_collections.
GC_THRESHOLD = 50_000
# What opening an entry costs, in bytes read, when balancing shares.
ENTRY_COST = 16 * 1024
# Bytes of content a share of the local pool holds at most (see _shares).
PIECE = 32 * 1024 * 1024


def _disk_order(item: FileItem) -> tuple[int, int]:
    return (0, item.location) if item.location is not None else (1, 0)


def share(
    items: Iterator[FileItem], unit: Unit, options: ScanOptions
) -> Iterator[FileItem]:
    """The items of one unit's share, batch by batch, in disk order."""
    for batch in _batches(items):
        yield from _shares(batch, unit.stride, options)[unit.index]


def _shares(
    batch: list[FileItem], stride: int, options: ScanOptions, piece: int = 0
) -> list[list[FileItem]]:
    """The batch in disk order, cut into `stride` contiguous shares of about
    equal cost; into more where piece is given and the batch holds more than
    piece bytes of content a share, so that no worker is left with a large
    share when the others are done."""
    batch.sort(key=_disk_order)
    if stride == 1 and not piece:
        return [batch]
    costs = [
        ENTRY_COST + (0 if not_read(item, options) else item.size) for item in batch
    ]
    total = sum(costs) or 1
    if piece:
        content = total - ENTRY_COST * len(batch)
        stride = max(stride, -(-content // piece))
    shares: list[list[FileItem]] = [[] for _ in range(stride)]
    before = 0
    for item, cost in zip(batch, costs):
        shares[min(stride - 1, before * stride // total)].append(item)
        before += cost
    return shares


def run_unit(
    unit: Unit,
    indicator_set: IndicatorSet,
    options: ScanOptions,
    progress: Callable[[int, int], None] | None = None,
    evidence: Evidence | None = None,
) -> UnitResult:
    """Scans one unit, through `evidence` if given (its warnings go to its own
    callback) or an Evidence of its own (in a worker process)."""
    result = UnitResult()

    def warn(location: str, message: str) -> None:
        result.warnings.append({"location": location, "message": message})

    own = evidence is None
    if evidence is None:
        evidence = Evidence(
            unit.image,
            partitions=options.partitions,
            vss=options.vss,
            # Every unit walks the whole volume; one of them reports.
            warn=warn if unit.index == 0 else lambda *_: None,
        )
    try:
        volume = next(v for v in evidence.volumes() if v.label == unit.volume_label)
        scanner = Scanner(compile_set(indicator_set), options, evidence.reused_ranges)
        on_disk: set[str] = set()
        items = share(_noting_paths(evidence.walk(volume), on_disk), unit, options)
        with _fewer_collections():
            scanner.scan_items(items, result, progress)
        if options.leads:
            result.traces += missing_programs(scanner.programs, on_disk, volume)
        if options.unallocated:
            scan_unallocated(
                evidence, volume, unit, scanner.compiled, options, result, progress
            )
        result.note_chunks(evidence)
    finally:
        if own:
            evidence.close()
    return result


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Runs the cyclic garbage collector less often: a scan of 100,000 small
    files made 10 objects of cyclic garbage, yet its allocations ran 1,670
    collections, about 6 % of the CPU time (bench/scan_throughput.py
    --small-files). Reference counting frees all the rest."""
    threshold = gc.get_threshold()
    gc.set_threshold(max(threshold[0], GC_THRESHOLD), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


def _noting_paths(items: Iterator[FileItem], on_disk: set[str]) -> Iterator[FileItem]:
    """The items, each allocated file's path noted (lower case, \\-separated)."""
    for item in items:
        if item.allocated and item.is_file and not item.stream:
            on_disk.add(windows_path(item).lower())
        yield item


def missing_programs(
    programs: list[tuple[str, str, Any]], on_disk: set[str], volume: Volume
) -> list[Trace]:
    """Leads for programs an artefact of this volume says ran from a path of
    it where no allocated file is now."""
    traces = []
    for recorded, source, when in programs:
        path = leads.program_path(recorded)
        if path.lower() in on_disk:
            continue
        reason = (
            f"{source} records a run of {recorded}; no allocated file is at "
            f"{path} on this volume now (deleted, renamed or moved, or on another "
            "volume)"
        )
        lead = leads.lead(leads.MISSING_PROGRAM, path, reason)
        traces.append(
            Trace(
                leads.DATA_TYPE,
                when,
                "Last Time Executed" if when is not None else NOT_A_TIME,
                source,
                [lead],
                {
                    "lead": lead.indicator,
                    "reason": reason,
                    "program_path": recorded,
                    "volume": volume.label,
                },
            )
        )
    return traces


# Set in each worker process by the pool's initializer: queues cannot be task
# arguments, only inherited. The evidence and scanner are opened by the first
# task and kept for the worker's life.
_progress_queue: Any = None
_worker: dict[str, Any] = {}


def _init_worker(
    queue: Any, image: str, indicator_set: IndicatorSet, options: ScanOptions
) -> None:
    global _progress_queue
    _progress_queue = queue
    _worker.update(image=image, indicator_set=indicator_set, options=options)


def _reporter() -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """(report, flush): progress sent to the main process about 4 times a second."""
    pending = [0, 0, time.monotonic()]

    def report(files: int, size: int) -> None:
        pending[0] += files
        pending[1] += size
        if time.monotonic() - pending[2] > 0.25:
            flush()

    def flush() -> None:
        _progress_queue.put((pending[0], pending[1]))
        pending[:] = [0, 0, time.monotonic()]

    return report, flush


def _run_unit_in_worker(unit: Unit) -> UnitResult:
    report, flush = _reporter()
    result = run_unit(unit, _worker["indicator_set"], _worker["options"], report)
    flush()
    return result


def _worker_scanner() -> tuple[Evidence, Scanner]:
    if "scanner" not in _worker:
        options = _worker["options"]
        evidence = Evidence(
            _worker["image"],
            partitions=options.partitions,
            vss=options.vss,
            # The main process walked the volumes and reported what it met.
            warn=lambda *_: None,
        )
        compiled = compile_set(_worker["indicator_set"])
        _worker["evidence"] = evidence
        _worker["scanner"] = Scanner(compiled, options, evidence.reused_ranges)
    return _worker["evidence"], _worker["scanner"]


def _worker_volume(label: str) -> tuple[Evidence, Scanner, Volume]:
    """This worker's evidence and scanner, and its volume of that label."""
    evidence, scanner = _worker_scanner()
    return evidence, scanner, next(v for v in evidence.volumes() if v.label == label)


def _open_worker() -> None:
    _worker_scanner()


def _scan_share(
    label: str, keys: list[tuple[Any, ...]]
) -> tuple[UnitResult, list[tuple[str, str, Any]]]:
    """Scans items the main process walked; returns what they hold and the
    programs their artefacts say ran."""
    evidence, scanner, volume = _worker_volume(label)
    result = UnitResult()
    scanner.programs = []
    report, flush = _reporter()
    items = (evidence.taken_over(volume, key) for key in keys)
    with _fewer_collections():
        scanner.scan_items(items, result, report)
    flush()
    result.note_chunks(evidence)
    return result, scanner.programs


def _scan_mft_range(
    label: str, plan_file: str, first: int, last: int
) -> tuple[
    UnitResult,
    list[tuple[str, str, Any]],
    mft.Seen,
    set[str],
    list[tuple[Any, ...]],
    str | None,
]:
    """Walks and scans MFT entries first .. last - 1 of an NTFS volume (the
    main process read its directories: plan_file); returns what they hold,
    the programs their artefacts say ran, what the walk noted, the allocated
    paths, the hand-over keys of the streams of HAND_BACK bytes or more (not
    scanned here), and why the volume must be walked whole instead (None)."""
    evidence, scanner, volume = _worker_volume(label)
    plans = _worker.setdefault("plans", {})
    if plan_file not in plans:
        plans.clear()
        with open(plan_file, "rb") as source:
            plans[plan_file] = pickle.load(source)
    result = UnitResult()

    def warn(location: str, message: str) -> None:
        result.warnings.append({"location": location, "message": message})

    seen = mft.Seen()
    on_disk: set[str] = set()
    large: list[tuple[Any, ...]] = []
    scanner.programs = []
    report, flush = _reporter()
    items = evidence.mft_entries(volume, plans[plan_file], first, last, seen, warn)
    try:
        with _fewer_collections():
            small = _handing_back(_noting_paths(items, on_disk), large)
            scanner.scan_items(small, result, report)
    except (mft.Doubt, OSError) as why:
        result.note_chunks(evidence)
        return result, [], seen, set(), [], str(why)
    flush()
    result.note_chunks(evidence)
    return result, scanner.programs, seen, on_disk, large, None


def _handing_back(
    items: Iterator[FileItem], large: list[tuple[Any, ...]]
) -> Iterator[FileItem]:
    """The items of streams under HAND_BACK bytes; the others' keys go to
    large."""
    for item in items:
        if item.size >= HAND_BACK and item.reopen is not None:
            large.append(Evidence.hand_over(item))
        else:
            yield item


def _scan_free(label: str, unit: Unit) -> UnitResult:
    evidence, scanner, volume = _worker_volume(label)
    result = UnitResult()
    report, flush = _reporter()
    scan_unallocated(
        evidence, volume, unit, scanner.compiled, _worker["options"], result, report
    )
    flush()
    result.note_chunks(evidence)
    return result


def _decode_chunks(runs: Runs) -> tuple[Runs, list[str]]:
    log = _worker_scanner()[0].chunk_log
    if log is None:
        raise RuntimeError(f"{_worker['image']}: no EWF chunks noted here")
    return log.decode(runs)


def count_totals(image: str, options: ScanOptions) -> tuple[int, int]:
    """(entries, bytes of file content) of the selected volumes, from metadata
    (estimated on NTFS: Evidence.stream_sizes).

    Run beside the scan for the progress bar's ETA; its own read-only Evidence,
    in a process of its own: as a thread it shared the interpreter lock with a
    one-worker scan (100,000 small files: 28.4 s against 17.2 s without it).
    Spawned, not forked: the caller's other threads may hold locks a fork would
    copy. Raises EOFError when the count failed.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    # Daemonic: a scan that ends first does not wait for the count at exit.
    process = context.Process(
        target=_send_totals, args=(image, options, sender), daemon=True
    )
    process.start()
    sender.close()
    try:
        return receiver.recv()
    finally:
        receiver.close()
        process.join()


def _send_totals(image: str, options: ScanOptions, sender: Any) -> None:
    with sender:
        try:
            totals = _count_totals(image, options)
        except Exception:  # noqa: BLE001 - no ETA is no reason to fail a scan
            return  # the caller's recv() then raises EOFError
        sender.send(totals)


def _count_totals(image: str, options: ScanOptions) -> tuple[int, int]:
    entries = size = 0
    cap = options.max_file_size
    with Evidence(
        image, partitions=options.partitions, vss=options.vss, warn=lambda *_: None
    ) as evidence:
        for volume in evidence.volumes():
            # NTFS: estimated from $MFT in order (0.45 s for the 100,000-file
            # image, where a walk took 3 s of CPU from the scan beside it).
            sizes = evidence.stream_sizes(volume, options.scan_metadata)
            if sizes is None:
                sizes = (
                    0 if not_read(item, options) else item.size
                    for item in evidence.walk(volume)
                )
            for stream_size in sizes:
                entries += 1
                size += stream_size if cap is None or stream_size <= cap else 0
            free = evidence.free_space(volume) if options.unallocated else None
            size += sum(length for _, length in free[1]) if free else 0
    return entries, size


def scan_image(
    image: str,
    indicator_set: IndicatorSet,
    options: ScanOptions,
    progress: Callable[[int, int], None] | None = None,
    evidence: Evidence | None = None,
    started: Callable[[], None] | None = None,
    run_units: RunUnits | None = None,
    pool: WorkerPool | None = None,
) -> tuple[UnitResult, list[Volume]]:
    """Scans every selected volume of an image; raises EvidenceError if it
    cannot be opened at all.

    `started` is called once the worker processes exist: threads of the caller
    must start only then, since a fork copies no thread but every lock one holds.
    `run_units`, if given, runs the units elsewhere (Celery workers) and
    returns their results in the units' order; `options.workers` is then the
    number of shares of each volume. `pool`: the worker processes, started
    already (WorkerPool); without it, a pool of `options.workers` is started
    here when there is more than one.

    Results merge in unit order, whoever finishes first: traces tied in
    timeline order keep this order, so every run gives the same outputs.
    """
    result = UnitResult()
    own = evidence is None
    if evidence is None:
        evidence = Evidence(
            image,
            partitions=options.partitions,
            vss=options.vss,
            warn=lambda where, what: result.warnings.append(
                {"location": where, "message": what}
            ),
        )
    volumes = evidence.volumes()
    workers = max(1, options.workers)
    units = [
        Unit(image, volume.label, index, workers)
        for volume in volumes
        for index in range(workers)
    ]
    if run_units is not None:
        if own:
            evidence.close()
        if started:
            started()
        results = run_units(units)
        if len(results) != len(units):
            raise RuntimeError(f"{len(results)} results for {len(units)} units")
        for found in results:
            result.merge(found)
        return result, volumes
    if workers == 1:
        if started:
            started()
        try:
            for unit in units:
                result.merge(run_unit(unit, indicator_set, options, progress, evidence))
        finally:
            if own:
                evidence.close()
        return result, volumes
    try:
        if pool is None:
            with WorkerPool(image, indicator_set, options) as own_pool:
                _scan_in_pool(own_pool, evidence, options, progress, started, result)
        else:
            _scan_in_pool(pool, evidence, options, progress, started, result)
    finally:
        if own:
            evidence.close()
    return result, volumes


class WorkerPool:
    """The local worker processes, forked at once: each opens the image and
    compiles the set while the caller opens the image too (the first 0.1 s of
    a scan, when one core had nothing to do)."""

    def __init__(
        self, image: str, indicator_set: IndicatorSet, options: ScanOptions
    ) -> None:
        self.workers = max(1, options.workers)
        context = multiprocessing.get_context()
        self._queue = context.Queue()
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self._queue, image, indicator_set, options),
        )
        self._running: set[Future[Any]] = set()
        self.progress: Callable[[int, int], None] | None = None
        Evidence.preload()  # once here, not in each worker
        # The first submit forks every worker.
        for _ in range(self.workers):
            self.submit(_open_worker)

    def submit(
        self, function: Callable[..., Any], *args: Any, bounded: bool = True
    ) -> Future[Any]:
        # A walk runs ahead of the workers: bound what waits for them, unless
        # the caller knows how much it submits.
        while bounded and len(self._running) >= IN_FLIGHT * self.workers:
            self._wait()
        future = self._executor.submit(function, *args)
        self._running.add(future)
        return future

    def decode_chunks(self, runs: Runs) -> tuple[Runs, list[str]]:
        """Decodes EWF chunk runs in the workers, through the handles they read
        the image with (no more handles, and their memory, in this process):
        the sectors of the chunks that failed, and what could not be read."""
        parts = [runs[index :: self.workers] for index in range(self.workers)]
        tasks = [self.submit(_decode_chunks, part) for part in parts if part]
        self.finish()
        bad: Runs = []
        problems: list[str] = []
        for task in tasks:
            found, said = task.result()
            bad += found
            problems += said
        return bad, problems

    def finish(self) -> None:
        """Waits for every task submitted."""
        while self._running:
            self._wait()
        self._drain()

    def _wait(self) -> None:
        done, _ = wait(self._running, timeout=0.2, return_when=FIRST_COMPLETED)
        self._running.difference_update(done)
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                files, size = self._queue.get_nowait()
            except Empty:
                return
            if self.progress:
                self.progress(files, size)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._drain()  # what the workers sent as they ended


def _scan_in_pool(
    pool: WorkerPool,
    evidence: Evidence,
    options: ScanOptions,
    progress: Callable[[int, int], None] | None,
    started: Callable[[], None] | None,
    result: UnitResult,
) -> None:
    """Scans the volumes in a pool of worker processes.

    NTFS volumes are walked in ranges of MFT records by the workers that scan
    them (_scan_mft). The other volumes TSK reads are walked once, here: each
    batch of entries is cut into shares the workers open again by inode (when
    every worker walked the whole volume, 100,000 small files cost each of them
    a walk). Other volumes are cut into units that walk the volume themselves.
    """
    workers = pool.workers
    image = evidence.image_path
    pool.progress = progress
    if started:
        started()  # the workers exist
    # Per volume: its allocated paths (None when its units walk it) and, per
    # share index, the futures of that share's tasks and of the other work.
    plan: list[tuple[Volume, set[str] | None, list[list[Any]], list[Any]]]
    plan = []
    submit = pool.submit
    for volume in evidence.volumes():
        units = [Unit(image, volume.label, i, workers) for i in range(workers)]
        shares: list[list[Any]] = [[] for _ in units]
        if not evidence.hands_over(volume):
            rest = [submit(_run_unit_in_worker, unit) for unit in units]
            plan.append((volume, None, shares, rest))
            continue
        on_disk: set[str] = set()
        items = _scan_mft(pool, evidence, volume, on_disk, shares[0])
        walk = _noting_paths(items, on_disk)
        with _fewer_collections():
            for batch in _batches(walk):
                pieces = _shares(batch, workers, options, PIECE)
                for index, share in enumerate(pieces):
                    if share:
                        keys = [Evidence.hand_over(item) for item in share]
                        task = submit(_scan_share, volume.label, keys)
                        shares[index % workers].append(task)
        rest = [
            submit(_scan_free, volume.label, unit) if options.unallocated else None
            for unit in units
        ]
        plan.append((volume, on_disk, shares, rest))
    pool.finish()
    # In unit order, as units walking the volume themselves give them.
    for volume, on_disk, shares, rest in plan:
        for tasks, other in zip(shares, rest):
            programs = []
            for task in tasks:
                found, ran = task.result() if isinstance(task, Future) else task
                result.merge(found)
                programs += ran
            if on_disk is not None and options.leads:
                result.traces += missing_programs(programs, on_disk, volume)
            if other is not None:
                result.merge(other.result())


# An NTFS volume's MFT entries are cut into ranges the workers walk and scan:
# enough for them to balance, few enough that each range's start costs little.
RANGES_PER_WORKER = 8
MIN_RANGE = 4096
# Streams from this size up are handed back by the range's worker and shared
# between the workers by bytes, as other volumes' entries are: a range's large
# files would otherwise be its worker's alone (the 1 GiB bench: 2,000 records,
# 400 large files, in two ranges).
HAND_BACK = 64 * 1024


def _scan_mft(
    pool: WorkerPool,
    evidence: Evidence,
    volume: Volume,
    on_disk: set[str],
    done: list[Any],
) -> Iterator[FileItem]:
    """Scans the MFT entries of an NTFS volume in ranges, each walked by the
    worker that scans it (the main process reads the directories first:
    mft.MftWalker.plan, then their indexes while the workers scan), and
    appends their (results, programs) to done, in range order. Returns the
    items left for the caller to hand over: those that follow the ranges, or
    the whole walk of a volume that is not so walked."""
    plan = evidence.mft_plan(volume)
    if plan is None:
        return evidence.walk(volume)
    count = plan.entries
    step = max(MIN_RANGE, -(-count // (pool.workers * RANGES_PER_WORKER)))
    step = min(step, -(-count // pool.workers))  # every worker walks some
    handle, plan_file = tempfile.mkstemp(prefix="toolmarks-", suffix=".plan")
    try:
        with os.fdopen(handle, "wb") as sink:
            pickle.dump(plan, sink, protocol=pickle.HIGHEST_PROTOCOL)
        tasks = [
            pool.submit(
                _scan_mft_range,
                volume.label,
                plan_file,
                first,
                min(first + step, count),
                bounded=False,  # the index pass below runs while they do
            )
            for first in range(0, count, step)
        ]
        try:
            waiting: mft.IndexNames | None = evidence.mft_index_names(volume, plan)
        except mft.Doubt:
            waiting = None
        pool.finish()
    finally:
        os.unlink(plan_file)
    found = [task.result() for task in tasks]
    if waiting is None or any(why is not None for *_, why in found):
        # What only TSK's walk can tell: what the ranges found is dropped (the
        # E01 chunks they read stay read) and TSK walks the volume.
        for result, *_ in found:
            chunks = UnitResult(chunks_read=result.chunks_read)
            chunks.bad_sectors = result.bad_sectors
            done.append((chunks, []))
        return evidence.walk(volume, tsk_only=True)
    large = []
    for result, programs, _, paths, keys, _ in found:
        done.append((result, programs))
        on_disk |= paths
        large += keys
    seen = [seen for _, _, seen, _, _, _ in found]
    return itertools.chain(
        (evidence.taken_over(volume, key) for key in large),
        evidence.mft_rest(volume, plan, waiting, seen),
    )


# Tasks waiting for or in a worker, per worker, while a walk runs ahead.
IN_FLIGHT = 3


def _batches(items: Iterator[FileItem]) -> Iterator[list[FileItem]]:
    """BATCH items at a time, the first FIRST_BATCH: workers waiting for a
    walk start on it sooner."""
    batch: list[FileItem] = []
    size = FIRST_BATCH
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch, size = [], BATCH
    if batch:
        yield batch


RunUnits = Callable[[list[Unit]], list[UnitResult]]


# Image files smaller than this are scanned by one process: forking workers
# that each open the image again costs more than they save (about 0.06 s on 2
# cores, what a second worker gains on some 50 MiB).
SMALL_IMAGE = 64 * 1024 * 1024


def default_workers(image: str | None = None) -> int:
    """One worker per core, at most 8; one for an image file under SMALL_IMAGE."""
    with contextlib.suppress(OSError):
        if image is not None and os.path.getsize(image) < SMALL_IMAGE:
            return 1
    return max(1, min(os.cpu_count() or 1, 8))
