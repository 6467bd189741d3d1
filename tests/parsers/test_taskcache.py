"""Tests of the TaskCache artefact of the registry parser (SOFTWARE hive).

Layouts from G DATA's winreg-tasks (kaitai/actions.ksy, dynamic_info.ksy) and
libyal winreg-kb (Task-scheduler.md). The decoder is checked on the test
vectors winreg-tasks publishes with their expected values (generated/
actions_test.go), and the parser on keys planted with hivexsh into a copy of
the real SAM hive of ../shared/test_data/real (MANIFEST: registry/plaso/SAM),
its SAM key deleted; the planted values are built here from the cited layout.
Missing test data or tools fail the tests; nothing is skipped.
"""

from __future__ import annotations

import datetime
import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from Registry import Registry

from toolmarks.indicators.compiler import CompiledSet
from toolmarks.indicators.loader import load
from toolmarks.parsers import registry_artefacts as artefacts
from toolmarks.parsers.registry import DATA_TYPE, parse_hive

ROOT = Path(__file__).resolve().parents[2]
SAM = ROOT / ".." / "shared" / "test_data" / "real" / "registry" / "plaso" / "SAM"
CACHE = "Microsoft\\Windows NT\\CurrentVersion\\Schedule\\TaskCache"
GUID = "{6A3C1E2B-8D4F-4B7A-9C21-5E0F3D7A1B94}"
DECOY = "{0F8E2D4C-3B1A-4E69-A7D5-C2B9E1F04A37}"
BROKEN = "{9B2D4F60-1C3E-4A5B-8D7F-0E1A2B3C4D5E}"
TASK = "\\Microsoft\\Windows\\Maintenance\\Cleanup"
COMMAND = "C:\\Windows\\Temp\\PwDump7.exe"
ARGUMENTS = "-o C:\\Windows\\Temp\\h.txt"
REGISTERED = "2021-02-14T03:10:00"
LAST_RUN = "2021-02-14T03:15:00"

# winreg-tasks generated/actions_test.go, TestTaskParser_ExeTasks (first two
# actions of its vector) and TestTaskParser_ComHandler, with the values that
# test expects: context "Author", exec "execution.exe" (flags 1), "moar.exe";
# context "Users", a ComHandler {61bcd1b9-340c-40ec-9d41-d7f1c0632f05} with
# data "MissingCredentials".
WINREG_TASKS_EXEC = bytes.fromhex(
    "0300"
    "0c000000" + "Author".encode("utf-16-le").hex() + "6666"
    "08000000" + "exec".encode("utf-16-le").hex() + "1a000000"
    "6500780065006300750074006900" + "6f006e002e00650078006500"
    "00000000" + "00000000" + "0100" + "6666"
    "08000000" + "exec".encode("utf-16-le").hex() + "10000000"
    "6d006f00610072002e00650078006500" + "00000000" + "00000000" + "0000"
)
WINREG_TASKS_COM = bytes.fromhex(
    "0300"
    "0a000000" + "Users".encode("utf-16-le").hex() + "7777"
    "14000000"
    + "comhandler".encode("utf-16-le").hex()
    + "b9d1bc610c34ec409d41d7f1c0632f05"
    "24000000" + "MissingCredentials".encode("utf-16-le").hex()
)


def _bstr(text: str) -> bytes:
    """A u32 byte count and UTF-16 LE text (actions.ksy util/bstr)."""
    data = text.encode("utf-16-le")
    return struct.pack("<I", len(data)) + data


def _actions(command: str, arguments: str = "", directory: str = "") -> bytes:
    """A version 3 Actions value with one exec action (actions.ksy)."""
    return (
        struct.pack("<H", 3)
        + _bstr("Author")
        + struct.pack("<H", 0x6666)
        + _bstr("")
        + _bstr(command)
        + _bstr(arguments)
        + _bstr(directory)
        + struct.pack("<H", 0)
    )


def _filetime(iso: str) -> int:
    moment = datetime.datetime.fromisoformat(iso).replace(tzinfo=datetime.UTC)
    delta = moment - datetime.datetime(1601, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86400 + delta.seconds) * 10_000_000


def _dynamic_info(registered: int, last_run: int, error: int = 0) -> bytes:
    """The 36-byte DynamicInfo of Windows 8+ (dynamic_info.ksy, winreg-kb)."""
    return struct.pack("<IQQIIQ", 3, registered, last_run, 0, error, last_run)


