"""Reads the events of a plaso storage file and adds event tags to it, in place.

Two SQLite storage formats are handled: 20260516 (plaso 20260720) and 20230327
(plaso 20230327 to 20260512, what most labs hold). Both keep tags the same way,
which is how plaso's tagging analysis (psort --analysis) writes them:

- `event_tag` (_identifier, _event_identifier, labels): one row per tagged
  event, `_event_identifier` the event's identifier as text ("event.<rowid>"),
  `labels` a JSON list of strings; index `event_tag_per_event` on
  `_event_identifier`, which plaso's reader filters on;
- `event_label_count` (_identifier, label, number_of_events): the events per
  label and the sum of them as label "total", which pinfo prints.

Where the formats differ (`data_type_count`/`warning_count` tables only in
20260516, `year_less_log_helper` only in 20230327, `_corrupted`/`_recovered` in
20260516 event data) nothing here reads or writes. Events are read with SQL and
json/zlib directly, as plaso's own serializer stores them: several times faster
than building plaso's containers, and the same code reads both formats, which
plaso 20260720 cannot.
"""

from __future__ import annotations

import binascii
import collections
import dataclasses
import json
import os
import pathlib
import re
import shutil
import sqlite3
import stat
import struct
import tempfile
import zlib
from collections.abc import Iterator
from typing import Any, Self

import orjson

SUPPORTED_FORMAT_VERSIONS = (20230327, 20260516)
STREAM_ATTRIBUTES = ("md5_hash", "sha1_hash", "sha256_hash", "yara_match", "path_spec")
# pinfo shows the sum of the label counts under this label.
TOTAL_LABEL = "total"

_LABEL = re.compile(r"^[A-Za-z0-9_]+$")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_EVENT_PREFIX = "event."
_EVENT_DATA_PREFIX = "event_data."
_STREAM_PREFIX = "event_data_stream."
# JSON envelope keys of plaso's serializer, not attributes of the event data.
_ENVELOPE = ("__type__", "__container_type__")
_TEMP_SUFFIX = ".toolmarks-tag.tmp"
_IN_CHUNK = 500  # SQLite's bound parameters per query stay well below its limit

# The same statements acstore and plaso use to create these tables, so a table
# created here is the one plaso's tagging analysis would have created.
_CREATE_EVENT_TAG = (
    "CREATE TABLE event_tag (_identifier INTEGER PRIMARY KEY AUTOINCREMENT, "
    "_event_identifier TEXT, labels TEXT)"
)
_CREATE_EVENT_TAG_INDEX = (
    "CREATE INDEX event_tag_per_event ON event_tag (_event_identifier)"
)
_CREATE_EVENT_LABEL_COUNT = (
    "CREATE TABLE event_label_count (_identifier INTEGER PRIMARY KEY "
    "AUTOINCREMENT, label TEXT, number_of_events INTEGER)"
)

# Every event with its event data: the event data row is found by its rowid,
# which is the number in the event's "event_data.<n>" reference.
_DATA_JOIN = f"""
FROM event AS e LEFT JOIN event_data AS d
  ON substr(e._event_data_identifier, 1, {len(_EVENT_DATA_PREFIX)})
     = '{_EVENT_DATA_PREFIX}'
 AND d._identifier
     = CAST(substr(e._event_data_identifier, {len(_EVENT_DATA_PREFIX) + 1})
            AS INTEGER)
ORDER BY e._identifier
"""
_EVENTS_QUERY = (
    "SELECT e._identifier, e._event_data_identifier, e.timestamp, "
    "e.timestamp_desc, d._identifier, d._data" + _DATA_JOIN
)
_LINKS_QUERY = (
    "SELECT e._identifier, e._event_data_identifier, d._identifier" + _DATA_JOIN
)


class StoreError(Exception):
    """The store cannot be tagged; str() names the file and what is wrong."""


