"""`toolmarks batch --broker` and `toolmarks worker`: the batch's images as
Celery tasks on a Redis broker.

A task names an image, its output folder and any indicator files by paths
relative to the workers' evidence root (shared storage), never carries
evidence bytes, and is JSON only: a pickled message from anyone who can reach
the broker would run code on the workers. Each task is `scan_one` into a
private folder beside the image's folder, renamed into place when complete,
so a task delivered twice (a worker killed mid-scan, a visibility timeout)
leaves one complete scan's outputs, never a mix or a doubled event.

With --split-images an image is cut into the engine's units (shares of each
volume), one task each; the client merges their results (JSON, exact:
toolmarks.engine.wire) in unit order, one result per unit however often it
was delivered, and writes the outputs a local scan would.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import shutil
import time
import urllib.parse
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from toolmarks import __version__
from toolmarks.engine.batch import (
    BatchOptions,
    folder_names,
    is_current,
    marker,
    scan_one,
)
from toolmarks.engine.scan import ScanOptions, Unit, UnitResult
from toolmarks.output.case import CaseImage

if TYPE_CHECKING:
    from celery import Celery

    from toolmarks.indicators.model import IndicatorSet

TASK_NAME = "toolmarks.scan_image"
QUEUE = "toolmarks"
PAYLOAD_SCHEMA = "toolmarks-task/1"
PAYLOAD_FIELDS = frozenset(
    {
        "schema",
        "toolmarks_version",
        "image",
        "folder",
        "indicators",
        "shipped",
        "indicator_set_version",
        "options",
        "verify",
        "verify_md5",
        "rescan",
        "command_line",
    }
)
UNIT_TASK_NAME = "toolmarks.scan_unit"
UNIT_PAYLOAD_SCHEMA = "toolmarks-unit-task/1"
UNIT_PAYLOAD_FIELDS = frozenset(
    {
        "schema",
        "toolmarks_version",
        "image",
        "volume",
        "index",
        "stride",
        "indicators",
        "shipped",
        "indicator_set_version",
        "options",
    }
)
# Shares of each volume of an image with --split-images and no number.
DEFAULT_SHARES = 8
TIME_LIMIT = 6 * 3600  # seconds one image may take before its task is killed
CONNECT_TIMEOUT = 5.0
# Redis hands an unacknowledged task to another worker after this long; a
# task running longer is delivered twice (harmless, only wasted work).
VISIBILITY_MARGIN = 600
_LOG = logging.getLogger("toolmarks.worker")


class BrokerError(Exception):
    """The broker cannot be reached or was lost; str() holds no password."""


class TaskRefused(ValueError):
    """A task payload that is not what toolmarks sends."""


def safe_url(url: str) -> str:
    """The URL with its password replaced by `**`, for every message."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable broker URL>"
    if not password:
        return url
    return url.replace(f":{password}@", ":**@", 1)


def scrub(text: str, url: str) -> str:
    """Text that may quote the URL or its password, with neither left."""
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        password = None
    text = text.replace(url, safe_url(url))
    if password:
        text = text.replace(password, "**")
        text = text.replace(urllib.parse.unquote(password), "**")
    return text


