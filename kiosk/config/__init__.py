"""Settings: one TOML file, ``KIOSK_`` environment overrides, secrets from systemd credentials.

Precedence, highest first: environment (``KIOSK_REALTIME__MODEL=...``), the TOML file,
the defaults in :mod:`kiosk.config.sections`. Secrets never live in the TOML file: they come from files in
``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential=``) or from ``KIOSK_SECRETS__*``.

Every component receives only its own frozen sub-model; nothing else reads ``os.environ``.
"""

from __future__ import annotations

from kiosk.config.devices import AudioSettings, EchoSettings, PanelSettings, VadSettings
from kiosk.config.loading import (
    SYSTEM_CONFIG,
    LoadedConfig,
    default_config_path,
    format_validation_error,
    load_settings,
    masked_dump,
)
from kiosk.config.prices import CostSettings, ModelPrices
from kiosk.config.sections import (
    SECRET_NAMES,
    BranchSettings,
    FleetSettings,
    LogSettings,
    NotifySettings,
    RealtimeSettings,
    RetentionSettings,
    Secrets,
    ServiceSettings,
    SessionSettings,
    Settings,
    StoreSettings,
    SyncSettings,
    ToolSettings,
)

__all__ = [
    "SECRET_NAMES",
    "SYSTEM_CONFIG",
    "AudioSettings",
    "BranchSettings",
    "CostSettings",
    "EchoSettings",
    "FleetSettings",
    "LoadedConfig",
    "LogSettings",
    "ModelPrices",
    "NotifySettings",
    "PanelSettings",
    "RealtimeSettings",
    "RetentionSettings",
    "Secrets",
    "ServiceSettings",
    "SessionSettings",
    "Settings",
    "StoreSettings",
    "SyncSettings",
    "ToolSettings",
    "VadSettings",
    "default_config_path",
    "format_validation_error",
    "load_settings",
    "masked_dump",
]
