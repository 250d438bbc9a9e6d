"""The button and the lights, behind small ports.

The state machine decides *which* pattern to show; a ``Lights`` adapter decides how
(GPIO LEDs on the Pi, a log line on a laptop, a list in tests and the demo).
Button adapters only hand events to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
from collections.abc import Callable
from typing import Protocol

from kiosk.conversation import ButtonHeld, ButtonPressed, Pattern

log = logging.getLogger(__name__)

ButtonEvent = ButtonPressed | ButtonHeld
ButtonSink = Callable[[ButtonEvent], None]


class Lights(Protocol):
    """Something that shows a light pattern."""

    def show(self, pattern: Pattern) -> None:
        """Show ``pattern`` until told otherwise."""

    def close(self) -> None:
        """Turn everything off and release pins."""


class RecordingLights:
    """Remembers every pattern shown (demo and tests)."""

    def __init__(self) -> None:
        self.shown: list[Pattern] = []

    def show(self, pattern: Pattern) -> None:
        """Record the pattern."""
        self.shown.append(pattern)

    def close(self) -> None:
        """Nothing to release."""


class LogLights:
    """Lights for a machine without GPIO: one DEBUG line per change."""

    def show(self, pattern: Pattern) -> None:
        """Log the pattern."""
        log.debug("lights: %s", pattern.value)

    def close(self) -> None:
        """Nothing to release."""


class KeyboardButton:
    """``kiosk run --no-gpio``: Enter on the terminal is a short press, ``h`` + Enter a long one."""

    def __init__(self, sink: ButtonSink) -> None:
        self._sink = sink

    def attach(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Start reading stdin through the loop (no thread); False when stdin cannot be read so
        (``/dev/null`` under nohup or CI, a closed stdin): then there is no keyboard button."""
        try:
            fd = sys.stdin.fileno()
            mode = os.fstat(fd).st_mode
        except (OSError, ValueError, AttributeError):
            return False
        if not (os.isatty(fd) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return False  # a file or /dev/null: the loop cannot wait on it
        loop.add_reader(fd, self._on_line)
        return True

    def _on_line(self) -> None:
        line = sys.stdin.readline()
        if line == "":  # EOF: stop listening
            asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
            return
        self._sink(ButtonHeld() if line.strip().lower().startswith("h") else ButtonPressed())
