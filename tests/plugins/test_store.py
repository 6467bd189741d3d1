"""TagStore on stores made by real plaso runs: plaso 20260720 (format 20260516,
installed) and plaso 20240308 (format 20230327, in the venv that
scripts/setup_old_plaso.sh makes), each read back by its own psort and pinfo.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from toolmarks.plugins.store import StoreError, TagStore

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFETCH_DIR = "../shared/test_data/real/prefetch/win7"  # relative to REPO_ROOT
EVTX_DIR = "../shared/test_data/real/evtx"
OLD_VENV = REPO_ROOT / ".cache" / "venv-plaso-20240308"
PREFETCH = "windows:prefetch:execution"


@dataclasses.dataclass(frozen=True)
class Plaso:
    """One plaso release's tools, and the storage format it writes."""

    format_version: int
    bin_dir: Path

    def tool(self, name: str) -> str:
        path = self.bin_dir / name
        assert path.exists(), (
            f"{path} is missing: run `bash scripts/setup.sh --test` "
            "(it runs scripts/setup_old_plaso.sh)"
        )
        return str(path)


def installed_plaso() -> Plaso:
    log2timeline = shutil.which("log2timeline")
    assert log2timeline, "plaso's log2timeline is not installed"
    return Plaso(20260516, Path(log2timeline).parent)


PLASOS = {
    "plaso20260720": installed_plaso,
    "plaso20240308": lambda: Plaso(20230327, OLD_VENV / "bin"),
}