def make_app(
    broker: str,
    *,
    evidence_root: Path | None = None,
    time_limit: int = TIME_LIMIT,
    visibility_timeout: int | None = None,
) -> Celery:
    """The Celery app of client and workers: Redis as broker and result
    store, JSON only, late acknowledgement, time limits."""
    try:
        from celery import Celery
    except ImportError:
        raise BrokerError(
            "Celery is not installed: pip install 'toolmarks[distributed]'"
        ) from None
    if not broker.startswith(("redis://", "rediss://")):
        raise BrokerError(f"{safe_url(broker)}: not a redis:// or rediss:// URL")
    if visibility_timeout is None:
        visibility_timeout = time_limit + VISIBILITY_MARGIN
    app = Celery("toolmarks", broker=broker, backend=broker, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        task_default_queue=QUEUE,
        # A task is acknowledged when done: a worker lost mid-scan gives it
        # back (reject_on_worker_lost: at once; a whole machine lost: after
        # the visibility timeout).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=time_limit,
        task_soft_time_limit=max(1, time_limit - 60),
        task_track_started=True,
        result_expires=7 * 86400,
        broker_connection_timeout=CONNECT_TIMEOUT,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": visibility_timeout,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            # kombu looks for abandoned tasks only every interval x throttle
            # seconds (100 by default): every quarter of the timeout instead.
            "unacked_restore_interval": max(1, min(60, visibility_timeout // 4)),
            "unacked_restore_throttle": 1,
        },
        redis_socket_connect_timeout=CONNECT_TIMEOUT,
        redis_backend_health_check_interval=10,
        worker_hijack_root_logger=True,
        toolmarks_evidence_root=str(evidence_root) if evidence_root else None,
    )
    app.task(name=TASK_NAME, bind=True)(_scan_task)
    app.task(name=UNIT_TASK_NAME, bind=True)(_unit_task)
    return app


def check_broker(app: Celery, url: str) -> str:
    """Connects once to the broker and the result store; returns the Redis
    server's run id (a new one means it restarted); raises BrokerError
    within seconds when either cannot be reached."""
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(
                max_retries=1,
                interval_start=0,
                interval_step=0,
                timeout=CONNECT_TIMEOUT,
            )
        return str(app.backend.client.info("server")["run_id"])
    except Exception as error:  # noqa: BLE001 - kombu, redis and socket errors alike
        raise BrokerError(
            f"cannot reach the broker {safe_url(url)}: "
            + scrub(f"{type(error).__name__}: {error}", url)
        ) from None


# ---------------------------------------------------------------- the worker


def _relative(value: Any, what: str) -> PurePosixPath:
    """A path under the evidence root, checked without touching the disk:
    relative, no `..`, no NUL. Symbolic links inside the root are followed:
    whoever can write the root decides what is in it."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise TaskRefused(f"{what}: not a path")
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or path == PurePosixPath("."):
        raise TaskRefused(f"{what}: {value!r} is not under the evidence root")
    return path


def _scan_options(value: Any) -> ScanOptions:
    if not isinstance(value, dict):
        raise TaskRefused("options: not an object")
    defaults = ScanOptions()
    fields = {field.name for field in dataclasses.fields(ScanOptions)}
    if set(value) != fields:
        raise TaskRefused(f"options: fields {sorted(set(value) ^ fields)} wrong")
    for name, item in value.items():
        default = getattr(defaults, name)
        allowed = (int, type(None)) if default is None else (type(default),)
        if type(item) not in allowed:
            raise TaskRefused(f"options: {name}: {type(item).__name__}")
        if type(item) is int and item < 1 and name != "max_file_size":
            raise TaskRefused(f"options: {name}: {item}")
    # One scan process per task: the worker's concurrency sets the parallelism.
    return dataclasses.replace(ScanOptions(**value), workers=1)


@dataclasses.dataclass(frozen=True)
class Job:
    """A task payload, checked: absolute paths under the evidence root."""

    image: Path
    folder: Path
    indicators: tuple[str, ...]
    shipped: bool
    indicator_set_version: str
    options: BatchOptions
    rescan: bool
    command_line: str

    @classmethod
    def from_payload(cls, payload: Any, root: Path) -> Job:
        _check_envelope(payload, PAYLOAD_FIELDS, PAYLOAD_SCHEMA)
        image = _relative(payload["image"], "image")
        folder = _relative(payload["folder"], "folder")
        if folder.name.startswith("."):
            raise TaskRefused("folder: hidden names are the workers' own")
        paths = _indicator_paths(payload)
        for name in ("shipped", "verify", "verify_md5", "rescan"):
            if type(payload[name]) is not bool:
                raise TaskRefused(f"{name}: not true or false")
        for name in ("indicator_set_version", "command_line"):
            if not isinstance(payload[name], str):
                raise TaskRefused(f"{name}: not a string")
        return cls(
            image=root / image,
            folder=root / folder,
            indicators=paths,
            shipped=payload["shipped"],
            indicator_set_version=payload["indicator_set_version"],
            options=BatchOptions(
                scan=_scan_options(payload["options"]),
                verify=payload["verify"],
                verify_md5=payload["verify_md5"],
            ),
            rescan=payload["rescan"],
            command_line=payload["command_line"],
        )


@dataclasses.dataclass(frozen=True)
class UnitJob:
    """A unit task's payload, checked: one share of one volume of an image."""

    image: Path
    volume: str
    index: int
    stride: int
    indicators: tuple[str, ...]
    shipped: bool
    indicator_set_version: str
    options: ScanOptions

    @classmethod
    def from_payload(cls, payload: Any, root: Path) -> UnitJob:
        _check_envelope(payload, UNIT_PAYLOAD_FIELDS, UNIT_PAYLOAD_SCHEMA)
        image = _relative(payload["image"], "image")
        paths = _indicator_paths(payload)
        index, stride = payload["index"], payload["stride"]
        if type(index) is not int or type(stride) is not int:
            raise TaskRefused("index, stride: not integers")
        if not 0 <= index < stride:
            raise TaskRefused(f"index {index} of {stride} shares")
        if type(payload["shipped"]) is not bool:
            raise TaskRefused("shipped: not true or false")
        for name in ("indicator_set_version", "volume"):
            if not isinstance(payload[name], str):
                raise TaskRefused(f"{name}: not a string")
        return cls(
            image=root / image,
            volume=payload["volume"],
            index=index,
            stride=stride,
            indicators=paths,
            shipped=payload["shipped"],
            indicator_set_version=payload["indicator_set_version"],
            options=_scan_options(payload["options"]),
        )


def _check_envelope(payload: Any, fields: frozenset[str], schema: str) -> None:
    """A payload is an object of exactly these fields, of this schema, sent by
    this toolmarks version."""
    if not isinstance(payload, dict):
        raise TaskRefused("payload: not an object")
    if set(payload) != fields:
        wrong = sorted(map(str, set(payload) ^ fields))
        raise TaskRefused(f"payload: fields {wrong} missing or unknown")
    if payload["schema"] != schema:
        raise TaskRefused(f"schema: {payload['schema']!r}")
    if payload["toolmarks_version"] != __version__:
        raise TaskRefused(
            f"sent by toolmarks {payload['toolmarks_version']!r}, "
            f"this worker is {__version__}"
        )


def _indicator_paths(payload: dict[str, Any]) -> tuple[str, ...]:
    indicators = payload["indicators"]
    if not isinstance(indicators, list):
        raise TaskRefused("indicators: not a list")
    return tuple(str(_relative(p, "indicators")) for p in indicators)


_SETS: dict[tuple[tuple[str, ...], bool], IndicatorSet] = {}


def _indicator_set(job: Job | UnitJob, root: Path) -> IndicatorSet:
    from toolmarks.indicators import loader

    key = (job.indicators, job.shipped)
    if key not in _SETS:
        paths = [str(root / path) for path in job.indicators]
        try:
            _SETS[key] = loader.load(paths, shipped=job.shipped)
        except loader.IndicatorError as error:
            raise TaskRefused(f"indicators: {error}") from None
    found = _SETS[key]
    if found.version != job.indicator_set_version:
        raise TaskRefused(
            f"indicator set {found.version} here, {job.indicator_set_version} "
            "on the client: the files differ"
        )
    return found


def _publish(partial: Path, final: Path, wanted: dict[str, Any] | None) -> None:
    """Puts a complete scan's folder in place; when another delivery of the
    same task got there first with the same settings, keeps that one."""
    try:
        os.rename(partial, final)  # also replaces an empty folder
        return
    except OSError:
        pass
    if wanted is not None and is_current(final, wanted):
        shutil.rmtree(partial, ignore_errors=True)
        return
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:12]}")
    try:
        os.rename(final, old)
    except FileNotFoundError:
        pass
    try:
        os.rename(partial, final)
    except OSError:  # a concurrent delivery published meanwhile: its scan stays
        shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def run_job(job: Job, root: Path, stale_after: float | None = None) -> CaseImage:
    """Scans one image into its folder (skips a current one); raises
    TaskRefused when the indicator files are not the client's. Private folders
    of earlier scans of it started more than `stale_after` seconds ago (the
    task time limit: their tasks were stopped) are removed first."""
    indicator_set = _indicator_set(job, root)
    name = job.folder.name
    if stale_after is not None:
        _remove_stale_partials(job.folder, stale_after)
    try:
        wanted: dict[str, Any] | None = marker(
            str(job.image), indicator_set, job.options
        )
    except OSError:
        wanted = None
    if wanted is not None and not job.rescan and is_current(job.folder, wanted):
        return CaseImage(name, str(job.image), "ok", skipped=True)
    partial = job.folder.with_name(f".{name}.partial-{uuid.uuid4().hex[:12]}")
    try:
        job.folder.parent.mkdir(parents=True, exist_ok=True)
        result = scan_one(
            str(job.image),
            str(partial),
            indicator_set,
            job.options,
            rescan=True,
            command_line=job.command_line,
        )
        if result.status == "ok":
            _publish(partial, job.folder, wanted)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dataclasses.replace(result, name=name)


