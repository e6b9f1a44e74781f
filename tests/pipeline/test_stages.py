"""threaded_map and StageTimes: order, errors, early close, accounting."""

from __future__ import annotations

import threading
import time

import pytest

from streamcount.pipeline.stages import StageTimes, threaded_map


def test_results_in_order_computed_on_another_thread() -> None:
    seen: set[str] = set()

    def work(x: int) -> int:
        seen.add(threading.current_thread().name)
        time.sleep(0.001 * (5 - x % 5))  # later items finish sooner
        return x * 10

    assert list(threaded_map(work, range(12), depth=3, name="worker")) == [x * 10 for x in range(12)]
    assert seen == {"worker"}


def test_an_error_in_the_stage_reaches_the_consumer() -> None:
    def work(x: int) -> int:
        if x == 3:
            raise ValueError("bad item 3")
        return x

    got: list[int] = []
    with pytest.raises(ValueError, match="bad item 3"):
        for y in threaded_map(work, range(10)):
            got.append(y)
    assert got == [0, 1, 2]


def test_closing_the_consumer_stops_the_stage() -> None:
    produced: list[int] = []

    def items():
        for i in range(10_000):
            produced.append(i)
            yield i

    gen = threaded_map(lambda x: x, items(), depth=2)
    assert next(gen) == 0
    gen.close()
    n = len(produced)
    time.sleep(0.2)
    assert len(produced) == n < 10  # at most a few items ahead, then nothing more


@pytest.mark.parametrize("depth", [0, -1])
def test_depth_must_be_positive(depth: int) -> None:
    with pytest.raises(ValueError, match="depth"):
        list(threaded_map(lambda x: x, [1], depth=depth))


def test_stage_times_accumulate_per_stage() -> None:
    times = StageTimes()
    for _ in range(3):
        with times.time("a"):
            time.sleep(0.002)
    times.add("b", 0.5, calls=2)
    snap = times.snapshot(frames=10)
    assert list(snap) == ["a", "b"]
    assert snap["a"]["calls"] == 3 and snap["a"]["seconds"] >= 0.006
    assert snap["b"] == {"seconds": 0.5, "calls": 2, "ms_per_frame": 50.0}
    assert list(threaded_map(lambda x: x + 1, [1, 2], times=times, stage="inc")) == [2, 3]
    assert times.snapshot()["inc"]["calls"] == 2
