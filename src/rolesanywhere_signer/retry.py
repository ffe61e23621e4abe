"""Retries bounded by attempts *and* total time, with full-jitter exponential backoff."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from .records import Record


class RetryPolicy(Record):
    __slots__ = ("attempts", "backoff", "base_delay", "max_delay", "monotonic", "sleep", "total_seconds")
    _fields = ("attempts", "total_seconds", "base_delay", "max_delay", "backoff", "sleep", "monotonic")
    # the clock and sleep functions are neither shown nor compared
    _shown = _compared = ("attempts", "total_seconds", "base_delay", "max_delay", "backoff")

    attempts: int
    #: no new attempt starts after this many seconds from the first
    total_seconds: float
    base_delay: float
    max_delay: float
    #: False removes sleeping entirely (tests)
    backoff: bool
    sleep: Callable[[float], None]
    monotonic: Callable[[], float]

    def __init__(
        self,
        attempts: int = 4,
        total_seconds: float = 30.0,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        backoff: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._init(
            attempts=attempts,
            total_seconds=total_seconds,
            base_delay=base_delay,
            max_delay=max_delay,
            backoff=backoff,
            sleep=sleep,
            monotonic=monotonic,
        )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Backoff before attempt ``attempt + 1`` (attempt counts from 1): full jitter."""
        if not self.backoff:
            return 0.0
        return backoff_delay(attempt, self.base_delay, self.max_delay, rng)


def backoff_delay(
    failures: int, base: float, cap: float, rng: random.Random | None = None, *, min_fraction: float = 0.0
) -> float:
    """Exponential backoff after ``failures`` failures (from 1): ``base`` doubling up to ``cap``,
    drawn uniformly between ``min_fraction`` of that ceiling and all of it (0: full jitter, as
    the CreateSession retries use; 0.5: "equal jitter", as the refresher's attempts use)."""
    ceiling = min(cap, base * (2 ** (max(1, failures) - 1)))
    return (rng or random).uniform(ceiling * min_fraction, ceiling)


NO_RETRY = RetryPolicy(attempts=1, backoff=False)
