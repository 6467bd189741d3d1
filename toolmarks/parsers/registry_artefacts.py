"""Execution artefacts in Registry hives, decoded into neutral entries.

Each reader takes a pyregf key and returns `Entry` objects: a program path (or
name) with its time and what the time means. Matching them against indicators
is the caller's job (toolmarks.parsers.registry).

The binary formats with many versions are decoded by plaso's own Windows
Registry plugins, called through a small collecting mediator: AppCompatCache
(Windows XP to 10/11) and UserAssist (v3 and v5, ROT13, known folders). Amcache,
BAM/DAM, MUICache and RunMRU are plain value reads and are done here, because
plaso's Amcache plugin recurses through the whole Root key without a bound and
emits an event per key, and its BAM plugin drops the rest of a key on one bad
value.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import re
import struct
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from dfdatetime import filetime as dfdatetime_filetime
from dfdatetime import interface as dfdatetime_interface

from toolmarks.parsers.tasks import Action

# plaso's wording (plaso/lib/definitions.py and data/timeliner.yaml); plaso has
# no constant for a key's last written time, its appcompatcache timeliner
# entry names it "Registry Last Written Time".
TIME_LAST_WRITTEN = "Registry Last Written Time"
TIME_FILE_MODIFICATION = "File Last Modification Time"
TIME_LAST_RUN = "Last Time Executed"

REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD, REG_DWORD_BE = 1, 2, 3, 4, 5
REG_LINK, REG_MULTI_SZ, REG_QWORD = 6, 7, 11
_STRING_TYPES = (REG_SZ, REG_EXPAND_SZ, REG_LINK)
_INTEGER_TYPES = (REG_DWORD, REG_DWORD_BE, REG_QWORD)

# Errors pyregf raises on corrupt cells; anything else is a bug to report.
READ_ERRORS = (IOError, OSError, ValueError, TypeError, UnicodeError, OverflowError)

USER_ASSIST_KEY = "Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\UserAssist"
RUN_MRU_KEY = "Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\RunMRU"
MUICACHE_KEYS = {
    "NTUSER": "Software\\Microsoft\\Windows\\ShellNoRoam\\MUICache",
    "USRCLASS": "Local Settings\\Software\\Microsoft\\Windows\\Shell\\MUICache",
}
SHIMCACHE_KEYS = (
    "Control\\Session Manager\\AppCompatCache",
    "Control\\Session Manager\\AppCompatibility",  # Windows XP
)
BAM_KEYS = (
    "Services\\bam\\State\\UserSettings",
    "Services\\bam\\UserSettings",
    "Services\\dam\\State\\UserSettings",
    "Services\\dam\\UserSettings",
)
_MUICACHE_SUFFIXES = (".FriendlyAppName", ".ApplicationCompany")
_HEX_SHA1 = re.compile(r"[0-9a-f]{40}")
_DRIVE = re.compile(r"[A-Za-z]:\\")
# An unquoted program path may hold spaces: up to its extension, then a blank.
_PROGRAM = re.compile(
    r"(.*?\.(?:exe|com|bat|cmd|sys|dll|scr|cpl|msc|ps1|vbs|js))(?=\s|$)",
    re.IGNORECASE,
)

Warn = Callable[[str], None]


@dataclasses.dataclass
class Entry:
    """One artefact entry: a program the system recorded, and when."""

    artefact: str
    key_path: str
    value_name: str | None
    paths: list[str]  # candidate texts for filename indicators, `\`-separated
    timestamp: dfdatetime_interface.DateTimeValues | None
    timestamp_desc: str
    sha1: str | None = None
    value_data: str | None = None
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Entries with the same merge key are one trace (e.g. one ShimCache entry
    # kept in two control sets); None means never merged.
    merge_key: tuple[Any, ...] | None = None


def filetime(value: int | None) -> dfdatetime_filetime.Filetime | None:
    """A FILETIME as dfdatetime, or None for 0 (not set) and out-of-range values."""
    if not value or value >= 0x7FFFFFFFFFFFFFFF:
        return None
    return dfdatetime_filetime.Filetime(timestamp=value)


def key_name(key: Any) -> str:
    """A pyregf key's name; "" when its cell cannot be read."""
    try:
        return key.name or ""
    except READ_ERRORS:
        return ""