def _hex(data: bytes) -> str:
    return "hex:3:" + ",".join(f"{b:02x}" for b in data)


@pytest.fixture(scope="module")
def seed() -> CompiledSet:
    compiled = CompiledSet(load())
    # The shipped pwdump indicators these tests rely on.
    names = {i.id for i in compiled.filenames.match("\\Windows\\Temp\\PwDump7.exe")}
    assert "pwdump.filename.pwdump_name" in names
    return compiled


@pytest.fixture(scope="module")
def hivexsh() -> str:
    path = shutil.which("hivexsh")
    if path is None:
        pytest.fail("hivexsh (Debian libhivex-bin) is needed to plant test keys")
    return path


def _software(hivexsh: str, tmp_path: Path, tasks: dict[str, dict[str, str]]) -> bytes:
    """The real SAM turned into a SOFTWARE hive holding the given tasks:
    {GUID: {value name: hivexsh value}}; a task with a "Tree" entry gets a
    Tree key of that path naming its GUID."""
    if not SAM.is_file():
        pytest.fail(f"real test data missing: {SAM}")
    hive = tmp_path / "SOFTWARE"
    hive.write_bytes(SAM.read_bytes())
    lines = ["cd \\SAM", "del", "add Classes", "add Policies"]
    path = ""
    for name in [*CACHE.split("\\"), "Tasks"]:
        lines += [f"cd \\{path}", f"add {name}"]
        path = f"{path}\\{name}" if path else name
    lines += [f"cd \\{CACHE}", "add Tree"]
    made: set[str] = set()  # Tree keys several tasks' paths share
    for guid, values in tasks.items():
        values = dict(values)
        tree = values.pop("Tree", None)
        lines += [f"cd \\{CACHE}\\Tasks", f"add {guid}", f"cd \\{CACHE}\\Tasks\\{guid}"]
        lines.append(f"setval {len(values)}")
        for name, value in values.items():
            lines += [name, value]
        if tree:
            where = f"{CACHE}\\Tree"
            for part in tree.strip("\\").split("\\"):
                if f"{where}\\{part}" not in made:
                    lines += [f"cd \\{where}", f"add {part}"]
                where += f"\\{part}"
                made.add(where)
            lines += [f"cd \\{where}", "setval 1", "Id", f"string:{guid}"]
    script = tmp_path / "plant.hivexsh"
    script.write_text("\n".join([*lines, "commit", ""]), encoding="ascii")
    done = subprocess.run(
        [hivexsh, "-w", "-f", str(script), str(hive)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return hive.read_bytes()


def _planted() -> dict[str, dict[str, str]]:
    return {
        GUID: {
            "Path": f"string:{TASK}",
            "Actions": _hex(_actions(COMMAND, ARGUMENTS)),
            "DynamicInfo": _hex(
                _dynamic_info(_filetime(REGISTERED), _filetime(LAST_RUN), 0x41301)
            ),
            "Tree": TASK,
        },
        # A harmless program with names near the tool's: no event.
        DECOY: {
            "Path": "string:\\Microsoft\\Windows\\Maintenance\\CleanupTemp",
            "Actions": _hex(
                _actions(
                    "%ComSpec%",
                    "/c del /q C:\\Windows\\Temp\\pwdmp7.log & C:\\Tools\\mypwdump.exe",
                )
            ),
            "DynamicInfo": _hex(_dynamic_info(_filetime(REGISTERED), 0)),
            "Tree": "\\Microsoft\\Windows\\Maintenance\\CleanupTemp",
        },
    }


# --- the decoder on published vectors ----------------------------------------------


def test_decode_winreg_tasks_vectors() -> None:
    decoded = artefacts.decode_actions(WINREG_TASKS_EXEC)
    assert decoded.problem is None
    assert (decoded.version, decoded.context) == (3, "Author")
    assert [(a.command, a.arguments, a.working_directory) for a in decoded.actions] == [
        ("execution.exe", "", ""),
        ("moar.exe", "", ""),
    ]
    decoded = artefacts.decode_actions(WINREG_TASKS_COM)
    assert decoded.problem is None
    assert (decoded.version, decoded.context, decoded.actions) == (3, "Users", [])
    assert decoded.other == ["ComHandler 61bcd1b9-340c-40ec-9d41-d7f1c0632f05"]


def test_decode_versions_1_and_2_have_no_context_or_flags() -> None:
    # actions.ksy: the context and the exec flags exist in version 3 only.
    body = struct.pack("<H", 0x6666) + _bstr("") + _bstr(COMMAND) + _bstr("")
    for version in (1, 2):
        data = struct.pack("<H", version) + body + _bstr("C:\\Temp")
        decoded = artefacts.decode_actions(data)
        assert decoded.problem is None
        assert decoded.context is None
        [action] = decoded.actions
        assert (action.command, action.working_directory) == (COMMAND, "C:\\Temp")


def test_decode_dynamic_info_layouts() -> None:
    # winreg-kb's Windows 7 sample (28 bytes) and Windows 8/10 sample (36).
    seven = bytes.fromhex("03000000166f4a0f7ffec60166b76c0d6b4cc9012b04078000000000")
    info = artefacts.decode_dynamic_info(seven)
    assert info.registration == 0x01C6FE7F0F4A6F16
    assert info.last_run == 0x01C94C6B0D6CB766
    assert info.last_error == 0 and info.last_successful_run is None
    ten = bytes.fromhex(
        "030000004b5a0b60ff6acd015c32e7451bb6ce012004078000000000a2b1864f1bb6ce01"
    )
    info = artefacts.decode_dynamic_info(ten)
    assert info.last_successful_run == 0x01CEB61B4F86B1A2
    with pytest.raises(artefacts.TaskCacheError, match="20 bytes, not 28 or 36"):
        artefacts.decode_dynamic_info(ten[:20])


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "version at offset 0: 2 bytes run past the end of the data (0 bytes)"),
        (bytes(64), "version 0 at offset 0 is not one of 1, 2, 3"),
        (
            _actions(COMMAND, ARGUMENTS)[:40],
            "command at offset 28: 54 bytes run past the end of the data (40 bytes)",
        ),
        (
            struct.pack("<H", 2) + struct.pack("<H", 0x6666) + b"\xf0\xff\xff\xff",
            "action id at offset 8: 4294967280 bytes run past the end",
        ),
        (
            struct.pack("<H", 2) + struct.pack("<H", 0x1234) + _bstr("x"),
            "unknown action type 0x1234 (id 'x') at offset 2",
        ),
        (
            struct.pack("<H", 2)
            + struct.pack("<H", 0x8888)
            + _bstr("")
            + _bstr("") * 8
            + struct.pack("<I", 0x10000000),
            "e-mail item count 268435456 at offset 40 is more than the data holds",
        ),
    ],
)
def test_decode_bad_actions(data: bytes, problem: str) -> None:
    decoded = artefacts.decode_actions(data)
    assert decoded.problem is not None and decoded.problem.startswith(problem)
    assert decoded.actions == []