def _remove_stale_partials(folder: Path, older_than: float) -> None:
    """Removes the private folders left by scans of this image whose worker was
    killed. A folder's time is its scan's start (entries are added only at the
    end): one older than the time limit belongs to no running task."""
    cutoff = time.time() - older_than
    for stale in folder.parent.glob(f".{glob.escape(folder.name)}.partial-*"):
        try:
            if stale.is_dir() and stale.stat().st_mtime < cutoff:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            continue


def _scan_task(self: Any, payload: Any) -> dict[str, Any]:
    """The Celery task: a checked payload scanned, or refused and logged."""
    root = Path(self.app.conf.toolmarks_evidence_root or os.getcwd())
    try:
        job = Job.from_payload(payload, root)
        return run_job(job, root, self.app.conf.task_time_limit).as_dict()
    except TaskRefused as error:
        _LOG.error("refused task %s: %s", self.request.id, error)
        return {"status": "refused", "error": f"refused by the worker: {error}"}


def _unit_task(self: Any, payload: Any) -> dict[str, Any]:
    """The Celery task of one unit: its result as JSON (toolmarks.engine.wire),
    or why it was refused or failed. Nothing is written: the client merges."""
    from toolmarks.engine import wire
    from toolmarks.engine.scan import Unit, run_unit

    root = Path(self.app.conf.toolmarks_evidence_root or os.getcwd())
    try:
        job = UnitJob.from_payload(payload, root)
        indicator_set = _indicator_set(job, root)
    except TaskRefused as error:
        _LOG.error("refused task %s: %s", self.request.id, error)
        return {"status": "refused", "error": f"refused by the worker: {error}"}
    unit = Unit(str(job.image), job.volume, job.index, job.stride)
    try:
        found = run_unit(unit, indicator_set, job.options)
        return {"status": "ok", "result": wire.encode_result(found)}
    except StopIteration:
        error_text = f"no volume {job.volume} in {job.image}"
    except Exception as error:  # noqa: BLE001 - the client reports it for the image
        error_text = f"{type(error).__name__}: {error}"
    _LOG.error("unit %s of %s failed: %s", job.index, job.image, error_text)
    return {"status": "failed", "error": error_text}