def key_time(key: Any) -> dfdatetime_filetime.Filetime | None:
    """The last written time of a pyregf key."""
    try:
        return filetime(key.get_last_written_time_as_integer())
    except READ_ERRORS:
        return None


def subkey(key: Any, path: str) -> Any | None:
    """A subkey by relative path (case-insensitive), or None if absent or unreadable."""
    try:
        return key.get_sub_key_by_path(path)
    except READ_ERRORS:
        return None


def find(key: Any, key_path: str, relative: str) -> tuple[Any, str] | None:
    """A subkey by relative path with its full path as spelt in the hive.

    Lookups ignore case (services or Services), but traces report the real
    names, so the path is rebuilt from the keys found.
    """
    for name in relative.split("\\"):
        key = subkey(key, name)
        if key is None:
            return None
        real = key_name(key) or name
        key_path = f"{key_path}\\{real}" if key_path else real
    return key, key_path


def _children(
    key: Any, key_path: str, limit: int, warn: Warn, what: str
) -> Iterator[Any]:
    """The readable subkeys or values of a key, at most `limit`; bad ones warned."""
    count_of, get = {
        "subkey": ("number_of_sub_keys", key.get_sub_key),
        "value": ("number_of_values", key.get_value),
    }[what]
    try:
        count = getattr(key, count_of)
    except READ_ERRORS as error:
        warn(f"cannot count the {what}s of {key_path!r}: {error}")
        return
    if count > limit:
        warn(f"{key_path!r} has {count} {what}s; only the first {limit} are read")
        count = limit
    for index in range(count):
        try:
            yield get(index)
        except READ_ERRORS as error:
            warn(f"cannot read {what} {index} of {key_path!r}: {error}")


def subkeys(key: Any, key_path: str, limit: int, warn: Warn) -> Iterator[Any]:
    return _children(key, key_path, limit, warn, "subkey")


def values(key: Any, key_path: str, limit: int, warn: Warn) -> Iterator[Any]:
    return _children(key, key_path, limit, warn, "value")


def value_name(value: Any) -> str:
    """A value's name; the default value's is "" (and an unreadable one's)."""
    try:
        return value.name or ""
    except READ_ERRORS:
        return ""


def value_texts(value: Any, max_bytes: int) -> list[str]:
    """The data of a value as text, in every form a `data` regex may be written for.

    Strings as text, multi-strings joined by newlines, integers in decimal and as
    0x%08x hex, anything else as lower-case hex (plus its UTF-16 text where it
    reads as such). At most `max_bytes` of data are used.
    """
    try:
        value_type = value.type
        if value_type in _INTEGER_TYPES:
            number = value.get_data_as_integer()
            return [str(number), f"0x{number:08x}"]
        data = value.data or b""
    except READ_ERRORS:
        return []
    data = data[:max_bytes]
    if value_type in _STRING_TYPES:
        return [_utf16(data)]
    if value_type == REG_MULTI_SZ:
        return ["\n".join(s for s in _utf16(data, keep_nul=True).split("\x00") if s)]
    texts = [data.hex()]
    text = _utf16(data)
    if len(data) >= 4 and text and text.isprintable():
        texts.append(text)
    return texts


def value_string(value: Any) -> str | None:
    """A string value's text, or None for other types and unreadable data."""
    try:
        if value.type not in _STRING_TYPES:
            return None
        return _utf16(value.data or b"")
    except READ_ERRORS:
        return None


def _utf16(data: bytes, keep_nul: bool = False) -> str:
    text = data[: len(data) & ~1].decode("utf-16-le", errors="replace")
    return text if keep_nul else text.split("\x00", 1)[0]


