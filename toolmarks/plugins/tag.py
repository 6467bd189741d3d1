"""`toolmarks tag STORE.plaso`: toolmarks' tags on a super-timeline plain plaso
made, in place, in the store's own format; the image is never touched.

Every event is read first; tags are written only after a complete read, all at
once (store.TagStore.write_tags), so a failure leaves the store as it was.
"""

from __future__ import annotations

import collections
import dataclasses

from toolmarks.indicators.compiler import CompiledSet
from toolmarks.plugins.store import TagStore
from toolmarks.plugins.tagging import Tagger


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


def tag_store(path: str, compiled: CompiledSet) -> TagOutcome:
    """Tags the store; raises store.StoreError if it cannot be tagged."""
    tagger = Tagger(compiled)
    with TagStore.open(path) as store:
        outcome = TagOutcome(store.format_version)
        wanted: dict[object, list[str]] = {}
        for event in store.events():
            outcome.events += 1
            labels = tagger.labels(event.data_type, event.values)
            if not labels:
                continue
            wanted[event.identifier] = labels
            outcome.tagged += 1
            if set(labels) - set(event.labels):
                outcome.newly_tagged += 1
            for label in labels:
                if label.startswith("tool_"):
                    outcome.per_tool[label.removeprefix("tool_")] += 1
                elif label.startswith("ioc_"):
                    outcome.per_kind[label.removeprefix("ioc_")] += 1
        if outcome.newly_tagged:
            outcome.new_labels = store.write_tags(wanted)
    return outcome
