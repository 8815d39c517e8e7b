"""Milliseconds since a `time.perf_counter()` reading: the unit of every `timings` field in a response."""

from __future__ import annotations

import time


def elapsed_ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)