def run(command: list[str], cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    """Runs a tool; psort and pinfo run in the store's folder, where they leave
    their log files."""
    result = subprocess.run(
        command, check=False, cwd=cwd, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{command}: {result.stderr[-3000:]}"
    return result


def log2timeline(plaso: Plaso, source: str, storage: Path) -> None:
    run(
        [
            plaso.tool("log2timeline"),
            "--quiet",
            "--status_view",
            "none",
            "--parsers",
            "prefetch,winevtx,filestat",
            "--hashers",
            "md5",
            "--logfile",
            str(storage.with_suffix(".log.gz")),
            "--storage_file",
            str(storage),
            source,
        ]
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pinfo_table(plaso: Plaso, path: Path, title: str) -> dict[str, int]:
    """A `name : number` table of pinfo's text output, e.g. events per parser."""
    # Only the events section: pinfo 20260720 fails on the reports section of
    # its own tagging analysis.
    command = [plaso.tool("pinfo"), "--sections", "events", str(path)]
    lines = run(command, cwd=path.parent).stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if title in line), None)
    if start is None:
        return {}
    table: dict[str, int] = {}
    dashes = 0
    for line in lines[start + 1 :]:
        if line.startswith("-----"):
            dashes += 1
            if dashes == 2:
                break
            continue
        name, _, number = line.rpartition(" : ")
        if dashes == 1 and number.strip().isdigit():
            table[name.strip()] = int(number)
    return table


def psort_rows(plaso: Plaso, path: Path, tmp_path: Path) -> list[dict[str, str]]:
    output = tmp_path / f"psort-{time.monotonic_ns()}.csv"
    run(
        [
            plaso.tool("psort"),
            "-q",
            "--status_view",
            "none",
            "-o",
            "dynamic",
            "--fields",
            "datetime,timestamp_desc,data_type,parser,tag",
            "-w",
            str(output),
            str(path),
        ],
        cwd=path.parent,
    )
    with output.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def inflate(path: Path, minimum_events: int) -> None:
    """Doubles the store's event data and events with SQL until it has at least
    `minimum_events` events: the rows stay plaso's own, in their own format."""
    connection = sqlite3.connect(path)
    while True:
        events = connection.execute("SELECT max(_identifier) FROM event").fetchone()[0]
        if events >= minimum_events:
            break
        data = connection.execute("SELECT max(_identifier) FROM event_data").fetchone()[
            0
        ]
        connection.execute(
            "INSERT INTO event_data (_data) SELECT _data FROM event_data "
            "ORDER BY _identifier"
        )
        connection.execute(
            "INSERT INTO event (_event_data_identifier, date_time, timestamp, "
            "timestamp_desc) SELECT 'event_data.' || "
            "(CAST(substr(_event_data_identifier, 12) AS INTEGER) + ?), date_time, "
            "timestamp, timestamp_desc FROM event ORDER BY _identifier",
            (data,),
        )
        for table in ("parser_count", "data_type_count"):
            if connection.execute(
                "SELECT 1 FROM sqlite_master WHERE name = ?", (table,)
            ).fetchone():
                connection.execute(
                    f"UPDATE {table} SET number_of_events = number_of_events * 2"
                )
        connection.commit()
    connection.close()


@pytest.fixture(scope="session")
def made_stores(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., Path]:
    """Stores log2timeline made, per plaso release and kind; built on first use."""
    stores: dict[str, Path] = {}
    folder = tmp_path_factory.mktemp("stores")

    def get(release: str, kind: str = "small") -> Path:
        key = f"{release}-{kind}"
        if key not in stores:
            plaso = PLASOS[release]()
            path = folder / f"{key}.plaso"
            if kind == "big":
                shutil.copyfile(get(release), path)
                inflate(path, 100_000)
            else:
                log2timeline(plaso, PREFETCH_DIR, path)
            stores[key] = path
        return stores[key]

    return get


@pytest.fixture(params=sorted(PLASOS))
def release(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store(release: str, made_stores: Callable[..., Path], tmp_path: Path) -> Path:
    """A fresh copy of the release's small store."""
    path = tmp_path / "timeline.plaso"
    shutil.copyfile(made_stores(release), path)
    return path


def leftovers(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*.toolmarks-tag.tmp"))


# Reading.


def test_events_are_what_pinfo_counts(release: str, store: Path) -> None:
    plaso = PLASOS[release]()
    with TagStore.open(str(store)) as tag_store:
        assert tag_store.format_version == plaso.format_version
        events = list(tag_store.events())
    per_parser = pinfo_table(plaso, store, "Events generated per parser")
    assert per_parser["Total"] == len(events) == 28
    parsers = collections.Counter(event.parser for event in events)
    assert dict(parsers) == {k: v for k, v in per_parser.items() if k != "Total"}
    assert {event.data_type for event in events} == {
        "fs:stat",
        PREFETCH,
        "windows:volume:creation",
    }
    assert len({event.identifier for event in events}) == len(events)
    assert all(event.labels == [] for event in events)


def test_events_carry_values_and_stream_hashes(release: str, store: Path) -> None:
    with TagStore.open(str(store)) as tag_store:
        events = list(tag_store.events())
    ping = REPO_ROOT / PREFETCH_DIR / "PING.EXE-B29F6629.pf"
    md5 = hashlib.md5(ping.read_bytes()).hexdigest()

    runs = [
        e for e in events if e.data_type == PREFETCH and e.values["run_count"] == 14
    ]
    assert len(runs) == 1
    run_event = runs[0]
    assert run_event.values["executable"] == "PING.EXE"
    assert run_event.parser == "prefetch"
    assert run_event.timestamp_desc == "Last Time Executed"
    # 2012-04-06T19:00:55.9329556Z (MANIFEST.md cuts it to .932955): plaso
    # rounds the FILETIME's 100 ns to the nearest microsecond.
    assert run_event.timestamp == 1333738855932956
    assert run_event.values["md5_hash"] == md5
    assert run_event.values["path_spec"]["location"] == str(ping.resolve())
    assert run_event.values["last_run_time"]["__type__"] == "DateTimeValues"

    stats = [
        e
        for e in events
        if e.data_type == "fs:stat" and e.values.get("filename") == str(ping.resolve())
    ]
    assert {e.timestamp_desc for e in stats} >= {"Last Access Time"}
    assert all(e.values["md5_hash"] == md5 and e.parser == "filestat" for e in stats)
    assert all(e.values["file_size"] == ping.stat().st_size for e in stats)


# Tagging, read back by the release's own psort and pinfo.


def test_tags_are_read_by_the_stores_own_psort_and_pinfo(
    release: str, store: Path, tmp_path: Path
) -> None:
    plaso = PLASOS[release]()
    with TagStore.open(str(store)) as tag_store:
        events = list(tag_store.events())
        wanted = {
            e.identifier: ["toolmarks", "tool_ping"]
            for e in events
            if e.data_type == PREFETCH
        }
        assert len(wanted) == 4
        assert tag_store.write_tags(wanted) == {"toolmarks": 4, "tool_ping": 4}
        assert {e.identifier: e.labels for e in tag_store.events() if e.labels} == (
            wanted
        )

    rows = psort_rows(plaso, store, tmp_path)
    assert len(rows) == 28
    for row in rows:
        expected = "toolmarks tool_ping" if row["data_type"] == PREFETCH else "-"
        assert row["tag"] == expected, row
    labels = pinfo_table(plaso, store, "Event tags generated per label")
    assert labels == {"toolmarks": 4, "tool_ping": 4, "Total": 8}

    # Twice: nothing new, the file is not even rewritten.
    before = sha256(store)
    with TagStore.open(str(store)) as tag_store:
        assert tag_store.write_tags(wanted) == {}
    assert sha256(store) == before
    assert leftovers(store) == []


def test_new_labels_join_existing_tags(
    release: str, store: Path, tmp_path: Path
) -> None:
    """Tags plaso's own tagging analysis wrote get the new labels added, once."""
    plaso = PLASOS[release]()
    rules = tmp_path / "tags.txt"
    rules.write_text(
        "application_execution\n  data_type is 'windows:prefetch:execution'\n"
    )
    run(
        [
            plaso.tool("psort"),
            "-q",
            "--status_view",
            "none",
            "--analysis",
            "tagging",
            "--tagging-file",
            str(rules),
            "-o",
            "null",
            str(store),
        ],
        cwd=tmp_path,
    )
    assert pinfo_table(plaso, store, "Event tags generated per label") == {
        "application_execution": 4,
        "Total": 4,
    }
    with TagStore.open(str(store)) as tag_store:
        events = list(tag_store.events())
        prefetch = [e.identifier for e in events if e.data_type == PREFETCH]
        volume = [
            e.identifier for e in events if e.data_type == "windows:volume:creation"
        ]
        assert all(
            e.labels == ["application_execution"]
            for e in events
            if e.data_type == PREFETCH
        )
        wanted = {i: ["application_execution", "tool_ping"] for i in prefetch}
        wanted[volume[0]] = ["tool_ping"]
        assert tag_store.write_tags(wanted) == {"tool_ping": 5}

    rows = psort_rows(plaso, store, tmp_path)
    tags = collections.Counter(row["tag"] for row in rows)
    assert tags["application_execution tool_ping"] == 4
    assert tags["tool_ping"] == 1
    assert pinfo_table(plaso, store, "Event tags generated per label") == {
        "application_execution": 4,
        "tool_ping": 5,
        "Total": 9,
    }
    with sqlite3.connect(store) as connection:
        # One tag row per event, as plaso's reader expects.
        assert connection.execute(
            "SELECT count(*), count(DISTINCT _event_identifier) FROM event_tag"
        ).fetchone() == (5, 5)


def test_keeps_mode(store: Path) -> None:
    store.chmod(0o640)
    with TagStore.open(str(store)) as tag_store:
        first = next(tag_store.events()).identifier
        assert tag_store.write_tags({first: ["toolmarks"]}) == {"toolmarks": 1}
    assert store.stat().st_mode & 0o7777 == 0o640
    assert leftovers(store) == []


@pytest.mark.parametrize(
    "labels",
    [["tool wce"], ["tool-wce"], [""], ["total"], ["ok", "é"], [3]],
)
def test_bad_labels_are_refused(store: Path, labels: list[str]) -> None:
    before = sha256(store)
    with TagStore.open(str(store)) as tag_store:
        first = next(tag_store.events()).identifier
        with pytest.raises(ValueError):
            tag_store.write_tags({first: labels})
    assert sha256(store) == before


def test_unknown_events_are_refused(store: Path) -> None:
    before = sha256(store)
    with TagStore.open(str(store)) as tag_store:
        with pytest.raises(ValueError, match="not every identifier"):
            tag_store.write_tags({10_000: ["toolmarks"]})
        with pytest.raises(TypeError):
            tag_store.write_tags({"event.1": ["toolmarks"]})
    assert sha256(store) == before


# Refusals: a clear StoreError, and the file byte-identical.


def refused(path: Path, match: str) -> str:
    before = sha256(path) if path.is_file() else None
    with pytest.raises(StoreError, match=match) as error:
        TagStore.open(str(path))
    message = str(error.value)
    assert message.startswith(str(path)), message
    if before is not None:
        assert sha256(path) == before
    assert leftovers(path) == []
    return message


def test_refuses_missing_and_non_plaso_files(tmp_path: Path) -> None:
    refused(tmp_path / "missing.plaso", "no such file")
    text = tmp_path / "notes.plaso"
    text.write_text("not a store\n" * 20)
    refused(text, "not a plaso storage file")
    empty = tmp_path / "empty.plaso"
    empty.touch()
    refused(empty, "not a plaso storage file")
    other = tmp_path / "other.plaso"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE things (name TEXT)")
    refused(other, "not a plaso storage file")
    refused(tmp_path, "not a regular file")


def test_refuses_truncated_and_corrupt_stores(store: Path) -> None:
    data = store.read_bytes()
    store.write_bytes(data[: len(data) // 2])
    refused(store, "truncated")

    # Same size, one b-tree page overwritten.
    page_size = int.from_bytes(data[16:18], "big")
    damaged = bytearray(data)
    damaged[3 * page_size : 4 * page_size] = b"\x5a" * page_size
    store.write_bytes(bytes(damaged))
    refused(store, "corrupt")


@pytest.mark.parametrize(
    ("version", "match"), [("20190101", "older"), ("20990101", "newer")]
)
def test_refuses_other_format_versions(store: Path, version: str, match: str) -> None:
    with sqlite3.connect(store) as connection:
        connection.execute(
            "UPDATE metadata SET value = ? WHERE key = 'format_version'", (version,)
        )
    connection.close()
    message = refused(store, f"format {version} is not supported")
    assert match in message


def test_refuses_a_read_only_store(store: Path) -> None:
    """As root any file is writable: read-only means no write bit in its mode."""
    store.chmod(0o444)
    refused(store, "read-only")


def test_refuses_a_store_on_a_read_only_file_system(
    store: Path, tmp_path: Path
) -> None:
    mount_point = tmp_path / "ro"
    mount_point.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)])
    try:
        shutil.copyfile(store, mount_point / store.name)
        run(["mount", "-o", "remount,ro", str(mount_point)])
        refused(mount_point / store.name, "file system is mounted read-only")
    finally:
        run(["umount", str(mount_point)])


LOCK_HOLDER = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
"""
WRITER_HOLDER = """
import sys
f = open(sys.argv[1], "r+b")
print("open", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def holding(script: str, store: Path, ready: str) -> Iterator[subprocess.Popen]:
    """Another process running `script` on the store until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(store)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == ready
        yield holder
    finally:
        holder.communicate("")


def test_refuses_a_store_locked_by_another_process(store: Path) -> None:
    with holding(LOCK_HOLDER, store, "locked") as holder:
        message = refused(store, "in use")
        assert str(holder.pid) in message


def test_refuses_a_store_with_a_sqlite_lock(store: Path) -> None:
    """The lock itself, held here (the scan for other writers skips us)."""
    holder = sqlite3.connect(store, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        refused(store, "SQLite lock")
    finally:
        holder.close()


def test_refuses_a_store_open_for_writing_elsewhere(store: Path) -> None:
    with holding(WRITER_HOLDER, store, "open") as holder:
        refused(store, f"process {holder.pid} has it open for writing")
    # Readers do not count.
    with store.open("rb"), TagStore.open(str(store)):
        pass


def test_refuses_a_store_log2timeline_is_writing(tmp_path: Path) -> None:
    plaso = installed_plaso()
    path = tmp_path / "running.plaso"
    process = subprocess.Popen(
        [
            plaso.tool("log2timeline"),
            "--quiet",
            "--status_view",
            "none",
            "--parsers",
            "winevtx,filestat",
            "--logfile",
            str(tmp_path / "running.log.gz"),
            "--storage_file",
            str(path),
            EVTX_DIR,
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not _has_table(path, "metadata"):
            assert process.poll() is None, "log2timeline ended before the test ran"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(StoreError, match="in use"):
            TagStore.open(str(path))
        assert process.poll() is None, "log2timeline ended: the test proved nothing"
    finally:
        process.wait(timeout=120)
    assert process.returncode == 0
    with TagStore.open(str(path)) as tag_store:  # finished: taggable
        assert sum(1 for _ in tag_store.events()) > 10_000


def _has_table(path: Path, name: str) -> bool:
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0)
        try:
            query = "SELECT 1 FROM sqlite_master WHERE name = ?"
            return bool(connection.execute(query, (name,)).fetchone())
        finally:
            connection.close()
    except sqlite3.Error:
        return False


def test_refuses_an_unfinished_session(store: Path) -> None:
    """A killed log2timeline: older plaso leaves a session without completion
    time, plaso 20260720 (adding its session at the end) none."""
    with sqlite3.connect(store) as connection:
        connection.execute("UPDATE session SET completion_time = NULL")
    connection.close()
    refused(store, "has no completion time")
    with sqlite3.connect(store) as connection:
        connection.execute("DELETE FROM session")
    connection.close()
    refused(store, "no session")


def test_refuses_a_journal_beside_the_store(store: Path) -> None:
    Path(f"{store}-journal").write_bytes(b"")
    refused(store, "journal")


# Failures while writing: the original stays as it was.


def test_a_store_changed_after_opening_is_not_written(store: Path) -> None:
    with TagStore.open(str(store)) as tag_store:
        first = next(tag_store.events()).identifier
        with sqlite3.connect(store) as connection:
            connection.execute("UPDATE session SET product_name = 'changed'")
        connection.close()
        changed = sha256(store)
        with pytest.raises(StoreError, match="changed since it was opened"):
            tag_store.write_tags({first: ["toolmarks"]})
    assert sha256(store) == changed
    assert leftovers(store) == []


def test_a_full_disk_leaves_the_original_and_no_copy(
    store: Path, tmp_path: Path
) -> None:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    size = store.stat().st_size
    # Room for the store but not for a second copy of it.
    run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={size + 16384}",
            "tmpfs",
            str(mount_point),
        ]
    )
    try:
        path = mount_point / store.name
        shutil.copyfile(store, path)
        before = sha256(path)
        with TagStore.open(str(path)) as tag_store:
            wanted = {e.identifier: ["toolmarks"] for e in tag_store.events()}
            with pytest.raises(StoreError, match="cannot write the tags"):
                tag_store.write_tags(wanted)
        assert sha256(path) == before
        assert leftovers(path) == []
    finally:
        run(["umount", str(mount_point)])


KILL_SCRIPT = """
import sys
from toolmarks.plugins.store import TagStore
with TagStore.open(sys.argv[1]) as store:
    wanted = {event.identifier: ["killed_while_tagging"] for event in store.events()}
    print("writing", flush=True)
    store.write_tags(wanted)
print("done", flush=True)
"""


def test_sigkill_while_tagging_leaves_the_store_whole(
    release: str, made_stores: Callable[..., Path], tmp_path: Path
) -> None:
    """Killed at several points of write_tags: untouched or fully tagged."""
    big = made_stores(release, "big")
    original = sha256(big)
    outcomes = []
    for delay in (0.0, 0.1, 0.25, 0.5, 1.0, 30.0):
        path = tmp_path / "big.plaso"
        shutil.copyfile(big, path)
        process = subprocess.Popen(
            [sys.executable, "-c", KILL_SCRIPT, str(path)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout.readline().strip() == "writing"
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
        killed = process.returncode == -signal.SIGKILL
        left = leftovers(path)
        for leftover in left:
            leftover.unlink()
        if sha256(path) == original:
            outcome = "untouched"
        else:
            with TagStore.open(str(path)) as tag_store:
                untagged = sum(
                    1
                    for event in tag_store.events()
                    if "killed_while_tagging" not in event.labels
                )
            with sqlite3.connect(path) as connection:
                counted = dict(
                    connection.execute(
                        "SELECT label, number_of_events FROM event_label_count"
                    )
                )
            connection.close()
            assert untagged == 0, f"killed after {delay}s: half tagged"
            assert counted["killed_while_tagging"] >= 100_000
            outcome = "tagged"
        outcomes.append((delay, killed, bool(left), outcome))
    # The kills landed inside write_tags (a copy was being written), and the
    # last run, not killed, tagged the whole store.
    assert any(killed and left for _, killed, left, _ in outcomes), outcomes
    assert outcomes[-1][1:] == (False, False, "tagged"), outcomes
