"""toolmarks' parsers; importing the package registers every one of them."""

from toolmarks.parsers import (  # noqa: F401
    content,
    eventlog,
    leads,
    prefetch,
    recyclebin,
    registry,
    tasks,
    usn,
)
