"""The settings model: one frozen, documented section per component, and ``Settings`` over them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from kiosk.config.devices import AudioSettings, EchoSettings, PanelSettings, Section, VadSettings
from kiosk.config.identity import machine_kiosk_id
from kiosk.config.prices import CostSettings
from kiosk.config.rules import (
    EmailAddress,
    NotBlank,
    OneClickLink,
    PhoneNumber,
    PhoneRegion,
    RealtimeLink,
    WebLink,
    web_link,
)

SECRET_NAMES = (
    "openai_api_key",
    "sync_token",
    "sync_signing_secret",
    "smtp_password",
    "perplexity_api_key",
)


class BranchSettings(Section):
    """Who the kiosk speaks for; rendered into the assistant's instructions."""

    lender_name: NotBlank = Field(
        "Example Lending LLC", description="Lender's legal name, spoken in the consent disclosure."
    )
    nmls_id: NotBlank = Field("000000", description="Lender's NMLS id, for disclosures.")
    branch_name: NotBlank = Field("Main branch", description="Branch or booth name.")
    callback_phone: PhoneNumber = Field(
        "+15555550100", description="Number the lender calls from; read in the consent script."
    )
    booking_url: WebLink = Field("https://example.com/book", description="Default link for scheduling a call.")


class RealtimeSettings(Section):
    """OpenAI Realtime API connection and session parameters."""

    url: RealtimeLink = Field(
        "wss://api.openai.com/v1/realtime", description="WebSocket endpoint, without the query string."
    )
    model: str = Field(
        "gpt-realtime-2.1", description="Realtime model name; models are retired over time, so it is config."
    )
    voice: str = Field("marin", description="Assistant voice.")
    instructions_file: Path = Field(
        Path("instructions.md"), description="Assistant instructions (relative to the config file)."
    )
    transcription_model: str = Field(
        "gpt-transcribe", description="Model transcribing the visitor (consent evidence)."
    )
    language: str = Field("en", description="Visitor language hint for transcription.")
    reasoning_effort: Literal["minimal", "low", "medium", "high", "xhigh"] | None = Field(
        "low",
        description="Reasoning effort of reasoning models (gpt-realtime-2 and later; not sent to others).",
    )
    vad_threshold: float = Field(0.5, ge=0.0, le=1.0, description="Server VAD activation threshold.")
    prefix_padding_ms: int = Field(300, ge=0, le=2000, description="Audio kept before detected speech.")
    silence_duration_ms: int = Field(500, ge=100, le=5000, description="Silence that ends a visitor turn.")
    interrupt_response: bool = Field(True, description="Server cancels the reply when the visitor starts speaking.")
    idle_timeout_ms: int | None = Field(
        15000, ge=5000, le=30000, description="Silence after a reply before the model checks in; unset to disable."
    )
    max_output_tokens: int = Field(1024, ge=1, le=4096, description="Cap per response (cost guard).")
    connect_timeout_s: float = Field(10.0, gt=0, description="Time limit for the WebSocket handshake.")
    ping_interval_s: float = Field(20.0, gt=0, description="Keepalive ping interval.")
    backoff_base_s: float = Field(1.0, gt=0, description="First reconnect delay (full jitter).")
    backoff_cap_s: float = Field(60.0, gt=0, description="Longest reconnect delay.")
    stable_after_s: float = Field(60.0, gt=0, description="Connected this long resets the backoff.")
    warm_standby: bool = Field(
        True, description="Keep a configured connection ready for the next visitor (skips the handshake)."
    )
    recycle_after_s: float = Field(
        50 * 60.0, gt=0, le=3600, description="Recycle a connection before the 60-minute limit."
    )
    response_stall_s: float = Field(
        20.0, gt=0, le=300,
        description="A response that has been active this long without a single server event is given up: "
        "the connection is replaced and the conversation goes on.",
    )
    max_connects_per_minute: int = Field(
        20, ge=1, le=20, description="Connection attempts in any minute, all together, whatever the service does."
    )


class SessionSettings(Section):
    """Visitor session limits."""

    max_session_s: float = Field(600.0, gt=0, description="Hard maximum visitor session length.")
    connect_timeout_s: float = Field(10.0, gt=0, description="Give up connecting after this long and go offline.")
    goodbye_s: float = Field(8.0, gt=0, description="Time allowed for a spoken goodbye before the session is cut.")
    idle_end_s: float = Field(
        8.0, gt=0, description="Silence after the 'are you still there?' check-in that ends the session politely."
    )
    offline_message: Path = Field(
        Path("audio/offline.wav"),
        description="Played when the service is unreachable at a press (relative to the config file).",
    )
    unavailable_message: Path = Field(
        Path("audio/unavailable.wav"), description="Played at a press once the daily budget is spent."
    )
    ai_disclosure: NotBlank = Field(
        "Hi, you're talking with an automated AI assistant for {lender_name}.",
        description="Said word for word at the start of every visit ({lender_name} filled in); stored as evidence.",
    )




