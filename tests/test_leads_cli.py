"""`kiosk leads list|show|retry` and `kiosk sync --once` as a technician runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kiosk.leads import outbox as ob
from kiosk.leads.store import Store
from tests.synckit import SECRET, TOKEN, free_port, make_cert, save_leads, serve_receiver


def kiosk(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    env.update(KIOSK_SECRETS__SYNC_TOKEN=TOKEN, KIOSK_SECRETS__SYNC_SIGNING_SECRET=SECRET)
    return subprocess.run([sys.executable, "-m", "kiosk", "--config", str(cfg), *args], capture_output=True,
                          text=True, timeout=60, check=False, env=env)  # fmt: skip


def config(tmp_path: Path, endpoint: str = "", ca: Path | None = None) -> Path:
    cfg = tmp_path / "kiosk.toml"
    sync = f'[sync]\nendpoint = "{endpoint}"\n' + (f'ca_bundle = "{ca}"\n' if ca else "")
    cfg.write_text(f'kiosk_id = "k1"\n[store]\npath = "k.db"\n{sync}')
    return cfg


def test_list_and_show_mask_personal_data_unless_revealed(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    cfg = config(tmp_path)
    listed = kiosk(cfg, "leads", "list")
    assert listed.returncode == 0, listed.stderr
    assert lead_id in listed.stdout
    assert "v***@example.com" in listed.stdout and "+1********00" in listed.stdout and "V*** N***" in listed.stdout
    for secret in ("visitor0@example.com", "+14155550000", "Visitor Number0"):
        assert secret not in listed.stdout
    shown = kiosk(cfg, "leads", "show", lead_id)
    assert shown.returncode == 0 and "Yes, I agree." not in shown.stdout and "visitor0@" not in shown.stdout
    assert json.loads(shown.stdout)["outbox"][0]["state"] == "pending"
    revealed = json.loads(kiosk(cfg, "leads", "show", lead_id, "--reveal").stdout)
    assert revealed["lead"]["email"] == "visitor0@example.com"
    assert revealed["consent"]["visitor_words"] == "Yes, I agree."
    as_json = json.loads(kiosk(cfg, "leads", "list", "--json", "--reveal").stdout)
    assert as_json[0]["phone"] == "+14155550000"
    assert kiosk(cfg, "leads", "show", "no-such-lead").returncode == 1


def test_sync_once_then_retry_a_dead_lead(tmp_path: Path) -> None:
    cert = make_cert(tmp_path)
    store = Store(tmp_path / "k.db")
    (lead_id,) = save_leads(store, 1)
    with serve_receiver(tmp_path / "r.db", cert) as rx:
        cfg = config(tmp_path, rx.url, cert[0])
        rx.receiver.faults.append((422, {}))
        refused = kiosk(cfg, "sync", "--once")
        assert refused.returncode == 1 and "HTTP 422" in refused.stderr
        assert "1 dead" in kiosk(cfg, "leads", "list", "--state", "dead").stdout
        retried = kiosk(cfg, "leads", "retry", lead_id)
        assert retried.returncode == 0 and "1 dead row(s) re-queued" in retried.stdout
        ok = kiosk(cfg, "sync", "--once")
        assert ok.returncode == 0, ok.stderr
        assert "1 sent" in ok.stdout and "0 lead(s) waiting for upload; last sync" in ok.stdout
        assert list(rx.receiver.stored()) == [lead_id]
    assert kiosk(cfg, "leads", "retry", "--all-dead").returncode == 1  # nothing dead any more
    assert kiosk(cfg, "leads", "retry").returncode == 2


def test_sync_once_without_endpoint_or_credentials_is_a_config_error(tmp_path: Path) -> None:
    r = kiosk(config(tmp_path), "sync", "--once")
    assert r.returncode == 78 and "sync.endpoint is not set" in r.stderr


def test_sync_once_with_endpoint_down_exits_69_and_keeps_the_lead(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    save_leads(store, 1)
    r = kiosk(config(tmp_path, f"http://127.0.0.1:{free_port()}/leads"), "sync", "--once")
    assert r.returncode == 69 and "network" in r.stderr
    assert ob.sync_status(store.conn).pending_leads == 1
    assert ob.sync_status(store.conn).last_error_at is not None


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path) -> None:
    """`kiosk leads list --json | head`: the pipe closes under a long listing."""
    save_leads(Store(tmp_path / "k.db"), 400)  # far more than a pipe buffer holds
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    proc = subprocess.Popen(  # the reader is this test: it reads a little, then goes away
        [sys.executable, "-m", "kiosk", "--config", str(config(tmp_path)), "leads", "list", "--json",
         "--limit", "400", "--reveal"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_show_reveal_explains_the_consent_evidence_in_plain_words(tmp_path: Path) -> None:
    from kiosk.realtime.transcripts import TranscriptBook
    from tests.toolkit import CONSENT_SAID, DRAFT, GREETING_SAID, call, make_ctx, make_registry

    store = Store(tmp_path / "k.db")
    ctx = make_ctx(store)
    book = TranscriptBook()
    book.assistant("a0", GREETING_SAID, 0)
    book.assistant("a1", CONSENT_SAID, 0)
    book.visitor("item_v2", "Yes, I agree.")
    ctx.transcript, ctx.items = book.lines(), book.items()
    lead_id = call(make_registry(), "saveLead", {"leadDraft": DRAFT}, ctx)["leadId"]
    store.close()
    cfg = config(tmp_path)
    shown = json.loads(kiosk(cfg, "leads", "show", lead_id).stdout)["consent_evidence"]
    assert shown["the visitor said (transcribed, by conversation item)"].startswith("<hidden")
    ev = json.loads(kiosk(cfg, "leads", "show", lead_id, "--reveal").stdout)["consent_evidence"]
    assert ev["status"].startswith("VERIFIED")
    assert ev["number the consent covers"] == "+14155550132"
    assert ev["the assistant said, asking for consent (its own transcript)"] == CONSENT_SAID
    assert ev["the assistant said at the start (AI disclosure)"] == GREETING_SAID
    assert ev["the visitor said (transcribed, by conversation item)"] == ["item_v2: Yes, I agree."]
    assert ev["required elements not said"] == [] and ev["withdrawal"] is None