def named_strings(key: Any, key_path: str, names: tuple[str, ...], warn: Warn) -> dict:
    """The string values of a key whose names are given, by name."""
    out = {}
    for name in names:
        try:
            value = key.get_value_by_name(name)
        except READ_ERRORS as error:
            warn(f"cannot read value {name!r} of {key_path!r}: {error}")
            continue
        text = value_string(value) if value is not None else None
        if text:
            out[name] = text
    return out


def path_candidates(text: str | None) -> list[str]:
    """The `\\`-separated forms of a path that filename indicators are matched on.

    A bare name or relative path also gets a leading `\\`, so that indicators
    anchored on `\\name$` see it.
    """
    if not text:
        return []
    text = text.strip().strip('"').replace("/", "\\")
    if not text:
        return []
    if text.startswith("\\") or _DRIVE.match(text):
        return [text]
    # Relative (System32\drivers\x.sys), environment-based or bare: both forms.
    return [text, "\\" + text] if "\\" in text else ["\\" + text]


def command_candidates(command: str) -> list[str]:
    """Path forms of the program of a command line; its arguments are left out.

    The program is the quoted part, else the text up to the first executable
    extension, else the first word. A program given without an extension also
    gets `.exe`, as the shell tries that first (PATHEXT): `sdelete -z c:` meets
    `\\sdelete.exe$`.
    """
    command = command.strip()
    if command.startswith('"'):
        program = command[1:].split('"', 1)[0]
    else:
        found = _PROGRAM.match(command)
        program = found.group(1) if found else command.split(" ", 1)[0]
    out = path_candidates(program)
    for candidate in list(out):
        name = candidate.rsplit("\\", 1)[-1]
        if name and "." not in name:
            out.append(candidate + ".exe")
    return out


def sha1_of_file_id(file_id: str | None) -> str | None:
    """The SHA-1 in an Amcache FileId ("0000" + 40 hex digits), lower case."""
    if not file_id:
        return None
    file_id = file_id.strip().lower()
    if len(file_id) == 44 and file_id.startswith("0000"):
        file_id = file_id[4:]
    return file_id if _HEX_SHA1.fullmatch(file_id) else None


# --- plaso plugins as decoders -------------------------------------------------


class _Collector:
    """The few parser-mediator methods plaso's Registry plugins call."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.warnings: list[str] = []

    def ProduceEventData(self, event_data: Any, **unused: Any) -> None:
        self.events.append(event_data)

    def ProduceWarning(self, message: str) -> None:
        self.warnings.append(message)

    ProduceRecoveryWarning = ProduceWarning

    def ExpandWindowsPath(self, path: str) -> str:
        # No knowledge base here: %SystemRoot% and the like stay as they are.
        return path


@functools.cache
def _plaso_plugins() -> tuple[type, type, Any]:
    """plaso's decoders, imported on first use (plaso.parsers takes ~0.6 s)."""
    from dfwinreg import regf as dfwinreg_regf
    from plaso.parsers.winreg_plugins import appcompatcache, userassist

    return (
        appcompatcache.AppCompatCacheWindowsRegistryPlugin,
        userassist.UserAssistPlugin,
        dfwinreg_regf,
    )


def _known_folders(name: str) -> str:
    """A UserAssist name with known-folder GUIDs replaced, as plaso's plugin does."""
    from plaso.helpers.windows import known_folders

    segments = name.split("\\")
    for index, segment in enumerate(segments):
        path = known_folders.WindowsKnownFoldersHelper.GetPath(segment)
        if path:
            segments[index] = path
    return "\\".join(segments)


@functools.cache
def _plugin(plugin_class: type) -> Any:
    # Building a plugin reads its dtFabric definitions (~80 ms); one instance
    # serves every hive of the process (plugins run one at a time).
    return plugin_class()


def _run_plugin(plugin_class: type, key: Any, key_path: str, warn: Warn) -> list[Any]:
    """Runs one plaso plugin on a key; events decoded before an error are kept."""
    dfwinreg_regf = _plaso_plugins()[2]
    registry_key = dfwinreg_regf.REGFWinRegistryKey(
        key,
        key_helper=dfwinreg_regf.REGFWinRegistryKeyHelper(),
        relative_key_path=key_path,
    )
    collector = _Collector()
    try:
        _plugin(plugin_class).ExtractEvents(collector, registry_key)
    except Exception as error:  # noqa: BLE001 - third-party decoder on hostile data
        warn(f"{key_path!r}: {plugin_class.NAME} decoding stopped: {error}")
    for message in collector.warnings:
        warn(f"{key_path!r}: {plugin_class.NAME}: {message}")
    return collector.events