class StoreSettings(Section):
    """Local SQLite database (leads, consent evidence, outbox)."""

    path: Path = Field(Path("/var/lib/kiosk/kiosk.db"), description="Database file (relative to the config file).")


class ToolSettings(Section):
    """The assistant's tools."""

    timeout_s: float = Field(8.0, gt=0, le=60, description="Per-tool time limit.")
    evidence_wait_s: float = Field(
        3.0, ge=0, le=3, description="Before saveLead stores the visitor's words, wait this long for late transcripts."
    )
    knowledge_dir: Path = Field(Path("knowledge"), description="Markdown knowledge base (relative to the config file).")
    default_phone_region: PhoneRegion = Field(
        "US", min_length=2, max_length=2, description="Region for phone numbers without +country."
    )
    lending_file: Path = Field(
        Path("lending.toml"),
        description="Scoring rubric, rate sheet, booking links and follow-up e-mail (relative to the config file).",
    )
    search_base_url: WebLink = Field(
        "https://api.perplexity.ai", description="Perplexity API base URL (chat completions at /chat/completions)."
    )
    search_model: str = Field("sonar", description="Perplexity model for perplexitySearch.")
    search_timeout_s: float = Field(6.0, gt=0, le=60, description="HTTP time limit of one web search.")
    search_max_chars: int = Field(450, ge=80, le=4000, description="Web answers are trimmed to this many characters.")


class SyncSettings(Section):
    """Lead upload to the lender's CRM."""

    endpoint: str = Field("", description="HTTPS endpoint receiving lead batches ('' = sync disabled).")
    interval_s: float = Field(60.0, gt=0, description="Outbox poll interval.")
    timeout_s: float = Field(15.0, gt=0, description="HTTP time limit.")
    ca_bundle: Path | None = Field(
        None, description="PEM CA bundle to verify the endpoint with instead of the system's (relative to the file)."
    )
    batch_size: int = Field(20, ge=1, le=500, description="Leads per POST.")
    backoff_base_s: float = Field(5.0, gt=0, description="First retry delay after a failure (full jitter).")
    backoff_cap_s: float = Field(900.0, gt=0, description="Longest retry delay.")
    max_retry_after_s: float = Field(3600.0, gt=0, description="Cap on a server's Retry-After.")

    @field_validator("endpoint")
    @classmethod
    def _https_only(cls, value: str) -> str:
        # Personal data never crosses a network in clear; plain http only to this machine (demo, tests).
        return web_link(value) if value else value


class NotifySettings(Section):
    """E-mail notifications over SMTP with STARTTLS, sent through the outbox."""

    smtp_host: str = Field("", description="SMTP server ('' = e-mail disabled; e-mails wait in the outbox).")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP submission port (STARTTLS is required).")
    smtp_username: str = Field("", description="SMTP login ('' = no login); the password is a credential.")
    smtp_timeout_s: float = Field(15.0, gt=0, description="SMTP time limit.")
    smtp_ca_bundle: Path | None = Field(
        None, description="PEM CA bundle to verify the SMTP server with instead of the system's."
    )
    from_address: EmailAddress = Field("kiosk@example.com", description="Sender of every e-mail.")
    officer_email: EmailAddress = Field("", description="Loan officer receiving qualified leads ('' = none).")
    postal_address: str = Field(
        "Example Lending LLC, 1 Main St, Springfield", description="Postal address in visitor e-mails (CAN-SPAM)."
    )
    unsubscribe_address: EmailAddress = Field(
        "", description="Mailbox someone reads for opt-outs from visitor e-mails (List-Unsubscribe, CAN-SPAM); "
        "'' = no visitor e-mail is written, and `config check` refuses it while smtp_host is set.",
    )  # fmt: skip
    unsubscribe_url: OneClickLink = Field(
        "", description="The lender's one-click unsubscribe endpoint (RFC 8058, https://; the kiosk adds "
        "?lead=...&kiosk=...); '' = the mailto only.",
    )  # fmt: skip
    templates_dir: Path = Field(Path("templates"), description="E-mail templates (relative to the config file).")


CONSENT_MIN_DAYS = 1461  # 4 years (TCPA limitation period, 47 U.S.C. 227 via 28 U.S.C. 1658)


