"""An adapter evicted from a replica's LRU leaves the engine only once its last request has finished."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from serve.deployments.llm import LoadedAdapter


class FakeEngine:
    def __init__(self) -> None:
        self.removed: list[int] = []

    async def remove_lora(self, lora_id: int) -> bool:
        self.removed.append(lora_id)
        return True


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_eviction_waits_for_requests_in_flight() -> None:
    engine, evicted = FakeEngine(), []
    adapter = LoadedAdapter(engine, SimpleNamespace(lora_int_id=7, lora_name="a@v1"), evicted.append)
    adapter.acquire()
    adapter.acquire()
    await asyncio.to_thread(adapter.__del__)  # what Serve's multiplexer does on LRU eviction
    await _settle()
    assert engine.removed == [] and adapter.retired and evicted == ["a@v1"]  # counted at eviction
    adapter.release()
    await _settle()
    assert engine.removed == []
    adapter.release()
    await _settle()
    assert engine.removed == [7]


async def test_an_idle_adapter_is_removed_at_once_and_only_once() -> None:
    engine, evicted = FakeEngine(), []
    adapter = LoadedAdapter(engine, SimpleNamespace(lora_int_id=3, lora_name="b@v1"), evicted.append)
    await asyncio.to_thread(adapter.__del__)
    await _settle()
    adapter.__del__()  # the garbage collector may call it again
    await _settle()
    assert engine.removed == [3] and evicted == ["b@v1"]


async def test_a_release_racing_the_retirement_removes_once() -> None:
    engine = FakeEngine()
    adapter = LoadedAdapter(engine, SimpleNamespace(lora_int_id=5, lora_name="c@v1"), lambda name: None)
    adapter.acquire()
    adapter.__del__()  # retired, but the retirement callback has not run yet
    adapter.release()  # the last request ends first: it schedules a removal ...
    await _settle()  # ... and so does the retirement, which now sees no request in flight
    assert engine.removed == [5]