@dataclasses.dataclass
class StoredEvent:
    """One event of the store, with its event data and stream values.

    `identifier` is the event's row id (the number in plaso's "event.<n>");
    `values` holds the event data's attributes as plaso's JSON serializer
    stored them (times as plaso's serialized dfdatetime dicts), `data_type` and
    plaso's own `_parser_chain`/`_event_values_hash` included, as
    EventData.GetAttributes gives them, plus the stream's values under
    STREAM_ATTRIBUTES when set (path_spec as its serialized dict).
    """

    identifier: Any
    data_type: str
    parser: str | None
    timestamp: int | None
    timestamp_desc: str | None
    values: dict[str, Any]
    labels: list[str]


@dataclasses.dataclass
class _Tag:
    """An event's stored tag.

    plaso keeps one tag row per event; should an event have several, psort
    shows the first, so new labels go to that row, and all rows' labels count
    as present.
    """

    row_id: int
    row_labels: list[str]  # of the first row, as stored
    labels: dict[str, None]  # of all rows, in order


class TagStore:
    """A plaso storage file opened for tagging.

    Opening checks that the file can be tagged and that nothing else writes it;
    the file is only read until write_tags, which replaces it as a whole.
    """

    def __init__(
        self,
        path: str,
        connection: sqlite3.Connection,
        format_version: int,
        compressed: bool,
    ) -> None:
        """Use TagStore.open, which checks the file first."""
        self.path = path
        self.format_version = format_version
        self._connection: sqlite3.Connection | None = connection
        self._compressed = compressed  # event data are zlib-compressed JSON
        self._stat = os.stat(path)

    @classmethod
    def open(cls, path: str, *, for_tagging: bool = True) -> TagStore:
        """Opens a store, or raises StoreError saying why it cannot be tagged.

        With for_tagging False the store is opened to be read only (a report of
        a store kept read-only as evidence): it need not be writable, and a
        store still being written is refused all the same.

        Refused: a missing or non-regular file; a file that is not SQLite or
        not a plaso store; a format version other than SUPPORTED_FORMAT_VERSIONS;
        a truncated or corrupt database; a read-only file; a file in a folder
        we cannot write (the tagged copy is made there); a store in use: a
        SQLite journal or WAL beside it, a SQLite write lock on it, another
        process holding it open for writing (log2timeline and psort's analysis
        keep it open from start to end), or a last session without a
        completion time (plaso still running, maybe on another machine, or
        killed before it finished).

        Read-only: as root every file is writable, so a file is read-only when
        its mode has no write bit at all (chmod a-w: someone protected it), when
        this user may not write it (os.access) or when its file system is
        mounted read-only. Root writing a file anyway is not what its owner
        meant.
        """
        path = os.fspath(path)
        _check_file(path)
        # Before reading: a store being written may look truncated or locked.
        _check_no_other_writer(path)
        connection = _connect_read_only(path)
        try:
            version, compressed = _check_metadata(path, connection)
            _check_integrity(path, connection)
            if for_tagging:
                _check_writable(path)
            # Probing SQLite's write lock needs write access; a reader does
            # without (no other writer, a finished last session).
            _check_not_in_use(path, connection, probe_lock=for_tagging)
            return cls(path, connection, version, compressed)
        except BaseException:
            connection.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def events(self) -> Iterator[StoredEvent]:
        """Every event of the store, in storage order."""
        connection = self._open_connection()
        streams = self._streams(connection)
        tags = self._tags(connection)
        if not _has_table(connection, "event"):
            return
        decoded_id: int | None = None
        decoded: tuple[str, str | None, dict[str, Any]] = ("", None, {})
        for (
            identifier,
            reference,
            timestamp,
            description,
            data_id,
            data,
        ) in self._event_rows(connection, _EVENTS_QUERY):
            if data_id is None:
                raise self._missing_data(identifier, reference)
            # plaso stores one event data for the several times of a file or
            # record, one after another: decode it once for all its events.
            if data_id != decoded_id:
                decoded = self._decode_event_data(data_id, data, streams)
                decoded_id = data_id
            data_type, parser, values = decoded
            tag = tags.get(identifier)
            yield StoredEvent(
                identifier=identifier,
                data_type=data_type,
                parser=parser,
                timestamp=timestamp,
                timestamp_desc=description,
                values=dict(values),
                labels=list(tag.labels) if tag else [],
            )

    def event_data_range(self) -> tuple[int, int] | None:
        """The lowest and highest event data row ids; None if there is none."""
        connection = self._open_connection()
        if not _has_table(connection, "event_data"):
            return None
        low, high = connection.execute(
            "SELECT MIN(_identifier), MAX(_identifier) FROM event_data"
        ).fetchone()
        return None if low is None else (low, high)

    def event_data(
        self, first: int, last: int
    ) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """(row id, data type, values) of the event data with row ids first to
        last, values as in StoredEvent, each decoded once: events() without the
        events, for reading shares of the store in several processes."""
        connection = self._open_connection()
        streams = self._streams(connection)
        rows = self._event_rows(
            connection,
            "SELECT _identifier, _data FROM event_data "
            "WHERE _identifier BETWEEN ? AND ? ORDER BY _identifier",
            (first, last),
        )
        for data_id, data in rows:
            data_type, _, values = self._decode_event_data(data_id, data, streams)
            yield data_id, data_type, values

    def event_links(self) -> Iterator[tuple[int, int]]:
        """(event row id, event data row id) of every event, in storage order."""
        connection = self._open_connection()
        if not _has_table(connection, "event"):
            return
        for identifier, reference, data_id in self._event_rows(
            connection, _LINKS_QUERY
        ):
            if data_id is None:
                raise self._missing_data(identifier, reference)
            yield identifier, data_id

    def labels(self) -> dict[int, list[str]]:
        """The labels of every tagged event, by event row id."""
        return {
            identifier: list(tag.labels)
            for identifier, tag in self._tags(self._open_connection()).items()
        }

    def reader(self) -> TagStore:
        """Another read-only handle on this checked store, for a forked
        process: a SQLite connection must not be used across a fork."""
        return TagStore(
            self.path,
            _connect_read_only(self.path),
            self.format_version,
            self._compressed,
        )

    def write_tags(self, labels: dict[Any, list[str]]) -> dict[str, int]:
        """Adds the labels to the events; returns per new label its events.

        Labels an event already has are skipped, and when nothing is new the
        file is not touched. Otherwise the store is copied to a temporary file
        beside it, tagged and counted there, synced and renamed over the
        original (keeping its mode and owner): the original stays
        byte-identical unless every write succeeded, and on any error the
        temporary file is removed. If the process is killed (SIGKILL, power
        loss) while tagging, the original is untouched and a file named
        `.<name>.<random>.toolmarks-tag.tmp` may remain beside it.

        Raises ValueError for a label plaso does not accept (letters, digits
        and `_` only; "total" is pinfo's sum) or an identifier that is not an
        event of this store, and StoreError if the store cannot be written.
        """
        wanted = _validated(labels)
        connection = self._open_connection()
        self._check_events_exist(connection, wanted)
        tags = self._tags(connection)

        new_per_event: dict[int, list[str]] = {}
        for identifier, event_labels in wanted.items():
            have = tags.get(identifier)
            new = [
                label for label in event_labels if not have or label not in have.labels
            ]
            if new:
                new_per_event[identifier] = new
        if not new_per_event:
            return {}

        counts = collections.Counter(
            label for new in new_per_event.values() for label in new
        )
        self._replace_with_tagged_copy(new_per_event, tags, counts)
        return dict(counts)

    # Reading.

    def _open_connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._connection

    def _error(self, what: str) -> StoreError:
        return StoreError(f"{self.path}: {what}")

    def _event_rows(
        self, connection: sqlite3.Connection, query: str, parameters: tuple = ()
    ) -> Iterator[tuple]:
        try:
            # Its own cursor: a query of the caller's between two rows must
            # not end this one.
            yield from connection.cursor().execute(query, parameters)
        except sqlite3.Error as exception:
            raise self._error(f"cannot read its events: {exception}") from exception

    def _missing_data(self, identifier: int, reference: str) -> StoreError:
        return self._error(
            f"event {identifier} refers to event data {reference!r}, "
            "which is not stored"
        )

    def _decode_event_data(
        self, data_id: int, data: bytes | str, streams: dict[int, dict[str, Any]]
    ) -> tuple[str, str | None, dict[str, Any]]:
        try:
            if self._compressed:
                data = zlib.decompress(data)
            values = _plain(orjson.loads(data))
        except (zlib.error, TypeError, ValueError) as exception:
            raise self._error(
                f"event data {data_id} cannot be decoded: {exception}"
            ) from exception
        for key in _ENVELOPE:
            values.pop(key, None)
        reference = values.get("_event_data_stream_identifier")
        if isinstance(reference, str) and reference.startswith(_STREAM_PREFIX):
            stream = streams.get(_number(reference, _STREAM_PREFIX))
            if stream:
                values.update(stream)
        return values.get("data_type") or "", values.get("_parser_chain"), values

    def _streams(self, connection: sqlite3.Connection) -> dict[int, dict[str, Any]]:
        """The set values of every event data stream, by row id."""
        if not _has_table(connection, "event_data_stream"):
            return {}
        columns = ", ".join(STREAM_ATTRIBUTES)
        streams = {}
        try:
            for row in connection.execute(
                f"SELECT _identifier, {columns} FROM event_data_stream"
            ):
                values = {}
                for name, value in zip(STREAM_ATTRIBUTES, row[1:]):
                    if value is None:
                        continue
                    if name in ("yara_match", "path_spec"):
                        # acstore stores these as JSON text.
                        value = _plain(json.loads(value))
                    values[name] = value
                streams[row[0]] = values
        except (sqlite3.Error, ValueError) as exception:
            raise self._error(
                f"cannot read its event data streams: {exception}"
            ) from exception
        return streams

    def _tags(self, connection: sqlite3.Connection) -> dict[int, _Tag]:
        """The stored tags, by event row id."""
        if not _has_table(connection, "event_tag"):
            return {}
        tags: dict[int, _Tag] = {}
        try:
            rows = connection.execute(
                "SELECT _identifier, _event_identifier, labels FROM event_tag "
                "ORDER BY _identifier"
            )
            for tag_id, event_reference, stored_labels in rows:
                if not (
                    isinstance(event_reference, str)
                    and event_reference.startswith(_EVENT_PREFIX)
                ):
                    continue
                labels = json.loads(stored_labels) if stored_labels else []
                event_id = _number(event_reference, _EVENT_PREFIX)
                tag = tags.get(event_id)
                if tag is None:
                    tags[event_id] = _Tag(tag_id, list(labels), dict.fromkeys(labels))
                else:
                    tag.labels.update(dict.fromkeys(labels))
        except (sqlite3.Error, ValueError, TypeError) as exception:
            raise self._error(f"cannot read its event tags: {exception}") from exception
        return tags

    def _check_events_exist(
        self, connection: sqlite3.Connection, wanted: dict[int, list[str]]
    ) -> None:
        identifiers = list(wanted)
        found = 0
        has_events = _has_table(connection, "event")
        for start in range(0, len(identifiers), _IN_CHUNK):
            chunk = identifiers[start : start + _IN_CHUNK]
            if has_events:
                marks = ",".join("?" * len(chunk))
                found += connection.execute(
                    f"SELECT count(*) FROM event WHERE _identifier IN ({marks})",
                    chunk,
                ).fetchone()[0]
            if found != start + len(chunk):
                raise ValueError(
                    f"{self.path}: not every identifier is an event of this store "
                    f"(one of {chunk[:5]}…)"
                )

    # Writing.

    def _replace_with_tagged_copy(
        self,
        new_per_event: dict[int, list[str]],
        tags: dict[int, _Tag],
        counts: collections.Counter[str],
    ) -> None:
        path = self.path
        folder = os.path.dirname(os.path.abspath(path))
        lock = _write_lock(path)
        temp_path = None
        try:
            if _identity(os.stat(path)) != _identity(self._stat):
                raise self._error("it changed since it was opened; open it again")
            _check_not_in_use(path, lock, probe_lock=False)
            handle, temp_path = tempfile.mkstemp(
                prefix=f".{os.path.basename(path)}.", suffix=_TEMP_SUFFIX, dir=folder
            )
            with open(path, "rb") as source, os.fdopen(handle, "wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
            _tag_copy(temp_path, new_per_event, tags, counts)
            with open(temp_path, "rb+") as written:
                os.fsync(written.fileno())
            original = self._stat
            os.chmod(temp_path, stat.S_IMODE(original.st_mode))
            try:
                os.chown(temp_path, original.st_uid, original.st_gid)
            except PermissionError:
                pass  # not root: the copy is ours, as any file we write
            os.replace(temp_path, path)
            temp_path = None
            _fsync_folder(folder)
        except (OSError, sqlite3.Error) as exception:
            if isinstance(exception, StoreError):
                raise
            raise self._error(f"cannot write the tags: {exception}") from exception
        finally:
            if temp_path is not None:
                _remove(temp_path)
            lock.close()
        # The path names the tagged file now: read that from here on.
        self._connection.close()
        self._connection = _connect_read_only(path)
        self._stat = os.stat(path)


def _tag_copy(
    path: str,
    new_per_event: dict[int, list[str]],
    tags: dict[int, _Tag],
    counts: collections.Counter[str],
) -> None:
    """Writes the new labels and their counts into the copy, in one transaction."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        # The copy is thrown away on any failure and synced as a whole after:
        # no journal file, no sync per transaction (plaso writes so, too).
        connection.execute("PRAGMA journal_mode=MEMORY")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("BEGIN")
        if not _has_table(connection, "event_tag"):
            connection.execute(_CREATE_EVENT_TAG)
            connection.execute(_CREATE_EVENT_TAG_INDEX)
        updates = []
        inserts = []
        for event_id, new in new_per_event.items():
            tag = tags.get(event_id)
            if tag:
                updates.append((json.dumps(tag.row_labels + new), tag.row_id))
            else:
                inserts.append((f"{_EVENT_PREFIX}{event_id}", json.dumps(new)))
        connection.executemany(
            "UPDATE event_tag SET labels = ? WHERE _identifier = ?", updates
        )
        connection.executemany(
            "INSERT INTO event_tag (_event_identifier, labels) VALUES (?, ?)", inserts
        )

        if not _has_table(connection, "event_label_count"):
            connection.execute(_CREATE_EVENT_LABEL_COUNT)
        stored_counts = {
            label: (row_id, number or 0)
            for row_id, label, number in connection.execute(
                "SELECT _identifier, label, number_of_events FROM event_label_count"
            )
        }
        # As plaso's analysis engine counts: each label of each tagged event,
        # and their sum as "total".
        added = dict(sorted(counts.items()))
        added[TOTAL_LABEL] = sum(counts.values())
        for label, number in added.items():
            if label in stored_counts:
                row_id, stored_number = stored_counts[label]
                connection.execute(
                    "UPDATE event_label_count SET number_of_events = ? "
                    "WHERE _identifier = ?",
                    (stored_number + number, row_id),
                )
            else:
                connection.execute(
                    "INSERT INTO event_label_count (label, number_of_events) "
                    "VALUES (?, ?)",
                    (label, number),
                )
        connection.execute("COMMIT")
    finally:
        connection.close()


def _plain(value: Any) -> Any:
    """plaso's JSON forms of tuples and bytes as Python values, as its own
    serializer reads them; times and path specs stay dicts."""
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("__type__")
    if kind == "tuple":
        return tuple(_plain(item) for item in value.get("values") or ())
    if kind == "bytes" and value.get("__encoding__", "base16") == "base16":
        return binascii.a2b_qp(value.get("stream") or "")
    if kind in ("DateTimeValues", "PathSpec"):
        return value
    return {key: _plain(item) for key, item in value.items()}


def _validated(labels: dict[Any, list[str]]) -> dict[int, list[str]]:
    wanted: dict[int, list[str]] = {}
    for identifier, event_labels in labels.items():
        if isinstance(identifier, bool) or not isinstance(identifier, int):
            raise TypeError(f"not an event identifier of this store: {identifier!r}")
        if isinstance(event_labels, str):
            raise TypeError(f"labels of event {identifier} must be a list: {labels!r}")
        for label in event_labels:
            if not isinstance(label, str) or not _LABEL.match(label):
                raise ValueError(
                    f"unsupported label {label!r}: a plaso label has letters, "
                    "digits and _ only"
                )
            if label == TOTAL_LABEL:
                raise ValueError(f"label {label!r} is pinfo's sum of all label counts")
        if event_labels:
            wanted[identifier] = list(dict.fromkeys(event_labels))
    return wanted


# Checks of open().


def _check_file(path: str) -> None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise StoreError(f"{path}: no such file") from None
    except OSError as exception:
        raise StoreError(f"{path}: cannot be read: {exception}") from exception
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as file:
            header = file.read(100)
    except OSError as exception:
        raise StoreError(f"{path}: cannot be read: {exception}") from exception
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise StoreError(f"{path}: not a plaso storage file (not an SQLite database)")
    # The header's page count is valid when its "version valid for" equals
    # the change counter (SQLite file format, section 1.3.7).
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    change_counter, pages = struct.unpack(">II", header[24:32])
    valid_for = struct.unpack(">I", header[92:96])[0]
    if pages and valid_for == change_counter and info.st_size < pages * page_size:
        raise StoreError(
            f"{path}: truncated: {info.st_size} bytes, its SQLite header says "
            f"{pages * page_size}"
        )
    # A rollback journal or WAL beside the file: a process writes it now, or
    # one was killed while writing and SQLite would roll back (i.e. change the
    # file) on the next open.
    for suffix in ("-journal", "-wal"):
        if os.path.exists(path + suffix):
            raise StoreError(
                f"{path}: in use: SQLite's {path + suffix} is beside it (a process "
                "is writing the store, or was killed while writing it)"
            )


def _connect_read_only(path: str) -> sqlite3.Connection:
    try:
        # mode=ro: opening only ever reads the file.
        return sqlite3.connect(_uri(path, "ro"), uri=True, timeout=0)
    except sqlite3.Error as exception:
        raise StoreError(f"{path}: cannot be opened: {exception}") from exception


def _uri(path: str, mode: str) -> str:
    """SQLite's URI of the file: pathlib percent-encodes what needs it."""
    return pathlib.Path(os.path.abspath(path)).as_uri() + f"?mode={mode}"


def _check_metadata(path: str, connection: sqlite3.Connection) -> tuple[int, bool]:
    """The format version and whether event data are zlib-compressed."""
    try:
        if not _has_table(connection, "metadata"):
            raise StoreError(f"{path}: not a plaso storage file (no metadata table)")
        metadata = dict(connection.execute("SELECT key, value FROM metadata"))
    except sqlite3.DatabaseError as exception:
        _raise_if_locked(path, exception)
        raise StoreError(
            f"{path}: not a plaso storage file or corrupt ({exception})"
        ) from exception
    version_text = metadata.get("format_version")
    if version_text is None:
        raise StoreError(f"{path}: not a plaso storage file (no format_version)")
    try:
        version = int(str(version_text), 10)
    except ValueError:
        raise StoreError(
            f"{path}: not a plaso storage file (format_version {version_text!r})"
        ) from None
    supported = " and ".join(str(v) for v in SUPPORTED_FORMAT_VERSIONS)
    if version not in SUPPORTED_FORMAT_VERSIONS:
        age = "older" if version < min(SUPPORTED_FORMAT_VERSIONS) else "newer"
        raise StoreError(
            f"{path}: plaso storage format {version} is not supported ({age} than "
            f"what toolmarks knows; it tags formats {supported}: plaso 20230327 "
            "to 20260720)"
        )
    if metadata.get("serialization_format") != "json":
        raise StoreError(
            f"{path}: unsupported serialization format "
            f"{metadata.get('serialization_format')!r} (plaso writes json)"
        )
    compression = metadata.get("compression_format")
    if compression not in ("zlib", "none"):
        raise StoreError(f"{path}: unsupported compression format {compression!r}")
    return version, compression == "zlib"


def _check_integrity(path: str, connection: sqlite3.Connection) -> None:
    try:
        result = connection.execute("PRAGMA quick_check(1)").fetchone()[0]
    except sqlite3.DatabaseError as exception:
        _raise_if_locked(path, exception)
        raise StoreError(f"{path}: corrupt: {exception}") from exception
    if result != "ok":
        raise StoreError(f"{path}: corrupt: SQLite's check says {result}")


def _raise_if_locked(path: str, exception: sqlite3.Error) -> None:
    if isinstance(exception, sqlite3.OperationalError) and "locked" in str(exception):
        raise StoreError(
            f"{path}: in use: another process holds a SQLite lock on it ({exception})"
        ) from exception


def _check_writable(path: str) -> None:
    info = os.stat(path)
    if not info.st_mode & 0o222:
        raise StoreError(
            f"{path}: read-only (mode {stat.filemode(info.st_mode)}); make it "
            "writable to tag it"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        raise StoreError(f"{path}: read-only: its file system is mounted read-only")
    if not os.access(path, os.W_OK):
        raise StoreError(f"{path}: read-only: this user may not write it")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(
            f"{path}: its folder is not writable (the tagged copy is made there)"
        )


def _check_no_other_writer(path: str) -> None:
    writer = _other_writer(path)
    if writer:
        raise StoreError(
            f"{path}: in use: process {writer} has it open for writing "
            "(a plaso still running on it?)"
        )


def _check_not_in_use(
    path: str, connection: sqlite3.Connection, *, probe_lock: bool = True
) -> None:
    """Raises StoreError if another process writes the store or may do so.

    probe_lock=False when the caller holds the write lock itself.
    """
    _check_no_other_writer(path)
    # A SQLite write lock: another connection is in a write transaction.
    if probe_lock:
        _write_lock(path).close()
    # Sessions: log2timeline 20260720 adds its session when it ends, older
    # plaso when it starts and sets its completion time when it ends. Either
    # way a store without a finished last session is being written, maybe
    # from another machine, or its writer was stopped before it finished.
    unfinished = (
        "plaso is still writing it, maybe from another machine, or was stopped "
        "before it finished"
    )
    try:
        row = None
        if _has_table(connection, "session"):
            row = connection.execute(
                "SELECT _identifier, identifier, completion_time FROM session "
                "ORDER BY _identifier DESC LIMIT 1"
            ).fetchone()
    except sqlite3.Error as exception:
        raise StoreError(f"{path}: cannot read its sessions: {exception}") from None
    if row is None:
        raise StoreError(f"{path}: in use or unfinished: no session: {unfinished}")
    if row[2] is None:
        raise StoreError(
            f"{path}: in use or unfinished: its last session ({row[1]}) has no "
            f"completion time: {unfinished}"
        )


def _write_lock(path: str) -> sqlite3.Connection:
    """A connection holding SQLite's RESERVED lock: no one else can write.

    Readers go on. BEGIN IMMEDIATE takes the lock without writing anything.
    """
    try:
        connection = sqlite3.connect(
            _uri(path, "rw"),
            uri=True,
            timeout=0,
            isolation_level=None,
        )
    except sqlite3.Error as exception:
        raise StoreError(f"{path}: cannot be opened: {exception}") from exception
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exception:
        connection.close()
        raise StoreError(
            f"{path}: in use: another process holds a SQLite lock on it ({exception})"
        ) from exception
    return connection


def _other_writer(path: str) -> int | None:
    """The id of another process that has the file open for writing, if any.

    plaso's writers keep the store open read-write from start to end; its
    readers (psort, pinfo) open it read-only, and do not count.
    """
    target = _identity(os.stat(path))[:2]
    own = os.getpid()
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return None  # no procfs: the SQLite lock and session checks remain
    for pid in pids:
        if pid == own:
            continue
        try:
            descriptors = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                info = os.stat(f"/proc/{pid}/fd/{descriptor}")
                if (info.st_dev, info.st_ino) != target:
                    continue
                with open(f"/proc/{pid}/fdinfo/{descriptor}") as fdinfo:
                    flags = next(
                        int(line.split()[1], 8)
                        for line in fdinfo
                        if line.startswith("flags:")
                    )
            except (OSError, StopIteration, ValueError):
                continue
            if flags & (os.O_WRONLY | os.O_RDWR):
                return pid
    return None


# Helpers.


def _has_table(connection: sqlite3.Connection, name: str) -> bool:
    return (
        connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        is not None
    )


def _number(reference: str, prefix: str) -> int:
    try:
        return int(reference[len(prefix) :], 10)
    except ValueError:
        return -1


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _fsync_folder(folder: str) -> None:
    """Makes the rename durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
