"""The button and the lights on gpiozero's own MockFactory: presses, long presses,
contact bounce, and the pattern each kiosk state shows on the pins."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from kiosk.config import PanelSettings
from kiosk.conversation import ButtonHeld, ButtonPressed, Pattern
from kiosk.panel.gpio import GpioPanel
from kiosk.panel.ports import ButtonEvent

LIMIT_S = 10.0


class Clock:
    """A manual clock for the debouncer."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Events:
    """A thread-safe sink that lets a test wait (with a limit) for the n-th event."""

    def __init__(self) -> None:
        self.got: list[ButtonEvent] = []
        self._cond = threading.Condition()

    def __call__(self, e: ButtonEvent) -> None:
        with self._cond:
            self.got.append(e)
            self._cond.notify_all()

    def wait(self, n: int) -> list[ButtonEvent]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.got) >= n, timeout=LIMIT_S), self.got
            return list(self.got)


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    f = MockFactory(pin_class=MockPWMPin)
    yield f
    f.reset()


def make(
    factory: MockFactory, *, hold_s: float = 3.0, bounce_s: float = 0.05, **kw: object
) -> tuple[GpioPanel, Events, Clock]:
    events, clock = Events(), Clock()
    settings = PanelSettings(hold_s=hold_s, bounce_s=bounce_s, **kw)  # type: ignore[arg-type]
    return GpioPanel(settings, events, factory, clock=clock), events, clock


def tap(pin: MockPWMPin, clock: Clock, *, after_s: float = 1.0, hold_s: float = 0.2) -> None:
    """A clean press and release, ``after_s`` after whatever came before."""
    clock.t += after_s
    pin.drive_low()
    clock.t += hold_s
    pin.drive_high()


def chatter(pin: MockPWMPin, clock: Clock, *, times: int = 3, step_s: float = 0.004) -> None:
    """Contact bounce: the pin flips ``times`` round trips within a few milliseconds, ending
    where it started."""
    away, back = (pin.drive_high, pin.drive_low) if pin.state == 0 else (pin.drive_low, pin.drive_high)
    for _ in range(times):
        clock.t += step_s
        away()
        clock.t += step_s
        back()


def test_short_press_is_reported_on_release(factory: MockFactory) -> None:
    panel, events, clock = make(factory)
    pin = factory.pin(17)
    assert pin.state == 1  # pull-up: released reads high
    pin.drive_low()
    assert events.got == []  # nothing until release: a long press is never also a short one
    clock.t += 0.3
    pin.drive_high()
    assert events.wait(1) == [ButtonPressed()]
    panel.close()


def test_long_press_is_held_and_its_release_is_not_a_press(factory: MockFactory) -> None:
    panel, events, clock = make(factory, hold_s=0.05)
    pin = factory.pin(17)
    pin.drive_low()
    assert events.wait(1) == [ButtonHeld()]  # fires while still held, after hold_s
    clock.t += 5
    pin.drive_high()
    tap(pin, clock)  # a following short press is the next event: the held release added none
    assert events.wait(2) == [ButtonHeld(), ButtonPressed()]
    panel.close()


def test_contact_bounce_counts_once(factory: MockFactory) -> None:
    panel, events, clock = make(factory, bounce_s=0.05)
    pin = factory.pin(17)
    pin.drive_low()  # press, with chatter
    chatter(pin, clock)
    clock.t += 0.3
    pin.drive_high()  # release, with chatter
    chatter(pin, clock)
    tap(pin, clock, hold_s=0.3)  # a second real press well after the chatter
    assert events.wait(2) == [ButtonPressed(), ButtonPressed()]
    assert len(events.got) == 2
    panel.close()


def test_tap_shorter_than_bounce_does_not_wedge_the_button(factory: MockFactory) -> None:
    panel, events, clock = make(factory, bounce_s=0.05)
    pin = factory.pin(17)
    tap(pin, clock, after_s=0, hold_s=0.01)  # the release is dropped as chatter
    tap(pin, clock)
    assert events.wait(1) == [ButtonPressed()]
    panel.close()


# ---- lights ------------------------------------------------------------------------------


def values(pin: MockPWMPin) -> list[float]:
    return [round(float(s.state), 3) for s in pin.states]


def wait_for(cond: Callable[[], bool]) -> None:
    """Poll a background blink thread's pins until ``cond`` holds, at most LIMIT_S."""
    deadline = time.monotonic() + LIMIT_S
    while not cond():
        assert time.monotonic() < deadline, "pattern did not appear in time"
        time.sleep(0.01)


def show(factory: MockFactory, pattern: Pattern) -> tuple[GpioPanel, dict[str, MockPWMPin]]:
    panel, _, _ = make(factory)
    pins = {name: factory.pin(n) for name, n in (("lamp", 18), ("r", 23), ("g", 24), ("b", 25))}
    for p in pins.values():
        p.clear_states()
    panel.show(pattern)
    return panel, pins