# --- readers -----------------------------------------------------------------


def shimcache(key: Any, key_path: str, control_set: int | None, warn: Warn) -> list:
    """AppCompatCache entries of one control set (all formats plaso decodes)."""
    plugin_class = _plaso_plugins()[0]
    written = key_time(key)
    entries = []
    for event in _run_plugin(plugin_class, key, key_path, warn):
        path = getattr(event, "path", None)
        modified = event.file_entry_modification_time
        attributes = {
            "program_path": path,
            "entry_index": event.entry_index,
            "control_set": control_set,
            "control_sets": [control_set],
            "insertion_flags": event.insertion_flags,
            "last_update_time": iso(event.last_update_time),
            "key_last_written_time": iso(written),
        }
        entries.append(
            Entry(
                artefact="shimcache",
                key_path=key_path,
                value_name="AppCompatCache",
                paths=path_candidates(path),
                timestamp=modified or written,
                timestamp_desc=TIME_FILE_MODIFICATION
                if modified
                else TIME_LAST_WRITTEN,
                value_data=path,
                attributes=attributes,
                merge_key=(
                    "shimcache",
                    (path or "").lower(),
                    modified.timestamp if modified else None,
                ),
            )
        )
    return entries


def userassist(key: Any, key_path: str, warn: Warn, limit: int) -> list[Entry]:
    """UserAssist entries of one {GUID} key (ROT13 names, run count, last run)."""
    plugin_class = _plaso_plugins()[1]
    found = find(key, key_path, "Count")
    count_key, count_path = found if found else (None, key_path + "\\Count")
    raw_names = {}
    if count_key is not None:
        for value in values(count_key, count_path, limit, warn):
            name = value_name(value)
            decoded = codecs.decode(name, "rot-13")
            raw_names[decoded] = name
            raw_names[_known_folders(decoded)] = name
    entries = []
    for event in _run_plugin(plugin_class, key, key_path, warn):
        name = event.value_name or ""
        when = event.last_execution_time
        raw = raw_names.get(name)
        candidates = path_candidates(name)
        # plaso replaces known-folder GUIDs; the GUID form is matched as well.
        decoded = codecs.decode(raw, "rot-13") if raw else None
        for candidate in path_candidates(decoded):
            if candidate not in candidates:
                candidates.append(candidate)
        entries.append(
            Entry(
                artefact="userassist",
                key_path=count_path,
                value_name=raw or name,
                paths=candidates,
                timestamp=when or (key_time(count_key) if count_key else None),
                timestamp_desc=TIME_LAST_RUN if when else TIME_LAST_WRITTEN,
                value_data=name,
                attributes={
                    "program_path": name,
                    "run_count": event.number_of_executions,
                    "focus_count": event.application_focus_count,
                    "focus_duration_ms": event.application_focus_duration,
                    "entry_index": event.entry_index,
                },
            )
        )
    return entries


