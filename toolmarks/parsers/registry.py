r"""Windows Registry hives: the detection core (a hive stream in, traces out).

One pass over a hive with libregf (pyregf): registry indicators are matched on
every key path, value name and value data; services, the Sysinternals EULA
keys and the execution artefacts (ShimCache, Amcache, UserAssist, BAM/DAM,
MUICache, RunMRU) are decoded and their program paths matched with the
filename and SHA-1 indicators; the TaskCache's task actions with the filename
and commandline indicators, as the task files' parser matches them. Keys below every ControlSetNNN are matched as
CurrentControlSet\... (and as spelt), so a service left only in an older
control set is found too; traces give the real path and say whether its
control set is the current one (Select\Current). Key cells left in the hive's
free space (deleted keys, registry_deleted) are matched too, as `deleted_key`.

Damaged hives give warnings, never exceptions: the walk is bounded in depth,
keys and time and skips keys it has seen (loops), and a hive libregf refuses
or reads only in part is read again from a repaired copy (registry_repair).

libregf was measured against python-registry and regipy on a 15 MiB Windows 10
SYSTEM hive (43,211 keys, 90,307 values, every value read): libregf 0.55 s,
python-registry 1.5 s, regipy 247 s.
"""

from __future__ import annotations

import dataclasses
import io
import re
import struct
import time
from collections.abc import Iterable
from typing import Any, BinaryIO

import pyregf

from toolmarks.events import NOT_A_TIME, Match, Trace
from toolmarks.indicators.compiler import CompiledSet, RegexIndicator
from toolmarks.indicators.model import Indicator
from toolmarks.parsers import manager, registry_deleted, registry_repair, tasks
from toolmarks.parsers import registry_artefacts as artefacts
from toolmarks.parsers.registry_artefacts import (
    READ_ERRORS,
    TIME_FILE_MODIFICATION,
    TIME_LAST_RUN,
    TIME_LAST_WRITTEN,
    Entry,
)

