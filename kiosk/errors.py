"""The kiosk's error tree, and the retry policy every retry loop shares.

Each error also subclasses the builtin it refines, so callers that only know the builtin
still catch it. ``retryable`` says whether trying again later can help; retry loops ask
:func:`is_retryable` instead of matching on types themselves, and wait
:func:`backoff_delay` between attempts.
"""

from __future__ import annotations

from collections.abc import Callable


class KioskError(Exception):
    """Base of every error the kiosk raises on purpose."""

    retryable = False


class ConfigError(KioskError, ValueError):
    """The configuration is invalid; carries one human-readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class UsageError(KioskError, ValueError):
    """A command's arguments parse but cannot be acted on (an unknown tool name, nothing to retry)."""


class DeviceError(KioskError, OSError):
    """An audio or GPIO device is missing or failed; it may come back (USB at boot)."""

    retryable = True


class RealtimeError(KioskError, ConnectionError):
    """The Realtime connection failed in a way that reconnecting may fix."""

    retryable = True


class FatalRealtimeError(RealtimeError):
    """The Realtime service refused us for good (bad key, no quota): retrying is a storm."""

    retryable = False


class StoreError(KioskError, OSError):
    """The local database failed (disk full, permissions)."""


class StoreFull(StoreError):
    """The disk (or the database's page limit) is full: nothing was written, and saving works
    again once space returns."""

    retryable = True


class ToolError(KioskError, ValueError):
    """A tool call could not be carried out; message and ``fix`` are for the model to act on."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.fix = fix


def is_retryable(exc: BaseException) -> bool:
    """True when trying the same operation again later may succeed."""
    if isinstance(exc, KioskError):
        return exc.retryable
    return isinstance(exc, ConnectionError | TimeoutError | OSError)


def backoff_delay(failures: int, base_s: float, cap_s: float, rand: Callable[[], float]) -> float:
    """The wait after ``failures`` consecutive failures: exponential backoff with full jitter.

    Uniform in [0, min(cap, base * 2^(failures-1))] (``rand`` gives [0, 1)): spread out, so a
    fleet of kiosks that lost the network together does not come back in one wave.
    """
    ceiling = min(cap_s, base_s * 2 ** min(max(failures - 1, 0), 32))
    return float(rand() * ceiling)
