"""Models on a deprecation list, for ``kiosk config check``: a kiosk must not run into a shutdown date.

The ``openai`` package documents deprecations in the docstrings of its generated types::

    Deprecated values:
    - "gpt-realtime", "gpt-realtime-2025-08-28", ...:
      Announced shutdown date: 2027-01-20. See ...

The kiosk never imports ``openai`` at run time (it is a test dependency, and heavy). When
the package is installed, its source files are read and those blocks parsed, so a newer
package warns about newer deprecations; without it, :data:`KNOWN` (from openai 3.57) is used.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from kiosk.config.prices import CostSettings
from kiosk.config.sections import RealtimeSettings

# The files whose docstrings list the deprecated Realtime and transcription models.
SOURCES = ("types/realtime/realtime_session_create_request.py", "types/realtime/audio_transcription.py")
# From openai 3.57.0, for kiosks without the package.
KNOWN = {
    **dict.fromkeys(("gpt-realtime", "gpt-realtime-2025-08-28", "gpt-realtime-mini", "gpt-realtime-mini-2025-12-15",
                     "gpt-audio-mini", "gpt-audio-mini-2025-12-15"), "2027-01-20"),
    **dict.fromkeys(("whisper-1", "gpt-4o-mini-transcribe", "gpt-4o-mini-transcribe-2025-12-15", "gpt-4o-transcribe",
                     "gpt-4o-transcribe-diarize"), "2027-02-26"),
}  # fmt: skip
_ENTRY = re.compile(r"-\s+((?:\"[^\"]+\",?\s*)+):\s*Announced shutdown date:\s*(\d{4}-\d{2}-\d{2})")


@dataclass(frozen=True)
class Deprecations:
    """Deprecated model names with their announced shutdown dates, and where the list came from."""

    shutdown: dict[str, str]
    source: str


def parse(text: str) -> dict[str, str]:
    """Deprecated model names and shutdown dates from the ``Deprecated values:`` blocks of ``text``."""
    found: dict[str, str] = {}
    for block in text.split("Deprecated values:")[1:]:
        for entry in _ENTRY.finditer(block.split('"""')[0]):
            found.update(dict.fromkeys(re.findall(r'"([^"]+)"', entry.group(1)), entry.group(2)))
    return found


def openai_root() -> Path | None:
    """The installed ``openai`` package's directory, found without importing it."""
    try:
        spec = importlib.util.find_spec("openai")
    except (ImportError, ValueError):
        return None
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def deprecations(root: Path | None) -> Deprecations:
    """The deprecation list of the ``openai`` package at ``root``, or the built-in one."""
    if root is not None:
        found: dict[str, str] = {}
        for name in SOURCES:
            try:
                found.update(parse((root / name).read_text(encoding="utf-8")))
            except OSError:
                continue
        if found:
            try:
                version = importlib.metadata.version("openai")
            except importlib.metadata.PackageNotFoundError:
                version = "?"
            return Deprecations(found, f"the installed openai package {version}")
    return Deprecations(dict(KNOWN), "the list built in (openai 3.57; the package is not installed)")


def model_warnings(realtime: RealtimeSettings, found: Deprecations) -> list[str]:
    """One line per configured model on the deprecation list."""
    lines = []
    configured = (("realtime.model", realtime.model), ("realtime.transcription_model", realtime.transcription_model))
    for key, model in configured:
        date = found.shutdown.get(model)
        if date is not None:
            lines.append(
                f"{key}: {model!r} is deprecated, announced shutdown {date} (per {found.source}); "
                "choose a current model (see the README, 'The model')"
            )
    return lines


def price_warnings(cost: CostSettings) -> list[str]:
    """One line per flat price setting a file still sets (prices are per model now)."""
    return [f"cost.{key} is ignored: prices are per model in [cost.prices]" for key in cost.legacy_keys()]
