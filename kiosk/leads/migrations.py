"""The store's schema, one migration per step: append a new one, never edit one that shipped
(``PRAGMA user_version`` counts those applied)."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: leads, consent evidence, scores, outbox
    """
    CREATE TABLE leads (
        id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        kiosk_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        name TEXT,
        email TEXT,
        phone TEXT,
        product_type TEXT NOT NULL,
        analysis_json TEXT,
        purged_at TEXT
    );
    CREATE TABLE consent (
        lead_id TEXT PRIMARY KEY REFERENCES leads(id),
        disclosure_text TEXT NOT NULL,
        disclosure_version TEXT NOT NULL,
        channel TEXT NOT NULL,
        given_at TEXT NOT NULL,
        kiosk_id TEXT NOT NULL,
        session_id TEXT NOT NULL,
        visitor_words TEXT NOT NULL
    );
    CREATE TABLE scores (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        lead_id TEXT NOT NULL REFERENCES leads(id),
        created_at TEXT NOT NULL,
        total INTEGER NOT NULL,
        disposition TEXT NOT NULL,
        points_json TEXT NOT NULL,
        reasons_json TEXT NOT NULL,
        rubric_version TEXT NOT NULL
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        ref TEXT NOT NULL,
        created_at TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT,
        last_error TEXT,
        sent_at TEXT,
        payload_json TEXT
    );
    CREATE INDEX outbox_pending ON outbox(state, next_attempt_at);
    CREATE UNIQUE INDEX outbox_once ON outbox(kind, ref);
    """,
    # 2: the deal facts a lead was scored on (timeline, occupancy, ARV...), session lookups
    """
    ALTER TABLE leads ADD COLUMN details_json TEXT;
    CREATE INDEX leads_session ON leads(session_id);
    CREATE INDEX scores_lead ON scores(lead_id, id);
    """,
    # 3: token usage and cost per visit (cost guards, ops)
    """
    CREATE TABLE usage (
        session_id TEXT PRIMARY KEY,
        day TEXT NOT NULL,
        started_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        input_audio_tokens INTEGER NOT NULL DEFAULT 0,
        input_text_tokens INTEGER NOT NULL DEFAULT 0,
        cached_tokens INTEGER NOT NULL DEFAULT 0,
        output_audio_tokens INTEGER NOT NULL DEFAULT 0,
        output_text_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0
    );
    CREATE INDEX usage_day ON usage(day);
    """,
    # 4 (sync): the syncer's status for ops (last success, last error, last purge), and the
    # phone number a consent covers, copied there when the lead's personal data is purged
    # so that the evidence still proves which number agreed.
    """
    CREATE TABLE sync_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    ALTER TABLE consent ADD COLUMN phone TEXT;
    """,
    # 5 (fleet): one record per visit, refused and offline ones too (stages reached, tool
    # names, knowledge section titles, tokens, cost: never the visitor's words), and the
    # seconds per local day the kiosk spent offline, unavailable or in error.
    """
    CREATE TABLE visits (
        id TEXT PRIMARY KEY,
        day TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT NOT NULL,
        duration_s REAL NOT NULL DEFAULT 0,
        end_reason TEXT NOT NULL,
        stage TEXT NOT NULL,
        stages_json TEXT NOT NULL DEFAULT '[]',
        tools_json TEXT NOT NULL DEFAULT '{}',
        topics_json TEXT NOT NULL DEFAULT '[]',
        consent_offers INTEGER NOT NULL DEFAULT 0,
        consent_declines INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        first_audio_ms REAL,
        warm INTEGER
    );
    CREATE INDEX visits_day ON visits(day);
    CREATE TABLE state_time (
        day TEXT NOT NULL,
        state TEXT NOT NULL,
        seconds REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (day, state)
    );
    """,
    # 6: cached input per modality and input transcription, each priced at its own rate
    """
    ALTER TABLE usage ADD COLUMN cached_text_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage ADD COLUMN cached_audio_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage ADD COLUMN transcription_audio_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage ADD COLUMN transcription_text_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage ADD COLUMN transcription_output_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage ADD COLUMN transcription_ms INTEGER NOT NULL DEFAULT 0;
    """,
    # 7 (consent you can prove): what was actually said, not only the text meant to be read:
    # the assistant's own transcript of the consent turn and of the greeting (AI disclosure),
    # the visitor's words by item id (filled in when a transcript lands late), the check of
    # the spoken disclosure against the required elements, and revocation. Rows from before
    # this migration were never checked: 'unchecked'.
    """
    ALTER TABLE consent ADD COLUMN assistant_words TEXT;
    ALTER TABLE consent ADD COLUMN greeting_words TEXT;
    ALTER TABLE consent ADD COLUMN visitor_items_json TEXT;
    ALTER TABLE consent ADD COLUMN status TEXT NOT NULL DEFAULT 'unchecked';
    ALTER TABLE consent ADD COLUMN missing_json TEXT;
    ALTER TABLE consent ADD COLUMN revoked_at TEXT;
    ALTER TABLE consent ADD COLUMN revoked_words TEXT;
    """,
    # 8 (CAN-SPAM): an e-mail unsubscribe stops the e-mails to a lead, not the calls and texts
    # its consent covers (`kiosk leads unsubscribe`); a full withdrawal is status 'revoked'.
    """
    ALTER TABLE consent ADD COLUMN email_revoked_at TEXT;
    """,
)
