"""`toolmarks tag STORE.plaso`: toolmarks' tags on a super-timeline plain plaso
made, in place, in the store's own format; the image is never touched.

Every event is read first; tags are written only after a complete read, all at
once (store.TagStore.write_tags), so a failure leaves the store as it was.
Reading and matching run in one process per core.
"""

from __future__ import annotations

import collections
import dataclasses
import multiprocessing
import os

from toolmarks.indicators.compiler import CompiledSet
from toolmarks.plugins.store import TagStore
from toolmarks.plugins.tagging import Tagger

# Below this many event data per worker, forking costs more than it saves.
_MIN_SHARE = 20_000


@dataclasses.dataclass
class TagOutcome:
    format_version: int
    events: int = 0
    tagged: int = 0  # events that meet an indicator (tagged now or before)
    newly_tagged: int = 0  # events that got at least one new label
    per_tool: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )
    per_kind: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )
    new_labels: dict[str, int] = dataclasses.field(default_factory=dict)


def tag_store(path: str, compiled: CompiledSet, workers: int = 0) -> TagOutcome:
    """Tags the store; raises store.StoreError if it cannot be tagged.

    Labels depend on the event data alone, so the event data are decoded and
    matched once each, in `workers` processes (0: one per usable core), and
    the events then take the labels of their event data.
    """
    tagger = Tagger(compiled)
    with TagStore.open(path) as store:
        outcome = TagOutcome(store.format_version)
        data_labels = _labels_per_event_data(store, tagger, workers or _cores())
        existing = store.labels()
        wanted: dict[int, list[str]] = {}
        for event_id, data_id in store.event_links():
            outcome.events += 1
            labels = data_labels.get(data_id)
            if not labels:
                continue
            wanted[event_id] = labels
            outcome.tagged += 1
            if set(labels) - set(existing.get(event_id, ())):
                outcome.newly_tagged += 1
            for label in labels:
                if label.startswith("tool_"):
                    outcome.per_tool[label.removeprefix("tool_")] += 1
                elif label.startswith("ioc_"):
                    outcome.per_kind[label.removeprefix("ioc_")] += 1
        if outcome.newly_tagged:
            outcome.new_labels = store.write_tags(wanted)
    return outcome


def _labels_per_event_data(
    store: TagStore, tagger: Tagger, workers: int
) -> dict[int, list[str]]:
    """The labels of every event data that has any, by row id.

    The row ids are cut into one share per worker; this process reads the
    first share while forked workers, which inherit the tagger and open their
    own read-only connection, read the others.
    """
    span = store.event_data_range()
    if span is None:
        return {}
    low, high = span
    workers = max(1, min(workers, (high - low + 1) // _MIN_SHARE))
    step = -(-(high - low + 1) // workers)
    shares = [
        (first, min(first + step - 1, high)) for first in range(low, high + 1, step)
    ]
    if len(shares) == 1:
        return _share_labels(store, tagger, *shares[0])
    context = multiprocessing.get_context("fork")
    with context.Pool(
        len(shares) - 1, initializer=_start_worker, initargs=(store, tagger)
    ) as pool:
        others = pool.starmap_async(_worker_share_labels, shares[1:])
        found = _share_labels(store, tagger, *shares[0])
        for labels in others.get():
            found.update(labels)
    return found


def _share_labels(
    store: TagStore, tagger: Tagger, first: int, last: int
) -> dict[int, list[str]]:
    found = {}
    for data_id, data_type, values in store.event_data(first, last):
        labels = tagger.labels(data_type, values)
        if labels:
            found[data_id] = labels
    return found


# A worker's store handle and tagger, set once when the worker starts.
_worker: tuple[TagStore, Tagger] | None = None


def _start_worker(store: TagStore, tagger: Tagger) -> None:
    global _worker
    _worker = (store.reader(), tagger)


def _worker_share_labels(first: int, last: int) -> dict[int, list[str]]:
    assert _worker is not None
    return _share_labels(*_worker, first, last)


def _cores() -> int:
    return len(os.sched_getaffinity(0))
