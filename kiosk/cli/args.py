"""Argument types for the ``kiosk`` command: numbers are checked where they are parsed, so a
``--speed 0`` is a usage error, not a division by zero later."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(kind: Callable[[str], float], low: float, high: float | None, what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if math.isnan(value) or value < low or (high is not None and value > high):
            limit = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text!r}: must be {limit}")
        return value

    return parse


def positive(text: str) -> float:
    """A number above zero (speeds, durations)."""
    value = _number(float, float("-inf"), None, "a number")(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a number above 0")
    return value


def seconds(text: str) -> float:
    """A duration of zero seconds or more."""
    return _number(float, 0.0, 24 * 3600.0, "a number of seconds")(text)


def count(text: str) -> int:
    """A whole number of at least 1."""
    return int(_number(int, 1, None, "a whole number")(text))


def port(text: str) -> int:
    """A TCP port (0 picks a free one)."""
    return int(_number(int, 0, 65535, "a port number")(text))


def dbfs(text: str) -> float:
    """A level in dBFS (-120 to 0)."""
    return _number(float, -120.0, 0.0, "a level in dBFS")(text)