def bam(key: Any, key_path: str, control_set: int | None, warn: Warn, limit: int):
    """BAM/DAM entries of one UserSettings key: per SID, program and last run."""
    moderator = "dam" if "\\dam\\" in key_path.lower() else "bam"
    entries = []
    for sid_key in subkeys(key, key_path, limit, warn):
        sid = key_name(sid_key)
        sid_path = f"{key_path}\\{sid}"
        for value in values(sid_key, sid_path, limit, warn):
            name = value_name(value)
            if name in ("Version", "SequenceNumber"):
                continue
            try:
                data = value.data or b""
            except READ_ERRORS as error:
                warn(f"cannot read value {name!r} of {sid_path!r}: {error}")
                continue
            when = (
                filetime(struct.unpack_from("<Q", data)[0]) if len(data) >= 8 else None
            )
            entries.append(
                Entry(
                    artefact="bam",
                    key_path=sid_path,
                    value_name=name,
                    paths=path_candidates(name),
                    timestamp=when or key_time(sid_key),
                    timestamp_desc=TIME_LAST_RUN if when else TIME_LAST_WRITTEN,
                    value_data=data[:8].hex(),
                    attributes={
                        "program_path": name,
                        "user": sid,  # a SYSTEM hive names no account: the SID
                        "user_sid": sid,
                        "moderator": moderator,
                        "control_set": control_set,
                        "control_sets": [control_set],
                    },
                    merge_key=(
                        moderator,
                        sid,
                        name.lower(),
                        when.timestamp if when else None,
                    ),
                )
            )
    return entries


def amcache_inventory(key: Any, key_path: str, warn: Warn, limit: int) -> list[Entry]:
    """Root\\InventoryApplicationFile (Windows 10+): path and SHA-1 per file."""
    names = (
        "LowerCaseLongPath",
        "FileId",
        "Name",
        "Publisher",
        "ProductName",
        "Version",
        "LinkDate",
        "ProgramId",
    )
    entries = []
    for file_key in subkeys(key, key_path, limit, warn):
        entry_path = f"{key_path}\\{key_name(file_key)}"
        fields = named_strings(file_key, entry_path, names, warn)
        path = fields.get("LowerCaseLongPath")
        sha1 = sha1_of_file_id(fields.get("FileId"))
        if not path and not sha1:
            continue
        entries.append(
            Entry(
                artefact="amcache",
                key_path=entry_path,
                value_name="LowerCaseLongPath" if path else "FileId",
                paths=path_candidates(path) or path_candidates(fields.get("Name")),
                timestamp=key_time(file_key),
                timestamp_desc=TIME_LAST_WRITTEN,
                sha1=sha1,
                value_data=path or fields.get("FileId"),
                attributes={
                    "program_path": path,
                    "sha1": sha1,
                    "name": fields.get("Name"),
                    "publisher": fields.get("Publisher"),
                    "product_name": fields.get("ProductName"),
                    "version": fields.get("Version"),
                    "link_date": fields.get("LinkDate"),
                    "program_id": fields.get("ProgramId"),
                },
            )
        )
    return entries


def amcache_file(key: Any, key_path: str, warn: Warn, limit: int) -> list[Entry]:
    """Root\\File\\{volume}\\<file reference> (Windows 8 and early 10): 15 path, 101 SHA-1."""
    entries = []
    for volume_key in subkeys(key, key_path, limit, warn):
        volume_path = f"{key_path}\\{key_name(volume_key)}"
        for file_key in subkeys(volume_key, volume_path, limit, warn):
            entry_path = f"{volume_path}\\{key_name(file_key)}"
            fields = named_strings(file_key, entry_path, ("15", "101", "0", "1"), warn)
            path = fields.get("15")
            sha1 = sha1_of_file_id(fields.get("101"))
            if not path and not sha1:
                continue
            entries.append(
                Entry(
                    artefact="amcache",
                    key_path=entry_path,
                    value_name="15" if path else "101",
                    paths=path_candidates(path),
                    timestamp=key_time(file_key),
                    timestamp_desc=TIME_LAST_WRITTEN,
                    sha1=sha1,
                    value_data=path or fields.get("101"),
                    attributes={
                        "program_path": path,
                        "sha1": sha1,
                        "product_name": fields.get("0"),
                        "company": fields.get("1"),
                        "volume": key_name(volume_key),
                        "file_reference": key_name(file_key),
                    },
                )
            )
    return entries


