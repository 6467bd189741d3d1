"""Tests of the registry detection core against real hives and planted keys.

The facts asserted come from ../shared/test_data/real/MANIFEST.md or are read
independently with python-registry (the `Registry` module), never from this
parser's output. Planted keys are written with hivexsh into copies of real
hives under tmp_path. Missing test data or tools fail the tests; nothing is
skipped.
"""

from __future__ import annotations

import codecs
import datetime
import functools
import io
import lzma
import random
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pyregf
import pytest
from Registry import Registry

from toolmarks.events import Trace
from toolmarks.indicators.compiler import CompiledSet
from toolmarks.indicators.loader import load
from toolmarks.parsers.registry import DATA_TYPE as DATA_TYPE_REGISTRY
from toolmarks.parsers.registry import (
    HiveInfo,
    Limits,
    RegistryResult,
    detect_hive_type,
    parse_hive,
    profile_user,
)

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ROOT / ".." / "shared" / "test_data" / "real" / "registry"
INDICATORS = ROOT / "test_data" / "indicators"
# The seed tools whose registry-related indicators these tests rely on.
SEED_TOOLS = {"sdelete", "dbgview", "wce"}
PROBE = INDICATORS / "registry_probe.yaml"
PROBE_ALL = INDICATORS / "registry_probe_all.yaml"
# Generous: the largest hive here takes about a second; the bound catches hangs.
TIME_LIMIT = 30.0
SHIMCACHE_KEY = "ControlSet001\\Control\\Session Manager\\AppCompatCache"
USER_ASSIST = "Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\UserAssist"
SYSINTERNALS = "C:\\Users\\tony\\Downloads\\SysinternalsSuite\\"
EXTRACTED = (
    "C:\\Users\\tony\\AppData\\Local\\Temp\\SysinternalsSuite\\Zip\\"
    "SysinternalsSuite.zip\\extracted_SysinternalsSuite.zip\\"
)


# --- data and indicator sets -------------------------------------------------


def _real(relative: str) -> Path:
    path = REGISTRY / relative
    if not path.is_file():
        pytest.fail(f"real test data missing: {path}")
    return path


@functools.cache
def _hive_bytes(relative: str) -> bytes:
    """A real hive's bytes; the regipy ones are xz-compressed as published."""
    path = _real(relative)
    if path.suffix == ".xz":
        with lzma.open(path) as stream:
            return stream.read()
    return path.read_bytes()


def _hive_file(relative: str, tmp_path: Path, name: str) -> Path:
    """A writable copy of a real hive in tmp_path, for hivexsh to plant keys in."""
    target = tmp_path / name
    target.write_bytes(_hive_bytes(relative))
    return target


def _parse(
    data: bytes,
    compiled: CompiledSet,
    source: str = "test:/hive",
    **kwargs: object,
) -> RegistryResult:
    started = time.perf_counter()
    result = parse_hive(io.BytesIO(data), source, compiled, **kwargs)
    assert time.perf_counter() - started < TIME_LIMIT
    return result


def _seed_ready(compiled: CompiledSet) -> bool:
    """Whether a set has the sdelete, dbgview and wce indicators the tests need."""

    def tools(indicators: list) -> set[str]:
        return {ind.tool_id for ind in indicators}

    def registry(hive: str, key: str, value: str | None = None) -> set[str]:
        hits = set()
        for data in ("1", "0x00000001", "C:\\Temp\\wce.exe -S", "WCESERVICE"):
            hits |= tools(compiled.match_registry(hive, key, value, data))
        return hits | tools(compiled.match_registry(hive, key))

    names = compiled.filenames.match
    return (
        "sdelete" in tools(names(SYSINTERNALS + "sdelete.exe"))
        and "sdelete" in tools(names(SYSINTERNALS + "sdelete64.exe"))
        and "dbgview" in tools(names(SYSINTERNALS + "dbgview.exe"))
        and "sdelete"
        in registry("NTUSER", "Software\\Sysinternals\\SDelete", "EulaAccepted")
        and "dbgview"
        in registry("NTUSER", "Software\\Sysinternals\\DbgView", "EulaAccepted")
        and "wce"
        in registry("SYSTEM", "CurrentControlSet\\Services\\WCESERVICE")
        | registry("SYSTEM", "CurrentControlSet\\Services\\WCESERVICE", "ImagePath")
        | tools(names("C:\\Temp\\wce.exe"))
    )


@pytest.fixture(scope="session")
def seed() -> CompiledSet:
    """The shipped indicator set, which must know sdelete, dbgview and wce."""
    compiled = CompiledSet(load())
    assert _seed_ready(compiled), (
        "the shipped sdelete/dbgview/wce indicators these tests rely on are missing"
    )
    return compiled


@pytest.fixture(scope="session")
def probe() -> CompiledSet:
    return CompiledSet(load([PROBE], shipped=False))


@pytest.fixture(scope="session")
def probe_all() -> CompiledSet:
    return CompiledSet(load([PROBE_ALL], shipped=False))


@pytest.fixture(scope="session")
def hivexsh() -> str:
    path = shutil.which("hivexsh")
    if path is None:
        pytest.fail("hivexsh (Debian libhivex-bin) is needed to plant test keys")
    return path


