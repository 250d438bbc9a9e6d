"""The self-test's rows: a check's name, PASS / FAIL / SKIP and what it found."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["PASS", "FAIL", "SKIP"]


@dataclass(frozen=True)
class Result:
    """One row of the table."""

    name: str
    status: Status
    detail: str


def ok(name: str, detail: str) -> Result:
    """A passed check."""
    return Result(name, "PASS", detail)


def fail(name: str, detail: str) -> Result:
    """A failed check."""
    return Result(name, "FAIL", detail)


def skip(name: str, detail: str) -> Result:
    """A check not run on purpose."""
    return Result(name, "SKIP", detail)