def test_decode_keeps_actions_before_a_problem() -> None:
    data = _actions(COMMAND, ARGUMENTS) + struct.pack("<H", 0x6666) + b"\x10\x00"
    decoded = artefacts.decode_actions(data)
    assert [a.command for a in decoded.actions] == [COMMAND]
    assert decoded.problem == (
        "action id length at offset 142: 4 bytes run past the end of the data "
        "(144 bytes)"
    )


# --- the parser on planted keys --------------------------------------------------


def test_planted_task_cache(hivexsh: str, tmp_path: Path, seed: CompiledSet) -> None:
    data = _software(hivexsh, tmp_path, _planted())
    # The hive holds the planted bytes (python-registry, not libregf).
    key = Registry.Registry(io.BytesIO(data)).open(f"{CACHE}\\Tasks\\{GUID}")
    assert key.value("Actions").value() == _actions(COMMAND, ARGUMENTS)

    result = parse_hive(io.BytesIO(data), "test:/SOFTWARE", seed, file_name="SOFTWARE")
    assert result.warnings == []
    assert result.info.hive_type == "SOFTWARE"
    assert len(result.traces) == 2
    by_time = {t.attributes["time_of"]: t for t in result.traces}
    assert set(by_time) == {"registration", "last run"}
    for what, iso, description in (
        ("registration", REGISTERED, "Registration Time"),
        ("last run", LAST_RUN, "Last Time Executed"),
    ):
        trace = by_time[what]
        assert trace.data_type == DATA_TYPE
        assert trace.timestamp.timestamp == _filetime(iso)
        assert trace.timestamp_desc == description
        attributes = trace.attributes
        assert attributes["artefact"] == "task_cache"
        assert attributes["key_path"] == f"{CACHE}\\Tasks\\{GUID}"
        assert attributes["value_name"] == "Actions"
        assert attributes["task_path"] == attributes["tree_path"] == TASK
        assert (attributes["command"], attributes["arguments"]) == (COMMAND, ARGUMENTS)
        assert attributes["working_directory"] == ""
        assert (attributes["context"], attributes["actions_version"]) == ("Author", 3)
        assert attributes["last_error"] == "0x00041301"
        assert attributes["registration_time_text"].startswith(REGISTERED)
        assert attributes["last_run_time_text"].startswith(LAST_RUN)
        got = {(m.tool, m.indicator, m.kind, m.value) for m in trace.matches}
        assert got == {
            ("pwdump", "pwdump.filename.pwdump_name", "registry", COMMAND),
            (
                "pwdump",
                "pwdump.commandline.program",
                "registry",
                f"{COMMAND} {ARGUMENTS}",
            ),
        }
        assert {dict(m.detail)["via"] for m in trace.matches} == {
            "filename",
            "commandline",
        }


