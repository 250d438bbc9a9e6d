"""Hooks for the demo and tests to watch a running kiosk (the daemon watches nothing)."""

from __future__ import annotations

from typing import Protocol

from kiosk import conversation as cv


class Observer(Protocol):
    """Hooks for the demo and tests (a no-op in the daemon)."""

    def transcript(self, role: str, text: str) -> None:
        """A finished transcript line."""

    def tool(self, name: str, arguments: str, output: str) -> None:
        """A tool ran."""

    def visit_ended(self, reason: cv.EndReason, duration_s: float | None) -> None:
        """A visit ended."""

    def playing(self, playing: bool) -> None:
        """The speaker became audible (True) or quiet (False)."""


class NullObserver:
    """Observes nothing."""

    def transcript(self, role: str, text: str) -> None:
        """Ignore."""

    def tool(self, name: str, arguments: str, output: str) -> None:
        """Ignore."""

    def visit_ended(self, reason: cv.EndReason, duration_s: float | None) -> None:
        """Ignore."""

    def playing(self, playing: bool) -> None:
        """Ignore."""