DATA_TYPE = "toolmarks:registry:trace"
HIVE_TYPES = ("SYSTEM", "SOFTWARE", "SAM", "SECURITY", "NTUSER", "USRCLASS", "AMCACHE")
MAX_VALUE_TEXT = 512  # characters of value data kept in a trace
_SIGNATURE = b"regf"
_HEADER_SIZE = 4096
_CONTROL_SET = re.compile(r"ControlSet(\d{3})", re.IGNORECASE)
_CONTROL_SET_PATH = re.compile(r"ControlSet\d{3}(?=\\|$)", re.IGNORECASE)
_SERVICE_PATH = re.compile(r"ControlSet(\d{3})\\Services\\([^\\]+)", re.IGNORECASE)
_EULA_PATH = re.compile(r"Software\\Sysinternals\\([^\\]+)", re.IGNORECASE)
_BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=")
_PROFILE_USER = re.compile(
    r"(?:^|[\\/:])(?:Users|Documents and Settings|ServiceProfiles)[\\/]([^\\/]+)[\\/]",
    re.IGNORECASE,
)
# The base block keeps only the last 31 characters of the file name, so the
# profile folder may be cut ("nts and Settings\joe\ntuser.dat").
_EMBEDDED_USER = re.compile(
    r"(?:Users|Settings|ServiceProfiles)\\([^\\]+)\\ntuser\.dat$", re.IGNORECASE
)
_NAME_TYPES = {
    "system": "SYSTEM",
    "software": "SOFTWARE",
    "sam": "SAM",
    "security": "SECURITY",
    "ntuser.dat": "NTUSER",
    "ntuser.man": "NTUSER",
    "default": "NTUSER",  # the .DEFAULT user's profile hive
    "usrclass.dat": "USRCLASS",
    "amcache.hve": "AMCACHE",
}
_AMCACHE_ROOT_KEYS = {
    "inventoryapplicationfile",
    "file",
    "programs",
    "inventoryapplication",
}
_NTUSER_ROOT_KEYS = {"control panel", "appevents", "environment", "console"}


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds on the work one hive may cost, whatever its content."""

    max_depth: int = 512  # Windows itself refuses keys deeper than 512 levels
    max_keys: int = 2_000_000
    max_subkeys_per_key: int = 500_000
    max_values_per_key: int = 500_000
    max_data_bytes: int = 1 << 20  # value data rendered as text for `data` regexes
    max_seconds: float | None = 600.0
    max_warnings: int = 100
    max_repair_bytes: int = 256 * 1024 * 1024  # a damaged hive is repaired in memory


DEFAULT_LIMITS = Limits()


@dataclasses.dataclass
class HiveInfo:
    """What the parser learnt about the hive, and what the parse cost."""

    hive_type: str | None = None
    user: str | None = None  # profile owner of NTUSER/USRCLASS hives
    embedded_name: str | None = None  # the file name kept in the base block
    root_key_name: str | None = None
    current_control_set: int | None = None
    control_sets: list[int] = dataclasses.field(default_factory=list)
    dirty: bool = False  # sequence numbers differ: transaction logs not applied
    repaired: bool = False  # read from a repaired copy (truncated or damaged hive)
    keys: int = 0
    values: int = 0
    complete: bool = False  # the whole hive was walked
    elapsed: float = 0.0  # seconds


@dataclasses.dataclass
class RegistryResult:
    traces: list[Trace]
    warnings: list[str]
    info: HiveInfo


def detect_hive_type(file_object: BinaryIO, file_name: str | None = None) -> str | None:
    """The hive type from the root keys, else from the file name; None if unknown."""
    header = _read_header(file_object)
    if isinstance(header, str):
        return None
    opened = _open(file_object)
    root = None if isinstance(opened, str) else opened[1]
    try:
        return _hive_type(root, file_name, _embedded_name(header))
    finally:
        if not isinstance(opened, str):
            _close(opened[0])


def parse_hive(
    file_object: BinaryIO,
    source: str,
    compiled: CompiledSet,
    *,
    hive_type: str | None = None,
    file_name: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> RegistryResult:
    """Traces of the indicators of `compiled` in one hive; never raises.

    `source` names the hive in traces and warnings ("<volume>:<path>"); the
    profile owner of a user hive is taken from it, from `file_name` or from
    the name kept in the hive. `hive_type` overrides detection.
    """
    started = time.perf_counter()
    deadline = started + limits.max_seconds if limits.max_seconds else None
    parser = _HiveParser(source, compiled, limits, deadline)
    try:
        parser.parse(file_object, hive_type, file_name)
        if parser.damage and not parser.repaired:
            parser = _reparse_repaired(parser, file_object, hive_type, file_name)
    except Exception as error:  # noqa: BLE001 - a parser must not stop a scan
        parser.warn(f"parsing stopped by an unexpected error: {error!r}")
    parser.info.elapsed = time.perf_counter() - started
    return RegistryResult(parser.traces(), parser.warnings, parser.info)


def _reparse_repaired(
    first: _HiveParser,
    file_object: BinaryIO,
    hive_type: str | None,
    file_name: str | None,
) -> _HiveParser:
    """The parse of a repaired copy when it reads more keys than the damaged hive.

    libregf drops every cell of a hive bin that holds one bad cell size, so a
    hive that opens may still lose keys the repair gets back.
    """
    second = _HiveParser(first.source, first.compiled, first.limits, first.deadline)
    second.parse(file_object, hive_type, file_name, repair=True)
    if second.info.keys <= first.info.keys:
        first.warn(f"{first.damage} read errors; a repaired copy read no more keys")
        return first
    first.warn(
        f"{first.damage} read errors; re-read from a repaired copy, which gave "
        f"{second.info.keys} keys instead of {first.info.keys}"
    )
    second.warnings[:0] = [w for w in first.warnings if w not in second.warnings]
    return second


def profile_user(*paths: str | None) -> str | None:
    """The user folder name in a profile path (\\Users\\<name>\\NTUSER.DAT …)."""
    for path in paths:
        if not path:
            continue
        found = _PROFILE_USER.search(path) or _EMBEDDED_USER.search(path)
        if found:
            return found.group(1)
    return None


def _read_header(file_object: BinaryIO) -> bytes | str:
    """The base block, or why there is none."""
    try:
        file_object.seek(0)
        header = file_object.read(_HEADER_SIZE)
    except (OSError, ValueError) as error:
        return f"cannot read the file: {error}"
    if len(header) < 0x70 or header[:4] != _SIGNATURE:
        return "not a Windows Registry hive (no 'regf' signature)"
    return header


def _open(file_object: BinaryIO) -> tuple[Any, Any] | str:
    """(pyregf file, root key), or what libregf said was wrong."""
    regf = pyregf.file()
    try:
        file_object.seek(0)
        regf.open_file_object(file_object)
        root = regf.get_root_key()
    except READ_ERRORS as error:
        _close(regf)
        return str(error)
    if root is None:
        _close(regf)
        return "the hive has no root key"
    return regf, root


def _close(regf: Any) -> None:
    try:
        regf.close()
    except READ_ERRORS:
        pass  # never opened


def _embedded_name(header: bytes) -> str | None:
    name = header[0x30:0x70].decode("utf-16-le", errors="replace").split("\x00")[0]
    return name.strip() or None


def _hive_type(root: Any, file_name: str | None, embedded: str | None) -> str | None:
    if root is not None:
        try:
            names = {key.name.lower() for key in root.sub_keys}
            if "root" in names:
                amcache_root = root.get_sub_key_by_name("Root")
                inner = {key.name.lower() for key in amcache_root.sub_keys}
                if inner & _AMCACHE_ROOT_KEYS:
                    return "AMCACHE"
            if "select" in names and any(n.startswith("controlset") for n in names):
                return "SYSTEM"
            if "policy" in names and names & {"rxact", "cache"}:
                return "SECURITY"
            if "sam" in names and root.get_sub_key_by_path("SAM\\Domains"):
                return "SAM"
            if "software" in names and names & _NTUSER_ROOT_KEYS:
                return "NTUSER"
            if "local settings" in names or (
                "clsid" in names and any(n.startswith(".") for n in names)
            ):
                return "USRCLASS"
            if "microsoft" in names and names & {"classes", "policies", "clients"}:
                return "SOFTWARE"
        except READ_ERRORS:
            pass
    for name in (file_name, embedded):
        if name:
            base = re.split(r"[\\/]", name)[-1].lower()
            if base in _NAME_TYPES:
                return _NAME_TYPES[base]
    return None


def prefilter_of(items: list[RegexIndicator]) -> re.Pattern[str] | None:
    """One regex that full-matches every key path some item may match, or None."""
    patterns = [item.main.pattern for item in items]
    if not patterns or any(_BACKREFERENCE.search(p) for p in patterns):
        return None  # group numbers would shift in an alternation
    try:
        return re.compile(
            "(?:" + "|".join(f"(?:{p})" for p in patterns) + ")", re.IGNORECASE
        )
    except re.error:  # global inline flags cannot be nested
        return None


class _HiveParser:
    """The state of one parse: where we are, what was found, what went wrong."""

    def __init__(
        self,
        source: str,
        compiled: CompiledSet,
        limits: Limits,
        deadline: float | None,
    ) -> None:
        self.source = source
        self.compiled = compiled
        self.limits = limits
        self.deadline = deadline  # time.perf_counter() value
        self.info = HiveInfo()
        self.warnings: list[str] = []
        self.damage = 0  # read errors of libregf on cells of this hive
        self.repaired = False  # read from a repaired copy
        self._dropped_warnings = 0
        self._traces: dict[tuple[Any, ...], Trace] = {}
        self._timed_out = False

    # --- bookkeeping ---------------------------------------------------------

    def warn(self, problem: str) -> None:
        if len(self.warnings) < self.limits.max_warnings:
            self.warnings.append(f"{self.source}: {problem}")
        else:
            self._dropped_warnings += 1

    def damaged(self, problem: str) -> None:
        """A read error: warned about, and counted to decide on a repair."""
        self.damage += 1
        self.warn(problem)

    def out_of_time(self) -> bool:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            if not self._timed_out:
                self._timed_out = True
                self.warn(
                    f"time limit of {self.limits.max_seconds} s reached; "
                    "the rest of the hive was not read"
                )
            return True
        return False

    def traces(self) -> list[Trace]:
        if self._dropped_warnings:
            self.warnings.append(
                f"{self.source}: {self._dropped_warnings} more warnings not shown"
            )
            self._dropped_warnings = 0
        return list(self._traces.values())

    def _base_attributes(
        self, key_path: str, value_name: str | None, value_data: str | None
    ) -> dict[str, Any]:
        if value_data is not None and len(value_data) > MAX_VALUE_TEXT:
            value_data = value_data[:MAX_VALUE_TEXT] + "…"
        return {
            "hive": self.info.hive_type,
            "hive_path": self.source,
            "key_path": key_path,
            "value_name": value_name,
            "value_data": value_data,
            "artefact": "key",
            "user": self.info.user,
        }

    def _add(
        self,
        merge_key: tuple[Any, ...],
        matches: list[Match],
        make: Any,
    ) -> None:
        """Adds matches to the trace of `merge_key`, making it on first use."""
        if not matches:
            return
        trace = self._traces.get(merge_key)
        if trace is None:
            trace = self._traces[merge_key] = make()
        for match in matches:
            if match not in trace.matches:
                trace.matches.append(match)

    # --- the parse -----------------------------------------------------------

    def parse(
        self,
        file_object: BinaryIO,
        hive_type: str | None,
        file_name: str | None,
        repair: bool = False,
    ) -> None:
        header = _read_header(file_object)
        if isinstance(header, str):
            self.warn(header)
            return
        self.info.embedded_name = _embedded_name(header)
        primary, secondary = struct.unpack_from("<II", header, 4)
        if primary != secondary:
            self.info.dirty = True
            self.warn(
                f"hive is dirty (sequence numbers {primary} and {secondary}); its "
                "transaction logs were not applied, so recent changes may be missing"
            )
        opened = None if repair else _open(file_object)
        if opened is None or isinstance(opened, str):
            if opened is not None:
                self.warn(f"damaged hive: {opened}")
            opened = self._open_repaired(file_object)
            if opened is None:
                return
        regf, root = opened
        try:
            self._parse_root(root, hive_type, file_name)
            self._deleted_keys(file_object, root)
        finally:
            _close(regf)

    def _deleted_keys(self, file_object: BinaryIO, root: Any) -> None:
        """Registry indicators on the key cells left in the hive's free space;
        a key that still exists at the same path is the walk's, not a deleted
        one."""
        items = self.compiled.registry.get(self.info.hive_type or "", [])
        if not items or self.out_of_time():
            return
        try:
            file_object.seek(0, io.SEEK_END)
            size = file_object.tell()
            if size > self.limits.max_repair_bytes:
                self.warn(f"{size} bytes: deleted keys not searched")
                return
            file_object.seek(0)
            data = file_object.read(size)
        except (OSError, ValueError) as error:
            self.warn(f"cannot read the hive for deleted keys: {error}")
            return
        prefilter = prefilter_of(items)
        for key in registry_deleted.deleted_keys(data):
            paths = self._match_paths(key.path)
            if prefilter is not None and not any(prefilter.fullmatch(p) for p in paths):
                continue
            hits = self._deleted_key_matches(key, paths)
            if hits and artefacts.subkey(root, key.path) is None:
                self._add(
                    ("deleted", key.path.lower(), key.offset),
                    hits,
                    lambda k=key: self._deleted_key_trace(k),
                )

    def _add_control_set(self, attributes: dict[str, Any], key_path: str) -> None:
        """The control set of a SYSTEM key path, and whether it is the current."""
        found = (
            _CONTROL_SET.match(key_path) if self.info.hive_type == "SYSTEM" else None
        )
        if found:
            number = int(found.group(1))
            attributes["control_set"] = number
            attributes["current_control_set"] = number == self.info.current_control_set

    def _match_paths(self, path: str) -> list[str]:
        """A key path, and first its CurrentControlSet spelling in a SYSTEM hive."""
        if self.info.hive_type == "SYSTEM":
            mapped = _CONTROL_SET_PATH.sub("CurrentControlSet", path, count=1)
            if mapped != path:
                return [mapped, path]
        return [path]

    def _deleted_key_matches(
        self, key: registry_deleted.DeletedKey, paths: list[str]
    ) -> list[Match]:
        hive = self.info.hive_type
        found = union(self.compiled.match_registry(hive, p) for p in paths)
        matches = [
            Match.of(
                ind, key.path, kind="registry", via="deleted key", matched="key_path"
            )
            for ind in found
        ]
        for name, text in key.values:
            for ind in union(
                self.compiled.match_registry(hive, p, name, text) for p in paths
            ):
                shown = text if ind.fields.get("data") else name
                matches.append(
                    Match.of(
                        ind,
                        shown or "",
                        kind="registry",
                        via="deleted key",
                        matched="data" if ind.fields.get("data") else "value",
                    )
                )
        return matches

    def _deleted_key_trace(self, key: registry_deleted.DeletedKey) -> Trace:
        extra = {
            "cell_offset": key.offset,
            "values": [f"{n} = {t}" for n, t in key.values],
            "note": "a key cell in the hive's free space: its path is rebuilt from "
            "its parent reference, whose cell may have been reused since",
        }
        when = artefacts.filetime(key.last_written)
        return self._path_trace(key.path, None, None, "deleted_key", extra, when)

    def _open_repaired(self, file_object: BinaryIO) -> tuple[Any, Any] | None:
        """libregf on a repaired copy of a hive it refused (truncated, damaged)."""
        try:
            file_object.seek(0, io.SEEK_END)
            size = file_object.tell()  # dfvfs file objects' seek returns None
            if size > self.limits.max_repair_bytes:
                self.warn(
                    f"{size} bytes is more than the {self.limits.max_repair_bytes} "
                    "a repair may copy; the hive was not read"
                )
                return None
            file_object.seek(0)
            # No reference is kept here, so the repair's copy replaces this one.
            repaired = registry_repair.repair(file_object.read(size))
        except (OSError, ValueError) as error:
            self.warn(f"cannot read the hive: {error}")
            return None
        if repaired is None:
            self.warn("the hive could not be repaired; nothing was read")
            return None
        data, notes = repaired
        opened = _open(io.BytesIO(data))
        if isinstance(opened, str):
            self.warn(f"the repaired hive cannot be read either: {opened}")
            return None
        self.repaired = self.info.repaired = True
        self.warn("read from a repaired copy: " + "; ".join(notes or ["no changes"]))
        return opened

    def _parse_root(self, root: Any, hive_type: str | None, file_name: str | None):
        info = self.info
        info.root_key_name = artefacts.key_name(root)
        if hive_type is not None and hive_type not in HIVE_TYPES:
            self.warn(f"hive type {hive_type!r} is not one of {', '.join(HIVE_TYPES)}")
            hive_type = None
        info.hive_type = hive_type or _hive_type(root, file_name, info.embedded_name)
        if info.hive_type in ("NTUSER", "USRCLASS"):
            info.user = profile_user(self.source, file_name, info.embedded_name)
        if info.hive_type == "SYSTEM":
            self._read_control_sets(root)
        elif info.hive_type is None:
            self.warn("unknown hive type: no indicators apply")

        # Artefacts first: they are few keys, and a walk cut short by a damaged
        # hive or a limit should not cost them.
        readers = {
            "SYSTEM": self._system_artefacts,
            "NTUSER": self._user_artefacts,
            "USRCLASS": self._user_artefacts,
            "AMCACHE": self._amcache_artefacts,
            "SOFTWARE": self._software_artefacts,
        }
        if info.hive_type in readers:
            readers[info.hive_type](root)
        self._walk(root)

    def _read_control_sets(self, root: Any) -> None:
        for key in artefacts.subkeys(
            root, "", self.limits.max_subkeys_per_key, self.damaged
        ):
            found = _CONTROL_SET.fullmatch(artefacts.key_name(key))
            if found:
                self.info.control_sets.append(int(found.group(1)))
        select = artefacts.subkey(root, "Select")
        try:
            current = select.get_value_by_name("Current") if select else None
            if current is not None:
                self.info.current_control_set = current.get_data_as_integer()
        except READ_ERRORS as error:
            self.damaged(f"cannot read Select\\Current: {error}")
        if self.info.current_control_set is None and self.info.control_sets:
            self.warn("no Select\\Current value: the current control set is unknown")

    def _control_sets(self, root: Any) -> Iterable[tuple[int, Any]]:
        """The control set keys, the current one first."""
        current = self.info.current_control_set
        numbers = sorted(self.info.control_sets, key=lambda n: (n != current, n))
        for number in numbers:
            key = artefacts.subkey(root, f"ControlSet{number:03d}")
            if key is not None:
                yield number, key

    # --- artefacts -----------------------------------------------------------

    def _system_artefacts(self, root: Any) -> None:
        limit = self.limits.max_values_per_key
        for number, cs_key in self._control_sets(root):
            cs_path = artefacts.key_name(cs_key)
            for relative in artefacts.SHIMCACHE_KEYS:
                found = artefacts.find(cs_key, cs_path, relative)
                if found is not None:
                    key, path = found
                    self._entries(artefacts.shimcache(key, path, number, self.damaged))
            for relative in artefacts.BAM_KEYS:
                found = artefacts.find(cs_key, cs_path, relative)
                if found is not None:
                    key, path = found
                    self._entries(artefacts.bam(key, path, number, self.damaged, limit))
            self._services(cs_key, cs_path)
            if self.out_of_time():
                return

    def _services(self, cs_key: Any, cs_path: str) -> None:
        """Filename indicators on each service's ImagePath."""
        found = artefacts.find(cs_key, cs_path, "Services")
        if found is None:
            return
        services, services_path = found
        limit = self.limits.max_subkeys_per_key
        for key in artefacts.subkeys(services, services_path, limit, self.damaged):
            key_path = f"{services_path}\\{artefacts.key_name(key)}"
            fields = artefacts.service_fields(key, key_path, self.damaged)
            image_path = fields["image_path"]
            if not image_path:
                continue
            matches = self._filename_matches(artefacts.command_candidates(image_path))
            if matches:
                self._add(
                    ("key", key_path.lower(), "imagepath"),
                    matches,
                    lambda k=key, p=key_path, f=fields: self._key_trace(
                        k, p, "ImagePath", f["image_path"], "service", f
                    ),
                )

    def _user_artefacts(self, root: Any) -> None:
        limit = self.limits.max_values_per_key
        hive_type = self.info.hive_type
        if hive_type == "NTUSER":
            found = artefacts.find(root, "", artefacts.USER_ASSIST_KEY)
            if found is not None:
                user_assist, base = found
                for guid_key in artefacts.subkeys(
                    user_assist, base, limit, self.damaged
                ):
                    path = f"{base}\\{artefacts.key_name(guid_key)}"
                    self._entries(
                        artefacts.userassist(guid_key, path, self.damaged, limit)
                    )
            found = artefacts.find(root, "", artefacts.RUN_MRU_KEY)
            if found is not None:
                self._entries(artefacts.runmru(*found, self.damaged, limit))
        found = artefacts.find(root, "", artefacts.MUICACHE_KEYS[hive_type])
        if found is not None:
            self._entries(artefacts.muicache(*found, self.damaged, limit))

    def _amcache_artefacts(self, root: Any) -> None:
        limit = self.limits.max_subkeys_per_key
        found = artefacts.find(root, "", "Root\\InventoryApplicationFile")
        if found is not None:
            self._entries(artefacts.amcache_inventory(*found, self.damaged, limit))
        found = artefacts.find(root, "", "Root\\File")
        if found is not None:
            self._entries(artefacts.amcache_file(*found, self.damaged, limit))

    def _software_artefacts(self, root: Any) -> None:
        found = artefacts.find(root, "", artefacts.TASK_CACHE_KEY)
        if found is None:
            return
        limit = self.limits.max_subkeys_per_key
        cached = artefacts.task_cache(
            *found, self.damaged, limit, self.limits.max_data_bytes, self.warn
        )
        for task in cached:
            self._cached_task(task)

    def _cached_task(self, task: artefacts.CachedTask) -> None:
        """A TaskCache task whose actions meet filename or commandline
        indicators: one trace per time DynamicInfo holds."""
        decoded = task.actions
        if decoded is None or not decoded.actions:
            return
        info = tasks.TaskInfo("task_cache", task.task_path or task.task_id)
        info.actions = decoded.actions
        found = tasks.task_matches(info, self.compiled)
        if not found:
            return
        # Registry evidence like the other artefacts; how it matched is `via`.
        matches = [
            dataclasses.replace(
                m, kind="registry", detail=tuple(sorted((*m.detail, ("via", m.kind))))
            )
            for _, m in found
        ]
        action = decoded.actions[min(number for number, _ in found)]
        dynamic = task.dynamic_info
        times = {
            "registration": artefacts.filetime(dynamic.registration if dynamic else 0),
            "last run": artefacts.filetime(dynamic.last_run if dynamic else 0),
            "last successful run": artefacts.filetime(
                dynamic.last_successful_run if dynamic else 0
            ),
        }
        extra = {
            "task_path": task.task_path,
            "task_id": task.task_id,
            "tree_path": task.tree_path,
            "command": action.command,
            "arguments": action.arguments,
            "working_directory": action.working_directory,
            "actions": [a.command_line for a in decoded.actions],
            "other_actions": decoded.other,
            "actions_version": decoded.version,
            "context": decoded.context,
            "registration_time_text": artefacts.iso(times["registration"]),
            "last_run_time_text": artefacts.iso(times["last run"]),
            "last_successful_run_time_text": artefacts.iso(
                times["last successful run"]
            ),
            "last_error": f"0x{dynamic.last_error:08x}" if dynamic else None,
            "matched_values": list(dict.fromkeys(m.value for m in matches)),
        }
        if task.tree_path is None:
            # Task Scheduler lists tasks from Tree: a task missing there is
            # one its listings do not show (removed, or hidden on purpose).
            extra["note"] = "no Tree key names this task's Id"
        moments = [
            (when, description, what)
            for (what, description) in (
                ("registration", tasks.DESC_REGISTRATION),
                ("last run", TIME_LAST_RUN),
            )
            if (when := times[what]) is not None
        ] or [(artefacts.key_time(task.key), TIME_LAST_WRITTEN, "key last written")]
        for when, description, what in moments:
            self._add(
                ("task_cache", task.key_path.lower(), what),
                matches,
                lambda w=when, d=description, t=what: self._task_trace(
                    task, action, extra, w, d, t
                ),
            )

    def _task_trace(
        self,
        task: artefacts.CachedTask,
        action: tasks.Action,
        extra: dict[str, Any],
        when: Any,
        description: str,
        what: str,
    ) -> Trace:
        attributes = self._base_attributes(
            task.key_path, "Actions", action.command_line
        )
        attributes.update(extra, artefact="task_cache", time_of=what)
        return Trace(
            data_type=DATA_TYPE,
            timestamp=when,
            timestamp_desc=description if when else NOT_A_TIME,
            source=self.source,
            matches=[],
            attributes=attributes,
        )

    def _filename_matches(self, candidates: list[str]) -> list[Match]:
        matches: list[Match] = []
        seen: set[str] = set()
        for candidate in candidates:
            for indicator in self.compiled.filenames.match(candidate):
                if indicator.id not in seen:
                    seen.add(indicator.id)
                    matches.append(
                        Match.of(indicator, candidate, kind="registry", via="filename")
                    )
        return matches

    def _entries(self, entries: list[Entry]) -> None:
        for entry in entries:
            matches = self._filename_matches(entry.paths)
            if entry.sha1:
                for indicator in self.compiled.match_hash("sha1", entry.sha1):
                    matches.append(
                        Match.of(indicator, entry.sha1, kind="registry", via="sha1")
                    )
            if not matches:
                continue
            merge_key = entry.merge_key or (
                entry.artefact,
                entry.key_path.lower(),
                entry.value_name,
                tuple(entry.paths),
            )
            existing = self._traces.get(merge_key)
            if existing is not None:
                # The same entry in another control set: one trace, both sets.
                sets = existing.attributes.get("control_sets")
                for number in entry.attributes.get("control_sets", ()):
                    if sets is not None and number not in sets:
                        sets.append(number)
            self._add(merge_key, matches, lambda e=entry: self._entry_trace(e))

    def _entry_trace(self, entry: Entry) -> Trace:
        attributes = self._base_attributes(
            entry.key_path, entry.value_name, entry.value_data
        )
        attributes["artefact"] = entry.artefact
        attributes.update(entry.attributes)
        if "control_set" in entry.attributes:
            attributes["current_control_set"] = (
                entry.attributes["control_set"] == self.info.current_control_set
            )
        return Trace(
            data_type=DATA_TYPE,
            timestamp=entry.timestamp,
            timestamp_desc=entry.timestamp_desc,
            source=self.source,
            matches=[],
            attributes=attributes,
        )

    def _key_trace(
        self,
        key: Any,
        key_path: str,
        value_name: str | None,
        value_data: str | None,
        artefact: str,
        extra: dict[str, Any] | None = None,
    ) -> Trace:
        when = artefacts.key_time(key)
        return self._path_trace(key_path, value_name, value_data, artefact, extra, when)

    def _path_trace(
        self,
        key_path: str,
        value_name: str | None,
        value_data: str | None,
        artefact: str,
        extra: dict[str, Any] | None,
        when: Any,
    ) -> Trace:
        attributes = self._base_attributes(key_path, value_name, value_data)
        attributes["artefact"] = artefact
        if extra:
            attributes.update(extra)
        self._add_control_set(attributes, key_path)
        return Trace(
            data_type=DATA_TYPE,
            timestamp=when,
            timestamp_desc=TIME_LAST_WRITTEN if when else NOT_A_TIME,
            source=self.source,
            matches=[],
            attributes=attributes,
        )

    # --- the walk: registry indicators on every key --------------------------

    def _walk(self, root: Any) -> None:
        limits = self.limits
        items = self.compiled.registry.get(self.info.hive_type or "", [])
        prefilter = prefilter_of(items)
        visited: set[int] = set()
        stack: list[tuple[Any, str, int]] = [(root, "", 0)]
        loops = 0
        cut = False
        while stack:
            if self.out_of_time():
                return
            key, path, depth = stack.pop()
            try:
                offset = key.offset
            except READ_ERRORS:
                offset = None
            if offset is not None:
                if offset in visited:
                    loops += 1
                    if loops <= 10:
                        self.warn(f"key loop: {path!r} is a key already seen; skipped")
                    continue
                visited.add(offset)
            self.info.keys += 1
            try:
                self.info.values += key.number_of_values
            except READ_ERRORS as error:
                self.damaged(f"cannot count the values of {path!r}: {error}")
            if items and path:
                match_paths = self._match_paths(path)
                if prefilter is None or any(
                    prefilter.fullmatch(p) for p in match_paths
                ):
                    self._match_key(key, path, match_paths, items)
            if depth >= limits.max_depth:
                try:
                    deeper = key.number_of_sub_keys
                except READ_ERRORS:
                    deeper = 0
                if deeper:
                    self.warn(
                        f"keys nested deeper than {limits.max_depth} levels below "
                        f"{path!r}; not read"
                    )
                continue
            children = []
            limit = limits.max_subkeys_per_key
            for child in artefacts.subkeys(key, path or "(root)", limit, self.damaged):
                try:
                    name = child.name or ""
                except READ_ERRORS as error:
                    self.damaged(f"cannot read a key name below {path!r}: {error}")
                    continue
                children.append((child, f"{path}\\{name}" if path else name, depth + 1))
            # Never hold more keys than may still be read: bounds the memory
            # a hostile subkey list can claim.
            budget = limits.max_keys - self.info.keys - len(stack)
            if len(children) > budget:
                children = children[: max(budget, 0)]
                if not cut:
                    cut = True
                    self.warn(
                        f"more than {limits.max_keys} keys; the rest was not read"
                    )
            stack.extend(reversed(children))
        if loops > 10:
            self.warn(f"{loops - 10} more key loops skipped")
        self.info.complete = not cut

    def _match_key(
        self,
        key: Any,
        path: str,
        match_paths: list[str],
        items: list[RegexIndicator],
    ) -> None:
        """Registry indicators on one key, its value names and its value data."""
        candidates = [
            item for item in items if any(item.main.fullmatch(p) for p in match_paths)
        ]
        if not candidates:
            return
        hive = self.info.hive_type
        artefact, extra = self._classify(key, path)
        key_hits = union(self.compiled.match_registry(hive, p) for p in match_paths)
        if key_hits:
            matches = [
                Match.of(ind, path, kind="registry", via="key", matched="key_path")
                for ind in key_hits
            ]
            self._add(
                ("key", path.lower(), None),
                matches,
                lambda: self._key_trace(key, path, None, None, artefact, extra),
            )
        if not any(item.value is not None for item in candidates):
            return
        wants_data = any(item.data is not None for item in candidates)
        by_id = {item.indicator.id: item for item in candidates}
        limit = self.limits.max_values_per_key
        for value in artefacts.values(key, path, limit, self.damaged):
            name = artefacts.value_name(value)
            if not any(
                item.value is not None and item.value.fullmatch(name)
                for item in candidates
            ):
                continue
            texts: list[str | None] = [None]
            if wants_data:
                rendered = artefacts.value_texts(value, self.limits.max_data_bytes)
                texts = list(rendered) or [None]
            matches = []
            for indicator in union(
                self.compiled.match_registry(hive, p, name, t)
                for p in match_paths
                for t in texts
            ):
                data_regex = by_id[indicator.id].data
                if data_regex is None:
                    matches.append(
                        Match.of(
                            indicator, name, kind="registry", via="key", matched="value"
                        )
                    )
                    continue
                shown = next(
                    (t for t in texts if t is not None and data_regex.search(t)), ""
                )
                matches.append(
                    Match.of(
                        indicator, shown, kind="registry", via="key", matched="data"
                    )
                )
            if matches:
                value_artefact = artefact
                if artefact == "key" and _EULA_PATH.fullmatch(path):
                    value_artefact = "eula" if name == "EulaAccepted" else "key"
                data_text = texts[0]
                if data_text is None:
                    shown_texts = artefacts.value_texts(value, MAX_VALUE_TEXT)
                    data_text = shown_texts[0] if shown_texts else None
                self._add(
                    ("key", path.lower(), name.lower()),
                    matches,
                    lambda n=name, d=data_text, a=value_artefact: self._key_trace(
                        key, path, n, d, a, extra
                    ),
                )

    def _classify(self, key: Any, path: str) -> tuple[str, dict[str, Any] | None]:
        """The artefact a matched key belongs to, with its own attributes."""
        if self.info.hive_type == "SYSTEM":
            found = _SERVICE_PATH.match(path)
            if found and found.end() == len(path):
                return "service", artefacts.service_fields(key, path, self.damaged)
            if found:  # a subkey of a service (Parameters, Enum …)
                return "service", {"service_name": found.group(2)}
        if self.info.hive_type == "NTUSER":
            found = _EULA_PATH.match(path)
            if found:
                return "key", {"sysinternals_tool": found.group(1)}
        return "key", None


