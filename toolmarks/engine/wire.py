"""A unit's result as JSON and back, exactly: what a Celery worker returns for
one share of an image, merged on the client as if it had been scanned there.

Every value keeps its type (tuples stay tuples, Decimals stay Decimals) and
every timestamp its dfdatetime class (or dfvfs's TSKTime) and fields, since
plaso's output depends on both. Only those time classes are rebuilt from a
message; anything else is a WireError, never an object of a type the message names.
"""

from __future__ import annotations

import decimal
import importlib
import math
from typing import Any

from dfdatetime import interface as dfdatetime_interface

from toolmarks.engine.scan import UnitResult
from toolmarks.events import Match, Trace

WIRE_SCHEMA = "toolmarks-unit-result/1"
# dfdatetime's caches: rebuilt on use, not part of a value.
_CACHES = frozenset(("_cached_date_time_values", "_normalized_timestamp"))
_NOTE_LISTS = ("warnings", "unreadable", "skipped", "not_checked")
# EWF chunk runs decoded and sectors that failed their checksum: (first, last).
_RANGE_LISTS = ("chunks_read", "bad_sectors")
# Where time classes may come from: dfdatetime, and dfvfs's own (TSKTime of
# the file systems The Sleuth Kit reads).
_TIME_MODULES = ("dfdatetime.", "dfvfs.lib.")


class WireError(ValueError):
    """A value that cannot be sent, or a message that is not a unit result."""


def _is_plain(key: Any) -> bool:
    return isinstance(key, str) and not key.startswith("$")


def encode_value(value: Any) -> Any:
    """A JSON value holding `value` and its type; raises WireError."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return {"$float": repr(value)}
        return value
    if isinstance(value, list):
        return [encode_value(item) for item in value]
    if isinstance(value, tuple):
        return {"$tuple": [encode_value(item) for item in value]}
    if isinstance(value, dict):
        if all(_is_plain(key) for key in value):
            return {key: encode_value(item) for key, item in value.items()}
        return {
            "$dict": [
                [encode_value(key), encode_value(item)] for key, item in value.items()
            ]
        }
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, dfdatetime_interface.DateTimeValues):
        return encode_time(value)
    raise WireError(f"cannot send a {type(value).__name__}: {value!r}")


def decode_value(value: Any) -> Any:
    """The value encode_value was given; raises WireError."""
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    if not isinstance(value, dict):
        raise WireError(f"not a JSON value: {type(value).__name__}")
    if all(_is_plain(key) for key in value):
        return {key: decode_value(item) for key, item in value.items()}
    if len(value) != 1:
        raise WireError(f"unknown tagged value: {sorted(value)}")
    ((tag, inner),) = value.items()
    try:
        if tag == "$tuple" and isinstance(inner, list):
            return tuple(decode_value(item) for item in inner)
        if tag == "$dict" and isinstance(inner, list):
            out = {}
            for key, item in inner:
                key = decode_value(key)
                if isinstance(key, (list, dict)):
                    raise WireError("a dictionary key that is not hashable")
                out[key] = decode_value(item)
            return out
        if tag == "$bytes" and isinstance(inner, str):
            return bytes.fromhex(inner)
        if tag == "$decimal" and isinstance(inner, str):
            return decimal.Decimal(inner)
        if tag == "$float" and inner in ("nan", "inf", "-inf"):
            return float(inner)
        if tag == "$time":
            return decode_time(value)
    except (TypeError, ValueError, decimal.InvalidOperation) as error:
        raise WireError(f"{tag}: {error}") from None
    raise WireError(f"unknown tagged value: {tag}")


def encode_time(value: dfdatetime_interface.DateTimeValues) -> dict[str, Any]:
    """A dfdatetime value by its class and its fields (caches left out)."""
    cls = type(value)
    if not cls.__module__.startswith(_TIME_MODULES):
        raise WireError(f"not a dfdatetime class: {cls.__module__}.{cls.__name__}")
    fields = {
        name: encode_value(item)
        for name, item in vars(value).items()
        if name not in _CACHES
    }
    return {"$time": [cls.__module__, cls.__name__, fields]}


def decode_time(value: dict[str, Any]) -> dfdatetime_interface.DateTimeValues:
    """The time value encode_time was given; only time classes of dfdatetime
    and dfvfs, nothing else a message names is imported or built."""
    try:
        module_name, class_name, fields = value["$time"]
    except (TypeError, ValueError, KeyError):
        raise WireError("$time: not [module, class, fields]") from None
    if (
        not isinstance(module_name, str)
        or not module_name.startswith(_TIME_MODULES)
        or not all(part.isidentifier() for part in module_name.split("."))
        or not isinstance(class_name, str)
        or not isinstance(fields, dict)
    ):
        raise WireError(f"$time: not a dfdatetime class: {module_name!r}")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        raise WireError(f"$time: no class {module_name}.{class_name}") from None
    if not (
        isinstance(cls, type) and issubclass(cls, dfdatetime_interface.DateTimeValues)
    ):
        raise WireError(f"$time: {module_name}.{class_name} is not a time class")
    # Built without __init__: its fields are the sender's, set as they were.
    item = cls.__new__(cls)
    for name in _CACHES:
        setattr(item, name, None)
    for name, field in fields.items():
        if not name.isidentifier() or name.startswith("__"):
            raise WireError(f"$time: field {name!r}")
        setattr(item, name, decode_value(field))
    return item


def encode_trace(trace: Trace) -> dict[str, Any]:
    return {
        "data_type": trace.data_type,
        "timestamp": None if trace.timestamp is None else encode_time(trace.timestamp),
        "timestamp_desc": trace.timestamp_desc,
        "source": trace.source,
        "matches": [
            [
                match.tool,
                match.indicator,
                match.kind,
                match.value,
                match.weak,
                encode_value(match.detail),
            ]
            for match in trace.matches
        ],
        "attributes": encode_value(trace.attributes),
    }


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise WireError(f"{what}: not a string")
    return value


def decode_trace(value: Any) -> Trace:
    if not isinstance(value, dict):
        raise WireError("trace: not an object")
    timestamp = value.get("timestamp")
    matches = []
    for item in value.get("matches") or []:
        if not isinstance(item, list) or len(item) != 6:
            raise WireError("match: not [tool, indicator, kind, value, weak, detail]")
        tool, indicator, kind, text, weak, detail = item
        detail = decode_value(detail)
        if not isinstance(detail, tuple) or not all(
            isinstance(pair, tuple) and len(pair) == 2 for pair in detail
        ):
            raise WireError("match: detail is not (name, value) pairs")
        if type(weak) is not bool:
            raise WireError("match: weak is not true or false")
        matches.append(
            Match(
                _text(tool, "tool"),
                _text(indicator, "indicator"),
                _text(kind, "kind"),
                _text(text, "value"),
                weak,
                detail,
            )
        )
    attributes = decode_value(value.get("attributes"))
    if not isinstance(attributes, dict):
        raise WireError("trace: attributes are not an object")
    return Trace(
        data_type=_text(value.get("data_type"), "data_type"),
        timestamp=None if timestamp is None else decode_time(timestamp),
        timestamp_desc=_text(value.get("timestamp_desc"), "timestamp_desc"),
        source=_text(value.get("source"), "source"),
        matches=matches,
        attributes=attributes,
    )


def encode_result(result: UnitResult) -> dict[str, Any]:
    """The JSON form of a unit's result; raises WireError."""
    return {
        "schema": WIRE_SCHEMA,
        "traces": [encode_trace(trace) for trace in result.traces],
        **{name: encode_value(getattr(result, name)) for name in _NOTE_LISTS},
        "counts": encode_value(result.counts),
        "parser_seconds": encode_value(result.parser_seconds),
        **{name: [list(r) for r in getattr(result, name)] for name in _RANGE_LISTS},
    }