def muicache_program(name: str) -> str | None:
    """The program path a MUICache value name stands for; None for the values
    that name no program (LangID, @resource strings)."""
    if not name or name == "LangID" or name.startswith("@"):
        return None
    for suffix in _MUICACHE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def muicache(key: Any, key_path: str, warn: Warn, limit: int) -> list[Entry]:
    """MUICache: programs the shell showed a name for (value name = path)."""
    written = key_time(key)
    entries: dict[str, Entry] = {}
    for value in values(key, key_path, limit, warn):
        name = value_name(value)
        path = muicache_program(name)
        if path is None:
            continue
        # FriendlyAppName and ApplicationCompany of one program are one entry.
        if path.lower() in entries:
            continue
        entries[path.lower()] = Entry(
            artefact="muicache",
            key_path=key_path,
            value_name=name,
            paths=path_candidates(path),
            timestamp=written,
            timestamp_desc=TIME_LAST_WRITTEN,
            value_data=value_string(value),
            attributes={"program_path": path},
        )
    return list(entries.values())


def runmru(key: Any, key_path: str, warn: Warn, limit: int) -> list[Entry]:
    """RunMRU: commands typed in the Run dialog; the key time is the newest's."""
    written = key_time(key)
    order = ""
    entries = []
    for value in values(key, key_path, limit, warn):
        name = value_name(value)
        text = value_string(value)
        if name == "MRUList":
            order = text or ""
            continue
        if not text:
            continue
        # Each command is stored with a trailing "\1".
        command = text.removesuffix("\\1")
        entries.append(
            Entry(
                artefact="runmru",
                key_path=key_path,
                value_name=name,
                paths=command_candidates(command),
                timestamp=written,
                timestamp_desc=TIME_LAST_WRITTEN,
                value_data=text,
                attributes={"command": command},
            )
        )
    for entry in entries:
        position = order.find(entry.value_name or "\x00")
        entry.attributes["mru_position"] = position if position >= 0 else None
    return entries


def service_fields(key: Any, key_path: str, warn: Warn) -> dict[str, Any]:
    """The values of a service key an examiner reads first."""
    fields: dict[str, Any] = named_strings(
        key, key_path, ("ImagePath", "DisplayName", "ObjectName"), warn
    )
    for name in ("Start", "Type"):
        try:
            value = key.get_value_by_name(name)
            if value is not None and value.type in _INTEGER_TYPES:
                fields[name] = value.get_data_as_integer()
        except READ_ERRORS:
            pass
    return {
        "service_name": key_name(key),
        "image_path": fields.get("ImagePath"),
        "display_name": fields.get("DisplayName"),
        "object_name": fields.get("ObjectName"),
        "start_type": fields.get("Start"),
        "service_type": fields.get("Type"),
    }


def iso(value: dfdatetime_interface.DateTimeValues | None) -> str | None:
    if value is None:
        return None
    try:
        return value.CopyToDateTimeStringISO8601()
    except (TypeError, ValueError):
        return None


# --- TaskCache (SOFTWARE) ----------------------------------------------------
# Task Scheduler 2.0 keeps each task in SOFTWARE too, beside its XML file:
# Tasks\{GUID} holds Path (the task's name), Actions and DynamicInfo (binary),
# Tree\<task path> an Id value naming the GUID. Layouts: G DATA Advanced
# Analytics, winreg-tasks kaitai/actions.ksy and kaitai/dynamic_info.ksy
# (https://github.com/GDATAAdvancedAnalytics/winreg-tasks, and the post
# https://cyber.wtf/?p=1923); DynamicInfo also libyal winreg-kb
# docs/sources/system-keys/Task-scheduler.md and plaso's windows_task_cache
# plugin (task_scheduler.yaml). Windows 7 writes no Actions value.
TASK_CACHE_KEY = "Microsoft\\Windows NT\\CurrentVersion\\Schedule\\TaskCache"
ACTIONS_VERSIONS = (1, 2, 3)  # 3 adds the principal id (context) and exec flags
_EXEC, _COM_HANDLER, _SEND_EMAIL, _SHOW_MESSAGE = 0x6666, 0x7777, 0x8888, 0x9999
_EMAIL_STRINGS = 8  # from, to, cc, bcc, reply-to, server, subject, body
# DynamicInfo: u32 3, FILETIME registration (winreg-tasks: creation; plaso:
# last registered), FILETIME last run (plaso: launch), u32 task state, u32
# last error code; 36-byte form (Windows 8+): FILETIME last successful run.
_DYNAMIC_INFO = struct.Struct("<IQQII")
_DYNAMIC_INFO_SIZES = (28, 36)
MAX_TREE_DEPTH = 64