def union(groups: Iterable[list[Indicator]]) -> list[Indicator]:
    out: list[Indicator] = []
    seen: set[str] = set()
    for group in groups:
        for indicator in group:
            if indicator.id not in seen:
                seen.add(indicator.id)
                out.append(indicator)
    return out


# Hives by file name. DEFAULT is too common a name to take anywhere: only the
# .DEFAULT user's hive in a config folder (or its RegBack copy) is one.
_HIVE_PATH = re.compile(
    r"(^|/)(system|software|sam|security|ntuser\.dat|ntuser\.man|usrclass\.dat"
    r"|amcache\.hve)$|(^|/)(config|regback)/default$",
    re.IGNORECASE,
)

manager.register(
    manager.ParserDefinition(
        name="registry",
        data_type=DATA_TYPE,
        description="Windows Registry hives: keys, values and execution artefacts "
        "named by indicators, deleted keys too",
        times={
            "file_modification_time": TIME_FILE_MODIFICATION,
            "last_run_time": TIME_LAST_RUN,
            "last_written_time": TIME_LAST_WRITTEN,
            "registration_time": tasks.DESC_REGISTRATION,
        },
        report_fields=(
            "artefact",
            "key_path",
            "value_name",
            "value_data",
            "user",
            "task_path",
            "cell_offset",
            "note",
        ),
        indicator_sections=("registry", "filenames", "hashes", "commandline"),
        paths=_HIVE_PATH,
        signatures=((0, _SIGNATURE),),
        parse=lambda stream, source, compiled, name: parse_hive(
            stream, source, compiled, file_name=name
        ),
    )
)