def warm_up() -> None:
    """Loads the shipped indicator set and what a scan imports late before
    the pool's processes fork, then freezes the heap: pefile calls
    gc.collect() for every executable it closes, and in a Celery worker's
    larger heap that doubled the time of a small image's scan."""
    import gc

    from toolmarks.evidence import Evidence
    from toolmarks.indicators import loader

    Evidence.preload()
    _SETS[((), True)] = loader.load([], shipped=True)
    gc.collect()
    gc.freeze()


def run_worker(
    app: Celery, url: str, *, concurrency: int, name: str, loglevel: str
) -> None:
    """Runs a Celery worker on the toolmarks queue until it is stopped."""
    check_broker(app, url)
    warm_up()
    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--hostname={name}",
            f"--loglevel={loglevel}",
            f"--queues={QUEUE}",
            "--without-mingle",
            "--without-gossip",
        ]
    )


# ---------------------------------------------------------------- the client


def under_root(path: str, root: Path) -> str | None:
    """The path relative to the evidence root (as the workers will join it),
    or None when it is outside."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if relative == "." or relative.startswith(".." + os.sep) or relative == "..":
        return None
    return PurePosixPath(Path(relative)).as_posix()


def _payload(
    image: str,
    folder: str,
    indicator_set: IndicatorSet,
    indicators: Sequence[str],
    shipped: bool,
    options: BatchOptions,
    rescan: bool,
    command_line: str,
) -> dict[str, Any]:
    return {
        "schema": PAYLOAD_SCHEMA,
        "toolmarks_version": __version__,
        "image": image,
        "folder": folder,
        "indicators": list(indicators),
        "shipped": shipped,
        "indicator_set_version": indicator_set.version,
        "options": dataclasses.asdict(options.scan),
        "verify": options.verify,
        "verify_md5": options.verify_md5,
        "rescan": rescan,
        "command_line": command_line,
    }


def _result(image: str, name: str, async_result: Any) -> CaseImage:
    value = async_result.result
    if async_result.state == "SUCCESS" and isinstance(value, dict):
        if value.get("status") == "ok":
            return CaseImage(
                name,
                image,
                "ok",
                skipped=bool(value.get("skipped")),
                seconds=float(value.get("seconds") or 0.0),
                warnings=int(value.get("warnings") or 0),
            )
        return CaseImage(name, image, "failed", error=str(value.get("error")))
    why = f"{type(value).__name__}: {value}" if value else async_result.state
    return CaseImage(name, image, "failed", error=f"the task failed: {why}")


def _connection_errors() -> tuple[type[Exception], ...]:
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    return (OSError, OperationalError, RedisError)


def _under_root(
    case_dir: Path, indicators: Sequence[str], evidence_root: Path
) -> tuple[str, list[str]]:
    """The case folder and indicator files relative to the evidence root;
    ValueError for one outside it, where the workers cannot reach."""
    case_rel = under_root(str(case_dir), evidence_root)
    if case_rel is None:
        raise ValueError(
            f"{case_dir}: the case folder must be under the evidence root "
            f"{evidence_root}, where the workers write"
        )
    indicator_rel = []
    for path in indicators:
        relative = under_root(path, evidence_root)
        if relative is None:
            raise ValueError(f"{path}: indicator files must be under the evidence root")
        indicator_rel.append(relative)
    return case_rel, indicator_rel


def scan_images_on_broker(
    images: Sequence[str],
    case_dir: Path,
    indicator_set: IndicatorSet,
    options: BatchOptions,
    *,
    broker: str,
    evidence_root: Path,
    indicators: Sequence[str] = (),
    shipped: bool = True,
    rescan: bool = False,
    command_line: str = "",
    done: Callable[[CaseImage], None] | None = None,
    started: Callable[[str, str], None] | None = None,
    poll: float = 0.2,
) -> list[CaseImage]:
    """scan_images' twin on Celery workers: each image a task, `started`
    hears (folder name, worker) and `done` each result as they come. Raises
    BrokerError (no password in it) when the broker cannot be reached, is
    lost or restarts: rerunning then skips the images finished meanwhile;
    ValueError when the case folder or an indicator file is outside the
    evidence root."""
    unique = list(dict.fromkeys(images))
    names = folder_names(unique)
    case_rel, indicator_rel = _under_root(case_dir, indicators, evidence_root)
    app = make_app(broker)
    run_id = check_broker(app, broker)
    case_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, CaseImage] = {}

    def finish(image: str, result: CaseImage) -> None:
        results[image] = result
        if done:
            done(result)

    try:
        pending: dict[str, Any] = {}
        for image in unique:
            relative = under_root(image, evidence_root)
            if relative is None:
                finish(
                    image,
                    CaseImage(
                        names[image],
                        image,
                        "failed",
                        error=f"outside the evidence root {evidence_root}",
                    ),
                )
                continue
            payload = _payload(
                relative,
                f"{case_rel}/{names[image]}",
                indicator_set,
                indicator_rel,
                shipped,
                options,
                rescan,
                command_line,
            )
            pending[image] = app.send_task(TASK_NAME, args=[payload], queue=QUEUE)
        # The worker each image started on; a new one after a worker was lost.
        announced: dict[str, str] = {}
        checked = time.monotonic()
        while pending:
            for image, async_result in list(pending.items()):
                state = async_result.state
                if state == "STARTED":
                    info = async_result.info
                    host = info.get("hostname") if isinstance(info, dict) else None
                    host = str(host or "a worker")
                    if announced.get(image) != host and started:
                        started(names[image], host)
                    announced[image] = host
                elif state in ("SUCCESS", "FAILURE", "REVOKED"):
                    finish(image, _result(image, names[image], async_result))
                    async_result.forget()
                    del pending[image]
            if pending:
                time.sleep(poll)
            if time.monotonic() - checked > 2:
                checked = time.monotonic()
                if str(app.backend.client.info("server")["run_id"]) != run_id:
                    raise BrokerError(
                        f"the broker {safe_url(broker)} restarted during the batch "
                        "and may have lost the queued images: rerun the batch "
                        "(finished images are skipped)"
                    )
    except _connection_errors() as error:
        raise BrokerError(
            f"lost the broker {safe_url(broker)}: "
            + scrub(f"{type(error).__name__}: {error}", broker)
            + "; rerun the batch (finished images are skipped)"
        ) from None
    finally:
        app.close()
    return [results[image] for image in unique]


# ------------------------------------------------- one image over many workers


class UnitFailed(RuntimeError):
    """A unit of an image failed or was refused on a worker."""


def unit_payload(
    unit: Unit,
    image: str,
    indicator_set: IndicatorSet,
    indicators: Sequence[str],
    shipped: bool,
    options: ScanOptions,
) -> dict[str, Any]:
    """The task of one unit; `image` is its path under the evidence root."""
    return {
        "schema": UNIT_PAYLOAD_SCHEMA,
        "toolmarks_version": __version__,
        "image": image,
        "volume": unit.volume_label,
        "index": unit.index,
        "stride": unit.stride,
        "indicators": list(indicators),
        "shipped": shipped,
        "indicator_set_version": indicator_set.version,
        "options": dataclasses.asdict(options),
    }


def gather_units(
    app: Celery,
    sent: Sequence[tuple[int, Any]],
    count: int,
    *,
    poll: float = 0.2,
    run_id: str | None = None,
    broker: str = "",
) -> list[UnitResult]:
    """The results of units 0…count-1 from their tasks' results, `sent` as
    (unit number, AsyncResult). A unit sent more than once (a redelivery, a
    retry) counts once: its first result is kept, the others are dropped, so
    no entry's events are doubled. Raises UnitFailed when a unit failed."""
    from toolmarks.engine import wire

    results: dict[int, UnitResult] = {}
    pending = list(sent)
    checked = time.monotonic()
    while pending:
        waiting = []
        for number, async_result in pending:
            state = async_result.state
            if state not in ("SUCCESS", "FAILURE", "REVOKED"):
                waiting.append((number, async_result))
                continue
            value = async_result.result
            async_result.forget()
            if state != "SUCCESS" or not isinstance(value, dict):
                why = f"{type(value).__name__}: {value}" if value else state
                raise UnitFailed(f"unit {number}: the task failed: {why}")
            if value.get("status") != "ok":
                raise UnitFailed(f"unit {number}: {value.get('error')}")
            if number not in results:
                try:
                    results[number] = wire.decode_result(value.get("result"))
                except wire.WireError as error:
                    raise UnitFailed(f"unit {number}: bad result: {error}") from None
        pending = waiting
        if pending:
            time.sleep(poll)
        if run_id is not None and time.monotonic() - checked > 2:
            checked = time.monotonic()
            if str(app.backend.client.info("server")["run_id"]) != run_id:
                raise BrokerError(
                    f"the broker {safe_url(broker)} restarted during the scan "
                    "and may have lost queued units: rerun the batch"
                )
    missing = sorted(set(range(count)) - set(results))
    if missing:
        raise UnitFailed(f"units {missing}: no result")
    return [results[number] for number in range(count)]