class TaskCacheError(ValueError):
    """Where and why a TaskCache value stops being readable."""


@dataclasses.dataclass
class TaskActions:
    """A decoded Actions value: what was read before any problem."""

    version: int | None = None
    context: str | None = None  # the principal id (version 3)
    actions: list[Action] = dataclasses.field(default_factory=list)
    other: list[str] = dataclasses.field(default_factory=list)  # COM, e-mail …
    problem: str | None = None


@dataclasses.dataclass
class DynamicInfo:
    registration: int  # FILETIMEs; 0 when not set
    last_run: int
    task_state: int
    last_error: int
    last_successful_run: int | None  # Windows 8+ only


@dataclasses.dataclass
class CachedTask:
    """One Tasks\\{GUID} key with its values decoded."""

    key: Any
    key_path: str
    task_id: str
    task_path: str | None
    tree_path: str | None
    actions: TaskActions | None
    dynamic_info: DynamicInfo | None


class _Reader:
    """Bounded little-endian reads of one value's data."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def _take(self, size: int, what: str) -> bytes:
        end = self.offset + size
        if size < 0 or end > len(self.data):
            raise TaskCacheError(
                f"{what} at offset {self.offset}: {size} bytes run past the end "
                f"of the data ({len(self.data)} bytes)"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def u16(self, what: str) -> int:
        return struct.unpack("<H", self._take(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self._take(4, what))[0]

    def raw(self, size: int, what: str) -> bytes:
        return self._take(size, what)

    def string(self, what: str) -> str:
        """A u32 byte count, then that many bytes of UTF-16 LE (no NUL)."""
        start = self.offset
        size = self.u32(f"{what} length")
        try:
            data = self._take(size, what)
        except TaskCacheError:
            self.offset = start
            raise
        return _utf16(data, keep_nul=True).rstrip("\x00")

    @property
    def left(self) -> int:
        return len(self.data) - self.offset


def decode_actions(data: bytes) -> TaskActions:
    """The actions of an Actions value; a problem stops the decode, what came
    before it is kept. Never raises."""
    out = TaskActions()
    reader = _Reader(data)
    try:
        out.version = reader.u16("version")
        if out.version not in ACTIONS_VERSIONS:
            raise TaskCacheError(
                f"version {out.version} at offset 0 is not one of 1, 2, 3"
            )
        if out.version == 3:
            out.context = reader.string("context")
        while reader.left:
            start = reader.offset
            magic = reader.u16(f"action {len(out.actions) + len(out.other)} type")
            action_id = reader.string("action id")
            if magic == _EXEC:
                command = reader.string("command")
                arguments = reader.string("arguments")
                directory = reader.string("working directory")
                if out.version == 3:
                    reader.u16("exec flags")
                out.actions.append(Action(command, arguments, directory))
            elif magic == _COM_HANDLER:
                class_id = reader.raw(16, "COM class id")
                reader.string("COM handler data")
                out.other.append(f"ComHandler {uuid.UUID(bytes_le=class_id)}")
            elif magic == _SEND_EMAIL:
                for _ in range(_EMAIL_STRINGS):
                    reader.string("e-mail field")
                for pairs in (1, 2):  # attachments, then header name/value pairs
                    count = reader.u32("e-mail item count")
                    if count * pairs * 4 > reader.left:
                        raise TaskCacheError(
                            f"e-mail item count {count} at offset "
                            f"{reader.offset - 4} is more than the data holds"
                        )
                    for _ in range(count * pairs):
                        reader.string("e-mail item")
                out.other.append("SendEmail")
            elif magic == _SHOW_MESSAGE:
                caption = reader.string("message caption")
                reader.string("message text")
                out.other.append(f"ShowMessage {caption}".strip())
            else:
                raise TaskCacheError(
                    f"unknown action type 0x{magic:04x} (id {action_id!r}) at "
                    f"offset {start}"
                )
    except TaskCacheError as error:
        out.problem = str(error)
    return out


def decode_dynamic_info(data: bytes) -> DynamicInfo:
    """A DynamicInfo value (28 or 36 bytes); TaskCacheError when it is neither."""
    if len(data) not in _DYNAMIC_INFO_SIZES:
        raise TaskCacheError(
            f"{len(data)} bytes, not {' or '.join(map(str, _DYNAMIC_INFO_SIZES))}"
        )
    _magic, registration, last_run, state, error = _DYNAMIC_INFO.unpack_from(data)
    successful = struct.unpack_from("<Q", data, 28)[0] if len(data) == 36 else None
    return DynamicInfo(registration, last_run, state, error, successful)


def _binary(
    key: Any, key_path: str, name: str, max_bytes: int, warn: Warn
) -> bytes | None:
    """A value's data, or None when absent or unreadable (warned)."""
    try:
        value = key.get_value_by_name(name)
        if value is None:
            return None
        data = value.data or b""
    except READ_ERRORS as error:
        warn(f"cannot read value {name!r} of {key_path!r}: {error}")
        return None
    if len(data) > max_bytes:
        warn(
            f"{key_path!r}: {name} holds {len(data)} bytes; the first {max_bytes} read"
        )
        data = data[:max_bytes]
    return data


