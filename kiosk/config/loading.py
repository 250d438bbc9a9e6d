"""Loading the settings: the TOML file, ``KIOSK_`` environment overrides, systemd credentials;
and the one format for every configuration problem."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kiosk.config.sections import SECRET_NAMES, Settings
from kiosk.errors import ConfigError

SYSTEM_CONFIG = Path("/etc/kiosk/kiosk.toml")


@dataclass(frozen=True)
class LoadedConfig:
    """Settings plus where they came from."""

    settings: Settings
    path: Path | None


def default_config_path() -> Path | None:
    """/etc/kiosk/kiosk.toml when it exists, else None (defaults only).

    Never the checkout's config/: an installed kiosk has no checkout, and one that quietly
    used it would run with settings nobody installed. In a checkout, pass ``--config``.
    """
    return SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None


def _read_credentials(directory: Path | None) -> dict[str, str]:
    if directory is None or not directory.is_dir():
        return {}
    found: dict[str, str] = {}
    for name in SECRET_NAMES:
        f = directory / name
        if f.is_file():
            found[name] = f.read_text(encoding="utf-8").strip()
    return found


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    """Make relative paths in the file relative to the file, not to the working directory."""
    paths = (
        ("store", "path"),
        ("tools", "knowledge_dir"),
        ("tools", "lending_file"),
        ("realtime", "instructions_file"),
        ("session", "offline_message"),
        ("session", "unavailable_message"),
        ("sync", "ca_bundle"),
        ("notify", "smtp_ca_bundle"),
        ("notify", "templates_dir"),
        ("service", "status_file"),
        ("fleet", "metrics_dir"),
    )
    for section, key in paths:
        sub = data.get(section)
        if isinstance(sub, dict) and isinstance(sub.get(key), str) and not Path(sub[key]).is_absolute():
            sub[key] = str(base / sub[key])


def load_settings(
    path: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """Load and validate settings; raises ConfigError listing every problem.

    This (with pydantic-settings' own environment source) is the only reader of the
    environment. ``overrides`` (nested dicts) win over the file, e.g. the demo's temp paths.
    """
    path = path if path is not None else default_config_path()
    data: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read config file: {exc.strerror or exc}"]) from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
        base = path.resolve().parent
        if "secrets" in data:
            raise ConfigError(
                [
                    "secrets: secrets do not belong in the config file; use systemd credentials "
                    "($CREDENTIALS_DIRECTORY) or KIOSK_SECRETS__* variables"
                ]
            )
    _resolve_paths(data, base)
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    for name, value in _read_credentials(Path(cred_dir) if cred_dir else None).items():
        data.setdefault("secrets", {})[name] = value
    for section, values in (overrides or {}).items():
        if isinstance(values, Mapping) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **values}
        else:
            data[section] = values
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    return LoadedConfig(settings=settings, path=path)


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: ``field.path: what is wrong (got X)``, secrets masked."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown setting (misspelt, or in the wrong section?)"
        got = err.get("input")
        shown = ""
        if loc.startswith("secrets") or any(s in loc for s in SECRET_NAMES):
            shown = " (value hidden)"
        elif err["type"] != "missing" and not isinstance(got, dict | list) and err["type"] != "extra_forbidden":
            shown = f" (got {got!r})"
        lines.append(f"{loc}: {msg}{shown}")
    return lines


def masked_dump(settings: Settings) -> dict[str, Any]:
    """Effective settings as JSON-ready data, secrets shown only as set / unset."""
    dumped: dict[str, Any] = settings.model_dump(mode="json")
    dumped["secrets"] = {
        name: ("<set>" if getattr(settings.secrets, name) is not None else "<unset>") for name in SECRET_NAMES
    }
    return dumped