def scan_image_split(
    app: Celery,
    image: str,
    relative: str,
    folder: Path,
    indicator_set: IndicatorSet,
    options: BatchOptions,
    *,
    shares: int,
    indicators: Sequence[str] = (),
    shipped: bool = True,
    rescan: bool = False,
    command_line: str = "",
    run_id: str | None = None,
    broker: str = "",
) -> CaseImage:
    """scan_one with the image's units as Celery tasks: `shares` units per
    volume spread over the workers, merged here in unit order, then run_scan's
    outcome (the E01 verified here, beside the units: one pass over the whole
    image that cannot be split, and the damage marking needs the merged
    traces) and every output written here. Raises BrokerError."""
    scan_options = dataclasses.replace(options.scan, workers=max(1, shares))

    def run_units(units: list[Unit]) -> list[UnitResult]:
        sent = [
            (
                number,
                app.send_task(
                    UNIT_TASK_NAME,
                    args=[
                        unit_payload(
                            unit,
                            relative,
                            indicator_set,
                            indicators,
                            shipped,
                            scan_options,
                        )
                    ],
                    queue=QUEUE,
                ),
            )
            for number, unit in enumerate(units)
        ]
        return gather_units(app, sent, len(units), run_id=run_id, broker=broker)

    # The marker leaves the number of workers out: shares make no other change.
    return scan_one(
        image,
        str(folder),
        indicator_set,
        dataclasses.replace(options, scan=scan_options),
        rescan=rescan,
        command_line=command_line,
        run_units=run_units,
        failures=(UnitFailed,),
        fatal=(BrokerError, *_connection_errors()),
    )


