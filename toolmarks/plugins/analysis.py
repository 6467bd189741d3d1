"""The `toolmarks` analysis plugin: psort --analysis toolmarks tags a store.

Registered with plaso's AnalysisPluginManager on import; `toolmarks psort`
imports it. It tags exactly what `toolmarks tag` tags (tagging.Tagger).
"""

from __future__ import annotations

import collections
from typing import Any

from plaso.analysis import interface
from plaso.analysis import manager as plaso_manager

from toolmarks.plugins import indicator_set
from toolmarks.plugins.tagging import Tagger, plaso_values


class ToolmarksAnalysisPlugin(interface.AnalysisPlugin):
    """Tags events that meet toolmarks' indicators with its labels."""

    NAME = "toolmarks"

    def __init__(self) -> None:
        super().__init__()
        self._tagger = Tagger(indicator_set.compiled())
        self._tools: collections.Counter[str] = collections.Counter()

    def ExamineEvent(
        self,
        analysis_mediator: Any,
        event: Any,
        event_data: Any,
        event_data_stream: Any,
    ) -> None:
        values = plaso_values(event_data, event_data_stream)
        labels = self._tagger.labels(event_data.data_type or "", values)
        if not labels:
            return
        analysis_mediator.ProduceEventTag(self._CreateEventTag(event, labels))
        for label in labels:
            self._analysis_counter[label] += 1
        self._analysis_counter["event_tags"] += 1

    def CompileReport(self, analysis_mediator: Any) -> Any:
        report = super().CompileReport(analysis_mediator)
        counts = ", ".join(
            f"{label} {number}"
            for label, number in sorted(self._analysis_counter.items())
        )
        version = indicator_set.indicators().version
        report.text = f"toolmarks, indicator set {version}: {counts or 'no tags'}"
        return report


if "toolmarks" not in plaso_manager.AnalysisPluginManager._plugin_classes:
    plaso_manager.AnalysisPluginManager.RegisterPlugin(ToolmarksAnalysisPlugin)
