"""gpiozero adapters for the big button and the lights (pin factory injectable).

A short press is reported on release (so a long press is never also a short one); a
press held for ``hold_s`` is a long press. gpiozero calls back on its own thread: we
only hand the event over (``sink`` is thread-safe).

Debouncing is done here, on edges, with an injected clock, as well as by the pin driver:
not every pin factory debounces (gpiozero's MockFactory ignores ``bounce_time``), and a
contact that chatters on release must not count as a second press.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gpiozero import PWMLED, RGBLED, Button

from kiosk.config import PanelSettings
from kiosk.conversation import ButtonHeld, ButtonPressed, Pattern
from kiosk.errors import ConfigError, DeviceError
from kiosk.panel.ports import ButtonSink

log = logging.getLogger(__name__)

# (lamp behaviour, RGB colour, RGB behaviour) per pattern; behaviours: on, breathe, blink, pulse
LOOKS: dict[Pattern, tuple[str, tuple[float, float, float], str]] = {
    Pattern.IDLE: ("breathe", (0.0, 0.15, 0.0), "on"),
    Pattern.CONNECTING: ("blink", (0.0, 0.0, 1.0), "blink"),
    Pattern.LISTENING: ("on", (0.0, 1.0, 0.0), "on"),
    Pattern.VISITOR_SPEAKING: ("on", (0.0, 1.0, 1.0), "on"),
    Pattern.ASSISTANT_SPEAKING: ("pulse", (0.0, 0.0, 1.0), "pulse"),
    Pattern.OFFLINE: ("off", (1.0, 0.5, 0.0), "breathe"),
    Pattern.UNAVAILABLE: ("off", (1.0, 0.0, 1.0), "on"),  # daily budget spent: lamp dark, magenta
    Pattern.ERROR: ("off", (1.0, 0.0, 0.0), "blink"),
}

_TIMING = {"blink": (0.15, 0.15), "pulse": (0.4, 0.4), "breathe": (1.5, 1.5)}


class GpioPanel:
    """The button and the lights on GPIO pins."""

    def __init__(
        self,
        settings: PanelSettings,
        sink: ButtonSink,
        pin_factory: Any = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._bounce_s = settings.bounce_s
        self._lock = threading.Lock()  # gpiozero may call back from more than one thread
        self._down = False
        self._held = False
        self._last_edge = float("-inf")
        self.lamp: Any = None
        self.status: Any = None
        self.button = Button(
            settings.button_pin,
            pull_up=settings.pull_up,
            bounce_time=settings.bounce_s or None,
            hold_time=settings.hold_s,
            pin_factory=pin_factory,
        )
        self.button.when_pressed = self._on_pressed
        self.button.when_held = self._on_held
        self.button.when_released = self._on_released
        try:
            if settings.lamp_pin is not None:
                self.lamp = PWMLED(settings.lamp_pin, pin_factory=pin_factory)
            r = settings.status_rgb_pins
            if r is not None:
                self.status = RGBLED(*r, pin_factory=pin_factory)
        except BaseException:
            self.close()  # release the pins already taken, so a retry can have them
            raise
        self.pattern: Pattern | None = None

    def attach(self, sink: ButtonSink) -> None:
        """Send button events to ``sink`` from now on (the kiosk is built after the lights)."""
        self._sink = sink

    def _edge(self) -> bool:
        """True when this edge is real, not contact chatter within ``bounce_s`` of the last one."""
        now = self._clock()
        if now - self._last_edge < self._bounce_s:
            return False
        self._last_edge = now
        return True

    def _on_pressed(self) -> None:
        with self._lock:
            # Already down after bounce_s: the release was a tap shorter than bounce_s
            # and was dropped as chatter; this is a new press.
            if self._edge():
                self._down = True
                self._held = False

    def _on_held(self) -> None:
        with self._lock:
            if not self._down or self._held:
                return
            self._held = True
        self._sink(ButtonHeld())

    def _on_released(self) -> None:
        with self._lock:
            if not self._down or not self._edge():
                return
            self._down = False
            if self._held:
                self._held = False
                return
        self._sink(ButtonPressed())

    def show(self, pattern: Pattern) -> None:
        """Drive the LEDs for ``pattern``."""
        self.pattern = pattern
        lamp_look, colour, rgb_look = LOOKS[pattern]
        if self.lamp is not None:
            _drive(self.lamp, lamp_look, 1.0)
        if self.status is not None:
            _drive_rgb(self.status, rgb_look, colour)

    def close(self) -> None:
        """Lights off, pins released."""
        for dev in (self.lamp, self.status, self.button):
            if dev is not None:
                dev.close()


def _drive(led: Any, look: str, level: float) -> None:
    if look == "on":
        led.value = level
    elif look == "off":
        led.off()
    elif look == "blink":
        led.blink(*_TIMING["blink"])
    else:
        fade_in, fade_out = _TIMING[look]
        led.pulse(fade_in_time=fade_in, fade_out_time=fade_out)


def _drive_rgb(led: Any, look: str, colour: tuple[float, float, float]) -> None:
    if look == "on":
        led.color = colour
    elif look == "blink":
        on, off = _TIMING["blink"]
        led.blink(on_time=on, off_time=off, on_color=colour)
    else:
        fade_in, fade_out = _TIMING[look]
        led.pulse(fade_in_time=fade_in, fade_out_time=fade_out, on_color=colour)


def open_panel(settings: PanelSettings, sink: ButtonSink, pin_factory: Any = None) -> GpioPanel:
    """The panel, or one clear error: ConfigError when the wiring or the machine cannot work
    (no GPIO here, a pin that does not exist or cannot dim), DeviceError when it may pass
    (a pin held by another program)."""
    from gpiozero.exc import BadPinFactory, GPIOPinInUse, GPIOZeroError, PinInvalidPin, PinPWMUnsupported

    try:
        return GpioPanel(settings, sink, pin_factory)
    except BadPinFactory as exc:
        raise ConfigError([f"panel: no GPIO on this machine ({exc}); wire the panel (hardware/wiring.md) "
                           "or run without it (kiosk run --no-gpio)"]) from None  # fmt: skip
    except (PinInvalidPin, PinPWMUnsupported) as exc:
        raise ConfigError([f"panel: {exc}; check the pins in [panel] against hardware/wiring.md"]) from None
    except GPIOPinInUse as exc:
        raise DeviceError(f"panel: {exc} (another program holds the pin)") from None
    except (GPIOZeroError, OSError) as exc:
        raise DeviceError(f"panel: GPIO failed: {type(exc).__name__}: {exc}") from None