def decode_result(value: Any) -> UnitResult:
    """The UnitResult encode_result was given; raises WireError."""
    if not isinstance(value, dict) or value.get("schema") != WIRE_SCHEMA:
        raise WireError("not a toolmarks unit result")
    notes = {}
    for name in _NOTE_LISTS:
        items = decode_value(value.get(name))
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise WireError(f"{name}: not a list of notes")
        # A skipped item's note may hold numbers; the others are text.
        if name != "skipped" and not all(
            isinstance(v, str) for item in items for v in item.values()
        ):
            raise WireError(f"{name}: a note that is not text")
        notes[name] = items
    counts = decode_value(value.get("counts"))
    seconds = decode_value(value.get("parser_seconds"))
    if not isinstance(counts, dict) or not all(
        type(item) is int for item in counts.values()
    ):
        raise WireError("counts: not numbers")
    if not isinstance(seconds, dict) or not all(
        isinstance(item, (int, float)) for item in seconds.values()
    ):
        raise WireError("parser_seconds: not numbers")
    traces = value.get("traces")
    if not isinstance(traces, list):
        raise WireError("traces: not a list")
    ranges = {}
    for name in _RANGE_LISTS:
        items = value.get(name)
        if not isinstance(items, list) or not all(
            isinstance(r, list)
            and len(r) == 2
            and all(type(n) is int and n >= 0 for n in r)
            and r[0] <= r[1]
            for r in items
        ):
            raise WireError(f"{name}: not a list of (first, last) numbers")
        ranges[name] = [(first, last) for first, last in items]
    return UnitResult(
        traces=[decode_trace(item) for item in traces],
        counts=counts,
        parser_seconds=seconds,
        **notes,
        **ranges,
    )
