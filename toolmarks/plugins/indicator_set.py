"""The indicator set the plaso front matches with, chosen by the environment.

plaso builds parser and analysis plugin objects itself, in worker processes,
with no way to pass them options; the launchers put `--indicators` and
`--no-shipped` into TOOLMARKS_INDICATORS and TOOLMARKS_NO_SHIPPED, which
worker processes inherit.
"""

from __future__ import annotations

import functools
import os

from toolmarks.indicators import loader
from toolmarks.indicators.compiler import CompiledSet, compile_set
from toolmarks.indicators.model import IndicatorSet

ENV_PATHS = "TOOLMARKS_INDICATORS"
ENV_NO_SHIPPED = "TOOLMARKS_NO_SHIPPED"


def configure(paths: list[str], no_shipped: bool) -> IndicatorSet:
    """Sets (and loads, to fail early) the set of this process and its workers."""
    os.environ[ENV_PATHS] = os.pathsep.join(paths)
    os.environ[ENV_NO_SHIPPED] = "1" if no_shipped else ""
    indicators.cache_clear()
    compiled.cache_clear()
    return indicators()


@functools.cache
def indicators() -> IndicatorSet:
    """Raises loader.IndicatorError if the set has any problem."""
    paths = [p for p in os.environ.get(ENV_PATHS, "").split(os.pathsep) if p]
    return loader.load(paths, shipped=not os.environ.get(ENV_NO_SHIPPED))


@functools.cache
def compiled() -> CompiledSet:
    return compile_set(indicators())
