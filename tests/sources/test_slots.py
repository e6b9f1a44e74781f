"""FrameSlot policies: latest-frame-wins for cameras, blocking lossless FIFO for files."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from streamcount.messages import Frame
from streamcount.sources.slots import FifoSlot, LatestSlot


def frame(i: int) -> Frame:
    return Frame(camera="c", index=i, pts_s=i / 10, wall_ts=time.time(),
                 image=np.full((4, 4, 3), i % 256, np.uint8))


@pytest.mark.parametrize("capacity, puts, held, dropped", [
    (1, 1, 1, 0),
    (1, 5, 1, 4),
    (2, 5, 2, 3),
    (2, 2, 2, 0),
])
def test_latest_slot_drops_oldest_and_counts(capacity: int, puts: int, held: int,
                                             dropped: int) -> None:
    woke = []
    slot = LatestSlot(capacity, on_put=lambda: woke.append(1))
    for i in range(puts):
        assert slot.put(frame(i)) is True
    assert len(slot) == held
    assert slot.dropped == dropped
    assert slot.put_count == puts
    assert len(woke) == puts
    got = slot.take()
    assert got is not None and got.index == puts - 1  # always the newest
    # older frames still held are discarded by take and counted
    assert slot.dropped == puts - 1
    assert slot.take() is None


def test_latest_slot_clear_and_close() -> None:
    slot = LatestSlot(2)
    slot.put(frame(0))
    slot.put(frame(1))
    assert slot.clear() == 2
    assert slot.dropped == 2 and len(slot) == 0
    slot.close()
    assert slot.put(frame(2)) is False
    assert slot.take() is None


def test_fifo_slot_is_lossless_and_ordered() -> None:
    slot = FifoSlot(3)
    received: list[int] = []
    n = 20

    def producer() -> None:
        for i in range(n):
            assert slot.put(frame(i))

    t = threading.Thread(target=producer)
    t.start()
    while len(received) < n:
        f = slot.take()
        if f is None:
            time.sleep(0.001)
            continue
        assert len(slot) <= 3
        received.append(f.index)
    t.join(5)
    assert received == list(range(n))
    assert slot.dropped == 0


def test_fifo_slot_blocks_producer_while_full() -> None:
    slot = FifoSlot(2)
    assert slot.put(frame(0)) and slot.put(frame(1))
    assert slot.put(frame(2), timeout=0.05) is False  # full: timed out, nothing dropped
    assert len(slot) == 2 and slot.dropped == 0
    done = threading.Event()

    def producer() -> None:
        slot.put(frame(2))
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not done.wait(0.1)  # still blocked
    first = slot.take()
    assert first is not None and first.index == 0
    assert done.wait(5)
    t.join(5)
    assert [slot.take().index, slot.take().index] == [1, 2]  # type: ignore[union-attr]


def test_fifo_slot_close_wakes_blocked_producer() -> None:
    slot = FifoSlot(1)
    slot.put(frame(0))
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(slot.put(frame(1))))
    t.start()
    time.sleep(0.05)
    slot.close()
    t.join(5)
    assert result == [False]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LatestSlot(0)
    with pytest.raises(ValueError):
        FifoSlot(0)
