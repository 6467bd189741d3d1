"""`toolmarks batch --broker` on a real redis-server (password set, persistence
off) and two real `toolmarks worker` processes: the same per-image outputs as
the local pool, a worker killed mid-image changes nothing, bad payloads and
paths outside the evidence root are refused while the workers keep serving,
an unreachable broker exits 2 at once, and the password is written nowhere."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PASSWORD = "pw-Zq7-not-in-any-output"
IMAGES = ("traces.raw", "demo.E01", "workstation.E01")
COMPARED = ("findings.json", "timeline.jsonl", "timeline.csv")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def toolmarks(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "toolmarks", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=env,
    )


def stop(process: subprocess.Popen) -> None:
    """Kills the process's whole group (a worker's pool children too)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


def wait_for(check: Any, what: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


class Cluster:
    """redis-server and the workers, each in its own process group."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "evidence"
        self.root.mkdir()
        self.port = free_port()
        self.url = f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"
        self.logs: list[Path] = []
        self.workers: dict[str, subprocess.Popen] = {}
        self.redis: subprocess.Popen | None = None

    def start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server is missing: run scripts/setup.sh --test")
        self.redis = subprocess.Popen(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                PASSWORD,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def up() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(up, "redis-server")

    def start_worker(self, name: str) -> Path:
        log = self.tmp / f"{name}-{len(self.logs)}.log"
        self.logs.append(log)
        env = dict(os.environ, TOOLMARKS_BROKER=self.url)  # not on `ps`
        with open(log, "wb") as out:
            self.workers[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "toolmarks",
                    "worker",
                    "--evidence-root",
                    str(self.root),
                    "--name",
                    f"{name}@test",
                    "--visibility-timeout",
                    "6",
                    "--time-limit",
                    "120",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        wait_for(lambda: b" ready." in log.read_bytes(), f"worker {name}")
        return log

    def log_text(self) -> str:
        return "".join(log.read_text(errors="replace") for log in self.logs)

    def close(self) -> None:
        for process in self.workers.values():
            stop(process)
        if self.redis:
            stop(self.redis)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, demo_image, traces_images, workstation_images):
    tmp = tmp_path_factory.mktemp("celery")
    found = Cluster(tmp)
    sources = {
        "traces.raw": traces_images["raw"],
        "demo.E01": demo_image["e01"],
        "workstation.E01": workstation_images["e01"],
    }
    for name, source in sources.items():
        (found.root / name).symlink_to(source)
    try:
        found.start_redis()
        found.start_worker("w1")
        found.start_worker("w2")
        yield found
    finally:
        found.close()


def images(cluster: Cluster) -> list[str]:
    return [str(cluster.root / name) for name in IMAGES]


@pytest.fixture(scope="module")
def local(cluster: Cluster) -> Path:
    """The same images on the local pool, the reference."""
    case = cluster.root / "local"
    done = toolmarks("batch", *images(cluster), "-o", str(case), "--workers", "2")
    assert done.returncode == 0, done.stderr
    return case


@pytest.fixture(scope="module")
def remote(cluster: Cluster) -> dict[str, Any]:
    case = cluster.root / "case"
    done = toolmarks(
        "batch",
        *images(cluster),
        "-o",
        str(case),
        "--broker",
        cluster.url,
        "--evidence-root",
        str(cluster.root),
    )
    return {"dir": case, "run": done}


def same_outputs(case: Path, reference: Path) -> None:
    for name in IMAGES:
        for output in COMPARED:
            assert (case / name / output).read_bytes() == (
                reference / name / output
            ).read_bytes(), f"{name}/{output}"


def test_broker_batch_gives_the_local_outputs(remote, local) -> None:
    run = remote["run"]
    assert run.returncode == 0, run.stderr
    assert "3 scanned, 0 skipped, 0 failed" in run.stderr
    # Progress per image: its result as it comes, and which worker took it
    # (seen when the client polls while the scan runs: the long one's).
    for name in IMAGES:
        assert f"/3] {name}: scanned in" in run.stderr
    assert "traces.raw: started on w" in run.stderr
    same_outputs(remote["dir"], local)
    view = json.loads((remote["dir"] / "case.json").read_text())
    local_view = json.loads((local / "case.json").read_text())
    assert view["tools"] == local_view["tools"]
    assert view["order"] == local_view["order"]
    assert (remote["dir"] / "case.jsonl").read_bytes() == (
        local / "case.jsonl"
    ).read_bytes()


def test_rerun_skips_finished_images(cluster, remote) -> None:
    again = toolmarks(
        "batch",
        *images(cluster),
        "-o",
        str(remote["dir"]),
        "--broker",
        cluster.url,
        "--evidence-root",
        str(cluster.root),
    )
    assert again.returncode == 0, again.stderr
    assert "0 scanned, 3 skipped, 0 failed" in again.stderr


def test_paths_outside_the_evidence_root_are_refused(cluster, demo_image) -> None:
    outside = toolmarks(
        "batch",
        str(demo_image["e01"]),
        "-o",
        str(cluster.root / "outside"),
        "--broker",
        cluster.url,
        "--evidence-root",
        str(cluster.root),
    )
    assert outside.returncode == 0, outside.stderr
    assert "FAILED: outside the evidence root" in outside.stderr
    case_outside = toolmarks(
        "batch",
        str(cluster.root / "demo.E01"),
        "-o",
        str(cluster.tmp / "elsewhere"),
        "--broker",
        cluster.url,
        "--evidence-root",
        str(cluster.root),
    )
    assert case_outside.returncode == 2
    assert "must be under the evidence root" in case_outside.stderr


def test_bad_payloads_are_refused_and_the_workers_keep_serving(cluster) -> None:
    from toolmarks.engine.batch import BatchOptions
    from toolmarks.engine.distributed import (
        QUEUE,
        TASK_NAME,
        _payload,
        make_app,
    )
    from toolmarks.indicators import loader

    indicator_set = loader.load([], shipped=True)
    good = _payload(
        "demo.E01", "served/demo.E01", indicator_set, [], True, BatchOptions(), True, ""
    )
    app = make_app(cluster.url)
    try:
        bad = {
            "traversal": dict(good, image="../../etc/passwd"),
            "absolute": dict(good, image="/etc/passwd"),
            "folder": dict(good, folder="../escape"),
            "fields": dict(good, extra=1),
            "types": dict(good, options=dict(good["options"], workers="9")),
            "not an object": ["demo.E01"],
        }
        sent = {
            why: app.send_task(TASK_NAME, args=[payload], queue=QUEUE)
            for why, payload in bad.items()
        }
        # Not a toolmarks call at all, and a pickled message (code on receipt).
        arity = app.send_task(TASK_NAME, args=["demo.E01", 1], queue=QUEUE)
        app.send_task(TASK_NAME, args=[good], queue=QUEUE, serializer="pickle")
        for why, result in sent.items():
            value = result.get(timeout=30)
            assert value["status"] == "refused", why
            assert value["error"].startswith("refused by the worker"), why
        assert arity.get(timeout=30, propagate=False) is not None
        assert arity.state == "FAILURE"
        served = app.send_task(TASK_NAME, args=[good], queue=QUEUE).get(timeout=60)
        assert served["status"] == "ok", served
    finally:
        app.close()
    assert (cluster.root / "served" / "demo.E01" / "timeline.jsonl").is_file()
    assert not (cluster.tmp / "escape").exists()
    logs = cluster.log_text()
    assert logs.count("refused task") >= len(bad)
    assert "is not under the evidence root" in logs
    assert "untrusted content" in logs  # the pickled message, refused unread
    assert all(p.poll() is None for p in cluster.workers.values())


def test_unreachable_broker_exits_2_at_once(cluster, tmp_path) -> None:
    dead = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    wrong = f"redis://:wrong-{PASSWORD}@127.0.0.1:{cluster.port}/0"
    for url in (dead, wrong):
        began = time.monotonic()
        run = toolmarks(
            "batch",
            str(cluster.root / "demo.E01"),
            "-o",
            str(cluster.root / "never"),
            "--broker",
            url,
            "--evidence-root",
            str(cluster.root),
        )
        assert time.monotonic() - began < 10
        assert run.returncode == 2, run.stderr
        assert "cannot reach the broker redis://:**@127.0.0.1:" in run.stderr
        assert PASSWORD not in run.stderr
    worker = toolmarks("worker", "--broker", dead, timeout=20)
    assert worker.returncode == 2 and "cannot reach the broker" in worker.stderr


def test_broker_restart_mid_batch_then_rerun(cluster, local) -> None:
    case = cluster.root / "restarted"
    argv = [*images(cluster), "-o", str(case), "--broker", cluster.url]
    argv += ["--evidence-root", str(cluster.root)]
    logs = cluster.logs[:2]
    before = sum(log.read_text().count(" received") for log in logs)
    client = subprocess.Popen(
        [sys.executable, "-m", "toolmarks", "batch", *argv],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for(
            lambda: sum(log.read_text().count(" received") for log in logs) > before,
            "a worker to take an image",
        )
        assert cluster.redis is not None
        stop(cluster.redis)  # persistence off: the queue is gone
        cluster.start_redis()
        _, stderr = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
    if client.returncode != 0:  # else every image was finished in time
        assert client.returncode == 2, stderr
        assert "restarted during the batch" in stderr or "lost the broker" in stderr
        assert PASSWORD not in stderr
    finished = {
        name: (case / name / "batch.json").stat().st_mtime_ns
        for name in IMAGES
        if (case / name / "batch.json").is_file()
    }
    # The workers reconnect by themselves; the rerun scans only the rest.
    rerun = toolmarks("batch", *argv)
    assert rerun.returncode == 0, rerun.stderr
    # A scan still running at the restart may finish before the rerun.
    counts = re.search(r"(\d+) scanned, (\d+) skipped, 0 failed", rerun.stderr)
    assert counts, rerun.stderr
    assert int(counts[2]) >= len(finished)
    assert int(counts[1]) + int(counts[2]) == len(IMAGES)
    for name, mtime in finished.items():
        assert (case / name / "batch.json").stat().st_mtime_ns == mtime
    same_outputs(case, local)


def test_worker_killed_mid_image_changes_nothing(cluster, local) -> None:
    case = cluster.root / "killed"
    logs = {name: cluster.logs[i] for i, name in enumerate(("w1", "w2"))}
    before = {name: log.read_text().count(" received") for name, log in logs.items()}
    client = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "toolmarks",
            "batch",
            *images(cluster),
            "-o",
            str(case),
            "--broker",
            cluster.url,
            "--evidence-root",
            str(cluster.root),
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    victim: list[str] = []

    def took_one() -> bool:
        for name, log in logs.items():
            if log.read_text().count(" received") > before[name]:
                victim.append(name)
                return True
        return False

    try:
        wait_for(took_one, "a worker to take an image")
        stop(cluster.workers[victim[0]])
        _, stderr = client.communicate(timeout=80)
    finally:
        if client.poll() is None:
            client.kill()
    assert client.returncode == 0, stderr
    assert "3 scanned, 0 skipped, 0 failed" in stderr
    # The image the killed worker had went to the other one (a fourth
    # delivery), and every event is there once.
    received = sum(log.read_text().count(" received") for log in logs.values())
    assert received - sum(before.values()) >= len(IMAGES) + 1
    same_outputs(case, local)
    for name in IMAGES:
        lines = (case / name / "timeline.jsonl").read_text().splitlines()
        assert len(lines) == len(set(lines)) > 0


def test_the_password_is_written_nowhere(cluster, remote) -> None:
    scan = json.loads((remote["dir"] / "demo.E01" / "scan.json").read_text())
    assert "redis://:**@127.0.0.1" in json.dumps(scan)
    assert PASSWORD not in remote["run"].stderr
    written = [p for p in cluster.root.rglob("*") if p.is_file() and not p.is_symlink()]
    assert len(written) > 20
    for path in [*written, *cluster.logs]:
        assert PASSWORD.encode() not in path.read_bytes(), path


@pytest.fixture(autouse=True)
def _no_leak(cluster: Cluster) -> Iterator[None]:
    yield
    assert cluster.redis is not None and cluster.redis.poll() is None
