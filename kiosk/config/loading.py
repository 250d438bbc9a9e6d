"""Loading the settings: the TOML file, ``KIOSK_`` environment overrides, systemd credentials;
and the one format for every configuration problem."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from kiosk.config.sections import SECRET_NAMES, ServiceSettings, Settings
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


def _credentials_dir(data: Mapping[str, Any]) -> Path | None:
    """systemd's $CREDENTIALS_DIRECTORY for the service; otherwise the installed credentials
    themselves when this user may read them (root running the self-test or a manual run)."""
    given = os.environ.get("CREDENTIALS_DIRECTORY")
    if given:
        return Path(given)
    service = data.get("service")
    configured = os.environ.get("KIOSK_SERVICE__CREDENTIALS_DIR") or (
        service.get("credentials_dir") if isinstance(service, Mapping) else None
    )
    directory = Path(configured) if isinstance(configured, str) else ServiceSettings().credentials_dir
    return directory if os.access(directory, os.R_OK | os.X_OK) else None


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
        ("service", "credentials_dir"),
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
    problems = file_type_problems(Settings, data) + environment_problems(os.environ)
    _resolve_paths(data, base)
    for name, value in _read_credentials(_credentials_dir(data)).items():
        data.setdefault("secrets", {})[name] = value
    for section, values in (overrides or {}).items():
        if isinstance(values, Mapping) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **values}
        else:
            data[section] = values
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        # A value already reported as the wrong TOML type is not reported again.
        seen = {line.split(":", 1)[0] for line in problems}
        rest = [line for line in format_validation_error(exc, Settings) if line.split(":", 1)[0] not in seen]
        raise ConfigError(problems + rest) from None
    if problems:
        raise ConfigError(problems)
    return LoadedConfig(settings=settings, path=path)


def format_validation_error(exc: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """One line per problem: ``field.path: what is wrong (got X)``, secrets masked; a misspelt
    key of ``model`` gets a "did you mean"."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting" + _did_you_mean(model, err["loc"])
        got = err.get("input")
        shown = ""
        if loc.startswith("secrets") or any(s in loc for s in SECRET_NAMES):
            shown = " (value hidden)"
        elif err["type"] != "missing" and not isinstance(got, dict | list) and err["type"] != "extra_forbidden":
            shown = f" (got {got!r})"
        lines.append(f"{loc}: {msg}{shown}")
    return lines


def _close_matches(word: str, options: Iterable[str], cutoff: float = 0.6) -> list[str]:
    """The option nearest ``word``, if any is near. difflib (about 0.15 MB) loads only for a
    setting that names nothing, never for a kiosk whose settings are right."""
    import difflib

    return difflib.get_close_matches(word, list(options), n=1, cutoff=cutoff)


def _did_you_mean(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> str:
    fields = _fields_at(model, loc[:-1]) if model is not None else []
    close = _close_matches(str(loc[-1]), fields, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return " (misspelt, or in the wrong section?)"


def _fields_at(model: type[BaseModel], path: tuple[int | str, ...]) -> list[str]:
    """The setting names of the section at ``path`` (``("audio",)`` -> AudioSettings' fields)."""
    for part in path:
        field = model.model_fields.get(str(part))
        sub = _section_type(field.annotation) if field is not None else None
        if sub is None:
            return []
        model = sub
    return list(model.model_fields)


def _section_type(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _plain_type(annotation: Any) -> Any:
    """``int | None`` -> int, ``Annotated[str, ...]`` -> str; None for anything fancier."""
    if get_origin(annotation) is Annotated:
        return _plain_type(get_args(annotation)[0])
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, UnionType) and len(args) == 1:
        return _plain_type(args[0])
    return annotation


_KINDS: dict[Any, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true or false (no quotes)"),
    int: ((int,), "a whole number (no quotes)"),
    float: ((int, float), "a number (no quotes)"),
    str: ((str,), "text in quotes"),
    Path: ((str,), "a path in quotes"),
}


def file_type_problems(model: type[BaseModel], data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Values in the TOML file of the wrong TOML type: ``chunk_ms = "40"`` or ``warm_standby = "yes"``.

    Pydantic would quietly convert these; in a file a technician edits they are mistakes (and
    "yes" is not a boolean anywhere else). Environment variables are text by nature and are
    converted as usual.
    """
    found = []
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            continue  # unknown keys are reported by the model, with a suggestion
        section = _section_type(field.annotation)
        if section is not None and isinstance(value, Mapping):
            found += file_type_problems(section, value, f"{prefix}{key}.")
            continue
        kind = _KINDS.get(_plain_type(field.annotation))
        if kind is None:
            continue
        allowed, what = kind
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            found.append(f"{prefix}{key}: must be {what} (got {value!r})")
    return found


def environment_problems(environ: Mapping[str, str]) -> list[str]:
    """``KIOSK_*`` variables that name no setting (they would be silently ignored)."""
    found = []
    sections = set(Settings.model_fields)
    for name in environ:
        if not name.startswith("KIOSK_"):
            continue
        section, sep, key = name.removeprefix("KIOSK_").lower().partition("__")
        if section not in sections:
            close = _close_matches(section, sections)
            hint = f"; did you mean KIOSK_{close[0].upper()}{'__' + key.upper() if key else ''}?" if close else ""
            found.append(f"environment {name}: no such setting{hint}")
        elif sep and _section_type(Settings.model_fields[section].annotation) is not None:
            fields = _fields_at(Settings, (section,))
            if key not in fields:
                close = _close_matches(key, fields)
                hint = f"; did you mean KIOSK_{section.upper()}__{close[0].upper()}?" if close else ""
                found.append(f"environment {name}: no such setting{hint}")
    return found


def masked_dump(settings: Settings) -> dict[str, Any]:
    """Effective settings as JSON-ready data, secrets shown only as set / unset."""
    dumped: dict[str, Any] = settings.model_dump(mode="json")
    dumped["secrets"] = {
        name: ("<set>" if getattr(settings.secrets, name) is not None else "<unset>") for name in SECRET_NAMES
    }
    return dumped