def ramp_steps(pin: MockPWMPin, top: float) -> int:
    """Distinct levels strictly between 0 and ``top`` on the first rise to ``top`` (a fade's length in frames)."""
    wait_for(lambda: top in values(pin))
    vs = values(pin)
    rise = vs[: vs.index(top)]
    return len({v for v in rise if 0 < v < top})


def steady(pin: MockPWMPin) -> float:
    return float(pin.state)


@pytest.mark.parametrize(
    ("pattern", "lamp", "rgb"),
    [
        (Pattern.LISTENING, 1.0, (0.0, 1.0, 0.0)),
        (Pattern.VISITOR_SPEAKING, 1.0, (0.0, 1.0, 1.0)),
        (Pattern.UNAVAILABLE, 0.0, (1.0, 0.0, 1.0)),
    ],
)
def test_steady_patterns(factory: MockFactory, pattern: Pattern, lamp: float, rgb: tuple[float, ...]) -> None:
    panel, pins = show(factory, pattern)
    assert steady(pins["lamp"]) == lamp
    assert (steady(pins["r"]), steady(pins["g"]), steady(pins["b"])) == rgb
    panel.close()


def test_idle_breathes_slowly(factory: MockFactory) -> None:
    panel, pins = show(factory, Pattern.IDLE)
    assert (steady(pins["r"]), steady(pins["g"]), steady(pins["b"])) == (0.0, 0.15, 0.0)  # dim green
    assert ramp_steps(pins["lamp"], 1.0) >= 30  # a slow fade (1.5 s at 25 fps), not a pulse
    panel.close()


def test_assistant_speaking_pulses(factory: MockFactory) -> None:
    panel, pins = show(factory, Pattern.ASSISTANT_SPEAKING)
    assert 5 <= ramp_steps(pins["lamp"], 1.0) <= 15  # a quick fade (0.4 s)
    assert 5 <= ramp_steps(pins["b"], 1.0) <= 15
    assert values(pins["r"]) == [0.0] and values(pins["g"]) == [0.0]
    panel.close()


@pytest.mark.parametrize(
    ("pattern", "lit", "lamp_blinks"), [(Pattern.CONNECTING, "b", True), (Pattern.ERROR, "r", False)]
)
def test_blinking_patterns(factory: MockFactory, pattern: Pattern, lit: str, lamp_blinks: bool) -> None:
    panel, pins = show(factory, pattern)
    # Hard on/off, several times: a blink, no fade levels in between.
    wait_for(lambda: values(pins[lit]).count(1.0) >= 2 and values(pins[lit]).count(0.0) >= 2)
    assert set(values(pins[lit])) == {0.0, 1.0}
    for other in {"r", "g", "b"} - {lit}:
        assert set(values(pins[other])) == {0.0}
    if lamp_blinks:
        wait_for(lambda: values(pins["lamp"]).count(1.0) >= 2)
        assert set(values(pins["lamp"])) == {0.0, 1.0}
    else:
        assert steady(pins["lamp"]) == 0.0
    panel.close()


def test_offline_breathes_amber_with_the_lamp_off(factory: MockFactory) -> None:
    panel, pins = show(factory, Pattern.OFFLINE)
    assert ramp_steps(pins["r"], 1.0) >= 30
    assert 0.5 in values(pins["g"]) and max(values(pins["g"])) == 0.5  # amber: green at half
    assert values(pins["b"]) == [0.0]
    assert steady(pins["lamp"]) == 0.0
    panel.close()


def test_every_pattern_has_a_look(factory: MockFactory) -> None:
    panel, _, _ = make(factory)
    for p in Pattern:
        panel.show(p)
        assert panel.pattern is p
    panel.close()


def test_close_turns_the_lights_off(factory: MockFactory) -> None:
    panel, pins = show(factory, Pattern.LISTENING)
    panel.close()
    assert steady(pins["lamp"]) == 0.0 and steady(pins["g"]) == 0.0


def test_pins_follow_settings(factory: MockFactory) -> None:
    panel, events, clock = make(factory, button_pin=5, lamp_pin=None, status_rgb_pins=None)
    panel.show(Pattern.LISTENING)  # no lights configured: nothing to drive, no error
    pin = factory.pin(5)
    pin.drive_low()
    clock.t += 0.2
    pin.drive_high()
    assert events.wait(1) == [ButtonPressed()]
    panel.close()


def test_a_pin_held_elsewhere_may_pass_a_wrong_pin_will_not(factory: MockFactory) -> None:
    from gpiozero import LED

    from kiosk.errors import ConfigError, DeviceError
    from kiosk.panel.gpio import open_panel

    holder = LED(18, pin_factory=factory)  # another program's LED on the lamp's pin
    with pytest.raises(DeviceError, match=r"panel: .*another program holds the pin"):
        open_panel(PanelSettings(), lambda e: None, factory)
    holder.close()
    panel = open_panel(PanelSettings(), lambda e: None, factory)  # the first try released what it took
    panel.close()
    plain = MockFactory()  # pins that cannot dim: the lamp is wired to the wrong kind of pin
    with pytest.raises(ConfigError) as bad:
        open_panel(PanelSettings(), lambda e: None, plain)
    assert bad.value.problems[0].startswith("panel: ")
    plain.close()
