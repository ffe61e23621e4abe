"""Health-check results shared by ``doctor`` and the backends' ``health(opts)`` functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["pass", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """One line of ``doctor``'s table. ``detail`` names the cause (never a secret)."""

    name: str
    status: Status
    detail: str
