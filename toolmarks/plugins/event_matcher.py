r"""Matches plain plaso events against an indicator set, the way toolmarks' own
parsers match the same artefacts, so `toolmarks tag` explains its tags with the
same Match objects whichever front read the evidence.

Per data type family:

- file system events: names and paths on every one (fs:stat, fs:stat:ntfs,
  fs:ntfs:usn_change, fs:bodyfile:entry); hashes and YARA rule names only on
  fs:stat, whose event data stream is the file's own default stream (plaso
  gives a stream's hashes and YARA matches to every event parsed out of it,
  and the $MFT / $J stream of the NTFS events describes other files);
- windows:prefetch:execution: the prefetch parser's own matching;
- windows:registry:*: registry indicators on the key (paths mapped from
  plaso's HKEY_... form back to the hive-relative form of the indicators),
  and the execution artefacts (services, ShimCache, Amcache, BAM, UserAssist,
  MUICache, RunMRU) by filename and SHA-1 indicators as the registry parser
  matches them; not plaso's TaskCache events
  (windows:registry:task_scheduler:task_cache:entry): they carry the task's
  name and GUID but not its Actions (the Tasks\{GUID} keys go to plaso's
  default plugin, which gives binary data as "(N bytes)"), and a task's name
  says nothing of what it runs: filename indicators on it would invent hits;
- windows:metadata:deleted_item: the Recycle Bin parser's matching;
- windows:evtx:record: the event log parser's matching (indicator fields; the
  programs, hashes and command lines of process, image and service records).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any
from xml.etree import ElementTree

from toolmarks.events import Match
from toolmarks.indicators.compiler import CompiledSet, rule_name
from toolmarks.indicators.model import Indicator
from toolmarks.output.plaso_storage import HASH_ATTRIBUTES
from toolmarks.parsers import registry_artefacts as artefacts
from toolmarks.parsers.eventlog import PROCESS_RECORDS, event_data, record_matches
from toolmarks.parsers.prefetch import PrefetchInfo, prefetch_matches
from toolmarks.parsers.recyclebin import matching_path
from toolmarks.parsers.registry import HIVE_TYPES, prefilter_of, union

# The event of a file itself, made by plaso's filestat parser once per file
# entry with the file's default data stream: the only file system event whose
# stream hashes and YARA matches are the file's own.
FILE_STAT = "fs:stat"
# File system events whose names are matched. The NTFS ones come from the
# $MFT and $UsnJrnl:$J parsers: their stream is that metadata file's.
FILE_SYSTEM_TYPES = frozenset(
    {FILE_STAT, "fs:stat:ntfs", "fs:ntfs:usn_change", "fs:bodyfile:entry"}
)
PREFETCH = "windows:prefetch:execution"
DELETED_ITEM = "windows:metadata:deleted_item"
EVTX = "windows:evtx:record"
REGISTRY_PREFIX = "windows:registry:"

# Registry events plaso makes per entry rather than per key: a key indicator
# on their key would tag every entry, where toolmarks makes one key trace.
_PER_ENTRY_TYPES = frozenset(
    {"windows:registry:appcompatcache", "windows:registry:userassist"}
)
# dfwinreg's key path prefixes (dfwinreg/registry.py _REGISTRY_FILE_MAPPINGS),
# longest first, each with the hive types toolmarks' indicators name and how
# much of the path to cut for the hive-relative path. A user's Classes keys
# come from UsrClass.dat, or from an NTUSER.DAT that holds them itself.
_HKCU = "HKEY_CURRENT_USER\\"
_HKCU_CLASSES = _HKCU + "SOFTWARE\\CLASSES\\"
_HIVE_PREFIXES = tuple(
    (prefix, tuple((hive, len(cut)) for hive, cut in hives))
    for prefix, hives in (
        (_HKCU_CLASSES, (("USRCLASS", _HKCU_CLASSES), ("NTUSER", _HKCU))),
        ("HKEY_LOCAL_MACHINE\\SYSTEM\\", (("SYSTEM", "HKEY_LOCAL_MACHINE\\SYSTEM\\"),)),
        (
            "HKEY_LOCAL_MACHINE\\SOFTWARE\\",
            (("SOFTWARE", "HKEY_LOCAL_MACHINE\\SOFTWARE\\"),),
        ),
        ("HKEY_LOCAL_MACHINE\\SAM\\", (("SAM", "HKEY_LOCAL_MACHINE\\SAM\\"),)),
        (
            "HKEY_LOCAL_MACHINE\\SECURITY\\",
            (("SECURITY", "HKEY_LOCAL_MACHINE\\SECURITY\\"),),
        ),
        (_HKCU, (("NTUSER", _HKCU),)),
    )
)
_NUMBERED_CONTROL_SET = re.compile(r"ControlSet\d{3}(?=\\|$)", re.IGNORECASE)
_SERVICE_KEY = re.compile(
    r"(?:Current)?ControlSet(?:\d{3})?\\Services\\([^\\]+)", re.IGNORECASE
)
_EULA_KEY = re.compile(r"Software\\Sysinternals\\([^\\]+)", re.IGNORECASE)
# plaso appends the NTFS file reference to a prefetch file's mapped files.
_FILE_REFERENCE = re.compile(r" \[\d+-\d+\]$")
_MRU_ENTRY = re.compile(r"Index: \d+ \[MRU Value ([^\]]*)\]: (.*)", re.DOTALL)
_CHANNEL = re.compile(r"<Channel>([^<]*)</Channel>")
_INTEGER_TYPES = ("REG_DWORD", "REG_DWORD_LE", "REG_DWORD_BE", "REG_QWORD")
_STRING_TYPES = ("REG_SZ", "REG_EXPAND_SZ", "REG_LINK")
# Service values plaso keeps as attributes, not in `values`.
_SERVICE_ATTRIBUTES = (
    ("ImagePath", "image_path", "REG_EXPAND_SZ"),
    ("ObjectName", "object_name", "REG_SZ"),
    ("Start", "start_type", "REG_DWORD_LE"),
    ("Type", "service_type", "REG_DWORD_LE"),
    ("ErrorControl", "error_control", "REG_DWORD_LE"),
)
_MUICACHE_PATHS = {hive: path.lower() for hive, path in artefacts.MUICACHE_KEYS.items()}
_RUN_MRU_PATH = artefacts.RUN_MRU_KEY.lower()


def _attribute(container: Any, name: str) -> Any:
    """An attribute of a dfVFS PathSpec, or a key of its serialised dict."""
    if isinstance(container, dict):
        return container.get(name)
    return getattr(container, name, None)


def _windows_path(path: str | None) -> str | None:
    """A path as the scanner matches names on: `\\`-separated."""
    return path.replace("/", "\\") if path else None


def hive_paths(key_path: str) -> list[tuple[str, str]]:
    """(hive type, key path below the hive root) pairs a plaso key path may be.

    plaso cannot map an Amcache.hve ("\\Root\\..."); other paths it could not
    map are tried as every hive type: plaso names no type, and indicator key
    regexes are full-matched, so only the right hive's indicators meet them.
    """
    upper = key_path.upper()
    for prefix, hives in _HIVE_PREFIXES:
        if upper.startswith(prefix):
            return [(hive, key_path[cut:]) for hive, cut in hives]
    below = key_path.lstrip("\\")
    if below.upper().startswith("HKEY_"):
        return []  # another root (HKEY_USERS of Windows 9x): no indicator names it
    if below.lower().startswith("root\\") or below.lower() == "root":
        return [("AMCACHE", below)]
    return [(hive, below) for hive in HIVE_TYPES]


def match_paths(hive: str, path: str) -> list[str]:
    """A key path, and first its CurrentControlSet spelling in a SYSTEM hive
    (the registry parser's _match_paths)."""
    if hive == "SYSTEM":
        mapped = _NUMBERED_CONTROL_SET.sub("CurrentControlSet", path, count=1)
        if mapped != path:
            return [mapped, path]
    return [path]


def value_texts(type_string: str | None, data: Any) -> list[str]:
    """A plaso value's data in the forms registry_artefacts.value_texts gives.

    plaso writes integers in decimal, strings as they are, multi-strings as
    "[a, b]" and binary data as "(N bytes)" unless asked for the bytes.
    """
    if data is None:
        return [""]
    if isinstance(data, bytes):
        texts = [data.hex()]
        text = data[: len(data) & ~1].decode("utf-16-le", errors="replace")
        text = text.split("\x00", 1)[0]
        if len(data) >= 4 and text and text.isprintable():
            texts.append(text)
        return texts
    text = str(data)
    if type_string in _INTEGER_TYPES:
        try:
            number = int(text)
        except ValueError:
            return [text]
        return [str(number), f"0x{number:08x}"]
    if type_string == "REG_MULTI_SZ" and text.startswith("[") and text.endswith("]"):
        return ["\n".join(item for item in text[1:-1].split(", ") if item)]
    if type_string not in _STRING_TYPES and re.fullmatch(r"\(\d+ bytes\)", text):
        return []  # binary data plaso left out: nothing to match a data regex on
    return [text]


class EventMatcher:
    """The matches that explain why a plaso event gets toolmarks' tags."""

    def __init__(self, compiled: CompiledSet) -> None:
        self.compiled = compiled
        self._rules: dict[str, Indicator] = {
            rule_name(ind.id): ind
            for ind in compiled.indicator_set.indicators("strings")
        }
        self._event_ids = {
            event_id for _, event_id in (*compiled.eventlog, *PROCESS_RECORDS)
        }
        self._registry_filter = {
            hive: prefilter_of(items)
            for hive, items in compiled.registry.items()
            if items
        }
        self._handlers: dict[str, Callable[[dict[str, Any]], list[Match]]] = {
            FILE_STAT: self._file_stat,
            "fs:stat:ntfs": self._ntfs_stat,
            "fs:ntfs:usn_change": self._usn_change,
            "fs:bodyfile:entry": self._bodyfile,
            DELETED_ITEM: self._deleted_item,
            PREFETCH: self._prefetch,
            EVTX: self._evtx,
            "windows:registry:appcompatcache": self._shimcache,
            "windows:registry:amcache": self._amcache,
            "windows:registry:bam": self._bam,
            "windows:registry:userassist": self._userassist,
            "windows:registry:mrulist": self._mrulist,
        }

    def match(self, data_type: str, values: dict[str, Any]) -> list[Match]:
        """The matches of one event: its event data attributes, plus for an
        event with an event data stream that stream's md5_hash, sha1_hash,
        sha256_hash, yara_match and path_spec."""
        handler = self._handlers.get(data_type)
        if handler is not None:
            found = handler(values)
        elif data_type.startswith(REGISTRY_PREFIX):
            found = []
        else:
            return []
        if data_type.startswith(REGISTRY_PREFIX) and data_type not in _PER_ENTRY_TYPES:
            for match in self._registry_key(values, data_type):
                if match not in found:
                    found.append(match)
        return found

    # --- file system ----------------------------------------------------------

    def _names(self, paths: Iterable[str], **detail: Any) -> list[Match]:
        """Filename indicators on paths, as the scanner matches a file's path."""
        matches: list[Match] = []
        seen: set[str] = set()
        for path in paths:
            for ind in self.compiled.filenames.match(path):
                if ind.id not in seen:
                    seen.add(ind.id)
                    matches.append(Match.of(ind, path, **detail))
        return matches

    def _hashes(self, pairs: Iterable[tuple[str, str, Any]]) -> list[Match]:
        matches = []
        for hash_type, field, value in pairs:
            if isinstance(value, str) and value:
                matches += [
                    Match.of(ind, value.lower(), field=field)
                    for ind in self.compiled.match_hash(hash_type, value)
                ]
        return matches

    def _file_stat(self, values: dict[str, Any]) -> list[Match]:
        path_spec = values.get("path_spec")
        path = values.get("filename") or _attribute(path_spec, "location")
        matches = []
        # The scanner matches names of file entries, not of their named streams.
        if path and not _attribute(path_spec, "data_stream"):
            matches += self._names([_windows_path(path)], field="filename")
        matches += self._hashes(
            (hash_type, field, values.get(field))
            for hash_type, field in HASH_ATTRIBUTES.items()
        )
        rules = values.get("yara_match") or []
        if isinstance(rules, str):  # older plaso versions join them with commas
            rules = rules.split(",")
        for rule in rules:
            ind = self._rules.get(rule.strip())
            if ind is not None:
                matches.append(
                    Match.of(ind, ind.fields["value"], rule=rule, field="yara_match")
                )
        return matches

    def _ntfs_stat(self, values: dict[str, Any]) -> list[Match]:
        paths = []
        for hint in values.get("path_hints") or []:
            # "\dir\name:stream" names a stream of the file; its path is the file's.
            path = "\\" + hint.split(":", 1)[0].lstrip("\\")
            if path not in paths:
                paths.append(path)
        return self._names(paths, field="path_hints")

    def _usn_change(self, values: dict[str, Any]) -> list[Match]:
        # A USN record names the file, not its folder.
        return self._names(
            artefacts.path_candidates(values.get("filename")), field="filename"
        )

    def _deleted_item(self, values: dict[str, Any]) -> list[Match]:
        # The Recycle Bin's $I or INFO2 entry: the recyclebin parser's matching.
        original = values.get("original_filename")
        if not original:
            return []
        return [
            Match.of(indicator, original, kind="filename")
            for indicator in self.compiled.filenames.match(matching_path(original))
        ]

    def _bodyfile(self, values: dict[str, Any]) -> list[Match]:
        path = _windows_path(values.get("filename"))
        matches = self._names([path], field="filename") if path else []
        return matches + self._hashes([("md5", "md5", values.get("md5"))])

    # --- prefetch -------------------------------------------------------------

    def _prefetch(self, values: dict[str, Any]) -> list[Match]:
        files = [
            _FILE_REFERENCE.sub("", name) for name in values.get("mapped_files") or []
        ]
        info = PrefetchInfo(
            executable=values.get("executable") or "",
            prefetch_hash=values.get("prefetch_hash") or 0,
            format_version=values.get("version") or 0,
            run_count=values.get("run_count") or 0,
            compressed=False,
            last_run_times=[],
            volumes=[],
            filenames=files,
        )
        return [
            Match.of(
                ind,
                value=value,
                kind="prefetch",
                referenced=tuple(referenced),
                field="executable" if ind.fields.get("executable") else "mapped_files",
            )
            for ind, value, referenced in prefetch_matches(info, self.compiled)
        ]

    # --- event logs -----------------------------------------------------------

    def _evtx(self, values: dict[str, Any]) -> list[Match]:
        event_id = values.get("event_identifier")
        xml = values.get("xml_string")
        if event_id not in self._event_ids or not xml:
            return []
        found = _CHANNEL.search(xml)
        channel = found.group(1) if found else ""
        key = (channel.lower(), event_id)
        if key not in self.compiled.eventlog and key not in PROCESS_RECORDS:
            return []
        try:
            fields = event_data(xml)
        except ElementTree.ParseError:
            return []
        return record_matches(
            channel,
            event_id,
            values.get("source_name") or "",
            fields,
            self.compiled,
            {
                "channel": channel,
                "event_id": event_id,
                "record_number": values.get("record_number"),
            },
        )

    # --- registry: execution artefacts ---------------------------------------

    def _entry(
        self,
        artefact: str,
        candidates: list[str],
        field: str,
        sha1: str | None = None,
        sha1_field: str = "sha1",
    ) -> list[Match]:
        """An artefact entry by its paths and SHA-1, as registry._entries."""
        matches = []
        seen: set[str] = set()
        for candidate in candidates:
            for ind in self.compiled.filenames.match(candidate):
                if ind.id not in seen:
                    seen.add(ind.id)
                    matches.append(
                        Match.of(
                            ind,
                            candidate,
                            kind="registry",
                            via="filename",
                            artefact=artefact,
                            field=field,
                        )
                    )
        if sha1:
            for ind in self.compiled.match_hash("sha1", sha1):
                matches.append(
                    Match.of(
                        ind,
                        sha1,
                        kind="registry",
                        via="sha1",
                        artefact=artefact,
                        field=sha1_field,
                    )
                )
        return matches

    def _shimcache(self, values: dict[str, Any]) -> list[Match]:
        return self._entry(
            "shimcache", artefacts.path_candidates(values.get("path")), "path"
        )

    def _bam(self, values: dict[str, Any]) -> list[Match]:
        return self._entry("bam", artefacts.path_candidates(values.get("path")), "path")

    def _userassist(self, values: dict[str, Any]) -> list[Match]:
        return self._entry(
            "userassist",
            artefacts.path_candidates(values.get("value_name")),
            "value_name",
        )

    def _amcache(self, values: dict[str, Any]) -> list[Match]:
        # Root\File entries give `sha1` (plaso strips the 0000), the
        # InventoryApplicationFile ones the FileId as `file_identifier`.
        sha1_field = "sha1" if values.get("sha1") else "file_identifier"
        sha1 = artefacts.sha1_of_file_id(values.get(sha1_field))
        path = values.get("full_path")
        candidates = artefacts.path_candidates(path)
        field = "full_path"
        if not candidates:
            candidates = artefacts.path_candidates(values.get("filename"))
            field = "filename"
        return self._entry("amcache", candidates, field, sha1, sha1_field)

    def _mrulist(self, values: dict[str, Any]) -> list[Match]:
        key_path = values.get("key_path") or ""
        if not any(
            below.lower() == _RUN_MRU_PATH for hive, below in hive_paths(key_path)
        ):
            return []
        matches: list[Match] = []
        for entry in values.get("entries") or []:
            found = _MRU_ENTRY.fullmatch(entry)
            if not found:
                continue
            # Each command is stored with a trailing "\1" (artefacts.runmru).
            command = found.group(2).removesuffix("\\1")
            for match in self._entry(
                "runmru", artefacts.command_candidates(command), "entries"
            ):
                if match not in matches:
                    matches.append(match)
        return matches

    def _muicache(self, value_tuples: list[Any]) -> list[Match]:
        matches: list[Match] = []
        for name, _, _ in value_tuples:
            path = artefacts.muicache_program(name)
            if path is None:
                continue
            for match in self._entry(
                "muicache", artefacts.path_candidates(path), "values"
            ):
                if match not in matches:
                    matches.append(match)
        return matches

    def _service_image(self, image_path: str | None) -> list[Match]:
        """Filename indicators on a service's ImagePath (registry._services)."""
        if not image_path:
            return []
        return self._entry(
            "service", artefacts.command_candidates(image_path), "image_path"
        )

    # --- registry: keys and values --------------------------------------------

    def _registry_key(self, values: dict[str, Any], data_type: str) -> list[Match]:
        """Registry indicators on the event's key and values, as the registry
        parser's walk matches them, and the artefacts plaso leaves to its
        default plugin (MUICache) or decodes only in part (services)."""
        key_path = values.get("key_path")
        if not key_path:
            return []
        value_tuples = self._value_tuples(values, data_type)
        matches: list[Match] = []
        for hive, below in hive_paths(key_path):
            if not below:
                continue
            lowered = below.lower()
            if _MUICACHE_PATHS.get(hive) == lowered:
                matches += self._muicache(value_tuples)
            if hive == "SYSTEM" and _SERVICE_KEY.fullmatch(below):
                image = next(
                    (d for n, _, d in value_tuples if n.lower() == "imagepath"), None
                )
                matches += self._service_image(image)
            matches += self._key_indicators(hive, below, value_tuples)
        return list(dict.fromkeys(matches))

    def _value_tuples(
        self, values: dict[str, Any], data_type: str
    ) -> list[tuple[str, str | None, Any]]:
        tuples = [
            (str(item[0] or ""), item[1], item[2])
            for item in values.get("values") or []
            if isinstance(item, (list, tuple)) and len(item) == 3
        ]
        if data_type == "windows:registry:service":
            for name, attribute, type_string in _SERVICE_ATTRIBUTES:
                if values.get(attribute) is not None:
                    tuples.append((name, type_string, values[attribute]))
        return tuples

    def _key_indicators(
        self, hive: str, below: str, value_tuples: list[tuple[str, str | None, Any]]
    ) -> list[Match]:
        items = self.compiled.registry.get(hive)
        if not items:
            return []
        paths = match_paths(hive, below)
        prefilter = self._registry_filter.get(hive)
        if prefilter is not None and not any(prefilter.fullmatch(p) for p in paths):
            return []
        candidates = [
            item for item in items if any(item.main.fullmatch(p) for p in paths)
        ]
        if not candidates:
            return []
        artefact = (
            "service" if hive == "SYSTEM" and _SERVICE_KEY.match(below) else "key"
        )
        matches = [
            Match.of(
                ind,
                below,
                kind="registry",
                via="key",
                matched="key_path",
                artefact=artefact,
            )
            for ind in union(self.compiled.match_registry(hive, p) for p in paths)
        ]
        if not any(item.value is not None for item in candidates):
            return matches
        by_id = {item.indicator.id: item for item in candidates}
        for name, type_string, data in value_tuples:
            if not any(
                item.value is not None and item.value.fullmatch(name)
                for item in candidates
            ):
                continue
            texts: list[str | None] = list(value_texts(type_string, data)) or [None]
            value_artefact = artefact
            if artefact == "key" and hive == "NTUSER" and _EULA_KEY.fullmatch(below):
                value_artefact = "eula" if name == "EulaAccepted" else "key"
            for ind in union(
                self.compiled.match_registry(hive, p, name, t)
                for p in paths
                for t in texts
            ):
                data_regex = by_id[ind.id].data
                if data_regex is None:
                    shown, matched = name, "value"
                else:
                    shown = next(
                        (t for t in texts if t is not None and data_regex.search(t)),
                        "",
                    )
                    matched = "data"
                matches.append(
                    Match.of(
                        ind,
                        shown,
                        kind="registry",
                        via="key",
                        matched=matched,
                        artefact=value_artefact,
                        value_name=name,
                    )
                )
        return matches
