"""Retries bounded by attempts *and* total time, with full-jitter exponential backoff."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    #: no new attempt starts after this many seconds from the first
    total_seconds: float = 30.0
    base_delay: float = 0.5
    max_delay: float = 8.0
    #: False removes sleeping entirely (tests)
    backoff: bool = True
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    monotonic: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Backoff before attempt ``attempt + 1`` (attempt counts from 1): full jitter."""
        if not self.backoff:
            return 0.0
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return (rng or random).uniform(0, ceiling)


NO_RETRY = RetryPolicy(attempts=1, backoff=False)
