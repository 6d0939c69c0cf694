"""Wall time with JAX's compilation pipeline (tracing, lowering, XLA compile) split out.

JAX reports the duration of each tracing, lowering and backend-compilation event through
``jax.monitoring``. We record each event as the interval ``[end - duration, end]`` and take the
length of the union of the intervals inside a timed block (nested events, e.g. the trace of an
inner ``jit`` inside an outer one, are counted once). ``sampling = wall - compile`` is then the
time spent running compiled code plus Python dispatch: the sampling clock.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import jax

__all__ = ["Timing", "timed"]

_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_intervals: list[tuple[float, float]] = []
_registered = False


def _listener(event: str, duration: float, **kwargs) -> None:
    if event in _EVENTS:
        end = time.perf_counter()
        _intervals.append((end - duration, end))


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return total


class Timing:
    """``wall`` and ``compile`` seconds of a block; ``sampling = wall - compile``."""

    wall: float = 0.0
    compile: float = 0.0

    @property
    def sampling(self) -> float:
        return max(self.wall - self.compile, 0.0)


@contextmanager
def timed():
    """Time a block: ``with timed() as t: ...`` then ``t.wall``, ``t.compile``, ``t.sampling``."""
    global _registered
    if not _registered:
        jax.monitoring.register_event_duration_secs_listener(_listener)
        _registered = True
    timing = Timing()
    _intervals.clear()
    start = time.perf_counter()
    try:
        yield timing
    finally:
        timing.wall = time.perf_counter() - start
        inside = [(max(s, start), e) for s, e in _intervals if e > start]
        timing.compile = _union_length(inside)
        _intervals.clear()
