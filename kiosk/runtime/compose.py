"""The composition root: settings -> the parts of a running kiosk.

Everything that follows from the settings alone is decided here, once: the tools, the
assistant's instructions, the Realtime session configuration and its opener, the
prerecorded messages. ``build_kiosk`` is the one way to build a kiosk: the daemon (real
devices), the demo and test rig (files and the simulator) and the bench call it with their
own devices; the self-test uses the same :func:`realtime_opener`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kiosk.audio.echo import echo_stage
from kiosk.audio.pcm import read_wav
from kiosk.audio.ports import Microphone, Speaker
from kiosk.config import Settings
from kiosk.leads.store import Store
from kiosk.panel.ports import Lights
from kiosk.realtime import session as rs
from kiosk.realtime.connection import TraceWriter
from kiosk.realtime.handshake import Opener
from kiosk.runtime.heap import fix_mmap_threshold
from kiosk.runtime.kiosk import Kiosk, Parts
from kiosk.tools import catalog
from kiosk.tools.registry import ToolRegistry

log = logging.getLogger(__name__)


def load_instructions(settings: Settings) -> str:
    """The assistant's instructions, with branch values filled in."""
    path = settings.realtime.instructions_file
    try:
        template = path.read_text(encoding="utf-8")
    except OSError:
        log.warning("instructions file %s not readable; using a minimal prompt", path)
        template = "You are {lender_name}'s kiosk assistant. Answer in at most three short sentences."
    return template.format_map(_Blank(settings.branch.model_dump()))


class _Blank(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def realtime_opener(
    settings: Settings, tools: ToolRegistry | None = None, trace: TraceWriter | None = None
) -> Opener:
    """Opens Realtime sessions configured from settings: instructions, voice, VAD, the tools."""
    registry = tools if tools is not None else catalog.build_registry(settings)
    config = rs.SessionConfig(settings.realtime, load_instructions(settings), tuple(registry.schemas()))
    return Opener(settings.realtime, settings.secrets.openai_api_key, config, trace=trace)


class WavMessage:
    """A prerecorded message WAV, read each time it is played: it plays only while the service
    is out of reach or refused, so its audio is not held in memory for the kiosk's whole life."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def pcm(self) -> bytes | None:
        """The message at the kiosk's rate; None (and a warning) when it cannot be read."""
        try:
            return read_wav(self.path)
        except (OSError, ValueError) as exc:
            log.warning("prerecorded message %s unusable: %s", self.path, exc)
            return None


def read_message(path: Path | None) -> WavMessage | None:
    """A prerecorded message (offline, unavailable), if configured and readable (read once now,
    so an unusable file is reported at start-up, as before)."""
    if path is None:
        return None
    message = WavMessage(path)
    return message if message.pcm() is not None else None


def build_kiosk(
    settings: Settings,
    store: Store,
    mic: Microphone,
    speaker: Speaker,
    lights: Lights,
    *,
    trace: TraceWriter | None = None,
    **extra: Any,
) -> Kiosk:
    """A kiosk built from settings around the given devices, store and lights; ``extra`` sets
    the rest of :class:`Parts` (observer, syncer, today).

    With ``echo.mode = "aec"`` the echo canceller is built here, once for the kiosk's life
    (it stays converged across visits): the speaker reports what it plays to it, and the
    microphone's conditioning runs through it. The C heap's policy for a long life is set here
    (:mod:`kiosk.runtime.heap`), so the daemon and the benchmarks' kiosk run under the same one.
    """
    fix_mmap_threshold()
    tools = catalog.build_registry(settings)
    echo = echo_stage(settings.echo)
    if echo is not None:
        speaker.tap(echo.played)
        mic.cancel_echo(echo)
    parts = Parts(
        settings=settings,
        store=store,
        tools=tools,
        opener=realtime_opener(settings, tools, trace),
        mic=mic,
        speaker=speaker,
        lights=lights,
        offline_audio=read_message(settings.session.offline_message),
        unavailable_audio=read_message(settings.session.unavailable_message),
        echo=echo,
        **extra,
    )
    return Kiosk(parts)
