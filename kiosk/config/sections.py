"""The settings model: one frozen, documented section per component, and ``Settings`` over them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from kiosk.config.identity import machine_kiosk_id
from kiosk.config.prices import CostSettings
from kiosk.config.rules import EmailAddress, NotBlank, PhoneNumber, PhoneRegion, WebLink, web_link

SECRET_NAMES = (
    "openai_api_key",
    "sync_token",
    "sync_signing_secret",
    "smtp_password",
    "perplexity_api_key",
)


class _Section(BaseModel):
    """Base of every settings section: immutable, and unknown keys are errors (typos)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class BranchSettings(_Section):
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


class RealtimeSettings(_Section):
    """OpenAI Realtime API connection and session parameters."""

    url: str = Field("wss://api.openai.com/v1/realtime", description="WebSocket endpoint, without the query string.")
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
    max_connects_per_minute: int = Field(
        20, ge=1, le=20, description="Connection attempts in any minute, all together, whatever the service does."
    )


class AudioSettings(_Section):
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
    input_period_ms: int = Field(0, ge=0, le=40, description="The microphone's device period in ms (0 = period_ms).")
    device_retry_s: float = Field(
        2.0, gt=0, le=60, description="While a device is missing, look for it again this often."
    )


class EchoSettings(_Section):
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
    gate_margin_db: float = Field(
        0.0, description="gate: mic level must exceed the playback level by this much to pass."
    )
    warmup_ms: int = Field(300, ge=0, description="gate: no barge-in for this long after playback starts.")


class VadSettings(_Section):
    """Local webrtcvad for the 'visitor speaking' light only."""

    aggressiveness: int = Field(2, ge=0, le=3, description="webrtcvad mode.")
    frame_ms: Literal[10, 20, 30] = Field(30, description="webrtcvad frame length.")
    hangover_ms: int = Field(300, ge=0, description="Light stays on this long after speech.")


class PanelSettings(_Section):
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


class SessionSettings(_Section):
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


class StoreSettings(_Section):
    """Local SQLite database (leads, consent evidence, outbox)."""

    path: Path = Field(Path("/var/lib/kiosk/kiosk.db"), description="Database file (relative to the config file).")


class ToolSettings(_Section):
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
    search_base_url: str = Field(
        "https://api.perplexity.ai", description="Perplexity API base URL (chat completions at /chat/completions)."
    )
    search_model: str = Field("sonar", description="Perplexity model for perplexitySearch.")
    search_timeout_s: float = Field(6.0, gt=0, le=60, description="HTTP time limit of one web search.")
    search_max_chars: int = Field(450, ge=80, le=4000, description="Web answers are trimmed to this many characters.")


class SyncSettings(_Section):
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


class NotifySettings(_Section):
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
    templates_dir: Path = Field(Path("templates"), description="E-mail templates (relative to the config file).")


class RetentionSettings(_Section):
    """How long personal data and consent evidence are kept."""

    personal_data_days: int = Field(
        30, ge=1, description="Purge name, e-mail, phone and e-mail copies of synced leads after this many days."
    )
    consent_days: int = Field(
        1461, ge=1461, description="Keep consent evidence this long (TCPA: at least 4 years), then delete the lead."
    )

    @model_validator(mode="after")
    def _consent_outlives_personal_data(self) -> RetentionSettings:
        if self.consent_days <= self.personal_data_days:
            raise ValueError("consent_days must be longer than personal_data_days")
        return self


class ServiceSettings(_Section):
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


class FleetSettings(_Section):
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


class LogSettings(_Section):
    """Logging."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    redact_pii: bool = Field(True, description="Redact e-mail addresses and phone numbers from log text.")


class Secrets(_Section):
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
