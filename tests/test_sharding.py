"""Rendezvous sharding: parsing, environment, stability, balance and minimal movement."""

from __future__ import annotations

import subprocess
import sys

import pytest

from streamcount.sharding import Shard, ShardError, assign, owner, resolve_shard, shard_from_env

NAMES = [f"cam-{i:03d}" for i in range(100)]


@pytest.mark.parametrize("text, expected", [
    ("0/1", Shard(0, 1)), ("2/3", Shard(2, 3)), (" 1 / 4 ", Shard(1, 4)),
])
def test_parse(text: str, expected: Shard) -> None:
    assert Shard.parse(text) == expected
    assert str(expected) == f"{expected.index}/{expected.count}"


@pytest.mark.parametrize("text, message", [
    ("3/3", "index must be 0..2"), ("0/0", "count must be"), ("1", "expected INDEX/COUNT"),
    ("-1/3", "expected INDEX/COUNT"), ("a/b", "expected INDEX/COUNT"), ("", "expected"),
])
def test_parse_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ShardError, match=message) as e:
        Shard.parse(text)
    assert "\n" not in str(e.value) and str(e.value).startswith("--shard: ")


def test_owner_is_stable_across_processes() -> None:
    """hashlib, not hash(): another interpreter (other PYTHONHASHSEED) agrees."""
    code = ("from streamcount.sharding import owner; "
            "print(','.join(str(owner(f'cam-{i:03d}', 5)) for i in range(100)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123"}).stdout.strip()
    assert out == ",".join(str(owner(n, 5)) for n in NAMES)
    # pinned values: a change of the hash function would silently move every camera
    assert [owner(n, 3) for n in ("entrance", "hall", "platform-1", "cam1", "cam2")] == \
        [2, 2, 2, 0, 1]
    assert [owner(n, 7) for n in ("entrance", "hall", "platform-1")] == [2, 2, 4]
    assert Shard(0, 1).select(NAMES) == NAMES


@pytest.mark.parametrize("count", [2, 3, 4, 5])
def test_every_name_has_exactly_one_owner_and_the_load_is_balanced(count: int) -> None:
    shares = assign(NAMES, count)
    owned = [n for names in shares.values() for n in names]
    assert sorted(owned) == sorted(NAMES)
    for i in range(count):
        assert Shard(i, count).select(NAMES) == shares[i]
    sizes = [len(v) for v in shares.values()]
    # a fair binomial(100, 1/count) stays within about 3 sigma of its mean
    mean = 100 / count
    sigma = (100 * (1 / count) * (1 - 1 / count)) ** 0.5
    assert all(abs(s - mean) <= 3 * sigma for s in sizes), sizes


@pytest.mark.parametrize("count", [2, 3, 4, 5, 8])
def test_changing_the_count_by_one_moves_about_one_in_count(count: int) -> None:
    before = {n: owner(n, count) for n in NAMES}
    after = {n: owner(n, count + 1) for n in NAMES}
    moved = [n for n in NAMES if before[n] != after[n]]
    # only to the new replica when growing, only from the removed one when shrinking
    assert all(after[n] == count for n in moved)
    assert moved == [n for n in NAMES if after[n] == count]
    expected = 100 / (count + 1)
    assert abs(len(moved) - expected) <= 3 * (100 * (1 / (count + 1))) ** 0.5, len(moved)


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"STREAMCOUNT_SHARD": "1/3"}, Shard(1, 3)),
    ({"STREAMCOUNT_SHARD_COUNT": "3", "STREAMCOUNT_SHARD_INDEX": "2"}, Shard(2, 3)),
    ({"STREAMCOUNT_SHARD_COUNT": "3", "JOB_COMPLETION_INDEX": "1"}, Shard(1, 3)),
    ({"STREAMCOUNT_SHARD_COUNT": "4", "HOSTNAME": "streamcount-3"}, Shard(3, 4)),
    ({"STREAMCOUNT_SHARD_COUNT": "4", "STREAMCOUNT_SHARD_INDEX": "0",
      "HOSTNAME": "streamcount-3"}, Shard(0, 4)),
    ({"HOSTNAME": "streamcount-3"}, None),  # no count: not sharded
])
def test_shard_from_env(env: dict[str, str], expected: Shard | None) -> None:
    assert shard_from_env(env) == expected


@pytest.mark.parametrize("env, message", [
    ({"STREAMCOUNT_SHARD": "3/3"}, "STREAMCOUNT_SHARD: shard index must be 0..2"),
    ({"STREAMCOUNT_SHARD_COUNT": "3", "HOSTNAME": "box"}, "no shard index"),
    ({"STREAMCOUNT_SHARD_COUNT": "x", "STREAMCOUNT_SHARD_INDEX": "0"}, "non-negative integer"),
    ({"STREAMCOUNT_SHARD_COUNT": "2", "HOSTNAME": "streamcount-2"}, "HOSTNAME/"),
    ({"STREAMCOUNT_SHARD_INDEX": "1"}, "STREAMCOUNT_SHARD_COUNT is not"),
])
def test_shard_from_env_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ShardError, match=message):
        shard_from_env(env)


def test_cli_wins_over_env() -> None:
    assert resolve_shard("0/2", {"STREAMCOUNT_SHARD": "1/3"}) == Shard(0, 2)
    assert resolve_shard(None, {"STREAMCOUNT_SHARD": "1/3"}) == Shard(1, 3)
    assert resolve_shard(None, {}) is None
