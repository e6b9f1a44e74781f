"""The durable alert spool."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamcount.sinks.spool import Spool, SpoolError


def test_fifo_and_survives_reopen(tmp_path: Path) -> None:
    with Spool(tmp_path / "s") as sp:
        seqs = [sp.append({"n": i}) for i in range(5)]
        assert seqs == sorted(seqs) and len(sp) == 5
        seq, item = sp.peek()
        assert item == {"n": 0}
        sp.remove(seq)
        assert sp.peek()[1] == {"n": 1}
    with Spool(tmp_path / "s") as sp:
        assert [i["n"] for _, i in sp.items()] == [1, 2, 3, 4]
        assert sp.append({"n": 5}) > seqs[-1]  # sequence continues after a restart


def test_survives_a_killed_process(tmp_path: Path) -> None:
    d = tmp_path / "s"
    code = ("import os, sys\nfrom streamcount.sinks.spool import Spool\n"
            f"sp = Spool({str(d)!r})\n"
            "for i in range(20): sp.append({'n': i})\n"
            "os.kill(os.getpid(), 9)\n")
    r = subprocess.run([sys.executable, "-c", code], timeout=120)
    assert r.returncode == -9
    with Spool(d) as sp:  # the lock died with the process
        assert [i["n"] for _, i in sp.items()] == list(range(20))


def test_bound_drops_oldest_with_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(tmp_path, max_entries=3) as sp:
        for i in range(5):
            sp.append({"n": i})
        assert [i["n"] for _, i in sp.items()] == [2, 3, 4]
        assert sp.dropped == 2
    assert "spool" in caplog.text and "dropped the oldest" in caplog.text


def test_corrupt_and_partial_entries(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Spool(tmp_path) as sp:
        a = sp.append({"n": 1})
        sp.append({"n": 2})
    (tmp_path / f"{a:020d}.json").write_text("{trunc")
    (tmp_path / "00000000000000000009.tmp").write_text("{}")  # interrupted append
    with Spool(tmp_path) as sp:
        assert sp.peek()[1] == {"n": 2}
        assert len(sp) == 1
    assert not list(tmp_path.glob("*.tmp"))
    assert "unreadable entry" in caplog.text


def test_single_user(tmp_path: Path) -> None:
    with Spool(tmp_path):
        with pytest.raises(SpoolError, match="in use"):
            Spool(tmp_path)
    Spool(tmp_path).close()


def test_entries_are_plain_json_files(tmp_path: Path) -> None:
    with Spool(tmp_path) as sp:
        seq = sp.append({"topic": "a/b", "payload": "{}"})
    assert json.loads((tmp_path / f"{seq:020d}.json").read_text()) == {"topic": "a/b",
                                                                         "payload": "{}"}
