"""Chaos: the kiosk against every hostile Realtime behaviour in kiosk/sim/hostile.py (issue 18).

Each behaviour runs a whole kiosk (the rig: real WebSocket, real SQLite, file audio) against
the simulator misbehaving in that one way while a visitor walks up, and asserts what the
visitor and the operator get:

* the kiosk stays alive and the visit ends with the right message and light (served and
  ended by the button; the offline message and light; or the error light for a refusal);
* memory stays bounded (the process's peak RSS grows by less than :data:`RSS_LIMIT_MB`);
* at most 20 connection attempts (each behaviour lasts well under a minute);
* nothing secret (the API key) or personal (an e-mail address, a phone number the
  hostile frames carry) reaches the journal (messages pass the daemon's redaction,
  structured fields do not), and nothing is logged with a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from pathlib import Path

import pytest

from kiosk import conversation as cv
from kiosk.logs import fields_of, redact
from kiosk.sim.hostile import CATALOGUE, PII, Behaviour, Outcome
from kiosk.sim.rig import Rig
from kiosk.sim.scenario import load_scenario
from tests.toolkit import CHECKOUT_CONFIG

HAPPY = load_scenario("happy_path")
GREETED = {cv.State.LISTENING, cv.State.ASSISTANT_SPEAKING}
SETTLED = {*GREETED, cv.State.OFFLINE, cv.State.ERROR}
SETTINGS = {"realtime": {"backoff_base_s": 0.05, "backoff_cap_s": 0.2, "response_stall_s": 1.0},
            "session": {"connect_timeout_s": 2.0}}  # fmt: skip
RSS_LIMIT_MB = 150
MAX_ATTEMPTS = 20
KEY = "sim-key"  # the rig's API key
OFFLINE_ENDS = {cv.EndReason.CONNECT_TIMEOUT, cv.EndReason.OFFLINE, cv.EndReason.CONNECTION_LOST}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def visit(rig: Rig, behaviour: Behaviour) -> None:
    """A visitor walks up during the trouble and leaves; what they see depends on the outcome."""
    if behaviour.outcome is Outcome.SERVES:
        rig.expect_audio()
        await rig.press(until=GREETED, limit_s=20)
        await rig.assistant_turn()  # the greeting (or what the service let through) was heard
        await rig.press(until={cv.State.IDLE})
        assert rig.rec.ended[-1] is cv.EndReason.BUTTON
        assert rig.lights.shown[-1] is cv.Pattern.IDLE
        assert rig.rec.lines and rig.rec.lines[0][0] == "assistant"
    elif behaviour.outcome is Outcome.RECOVERS:
        await rig.press(until=GREETED, limit_s=20)
        second = await rig.sim.wait_for_session(2, limit_s=20)  # the kiosk replaced the connection
        async with asyncio.timeout(20):
            await second.configured.wait()
        await rig.kiosk.wait_state({cv.State.LISTENING}, limit_s=20)
        await rig.press(until={cv.State.IDLE})
        assert rig.rec.ended[-1] is cv.EndReason.BUTTON
        assert rig.lights.shown[-1] is cv.Pattern.IDLE
    elif behaviour.outcome is Outcome.OFFLINE:
        rig.expect_audio()
        rig.kiosk.submit(cv.ButtonPressed())  # no standby will come: press at once
        await rig.kiosk.wait_state({cv.State.OFFLINE}, limit_s=20)
        await rig.hear_local_message()  # the prerecorded offline message
        assert rig.rec.ended[-1] in OFFLINE_ENDS
        assert cv.Pattern.OFFLINE in rig.lights.shown
    else:
        rig.kiosk.submit(cv.ButtonPressed())
        await rig.kiosk.wait_state({cv.State.ERROR}, limit_s=20)
        assert rig.lights.shown[-1] is cv.Pattern.ERROR


@pytest.mark.timeout(60)
@pytest.mark.parametrize("behaviour", CATALOGUE, ids=[b.name for b in CATALOGUE])
async def test_a_hostile_service_never_breaks_the_kiosk(
        behaviour: Behaviour, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kiosk")
    before = peak_rss_mb()
    rig = Rig(HAPPY, tmp_path, config=CHECKOUT_CONFIG, speed=10, faults=behaviour.faults(), overrides=SETTINGS)
    async with rig.running():
        await visit(rig, behaviour)
        # Still alive: the kiosk answers the next press (a new visit or the same message).
        rig.kiosk.submit(cv.ButtonPressed())
        await rig.kiosk.wait_state({*SETTLED, cv.State.CONNECTING}, limit_s=10)
        await asyncio.sleep(0)
    assert peak_rss_mb() - before < RSS_LIMIT_MB
    assert 1 <= len(rig.sim.auth_headers) <= MAX_ATTEMPTS
    # What reaches the journal: the message as the daemon's RedactingFilter leaves it, and
    # the structured fields, which are not redacted.
    text = "\n".join(f"{redact(r.getMessage())} {fields_of(r)}" for r in caplog.records)
    for secret in (KEY, *PII, PII[1].replace(" ", "")):
        assert secret not in text
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    if behaviour.outcome is not Outcome.FATAL:
        errors = [r.getMessage() for r in caplog.records if r.name.startswith("kiosk") and r.levelno >= logging.ERROR]
        assert errors == []
