"""toolmarks' parsers; importing the package registers every one of them."""

from toolmarks.parsers import content, eventlog, prefetch, registry  # noqa: F401