def _plant(hivexsh: str, hive: Path, commands: list[str]) -> bytes:
    """Runs hivexsh commands on a hive copy, commits, and returns its bytes."""
    script = hive.with_suffix(".hivexsh")
    script.write_text("\n".join([*commands, "commit", ""]), encoding="ascii")
    done = subprocess.run(
        [hivexsh, "-w", "-f", str(script), str(hive)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return hive.read_bytes()


# --- helpers over results ----------------------------------------------------


def _filetime(trace: Trace) -> int:
    assert trace.timestamp is not None
    return trace.timestamp.timestamp


def _filetime_of(iso: str) -> int:
    """A MANIFEST time (UTC, ISO 8601 with Z) as FILETIME, 100 ns since 1601."""
    moment = datetime.datetime.fromisoformat(iso)
    epoch = datetime.datetime(1601, 1, 1, tzinfo=datetime.UTC)
    delta = moment - epoch
    return (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def _same_time(trace: Trace, iso: str) -> bool:
    """Equal to the MANIFEST time at its precision (it rounds to microseconds)."""
    if "." in iso:
        return abs(_filetime(trace) - _filetime_of(iso)) <= 10
    return _filetime(trace) // 10_000_000 == _filetime_of(iso) // 10_000_000


def _registry_time(timestamp: datetime.datetime) -> int:
    """python-registry's key time (naive UTC datetime) as FILETIME, to 1 µs."""
    return _filetime_of(timestamp.isoformat() + "Z")


def _tools(trace: Trace) -> set[str]:
    return {match.tool for match in trace.matches}


def _by(result: RegistryResult, **attributes: object) -> list[Trace]:
    return [
        trace
        for trace in result.traces
        if all(trace.attributes.get(k) == v for k, v in attributes.items())
    ]


def _only(traces: list[Trace]) -> Trace:
    assert len(traces) == 1, [t.attributes for t in traces]
    return traces[0]


def _check_common(result: RegistryResult, source: str) -> None:
    """What every trace of every hive carries."""
    for trace in result.traces:
        assert trace.data_type == DATA_TYPE_REGISTRY
        assert trace.source == source
        assert trace.matches
        for key in (
            "hive",
            "hive_path",
            "key_path",
            "value_name",
            "value_data",
            "artefact",
            "user",
        ):
            assert key in trace.attributes
        assert trace.attributes["hive"] == result.info.hive_type
        assert trace.attributes["hive_path"] == source
        for match in trace.matches:
            assert match.kind == "registry"
            assert dict(match.detail)["via"] in ("filename", "sha1", "key")
        data = trace.attributes["value_data"]
        assert data is None or len(data) <= 513


# --- hive types and owners ---------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "hive_type"),
    [
        ("regipy/SYSTEM_WIN_10_1709.xz", "SYSTEM"),
        ("regipy/SYSTEM.xz", "SYSTEM"),
        ("regipy/NTUSER_with_winscp.DAT.xz", "NTUSER"),
        ("plaso/NTUSER.DAT", "NTUSER"),
        ("plaso/NTUSER-WIN7.DAT", "NTUSER"),
        ("plaso/NTUSER-CCLEANER.DAT", "NTUSER"),
        ("plaso/SAM", "SAM"),
        ("plaso/win10-Amcache.hve", "AMCACHE"),
        ("aptsimulator/Amcache.hve", "AMCACHE"),
    ],
)
def test_detect_hive_type_from_content(relative: str, hive_type: str) -> None:
    # A misleading file name must not win over the root keys.
    stream = io.BytesIO(_hive_bytes(relative))
    assert detect_hive_type(stream) == hive_type
    assert detect_hive_type(stream, file_name="SOFTWARE") == hive_type


def test_detect_hive_type_falls_back_to_names(tmp_path: Path, hivexsh: str) -> None:
    # A SAM copy whose only root key is unknown: the content says nothing.
    hive = _hive_file("plaso/SAM", tmp_path, "SAM")
    data = _plant(hivexsh, hive, ["cd SAM", "del", "add Unknown"])
    assert detect_hive_type(io.BytesIO(data), file_name="UsrClass.dat") == "USRCLASS"
    # Without a file name: the name kept in the base block (\SystemRoot\...\SAM).
    assert detect_hive_type(io.BytesIO(data)) == "SAM"


@pytest.mark.parametrize(
    ("root_keys", "hive_type"),
    [
        (["Policy", "RXACT", "Cache"], "SECURITY"),
        (["Microsoft", "Classes", "Policies", "Clients"], "SOFTWARE"),
        (["Local Settings", "CLSID", ".txt"], "USRCLASS"),
    ],
)
def test_detect_hive_type_of_planted_roots(
    tmp_path: Path, hivexsh: str, root_keys: list[str], hive_type: str
) -> None:
    # No real SECURITY, SOFTWARE or UsrClass hive is at hand: a SAM copy gets
    # their root keys instead of its own.
    hive = _hive_file("plaso/SAM", tmp_path, "hive")
    data = _plant(hivexsh, hive, ["cd SAM", "del", *[f"add {k}" for k in root_keys]])
    assert detect_hive_type(io.BytesIO(data), file_name="SAM") == hive_type


def test_detect_hive_type_of_non_hives() -> None:
    assert detect_hive_type(io.BytesIO(b"")) is None
    assert detect_hive_type(io.BytesIO(b"regf" + bytes(100))) is None
    evtx = REGISTRY.parent / "evtx" / "plaso" / "System.evtx"
    assert detect_hive_type(io.BytesIO(evtx.read_bytes()), file_name="SYSTEM") is None


def test_profile_user() -> None:
    assert profile_user("p1:/Users/tony/NTUSER.DAT") == "tony"
    assert profile_user("p1:\\Documents and Settings\\joe\\NTUSER.DAT") == "joe"
    assert (
        profile_user("/Users/ann/AppData/Local/Microsoft/Windows/UsrClass.dat") == "ann"
    )
    assert profile_user(None, "nts and Settings\\joe\\ntuser.dat") == "joe"
    assert profile_user("p1:/Windows/System32/config/SYSTEM") is None


# --- SYSTEM: ShimCache, BAM, services ---------------------------------------


def test_system_win10_shimcache_sysinternals(seed: CompiledSet) -> None:
    source = "p1:/Windows/System32/config/SYSTEM"
    result = _parse(_hive_bytes("regipy/SYSTEM_WIN_10_1709.xz"), seed, source)
    _check_common(result, source)
    info = result.info
    assert isinstance(info, HiveInfo)
    assert (info.hive_type, info.keys, info.values) == ("SYSTEM", 43211, 90307)
    assert info.current_control_set == 1 and info.control_sets == [1]
    assert info.complete and not info.repaired and info.elapsed > 0
    assert info.root_key_name == "ROOT" and info.user is None

    # MANIFEST: AppCompatCache entries (path, last modification time).
    expected = {
        SYSINTERNALS + "sdelete.exe": ("sdelete", "2018-11-15T15:33:40.889690Z"),
        SYSINTERNALS + "sdelete64.exe": ("sdelete", "2018-11-15T15:33:41.323646Z"),
        SYSINTERNALS + "dbgview.exe": ("dbgview", "2019-04-23T18:31:50Z"),
    }
    shimcache = _by(result, artefact="shimcache")
    for path, (tool, when) in expected.items():
        trace = _only([t for t in shimcache if t.attributes["program_path"] == path])
        assert _tools(trace) == {tool}
        assert _same_time(trace, when)
        assert trace.timestamp_desc == "File Last Modification Time"
        assert trace.attributes["key_path"] == SHIMCACHE_KEY
        assert trace.attributes["value_name"] == "AppCompatCache"
        assert trace.attributes["control_set"] == 1
        assert trace.attributes["current_control_set"] is True
        match = _only(trace.matches)
        assert match.value == path and dict(match.detail)["via"] == "filename"
    # MANIFEST: Dbgview.exe also under the extracted SysinternalsSuite.zip.
    extracted = _only(
        [
            t
            for t in shimcache
            if t.attributes["program_path"] == EXTRACTED + "Dbgview.exe"
        ]
    )
    assert _tools(extracted) == {"dbgview"}
    # Only those tools are in this hive (procdump is not a seed tool).
    assert {tool for t in result.traces for tool in _tools(t)} == {"sdelete", "dbgview"}
    assert len(result.traces) == 4


def test_system_win10_shimcache_entry_count(probe_all: CompiledSet) -> None:
    result = _parse(_hive_bytes("regipy/SYSTEM_WIN_10_1709.xz"), probe_all)
    shimcache = _by(result, artefact="shimcache")
    paths = [t.attributes["program_path"] for t in shimcache]
    # MANIFEST: 81 entries under Downloads\SysinternalsSuite\, 74 under the
    # extracted zip; regipy lists 868 distinct entries of the 1024 stored.
    assert sum(p.lower().startswith(SYSINTERNALS.lower()) for p in paths) == 81
    assert sum(p.lower().startswith(EXTRACTED.lower()) for p in paths) == 74
    assert len({(p.lower(), _filetime(t)) for p, t in zip(paths, shimcache)}) == len(
        shimcache
    )
    assert 868 <= len(shimcache) <= 1024


def test_system_win10_bam(probe: CompiledSet) -> None:
    result = _parse(_hive_bytes("regipy/SYSTEM_WIN_10_1709.xz"), probe)
    reg = Registry.Registry(io.BytesIO(_hive_bytes("regipy/SYSTEM_WIN_10_1709.xz")))
    name = "\\Device\\HarddiskVolume2\\Windows\\System32\\dwm.exe"
    bam = _by(result, artefact="bam")
    for key_path in (
        "ControlSet001\\Services\\bam\\State\\UserSettings\\S-1-5-90-0-1",
        "ControlSet001\\Services\\bam\\UserSettings\\S-1-5-90-0-1",
    ):
        raw = reg.open(key_path).value(name).raw_data()
        trace = _only([t for t in bam if t.attributes["key_path"] == key_path])
        assert trace.attributes["value_name"] == name
        assert trace.attributes["user_sid"] == "S-1-5-90-0-1"
        assert trace.attributes["user"] == "S-1-5-90-0-1"
        assert _filetime(trace) == struct.unpack_from("<Q", raw)[0]
        assert trace.timestamp_desc == "Last Time Executed"
        assert {m.indicator for m in trace.matches} == {"registry_probe.filename.dwm"}


def test_system_win7_services_and_shimcache(probe: CompiledSet, seed: CompiledSet):
    data = _hive_bytes("regipy/SYSTEM.xz")
    result = _parse(data, probe)
    _check_common(result, "test:/hive")
    info = result.info
    assert (info.keys, info.values) == (30756, 73456)
    assert info.current_control_set == 1 and info.control_sets == [1, 2]

    # MANIFEST: service PSEXESVC in both control sets, with their times.
    services = [t for t in _by(result, artefact="service")]
    display = {
        t.attributes["key_path"]: t
        for t in services
        if t.attributes["value_name"] == "DisplayName"
    }
    assert set(display) == {
        "ControlSet001\\services\\PSEXESVC",
        "ControlSet002\\services\\PSEXESVC",
    }
    first = display["ControlSet001\\services\\PSEXESVC"]
    second = display["ControlSet002\\services\\PSEXESVC"]
    assert _same_time(first, "2012-04-04T18:52:11.178525Z")
    assert _same_time(second, "2012-04-03T21:19:53.137354Z")
    assert first.timestamp_desc == "Registry Last Written Time"
    assert first.attributes["current_control_set"] is True
    assert second.attributes["current_control_set"] is False
    for trace in (first, second):
        assert trace.attributes["service_name"] == "PSEXESVC"
        assert trace.attributes["display_name"] == "PsExec"
        assert trace.attributes["image_path"] == "%SystemRoot%\\PSEXESVC.EXE"
        assert trace.attributes["value_data"] == "PsExec"
        match = _only(trace.matches)
        assert match.indicator == "registry_probe.registry.psexesvc"
        assert dict(match.detail) == {"via": "key", "matched": "data"}
        assert match.value == "PsExec"
    # The same services again through the filename indicator on ImagePath.
    image = [t for t in services if t.attributes["value_name"] == "ImagePath"]
    assert {t.attributes["key_path"] for t in image} == set(display)
    for trace in image:
        assert {m.indicator for m in trace.matches} == {
            "registry_probe.filename.psexesvc"
        }

    # MANIFEST: AppCompatCache (Windows 7 format, insertion flags).
    shimcache = _by(result, artefact="shimcache")
    psexesvc = [
        t for t in shimcache if t.attributes["program_path"].endswith("PSEXESVC.EXE")
    ]
    newest = max(psexesvc, key=_filetime)
    assert newest.attributes["program_path"] == "\\??\\C:\\Windows\\PSEXESVC.EXE"
    assert _same_time(newest, "2012-04-04T01:46:37.932964Z")
    assert newest.attributes["insertion_flags"] & 0x2  # executed
    # The same entries are in ControlSet002: one trace each, both sets named.
    assert all(t.attributes["control_sets"] == [1, 2] for t in shimcache)
    temp_a = [
        t for t in shimcache if t.attributes["program_path"].endswith("\\TEMP\\a.exe")
    ]
    assert len(temp_a) * 2 == 94  # MANIFEST counts the entries of both sets
    assert _same_time(min(temp_a, key=_filetime), "2012-04-03T23:54:46.441510Z")
    assert _same_time(max(temp_a, key=_filetime), "2012-04-04T00:44:11.416792Z")
    setup = _only(
        [t for t in shimcache if t.attributes["program_path"].endswith("Setup.exe")]
    )
    assert setup.attributes["program_path"] == (
        "\\??\\C:\\Users\\rsydow\\AppData\\Local\\Temp\\~bcwipe5.TMP\\Setup.exe"
    )
    assert setup.attributes["insertion_flags"] & 0x2

    # No seed tool left traces in this hive.
    seeded = _parse(data, seed)
    assert not [t for t in seeded.traces if _tools(t) & SEED_TOOLS]


# --- NTUSER: EULA keys, UserAssist, RunMRU, MUICache -------------------------


def test_ntuser_dbgview_eula(seed: CompiledSet) -> None:
    data = _hive_bytes("regipy/NTUSER_with_winscp.DAT.xz")
    source = "p1:/Users/tony/NTUSER.DAT"
    result = _parse(data, seed, source)
    _check_common(result, source)
    assert (result.info.keys, result.info.values) == (5328, 12014)
    assert result.info.user == "tony" and not result.info.repaired

    reg = Registry.Registry(io.BytesIO(data))
    eula = [t for t in result.traces if "dbgview" in _tools(t)]
    trace = _only(eula)
    assert trace.attributes["key_path"] == "SOFTWARE\\Sysinternals\\DbgView"
    assert trace.attributes["value_name"] == "EulaAccepted"
    assert trace.attributes["value_data"] == "1"
    assert trace.attributes["artefact"] == "eula"
    assert trace.attributes["user"] == "tony"
    assert trace.timestamp_desc == "Registry Last Written Time"
    key_time = reg.open("SOFTWARE\\Sysinternals\\DbgView").timestamp()
    assert abs(_filetime(trace) - _registry_time(key_time)) <= 10
    # MANIFEST: all EULA keys were written within one second.
    assert _filetime_of("2022-02-14T13:46:55.407242Z") <= _filetime(trace)
    assert _filetime(trace) <= _filetime_of("2022-02-14T13:46:55.569667Z")
    match = _only(trace.matches)
    assert dict(match.detail)["via"] == "key"

    # PsExec and ProcDump EULA keys exist but are not seed tools; no SDelete key.
    assert reg.open("SOFTWARE\\Sysinternals\\PsExec").value("EulaAccepted").value() == 1
    assert reg.open("SOFTWARE\\Sysinternals\\ProcDump").value("EulaAccepted").value()
    for trace in result.traces:
        path = trace.attributes["key_path"].lower()
        assert "psexec" not in path and "procdump" not in path
        assert "sdelete" not in _tools(trace)

    # The owner also comes from the name kept in the hive when the path has none.
    assert _parse(data, seed, "carved-42").info.user == "tony"


def test_ntuser_userassist_and_runmru(probe: CompiledSet) -> None:
    data = _hive_bytes("regipy/NTUSER_with_winscp.DAT.xz")
    result = _parse(data, probe, "p1:/Users/tony/NTUSER.DAT")
    reg = Registry.Registry(io.BytesIO(data))

    # UserAssist: {F38BF404-...}\regedit.exe (ROT13), v5 entry read by hand.
    count_path = USER_ASSIST + "\\{CEBFF5CD-ACE2-4F4F-9178-9926F41749EA}\\Count"
    raw_name = codecs.encode(
        "{F38BF404-1D43-42F2-9305-67DE0B28FC23}\\regedit.exe", "rot13"
    )
    raw = reg.open(count_path).value(raw_name).raw_data()
    trace = _only(
        [
            t
            for t in _by(result, artefact="userassist")
            if t.attributes["program_path"].endswith("regedit.exe")
        ]
    )
    # The key path as spelt in the hive (this one says SOFTWARE), without root.
    real_path = reg.open(count_path).path().split("\\", 1)[1]
    assert real_path.startswith("SOFTWARE\\")
    assert trace.attributes["key_path"] == real_path
    assert trace.attributes["value_name"] == raw_name
    assert trace.attributes["run_count"] == struct.unpack_from("<I", raw, 4)[0] == 5
    assert _filetime(trace) == struct.unpack_from("<Q", raw, 60)[0]
    assert trace.timestamp_desc == "Last Time Executed"
    assert trace.attributes["user"] == "tony"

    # RunMRU: c = "regedit\1"; MRUList = "ladhcimrqponkjegfb".
    run_mru = reg.open("Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\RunMRU")
    order = run_mru.value("MRUList").value()
    trace = _only(_by(result, artefact="runmru"))
    assert trace.attributes["value_name"] == "c"
    assert trace.attributes["value_data"] == run_mru.value("c").value() == "regedit\\1"
    assert trace.attributes["command"] == "regedit"
    assert trace.attributes["mru_position"] == order.index("c")
    assert abs(_filetime(trace) - _registry_time(run_mru.timestamp())) <= 10
    assert _only(trace.matches).value == "\\regedit.exe"


def test_ntuser_win7_counts(probe_all: CompiledSet, probe: CompiledSet) -> None:
    data = _hive_bytes("plaso/NTUSER-WIN7.DAT")
    result = _parse(data, probe_all, "p1:/Users/nfury/NTUSER.DAT")
    assert (result.info.keys, result.info.values) == (2288, 5470)
    assert result.info.user == "nfury"
    # MANIFEST: UserAssist Count values 62 and 30; plaso's decoder leaves out
    # the UEME_CTLSESSION value of each.
    reg = Registry.Registry(io.BytesIO(data))
    for guid, count in (
        ("{CEBFF5CD-ACE2-4F4F-9178-9926F41749EA}", 62),
        ("{F4E57C4B-2036-45F0-A9AB-443BCFE33D9F}", 30),
    ):
        count_path = f"{USER_ASSIST}\\{guid}\\Count"
        names = [v.name() for v in reg.open(count_path).values()]
        assert (
            len(names) == count and codecs.encode("UEME_CTLSESSION", "rot13") in names
        )
        assert len(_by(result, artefact="userassist", key_path=count_path)) == count - 1
    # MANIFEST: RunMRU a = \\controller\WebDavShare\1.
    trace = _only(_by(_parse(data, probe), artefact="runmru"))
    assert trace.attributes["command"] == "\\\\controller\\WebDavShare"
    assert _only(trace.matches).indicator == "registry_probe.filename.webdav"


def test_ntuser_xp_muicache_and_owner(probe: CompiledSet) -> None:
    data = _hive_bytes("plaso/NTUSER.DAT")
    # No user folder in the source: the owner comes from the embedded name.
    result = _parse(data, probe, "carved-7")
    assert (result.info.keys, result.info.values) == (1127, 5602)
    assert result.info.user == "joe"
    reg = Registry.Registry(io.BytesIO(data))
    mui = reg.open("Software\\Microsoft\\Windows\\ShellNoRoam\\MUICache")
    name = next(v.name() for v in mui.values() if v.name().endswith("bcwipe3.exe"))
    trace = _only(_by(result, artefact="muicache"))
    assert trace.attributes["value_name"] == name
    assert trace.attributes["program_path"] == name
    assert trace.attributes["value_data"] == mui.value(name).value()
    assert trace.attributes["user"] == "joe"
    assert abs(_filetime(trace) - _registry_time(mui.timestamp())) <= 10


def test_ntuser_xp_userassist_v3(probe_all: CompiledSet) -> None:
    result = _parse(_hive_bytes("plaso/NTUSER.DAT"), probe_all)
    count_path = USER_ASSIST + "\\{75048700-EF1F-11D0-9888-006097DEACF9}\\Count"
    traces = _by(result, artefact="userassist", key_path=count_path)
    # MANIFEST: 15 Count values, one of them UEME_CTLSESSION.
    assert len(traces) == 14
    assert all(t.attributes["program_path"].startswith("UEME_") for t in traces)


def test_ntuser_ccleaner_value_data(probe: CompiledSet) -> None:
    result = _parse(_hive_bytes("plaso/NTUSER-CCLEANER.DAT"), probe)
    assert (result.info.keys, result.info.values) == (1203, 2373)
    trace = _only(_by(result, artefact="key"))
    assert trace.attributes["key_path"] == "Software\\Piriform\\CCleaner"
    assert trace.attributes["value_name"] == "(App)Delete Index.dat files"
    assert trace.attributes["value_data"] == "True"
    assert trace.attributes["artefact"] == "key"
    assert _same_time(trace, "2013-07-13T14:03:26.861688Z")


# --- SAM and Amcache ----------------------------------------------------------


def test_sam(probe: CompiledSet, seed: CompiledSet) -> None:
    data = _hive_bytes("plaso/SAM")
    result = _parse(data, probe)
    assert result.info.hive_type == "SAM"
    assert (result.info.keys, result.info.values) == (76, 84)
    trace = _only(result.traces)
    assert trace.attributes["key_path"] == (
        "SAM\\Domains\\Account\\Users\\Names\\gold_administrator"
    )
    assert trace.attributes["value_name"] is None
    assert dict(_only(trace.matches).detail) == {"via": "key", "matched": "key_path"}
    assert _parse(data, seed).traces == []


def test_amcache_aptsimulator(probe: CompiledSet, seed: CompiledSet) -> None:
    data = _hive_bytes("aptsimulator/Amcache.hve")
    source = "p1:/Windows/AppCompat/Programs/Amcache.hve"
    result = _parse(data, probe, source)
    _check_common(result, source)
    assert (result.info.keys, result.info.values) == (470, 10942)
    trace = _only(
        [t for t in result.traces if "sysmon" in t.attributes["program_path"]]
    )
    # MANIFEST: sysmon64.exe, its SHA-1, key written 2022-03-10T19:50:35Z.
    assert trace.attributes["artefact"] == "amcache"
    assert (
        trace.attributes["program_path"]
        == "c:\\users\\testuser\\downloads\\sysmon\\sysmon64.exe"
    )
    assert trace.attributes["sha1"] == "71f5e906848b8e94e951551a08a4c9a045f19a03"
    assert trace.attributes["publisher"] == "sysinternals - www.sysinternals.com"
    assert trace.attributes["key_path"].startswith("Root\\InventoryApplicationFile\\")
    assert _same_time(trace, "2022-03-10T19:50:35Z")
    assert {dict(m.detail)["via"] for m in trace.matches} == {"filename", "sha1"}
    # MANIFEST: the APTSimulator tools themselves are not in this Amcache.
    assert not [t for t in _parse(data, seed).traces if _tools(t) & SEED_TOOLS]


def test_amcache_counts(probe_all: CompiledSet, probe: CompiledSet) -> None:
    # MANIFEST: 123 and 30 InventoryApplicationFile entries.
    for relative, count in (
        ("aptsimulator/Amcache.hve", 123),
        ("plaso/win10-Amcache.hve", 30),
    ):
        result = _parse(_hive_bytes(relative), probe_all)
        assert len(_by(result, artefact="amcache")) == count
    # MANIFEST: gup.exe with SHA-1 3d6200355715397b105f392aa4710758e1158bd6.
    result = _parse(_hive_bytes("plaso/win10-Amcache.hve"), probe)
    trace = _only(
        [t for t in result.traces if t.attributes["program_path"].endswith("gup.exe")]
    )
    assert (
        trace.attributes["program_path"]
        == "c:\\program files\\notepad++\\updater\\gup.exe"
    )
    assert dict(_only(trace.matches).detail) == {"via": "sha1"}


# --- planted keys -------------------------------------------------------------


def test_planted_sdelete_eula(tmp_path: Path, hivexsh: str, seed: CompiledSet) -> None:
    hive = _hive_file("plaso/NTUSER-WIN7.DAT", tmp_path, "NTUSER.DAT")
    data = _plant(
        hivexsh,
        hive,
        [
            "cd Software",
            "add Sysinternals",
            "cd Sysinternals",
            "add SDelete",
            "cd SDelete",
            "setval 1",
            "EulaAccepted",
            "dword:1",
        ],
    )
    result = _parse(data, seed, "p1:/Users/nfury/NTUSER.DAT")
    trace = _only([t for t in result.traces if "sdelete" in _tools(t)])
    assert trace.attributes["key_path"] == "Software\\Sysinternals\\SDelete"
    assert trace.attributes["value_name"] == "EulaAccepted"
    assert trace.attributes["artefact"] == "eula"
    assert trace.attributes["user"] == "nfury"
    indicator = _only(trace.matches).indicator
    assert seed.indicator_set.indicator(indicator).section == "registry"
    key = Registry.Registry(io.BytesIO(data)).open("Software\\Sysinternals\\SDelete")
    assert abs(_filetime(trace) - _registry_time(key.timestamp())) <= 10


def test_planted_wce_service(tmp_path: Path, hivexsh: str, seed: CompiledSet) -> None:
    hive = _hive_file("regipy/SYSTEM.xz", tmp_path, "SYSTEM")
    image_path = "C:\\Users\\evil\\wce.exe -S"
    data = _plant(
        hivexsh,
        hive,
        [
            "cd ControlSet001\\services",
            "add WCESERVICE",
            "cd WCESERVICE",
            "setval 4",
            "Type",
            "dword:0x10",
            "Start",
            "dword:3",
            "ImagePath",
            f"hex:2:{(image_path + chr(0)).encode('utf-16-le').hex(',')}",
            "DisplayName",
            "string:WCESERVICE",
        ],
    )
    result = _parse(data, seed, "p1:/Windows/System32/config/SYSTEM")
    wce = [t for t in result.traces if "wce" in _tools(t)]
    assert wce
    for trace in wce:
        assert trace.attributes["key_path"] == "ControlSet001\\services\\WCESERVICE"
        assert trace.attributes["artefact"] == "service"
        assert trace.attributes["service_name"] == "WCESERVICE"
        assert trace.attributes["control_set"] == 1
        assert trace.attributes["current_control_set"] is True
        assert trace.timestamp_desc == "Registry Last Written Time"
    key = Registry.Registry(io.BytesIO(data)).open(
        "ControlSet001\\services\\WCESERVICE"
    )
    assert key.value("ImagePath").value() == image_path
    for trace in wce:
        assert abs(_filetime(trace) - _registry_time(key.timestamp())) <= 10
    service = [t for t in wce if t.attributes["value_name"] in (None, "ImagePath")]
    assert all(t.attributes["image_path"] == image_path for t in service)


def test_planted_filename_on_image_path(
    tmp_path: Path, hivexsh: str, probe: CompiledSet
):
    hive = _hive_file("regipy/SYSTEM_WIN_10_1709.xz", tmp_path, "SYSTEM")
    data = _plant(
        hivexsh,
        hive,
        [
            "cd ControlSet001\\Services",
            "add pxsvc",
            "cd pxsvc",
            "setval 1",
            "ImagePath",
            'string:"C:\\Windows\\PSEXESVC.EXE" -k',
        ],
    )
    result = _parse(data, probe)
    trace = _only(_by(result, artefact="service"))
    assert trace.attributes["key_path"] == "ControlSet001\\Services\\pxsvc"
    assert trace.attributes["value_name"] == "ImagePath"
    match = _only(trace.matches)
    assert match.value == "C:\\Windows\\PSEXESVC.EXE"
    assert dict(match.detail) == {"via": "filename"}


def test_planted_userassist_and_runmru(
    tmp_path: Path, hivexsh: str, seed: CompiledSet
) -> None:
    hive = _hive_file("plaso/NTUSER.DAT", tmp_path, "NTUSER.DAT")
    name = codecs.encode("C:\\Tools\\sdelete64.exe", "rot13")
    last_run = _filetime_of("2021-02-14T02:38:08.922573Z")
    entry = (
        struct.pack("<IIII", 0, 3, 1, 2000)
        + bytes(44)
        + struct.pack("<QI", last_run, 0)
    )
    assert len(entry) == 72
    data = _plant(
        hivexsh,
        hive,
        [
            f"cd {USER_ASSIST}",
            "add {11111111-2222-3333-4444-555555555555}",
            "cd {11111111-2222-3333-4444-555555555555}",
            "setval 1",
            "Version",
            "dword:5",
            "add Count",
            "cd Count",
            "setval 1",
            name,
            f"hex:3:{entry.hex(',')}",
            "cd \\Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\RunMRU",
            "setval 2",
            "a",
            "string:sdelete -p 3 c:\\secret\\1",
            "MRUList",
            "string:a",
        ],
    )
    result = _parse(data, seed, "p1:/Documents and Settings/joe/NTUSER.DAT")
    sdelete = [t for t in result.traces if "sdelete" in _tools(t)]
    user_assist = _only(
        [t for t in sdelete if t.attributes["artefact"] == "userassist"]
    )
    assert user_assist.attributes["value_name"] == name
    assert user_assist.attributes["program_path"] == "C:\\Tools\\sdelete64.exe"
    assert user_assist.attributes["run_count"] == 3
    assert _filetime(user_assist) == last_run
    assert user_assist.attributes["user"] == "joe"
    run_mru = _only([t for t in sdelete if t.attributes["artefact"] == "runmru"])
    assert run_mru.attributes["command"] == "sdelete -p 3 c:\\secret"
    assert run_mru.attributes["mru_position"] == 0
    assert _only(run_mru.matches).value == "\\sdelete.exe"


def test_planted_usrclass_muicache(
    tmp_path: Path, hivexsh: str, seed: CompiledSet
) -> None:
    # A UsrClass.dat built from a SAM copy: Vista+ MUICache under Local Settings.
    hive = _hive_file("plaso/SAM", tmp_path, "UsrClass.dat")
    mui = "Local Settings\\Software\\Microsoft\\Windows\\Shell\\MUICache"
    commands = ["cd SAM", "del"]
    for name in mui.split("\\"):
        commands += [f"add {name}", f"cd {name}"]
    commands += [
        "setval 3",
        "LangID",
        "hex:3:09,04",
        "C:\\Tools\\Dbgview.exe.FriendlyAppName",
        "string:DebugView",
        "C:\\Tools\\Dbgview.exe.ApplicationCompany",
        "string:Sysinternals - www.sysinternals.com",
    ]
    data = _plant(hivexsh, hive, commands)
    source = "p1:/Users/bob/AppData/Local/Microsoft/Windows/UsrClass.dat"
    result = _parse(data, seed, source)
    assert result.info.hive_type == "USRCLASS" and result.info.user == "bob"
    trace = _only(result.traces)
    assert trace.attributes["artefact"] == "muicache"
    assert trace.attributes["hive"] == "USRCLASS"
    assert trace.attributes["key_path"] == mui
    assert trace.attributes["value_name"] == "C:\\Tools\\Dbgview.exe.FriendlyAppName"
    assert trace.attributes["value_data"] == "DebugView"
    assert trace.attributes["program_path"] == "C:\\Tools\\Dbgview.exe"
    assert trace.attributes["user"] == "bob"
    assert _tools(trace) == {"dbgview"}
    key = Registry.Registry(io.BytesIO(data)).open(mui)
    assert abs(_filetime(trace) - _registry_time(key.timestamp())) <= 10


def test_planted_amcache_file_key(tmp_path: Path, hivexsh: str, probe: CompiledSet):
    hive = _hive_file("plaso/win10-Amcache.hve", tmp_path, "Amcache.hve")
    data = _plant(
        hivexsh,
        hive,
        [
            "cd Root",
            "add File",
            "cd File",
            "add {0b1a2c3d-1111-2222-3333-444455556666}",
            "cd {0b1a2c3d-1111-2222-3333-444455556666}",
            "add 10000001a2b",
            "cd 10000001a2b",
            "setval 2",
            "15",
            "string:C:\\Tools\\PSEXESVC.EXE",
            "101",
            "string:00000123456789abcdef0123456789abcdef01234567",
        ],
    )
    result = _parse(data, probe)
    trace = _only(
        [t for t in result.traces if t.attributes["key_path"].startswith("Root\\File")]
    )
    assert trace.attributes["key_path"] == (
        "Root\\File\\{0b1a2c3d-1111-2222-3333-444455556666}\\10000001a2b"
    )
    assert trace.attributes["sha1"] == "0123456789abcdef0123456789abcdef01234567"
    assert {m.indicator for m in trace.matches} == {
        "registry_probe.filename.psexesvc",
        "registry_probe.sha1.planted",
    }


# --- bad input -----------------------------------------------------------------


def _no_new_traces(damaged: RegistryResult, whole: RegistryResult) -> None:
    """A damaged hive may lose traces but never invents any."""
    seen = {
        (t.attributes["key_path"], t.attributes["value_name"], _filetime(t))
        for t in whole.traces
    }
    for trace in damaged.traces:
        key = (
            trace.attributes["key_path"],
            trace.attributes["value_name"],
            _filetime(trace),
        )
        assert key in seen


@pytest.mark.parametrize("fraction", [0.95, 0.5, 0.1, 0.001])
def test_truncated_hive(seed: CompiledSet, fraction: float) -> None:
    data = _hive_bytes("regipy/SYSTEM_WIN_10_1709.xz")
    whole = _parse(data, seed)
    cut = data[: int(len(data) * fraction)]
    result = _parse(cut, seed, "p1:/SYSTEM")
    assert result.warnings
    assert all(w.startswith("p1:/SYSTEM: ") for w in result.warnings)
    assert any("damaged hive" in w for w in result.warnings)
    if fraction >= 0.5:
        # The keys before the cut are read: the hive is typed and matched.
        assert result.info.repaired and result.info.hive_type == "SYSTEM"
        assert 0 < result.info.keys < whole.info.keys
    _no_new_traces(result, whole)


def test_truncated_hive_keeps_sysinternals(seed: CompiledSet) -> None:
    data = _hive_bytes("regipy/SYSTEM_WIN_10_1709.xz")
    result = _parse(data[: len(data) // 2], seed)
    assert {tool for t in result.traces for tool in _tools(t)} == {"sdelete", "dbgview"}


@pytest.mark.parametrize("flips", [1, 20, 2000])
def test_bit_flipped_hive(seed: CompiledSet, flips: int) -> None:
    data = _hive_bytes("regipy/SYSTEM_WIN_10_1709.xz")
    whole = _parse(data, seed)
    rng = random.Random(flips)
    damaged = bytearray(data)
    for _ in range(flips):
        index = rng.randrange(4096, len(damaged))
        damaged[index] ^= 1 << rng.randrange(8)
    result = _parse(bytes(damaged), seed)
    assert result.info.hive_type == "SYSTEM"
    assert result.info.keys > 0
    _no_new_traces(result, whole)


def test_damaged_cell_in_root_bin(seed: CompiledSet) -> None:
    # libregf rejects a whole hive bin for one bad cell size; the repaired copy
    # loses only that cell.
    data = bytearray(_hive_bytes("regipy/NTUSER_with_winscp.DAT.xz"))
    (root,) = struct.unpack_from("<I", data, 0x24)
    cell = 0x1000 + 0x20  # the first cell of the first hive bin
    for _ in range(3):  # the third cell after the root key's (not the root)
        cell += abs(struct.unpack_from("<i", data, cell)[0])
    assert cell != 0x1000 + root
    struct.pack_into("<i", data, cell, -3)
    result = _parse(bytes(data), seed, "p1:/Users/tony/NTUSER.DAT")
    assert result.info.repaired
    assert any("repaired copy" in w for w in result.warnings)
    assert result.info.keys > 5000
    assert {tool for t in result.traces for tool in _tools(t)} == {"dbgview"}


def _key_loop_hive() -> bytes:
    """The SAM hive with SAM\\Domains\\Account's first subkey pointing at itself."""
    data = bytearray(_hive_bytes("plaso/SAM"))
    regf = pyregf.file()
    regf.open_file_object(io.BytesIO(bytes(data)))
    account = regf.get_root_key().get_sub_key_by_path("SAM\\Domains\\Account")
    offset = account.offset  # file offset of the nk record
    regf.close()
    assert data[offset : offset + 2] == b"nk"
    (sub_key_list,) = struct.unpack_from("<I", data, offset + 28)
    list_at = 0x1000 + sub_key_list + 4
    assert data[list_at : list_at + 2] in (b"lf", b"lh")
    struct.pack_into("<I", data, list_at + 4, offset - 0x1000 - 4)
    return bytes(data)


def test_key_loop(seed: CompiledSet) -> None:
    result = _parse(_key_loop_hive(), seed, "p1:/SAM")
    assert any("key loop" in w and w.startswith("p1:/SAM: ") for w in result.warnings)
    assert result.info.complete
    assert 0 < result.info.keys < 76


def test_deep_nesting(tmp_path: Path, hivexsh: str, seed: CompiledSet) -> None:
    hive = _hive_file("plaso/SAM", tmp_path, "SAM")
    commands = []
    for level in range(600):
        commands += [f"add d{level}", f"cd d{level}"]
    data = _plant(hivexsh, hive, commands)
    result = _parse(data, seed)
    assert any("deeper than 512 levels" in w for w in result.warnings)
    assert result.info.keys == 76 + 512
    shallow = _parse(data, seed, limits=Limits(max_depth=8))
    assert any("deeper than 8 levels" in w for w in shallow.warnings)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a hive at all\n" * 100,
        bytes(8192),
        b"regf" + bytes(5000),
    ],
    ids=["empty", "text", "zeros", "header-only"],
)
def test_not_a_hive(seed: CompiledSet, data: bytes) -> None:
    result = _parse(data, seed, "p1:/x")
    assert result.traces == []
    assert result.warnings and all(w.startswith("p1:/x: ") for w in result.warnings)
    assert result.info.hive_type is None and result.info.keys == 0


def test_real_non_hive_files(seed: CompiledSet) -> None:
    for path in (
        REGISTRY.parent / "prefetch" / "invalid" / "notAPrefetch.pf",
        REGISTRY.parent / "evtx" / "plaso" / "System.evtx",
    ):
        result = _parse(path.read_bytes(), seed, str(path.name))
        assert result.traces == []
        assert "not a Windows Registry hive" in result.warnings[0]


def test_unreadable_stream(seed: CompiledSet) -> None:
    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise OSError("device error")

    result = parse_hive(Broken(b"regf"), "p1:/x", seed)
    assert result.traces == [] and result.warnings


def test_limits(seed: CompiledSet) -> None:
    data = _hive_bytes("regipy/SYSTEM_WIN_10_1709.xz")
    few = _parse(data, seed, limits=Limits(max_keys=100))
    assert any("more than 100 keys" in w for w in few.warnings)
    assert not few.info.complete and 0 < few.info.keys <= 100
    # Artefacts are read before the walk, so a cut walk keeps them.
    assert {tool for t in few.traces for tool in _tools(t)} == {"sdelete", "dbgview"}
    late = _parse(data, seed, limits=Limits(max_seconds=1e-9))
    assert any("time limit" in w for w in late.warnings)
    assert not late.info.complete
