"""The batcher: a batch closes when full or when its window has passed, and stopping flushes
what is left. Time is the event loop's; the windows are short."""

from __future__ import annotations

import asyncio

from infra.runtime.batching import Batcher

DEADLINE_S = 5.0


class Recorder:
    """A flush that records each batch; it holds a batch while `release` is clear."""

    def __init__(self) -> None:
        self.flushed: asyncio.Queue[list[int]] = asyncio.Queue()
        self.release = asyncio.Event()
        self.release.set()

    async def flush(self, batch: list[int]) -> None:
        self.flushed.put_nowait(batch)
        await self.release.wait()

    async def next_batch(self) -> list[int]:
        return await asyncio.wait_for(self.flushed.get(), DEADLINE_S)


async def test_a_full_batch_closes_without_waiting_for_its_window() -> None:
    recorder, stop = Recorder(), asyncio.Event()
    batcher = Batcher(recorder.flush, max_size=3, window_s=60)
    running = asyncio.create_task(batcher.run(stop))
    for item in range(3):
        batcher.add(item)

    assert await recorder.next_batch() == [0, 1, 2]
    stop.set()
    await running


async def test_a_lone_item_goes_out_when_its_window_has_passed() -> None:
    recorder, stop = Recorder(), asyncio.Event()
    batcher = Batcher(recorder.flush, max_size=100, window_s=0.01)
    running = asyncio.create_task(batcher.run(stop))
    batcher.add(1)

    assert await recorder.next_batch() == [1]
    stop.set()
    await running


async def test_items_that_arrive_during_a_flush_make_the_next_batch() -> None:
    recorder, stop = Recorder(), asyncio.Event()
    recorder.release.clear()
    batcher = Batcher(recorder.flush, max_size=100, window_s=0)
    running = asyncio.create_task(batcher.run(stop))
    batcher.add(1)
    assert await recorder.next_batch() == [1]

    for item in (2, 3, 4):
        batcher.add(item)
    recorder.release.set()

    assert await recorder.next_batch() == [2, 3, 4]
    stop.set()
    await running


async def test_stopping_flushes_everything_left_in_batches_of_the_maximum_size() -> None:
    recorder, stop = Recorder(), asyncio.Event()
    batcher = Batcher(recorder.flush, max_size=2, window_s=60)
    for item in range(5):
        batcher.add(item)
    stop.set()

    await asyncio.wait_for(batcher.run(stop), DEADLINE_S)

    assert [recorder.flushed.get_nowait() for _ in range(3)] == [[0, 1], [2, 3], [4]]
    assert len(batcher) == 0
