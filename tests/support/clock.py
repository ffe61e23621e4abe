"""A clock the tests move by hand (the refresher, the endpoint and botocore all take one)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass
class FakeClock:
    now: dt.datetime

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)