class RetentionSettings(Section):
    """How long personal data and consent evidence are kept."""

    personal_data_days: int = Field(
        30, ge=1, description="Purge name, e-mail, phone and e-mail copies of synced leads after this many days."
    )
    consent_days: int = Field(
        1461, description="Keep consent evidence this long (TCPA: at least 4 years), then delete the lead."
    )

    @field_validator("consent_days")
    @classmethod
    def _tcpa_minimum(cls, value: int) -> int:
        if value < CONSENT_MIN_DAYS:
            raise ValueError(f"must be at least {CONSENT_MIN_DAYS} days: consent evidence has to outlive the TCPA's "
                             "4-year limitation period, or the lender cannot prove consent when sued")  # fmt: skip
        return value

    @model_validator(mode="after")
    def _consent_outlives_personal_data(self) -> RetentionSettings:
        if self.consent_days <= self.personal_data_days:
            raise ValueError("consent_days must be longer than personal_data_days")
        return self


class ServiceSettings(Section):
    """Running under systemd: the status file and the watchdog's idea of progress."""

    status_file: Path = Field(
        Path("/var/lib/kiosk/status.json"),
        description="Small JSON the daemon keeps for `kiosk status` (relative to the config file).",
    )
    credentials_dir: Path = Field(
        Path("/etc/kiosk/credentials"),
        description=(
            "Secrets as scripts/install keeps them; read when $CREDENTIALS_DIRECTORY is unset and the "
            "directory is readable (root: `sudo kiosk selftest` sees what the service sees)."
        ),
    )
    audio_stall_s: float = Field(
        5.0, gt=0, le=60, description="No audio callback progress for this long stops the watchdog pings."
    )


class FleetSettings(Section):
    """Feeding a fleet's systems: Prometheus, the heartbeat and daily stats, link warnings."""

    metrics_dir: Path | None = Field(
        None, description="node_exporter textfile collector directory; kiosk.prom is written there (unset = off)."
    )
    metrics_interval_s: float = Field(15.0, ge=1, le=3600, description="Rewrite the metrics file this often.")
    heartbeat_s: float = Field(
        300.0, ge=0, description="Send a heartbeat to the sync endpoint this often (0 = never; needs sync)."
    )
    daily_stats: bool = Field(True, description="Send each finished day's stats document to the sync endpoint.")
    link_warn_min: float = Field(
        5.0, gt=0, description="Log a WARNING (link_down) once the Realtime link has failed this many minutes."
    )


class LogSettings(Section):
    """Logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    redact_pii: bool = Field(True, description="Redact e-mail addresses and phone numbers from log text.")


class Secrets(Section):
    """Secrets, from $CREDENTIALS_DIRECTORY files or KIOSK_SECRETS__* variables; never in TOML."""

    openai_api_key: SecretStr | None = Field(None, description="OpenAI API key.")
    sync_token: SecretStr | None = Field(None, description="Bearer token for the CRM endpoint.")
    sync_signing_secret: SecretStr | None = Field(None, description="HMAC-SHA256 secret for lead batches.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    perplexity_api_key: SecretStr | None = Field(None, description="Perplexity API key (web search).")


class Settings(BaseSettings):
    """All settings of one kiosk."""

    model_config = SettingsConfigDict(
        env_prefix="KIOSK_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    kiosk_id: str = Field(
        default_factory=machine_kiosk_id,
        min_length=1,
        description="Identifies this kiosk in leads, logs and fleet data (default: derived from /etc/machine-id).",
    )
    branch: BranchSettings = BranchSettings()
    realtime: RealtimeSettings = RealtimeSettings()
    audio: AudioSettings = AudioSettings()
    echo: EchoSettings = EchoSettings()
    vad: VadSettings = VadSettings()
    panel: PanelSettings = PanelSettings()
    session: SessionSettings = SessionSettings()
    cost: CostSettings = CostSettings()
    store: StoreSettings = StoreSettings()
    tools: ToolSettings = ToolSettings()
    sync: SyncSettings = SyncSettings()
    notify: NotifySettings = NotifySettings()
    retention: RetentionSettings = RetentionSettings()
    service: ServiceSettings = ServiceSettings()
    fleet: FleetSettings = FleetSettings()
    log: LogSettings = LogSettings()
    secrets: Secrets = Secrets()

    @model_validator(mode="after")
    def _models_are_priced(self) -> Settings:
        # A model without prices would make the money budgets silently count nothing.
        for key, model in (("realtime.model", self.realtime.model),
                           ("realtime.transcription_model", self.realtime.transcription_model)):  # fmt: skip
            if model not in self.cost.prices:
                raise ValueError(f'cost.prices has no entry for {key} {model!r}: add [cost.prices."{model}"]')
        return self

    @field_validator("secrets", mode="before")
    @classmethod
    def _no_blank_secrets(cls, value: Any) -> Any:
        # An empty credential file means "not configured", not an empty key.
        if isinstance(value, Mapping):
            return {k: v for k, v in value.items() if not (isinstance(v, str) and not v.strip())}
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents arrive as init kwargs; the environment must beat them.
        return (env_settings, init_settings)
