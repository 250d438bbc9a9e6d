"""The self-test's audio rows: the microphone's level, a tone on the speaker, the echo path."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kiosk.cli.probes import Options, Result, check_microphone, check_speaker, fail, ok, skip
from kiosk.config import Settings


async def check_echo_path(pa: Any, settings: Settings) -> Result:
    """A burst on the speaker through the configured echo path (see :mod:`kiosk.cli.echocheck`)."""
    from kiosk.cli.echocheck import check_echo

    report = await check_echo(pa, settings.audio, settings.echo)
    return (ok if report.ok else fail)("echo", report.line())


async def audio_checks(settings: Settings, opts: Options) -> list[Result]:
    """Microphone, speaker and echo path, on one PortAudio instance."""
    a = settings.audio
    try:
        from kiosk.audio.devices import new_pyaudio

        pa = new_pyaudio()  # without Debian PortAudio's JACK chatter on stderr
    except (ImportError, OSError) as exc:
        why = f"PortAudio unavailable: {exc}"
        return [fail("microphone", why), fail("speaker", why), fail("echo", why)]
    try:
        steps: list[Callable[[], Awaitable[Result]]] = [
            lambda: check_microphone(pa, a, opts.mic_s, opts.min_mic_dbfs),
            lambda: check_speaker(pa, a, opts.tone_hz, opts.tone_ms),
        ]
        results = [await step() for step in steps]
        if opts.skip_echo:
            results.append(skip("echo", "--skip-echo"))
        elif any(r.status == "FAIL" for r in results):
            results.append(skip("echo", "needs a working microphone and speaker"))
        else:
            results.append(await check_echo_path(pa, settings))
        return results
    finally:
        pa.terminate()
