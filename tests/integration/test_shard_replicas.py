"""Three ``streamcount run`` replica processes on one 6-camera config and a real mosquitto:
every camera is counted by exactly one replica; after one replica is stopped and the others are
restarted with COUNT=2, every camera is again counted by exactly one, and only the stopped
replica's cameras moved.

Each replica writes its own JSONL (``${EVENTS}`` in the shared config) so the test knows who
counted what; on the broker, each replica's availability and stats are its own topics.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streamcount.sharding import assign

from tests.integration.mosquitto import Mosquitto, Subscriber

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

PREFIX = "shardtest"
#: chosen so that 3 replicas own 2 cameras each (asserted below)
CAMERAS = ("gate", "hall", "lobby", "platform", "tunnel", "bridge")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny_clip(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.mp4"
    try:
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc=size=64x48:rate=5", "-t", "2", "-pix_fmt", "yuv420p",
                        str(path)], check=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    return path


def write_config(path: Path, broker: Mosquitto, model: Path, clip: Path) -> Path:
    cams = "".join(f"  - {{name: {c}, source: {clip}, loop: true, fps: 1}}\n" for c in CAMERAS)
    # one config for every replica: same client_id and spool_dir (made per replica by the
    # service), the JSONL path from each process's environment
    path.write_text(
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}, topic_prefix: {PREFIX}, "
        f"client_id: streamcount, spool_dir: {path.parent / 'spool'}, stats_interval_s: 1}}\n"
        "http: {enabled: false}\n"
        f"inference: {{model: {model}, backend: torch, max_side: 64, threads: 1, max_batch: 2}}\n"
        "sinks: {jsonl: '${EVENTS}'}\n"
        f"cameras:\n{cams}")
    return path


class Replica:
    """One ``streamcount run`` process with its own JSONL."""

    def __init__(self, config: Path, events: Path, shard_env: dict[str, str]) -> None:
        self.events = events
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCOUNT_SHARD")}
        env.update(shard_env, EVENTS=str(events), OMP_NUM_THREADS="1")
        self.log = events.with_suffix(".log")
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamcount", "run", str(config)], cwd=ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT)

    def counted(self) -> set[str]:
        """Cameras with at least one real (``ok``) count in this replica's JSONL."""
        if not self.events.exists():
            return set()
        out = set()
        for line in self.events.read_text().splitlines():
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written
            if e["type"] == "CountUpdate" and e["state"] == "ok":
                out.add(e["camera"])
        return out

    def stop(self) -> int:
        """SIGTERM (the service drains) and the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"replica did not stop on SIGTERM:\n{self.log.read_text()}")


def wait_until(pred: Callable[[], bool], timeout: float, what: str,
               replicas: list[Replica]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        for r in replicas:
            if r.proc.poll() is not None:
                raise AssertionError(f"a replica exited ({r.proc.returncode}):\n"
                                     f"{r.log.read_text()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def owners(replicas: dict[int, Replica]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {c: [] for c in CAMERAS}
    for i, r in replicas.items():
        for cam in r.counted():
            found[cam].append(i)
    return found


def last(sub: Subscriber, topic: str) -> str | None:
    msgs = sub.on(topic)
    return msgs[-1].text if msgs else None


def stats_cameras(sub: Subscriber, index: int) -> set[str] | None:
    text = last(sub, f"{PREFIX}/stats/{index}")
    return None if text is None else set(json.loads(text)["cameras"])


def run_phase(replicas: dict[int, Replica], count: int, sub: Subscriber) -> None:
    expected = assign(CAMERAS, count)
    everyone = list(replicas.values())
    wait_until(lambda: all(owners(replicas)[c] for c in CAMERAS), 240,
               f"every camera counted by one of {count} replicas", everyone)
    time.sleep(2)  # let a wrongly shared camera show up in a second replica, if it would
    found = owners(replicas)
    assert all(len(v) == 1 for v in found.values()), found
    assert {c: v[0] for c, v in found.items()} == {c: i for i, cs in expected.items()
                                                   for c in cs}
    wait_until(lambda: all(stats_cameras(sub, i) == set(expected[i]) for i in replicas), 30,
               "each replica's stats topic to list its cameras", everyone)
    for i in replicas:
        assert last(sub, f"{PREFIX}/available/{i}") == "online"
    for cam in CAMERAS:
        assert sub.on(f"{PREFIX}/{cam}/all/count"), cam


def test_three_replicas_then_two(tmp_path: Path, broker: Mosquitto, model_file: Path,
                                 tiny_clip: Path) -> None:
    shares = assign(CAMERAS, 3)
    assert [len(shares[i]) for i in range(3)] == [2, 2, 2]
    config = write_config(tmp_path / "svc.yaml", broker, model_file, tiny_clip)
    sub = Subscriber(broker, [f"{PREFIX}/#"])
    # three ways to name the shard: --shard's env twin, the index env, the pod name ordinal
    envs = [{"STREAMCOUNT_SHARD": "0/3"},
            {"STREAMCOUNT_SHARD_COUNT": "3", "STREAMCOUNT_SHARD_INDEX": "1"},
            {"STREAMCOUNT_SHARD_COUNT": "3", "HOSTNAME": "streamcount-2"}]
    first = {i: Replica(config, tmp_path / f"a{i}.jsonl", envs[i]) for i in range(3)}
    try:
        run_phase(first, 3, sub)
        assert first[2].stop() == 0
        # replica 2's clean stop marks only its own availability offline
        wait_until(lambda: last(sub, f"{PREFIX}/available/2") == "offline", 20,
                   "replica 2 offline", [])
        assert last(sub, f"{PREFIX}/available/0") == "online"
        assert last(sub, f"{PREFIX}/available") is None  # no shared availability topic
        assert [first[i].stop() for i in (0, 1)] == [0, 0]
    finally:
        for r in first.values():
            r.stop()

    second = {i: Replica(config, tmp_path / f"b{i}.jsonl",
                         {"STREAMCOUNT_SHARD": f"{i}/2"}) for i in range(2)}
    try:
        run_phase(second, 2, sub)
        after = assign(CAMERAS, 2)
        for i in (0, 1):  # only the removed replica's cameras moved
            assert set(shares[i]) <= set(after[i])
    finally:
        codes = [r.stop() for r in second.values()]
    assert codes == [0, 0]
    sub.close()