def scan_images_split(
    images: Sequence[str],
    case_dir: Path,
    indicator_set: IndicatorSet,
    options: BatchOptions,
    *,
    broker: str,
    evidence_root: Path,
    shares: int = DEFAULT_SHARES,
    indicators: Sequence[str] = (),
    shipped: bool = True,
    rescan: bool = False,
    command_line: str = "",
    done: Callable[[CaseImage], None] | None = None,
) -> list[CaseImage]:
    """scan_images_on_broker with each image split: one image after the
    other, each over every worker. For a few large images; many small ones
    keep more workers busy whole. Raises as scan_images_on_broker."""
    unique = list(dict.fromkeys(images))
    names = folder_names(unique)
    _, indicator_rel = _under_root(case_dir, indicators, evidence_root)
    app = make_app(broker)
    run_id = check_broker(app, broker)
    case_dir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for image in unique:
            relative = under_root(image, evidence_root)
            if relative is None:
                result = CaseImage(
                    names[image],
                    image,
                    "failed",
                    error=f"outside the evidence root {evidence_root}",
                )
            else:
                result = scan_image_split(
                    app,
                    image,
                    relative,
                    case_dir / names[image],
                    indicator_set,
                    options,
                    shares=shares,
                    indicators=indicator_rel,
                    shipped=shipped,
                    rescan=rescan,
                    command_line=command_line,
                    run_id=run_id,
                    broker=broker,
                )
            results.append(result)
            if done:
                done(result)
    except _connection_errors() as error:
        raise BrokerError(
            f"lost the broker {safe_url(broker)}: "
            + scrub(f"{type(error).__name__}: {error}", broker)
            + "; rerun the batch (finished images are skipped)"
        ) from None
    finally:
        app.close()
    return results
