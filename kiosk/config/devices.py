"""The settings of the kiosk's devices: microphone and speaker, echo handling, the LED's VAD, the panel.

Also :class:`Section`, the base of every settings section.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Section(BaseModel):
    """Base of every settings section: immutable, and unknown keys are errors (typos)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class AudioSettings(Section):
    """Microphone and speaker."""

    input_device: str = Field("", description="Substring of the microphone's name ('' = system default).")
    output_device: str = Field("", description="Substring of the speaker's name ('' = system default).")
    input_index: int | None = Field(None, ge=0, description="Fallback device index when no name matches.")
    output_index: int | None = Field(None, ge=0, description="Fallback device index when no name matches.")
    mic_channel: int = Field(
        0, ge=0, description="Channel of a multi-channel array to use (0 = processed/AEC on ReSpeaker)."
    )
    downmix: bool = Field(False, description="Average all channels instead of picking mic_channel.")
    input_gain_db: float = Field(0.0, ge=-20, le=30, description="Gain applied to the microphone signal.")
    chunk_ms: int = Field(40, ge=20, le=40, description="Uplink chunk size per input_audio_buffer.append.")
    prebuffer_ms: int = Field(
        60, ge=0, le=500, description="Playback starts once this much audio is queued and this long has passed."
    )
    capture_queue_chunks: int = Field(50, ge=4, description="Capture queue bound; overflow is counted and logged.")
    input_rate: int = Field(
        0, ge=0, le=192000, description="Open the microphone at this rate (0 = 24 kHz if accepted, else native)."
    )
    output_rate: int = Field(
        0, ge=0, le=192000, description="Open the speaker at this rate (0 = 24 kHz if accepted, else native)."
    )
    period_ms: int = Field(10, ge=5, le=40, description="The speaker's device period (frames per buffer) in ms.")
    input_period_ms: int = Field(
        20, ge=0, le=40, description="The microphone's device period in ms (0 = period_ms)."
    )
    device_retry_s: float = Field(
        2.0, gt=0, le=60, description="While a device is missing, look for it again this often."
    )


class EchoSettings(Section):
    """How the kiosk avoids hearing itself (README: "Which echo mode")."""

    mode: Literal["aec", "hardware", "gate", "half_duplex"] = Field(
        "aec",
        description=(
            "aec: cancel the echo in the kiosk (WebRTC AEC3 with the played audio as reference; "
            "the default, for microphones without echo cancellation of their own); "
            "hardware: trust the array's AEC (e.g. channel 0 of a ReSpeaker/XVF3000); "
            "gate: level gate while speaking (a fallback: quiet visitors cannot interrupt); "
            "half_duplex: mute the uplink while speaking."
        ),
    )
    lead_ms: float = Field(
        5.0,
        ge=0.0,
        le=20.0,
        description="aec: the reference given with each microphone frame sounded this much later, by the "
        "devices' timestamps (a margin for timestamps that are a little early; the canceller finds the rest).",
    )
    residual_cap_db: float = Field(
        -26.0,
        ge=-60.0,
        le=0.0,
        description="aec: while the assistant is audible, what the canceller leaves is held this far under the "
        "echo level, until someone keeps talking over it.",
    )
    residual_hold_ms: int = Field(
        300, ge=0, le=2000, description="aec: once someone talks over the echo, the guard stays open this long."
    )
    quiet_after_s: float = Field(
        1.0,
        ge=0.3,
        le=10.0,
        description="aec: once the speaker has been silent this long (longer than the room's echo tail), the "
        "microphone skips the canceller until it sounds again (half the echo stage's CPU while nobody is there).",
    )
    gate_margin_db: float = Field(
        0.0, description="gate: mic level must exceed the playback level by this much to pass."
    )
    warmup_ms: int = Field(300, ge=0, description="gate: no barge-in for this long after playback starts.")


class VadSettings(Section):
    """Local webrtcvad for the 'visitor speaking' light only."""

    aggressiveness: int = Field(2, ge=0, le=3, description="webrtcvad mode.")
    frame_ms: Literal[10, 20, 30] = Field(30, description="webrtcvad frame length.")
    hangover_ms: int = Field(300, ge=0, description="Light stays on this long after speech.")


class PanelSettings(Section):
    """Button and lights (BCM pin numbers; see hardware/wiring.md)."""

    button_pin: int = Field(17, ge=0, le=27, description="Button input, wired to GND.")
    pull_up: bool = Field(True, description="Internal pull-up; pressed = low.")
    bounce_s: float = Field(0.05, ge=0, le=1, description="Debounce time.")
    hold_s: float = Field(3.0, gt=0, description="Long press: end the session and wipe it.")
    lamp_pin: int | None = Field(18, ge=0, le=27, description="Button lamp (PWM).")
    status_rgb_pins: tuple[int, int, int] | None = Field((23, 24, 25), description="Status RGB LED (red, green, blue).")

    @model_validator(mode="after")
    def _pins_distinct(self) -> PanelSettings:
        pins = [self.button_pin, self.lamp_pin, *(self.status_rgb_pins or ())]
        used = [p for p in pins if p is not None]
        doubled = sorted({p for p in used if used.count(p) > 1})
        if doubled:
            twice = ", ".join(f"GPIO{p}" for p in doubled)
            raise ValueError(f"{twice} used twice: the button, the lamp and each LED colour need their own pin")
        return self