def task_tree(key: Any, key_path: str, warn: Warn, limit: int) -> dict[str, str]:
    """{GUID in upper case: task path} from the Id values under Tree."""
    out: dict[str, str] = {}
    stack: list[tuple[Any, str, int]] = [(key, "", 0)]
    seen = 0
    while stack:
        node, task_path, depth = stack.pop()
        if task_path:
            found = named_strings(node, f"{key_path}{task_path}", ("Id",), warn)
            if found.get("Id"):
                out.setdefault(found["Id"].strip().upper(), task_path)
        if depth >= MAX_TREE_DEPTH:
            warn(f"{key_path}{task_path!r}: deeper than {MAX_TREE_DEPTH}; not read")
            continue
        for child in subkeys(node, f"{key_path}{task_path}", limit, warn):
            seen += 1
            if seen > limit:
                warn(f"{key_path!r}: more than {limit} keys; the rest not read")
                return out
            stack.append((child, f"{task_path}\\{key_name(child)}", depth + 1))
    return out


def task_cache(
    key: Any, key_path: str, warn: Warn, limit: int, max_bytes: int, bad: Warn
) -> list[CachedTask]:
    """Every Tasks\\{GUID} key of a TaskCache key, its values decoded.

    `warn` takes the hive's read errors, `bad` values that read but do not
    decode (a hive repair cannot mend those).
    """
    tree: dict[str, str] = {}
    found = find(key, key_path, "Tree")
    if found is not None:
        tree = task_tree(*found, warn, limit)
    found = find(key, key_path, "Tasks")
    if found is None:
        return []
    tasks_key, tasks_path = found
    out = []
    for task_key in subkeys(tasks_key, tasks_path, limit, warn):
        task_id = key_name(task_key)
        entry_path = f"{tasks_path}\\{task_id}"
        path = named_strings(task_key, entry_path, ("Path",), warn).get("Path")
        actions = None
        data = _binary(task_key, entry_path, "Actions", max_bytes, warn)
        if data is not None:
            actions = decode_actions(data)
            if actions.problem:
                bad(f"{entry_path!r}: Actions: {actions.problem}")
        dynamic = None
        data = _binary(task_key, entry_path, "DynamicInfo", max_bytes, warn)
        if data is not None:
            try:
                dynamic = decode_dynamic_info(data)
            except TaskCacheError as error:
                bad(f"{entry_path!r}: DynamicInfo: {error}")
        tree_path = tree.get(task_id.upper())
        out.append(
            CachedTask(
                task_key,
                entry_path,
                task_id,
                path or tree_path,
                tree_path,
                actions,
                dynamic,
            )
        )
    return out