def test_task_without_tree_or_times(
    hivexsh: str, tmp_path: Path, seed: CompiledSet
) -> None:
    """No Tree key (hidden from the task list), no DynamicInfo: one trace at
    the key's last written time, with a note."""
    tasks = {GUID: {"Path": f"string:{TASK}", "Actions": _hex(_actions(COMMAND))}}
    data = _software(hivexsh, tmp_path, tasks)
    result = parse_hive(io.BytesIO(data), "test:/SOFTWARE", seed, file_name="SOFTWARE")
    [trace] = result.traces
    assert trace.attributes["time_of"] == "key last written"
    assert trace.timestamp_desc == "Registry Last Written Time"
    key = Registry.Registry(io.BytesIO(data)).open(f"{CACHE}\\Tasks\\{GUID}")
    written = key.timestamp().replace(tzinfo=datetime.UTC).isoformat()
    assert abs(trace.timestamp.timestamp - _filetime(written[:19])) < 10_000_000
    assert trace.attributes["tree_path"] is None
    assert trace.attributes["note"] == "no Tree key names this task's Id"


def test_windows7_task_has_no_actions(
    hivexsh: str, tmp_path: Path, seed: CompiledSet
) -> None:
    """Windows 7 keeps no Actions value: nothing to match, nothing to say."""
    seven = "03000000166f4a0f7ffec60166b76c0d6b4cc9012b04078000000000"
    tasks = {GUID: {"Path": f"string:{TASK}", "DynamicInfo": "hex:3:" + seven}}
    data = _software(hivexsh, tmp_path, tasks)
    result = parse_hive(io.BytesIO(data), "test:/SOFTWARE", seed, file_name="SOFTWARE")
    assert (result.traces, result.warnings) == ([], [])


def test_bad_values_warn_and_the_rest_is_parsed(
    hivexsh: str, tmp_path: Path, seed: CompiledSet
) -> None:
    tasks = _planted()
    # A truncated Actions value and a DynamicInfo of the wrong size, in
    # another task, and the planted task's DynamicInfo cut short.
    tasks[BROKEN] = {
        "Path": "string:\\Broken",
        "Actions": _hex(_actions(COMMAND, ARGUMENTS)[:40]),
        "DynamicInfo": _hex(bytes(20)),
    }
    tasks[GUID]["DynamicInfo"] = _hex(bytes(30))
    data = _software(hivexsh, tmp_path, tasks)
    result = parse_hive(io.BytesIO(data), "test:/SOFTWARE", seed, file_name="SOFTWARE")
    broken = f"{CACHE}\\Tasks\\{BROKEN}"
    planted = f"{CACHE}\\Tasks\\{GUID}"
    assert sorted(result.warnings) == sorted(
        [
            (
                f"test:/SOFTWARE: {broken!r}: Actions: command at offset 28: 54 "
                "bytes run past the end of the data (40 bytes)"
            ),
            f"test:/SOFTWARE: {broken!r}: DynamicInfo: 20 bytes, not 28 or 36",
            f"test:/SOFTWARE: {planted!r}: DynamicInfo: 30 bytes, not 28 or 36",
        ]
    )
    # The planted task is still found, at its key's last written time.
    [trace] = result.traces
    assert trace.attributes["key_path"] == planted
    assert trace.attributes["time_of"] == "key last written"
    assert {m.indicator for m in trace.matches} == {
        "pwdump.filename.pwdump_name",
        "pwdump.commandline.program",
    }
