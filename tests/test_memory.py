"""Memory: what the kiosk holds, and the benchmark's kiosk process weighing what the daemon weighs (README "Memory")."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np

from kiosk.audio.pcm import RATE, read_wav
from kiosk.bench import voices
from kiosk.runtime.compose import read_message
from kiosk.sim.scenario import synthesize
from tests.toolkit import checkout_settings

REPO = Path(__file__).resolve().parent.parent


def _last_line(code: str) -> str:
    """The last line ``code`` prints in a fresh interpreter (run from the checkout)."""
    cmd = [sys.executable, "-c", code]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()[-1]


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    return set(json.loads(_last_line(code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n")))


def test_the_bench_kiosk_process_loads_no_numpy_random(tmp_path: Path) -> None:
    # numpy.random is about 6 MB resident and no part of the daemon uses it: the card and
    # the visitor's voice of the memory benchmark must not bring it into the kiosk's process.
    code = f"""
from pathlib import Path
import kiosk.bench.duplex
from kiosk.bench.probe import FifoCard
from kiosk.bench.voices import visitor_utterance
card = FifoCard(Path({str(tmp_path)!r}), marks=False)
card.start()
card.close()
visitor_utterance()
"""
    assert "numpy.random" not in _modules_after(code)
    assert "numpy.random" not in _modules_after("import kiosk.cli.main, kiosk.runtime.daemon")


def test_the_visitors_voice_is_the_sentences_start_made_without_the_whole() -> None:
    seconds = 0.45
    synthesize.cache_clear()  # measured as a fresh process makes it
    tracemalloc.start()
    try:
        got = voices.visitor_utterance(seconds)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The whole sentence (about 6 s) in float64 arrays peaks at several MB; the half second, not.
    assert peak < 1 << 20, f"{peak / 2**20:.1f} MB"
    whole = np.frombuffer(synthesize(voices._SENTENCE, pitch_hz=210.0, syllable_hz=6.0), dtype="<i2")
    n = int(seconds * RATE)
    expected = np.clip(whole[:n].astype(np.float64) * 2.5, -32767, 32766).astype("<i2").tobytes()
    assert got == expected, "the same samples as before"


def test_kiosk_run_loads_no_command_it_never_runs() -> None:
    # Every command builds the whole parser, which imports each command's module: what only
    # `kiosk selftest` and `kiosk report --html` run stays out of the daemon's process.
    code = """
from kiosk.cli.main import _parser
import kiosk.config.checks, kiosk.runtime.daemon
_parser().parse_args(["run", "--no-gpio"])
"""
    loaded = _modules_after(code)
    assert "kiosk.runtime.daemon" in loaded  # the probe does load the run path
    assert not {"kiosk.cli.probes", "kiosk.fleet.html", "html.entities"} & loaded


def test_the_prerecorded_messages_are_read_when_played_not_held() -> None:
    path = checkout_settings().session.offline_message
    tracemalloc.start()
    try:
        message = read_message(path)  # read once (an unusable file is reported at start-up)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 64 << 10, f"{held >> 10} kB held"  # the message itself is ~370 kB
    assert message is not None and message.pcm() == read_wav(path)



def _heap_retained_kb(setup: str) -> int:
    """kB still resident after 10 MB of 256 kB blocks were freed, once a 4 MB block had been,
    in a fresh interpreter that ran ``setup`` first."""
    code = setup + """
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
big = bytearray(4 << 20)
del big  # glibc's own policy now raises its threshold to 4 MB
before = rss()
blocks, pins = [], []
for _ in range(40):
    blocks.append(bytearray(256 << 10))
    pins.append(bytearray(2048))  # small heap blocks after each: the heap's top cannot shrink
del blocks
print(rss() - before)
"""
    return int(_last_line(code))


def test_freed_large_blocks_leave_a_kiosk_process() -> None:
    assert _heap_retained_kb("") > 8 << 10, "glibc's own policy keeps them (the test sees the effect)"
    assert _heap_retained_kb("from kiosk.runtime import heap\nassert heap.fix_mmap_threshold()\n") < 1 << 10
    # build_kiosk is where the daemon and the benchmarks' kiosk both set it.
    build = """
import tempfile
from pathlib import Path
from kiosk.audio.files import RawSpeaker, ScriptedMicrophone
from kiosk.leads.store import Store
from kiosk.panel.ports import LogLights
from kiosk.runtime.compose import build_kiosk
from tests.toolkit import checkout_settings
settings = checkout_settings({"store": {"path": str(Path(tempfile.mkdtemp()) / "kiosk.db")}})
build_kiosk(settings, Store(settings.store.path), ScriptedMicrophone(), RawSpeaker(Path("/dev/null")), LogLights())
"""
    assert _heap_retained_kb(build) < 1 << 10


# What a visit without a lead does not need, and must not load (README "Memory"):
NOT_IN_A_VISIT = {
    # sqlite-utils with click, dateutil and pluggy, about 3 MB resident: only a lead's save
    # writes through it; a visit records its usage in plain SQL.
    "sqlite_utils", "click", "dateutil", "pluggy",
    # the syncer (CRM and SMTP clients) is the daemon's; the tools write e-mails without the
    # sender, so smtplib and the e-mail package's policies (about 1 MB) stay out.
    "kiosk.leads.sync", "kiosk.leads.smtp", "smtplib", "email.policy", "email.headerregistry",
    # the settings' "did you mean" suggestions, only for a setting that names nothing
    "difflib",
}  # fmt: skip


def test_a_visit_without_a_lead_loads_only_what_it_needs(tmp_path: Path) -> None:
    code = f"""
import asyncio, io, json, sys
from pathlib import Path
from kiosk.leads.store import Store
from kiosk.sim.demo import run_demo
from tests.toolkit import CHECKOUT_CONFIG
demo = run_demo("interrupt", Path({str(tmp_path)!r}), speed=10.0, out=io.StringIO(), config=CHECKOUT_CONFIG)
result = asyncio.run(demo)
store = Store(result.store_path)
usage = store.rows("SELECT input_tokens, output_tokens, cost_usd FROM usage")
print(json.dumps([[name for name, ok in result.checks if not ok], usage, sorted(sys.modules)]))
"""
    failed, usage, loaded = json.loads(_last_line(code))
    assert failed == []
    assert usage and usage[0]["input_tokens"] > 0 and usage[0]["cost_usd"] > 0  # the visit did record its usage
    assert "kiosk.tools.leads" in loaded and "kiosk.leads.mail" in loaded  # the tools that write e-mails are there
    assert not NOT_IN_A_VISIT & set(loaded)


def test_a_leads_save_brings_sqlite_utils_without_its_plugins(tmp_path: Path) -> None:
    # A sqlite-utils plugin installed beside the kiosk (an entry point) must not get to change
    # the kiosk's connection; a plain Database() in the same process does run it.
    site = tmp_path / "site"
    (site / "foreign-0.1.dist-info").mkdir(parents=True)
    (site / "foreign-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: foreign\nVersion: 0.1\n")
    (site / "foreign-0.1.dist-info" / "entry_points.txt").write_text("[sqlite_utils]\nforeign = foreign\n")
    (site / "foreign.py").write_text(
        "import sqlite_utils\n"
        "@sqlite_utils.hookimpl\n"
        "def prepare_connection(conn):\n"
        "    conn.create_function('planted', 0, lambda: 'here')\n"
    )
    code = f"""
import json, sqlite3, sys
sys.path.insert(0, {str(site)!r})
from pathlib import Path
from kiosk.leads.store import Store
from tests.test_store import CONSENT, LEAD
store = Store(Path({str(tmp_path / "k.db")!r}))
before = "sqlite_utils" in sys.modules
lead_id = store.save_lead(LEAD, CONSENT)
import sqlite_utils
plain = sqlite_utils.Database(sqlite3.connect(":memory:"))
def has_foreign(conn):
    try:
        return conn.execute("SELECT planted()").fetchone()[0] == "here"
    except sqlite3.OperationalError:
        return False
print(json.dumps([before, store.lead(lead_id)["email"], has_foreign(plain.conn), has_foreign(store.conn)]))
"""
    before, email, plain_has_it, kiosk_has_it = json.loads(_last_line(code))
    assert not before
    assert email == "jane@example.com"
    assert plain_has_it, "the plugin is installed and active (the test sees the effect)"
    assert not kiosk_has_it


def test_the_daemons_syncer_loads_the_smtp_sender_at_its_first_email(tmp_path: Path) -> None:
    # smtplib, the e-mail package's policies and the sender's TLS context wait for an e-mail.
    code = f"""
from pathlib import Path
import kiosk.runtime.daemon
from kiosk.config import NotifySettings, RetentionSettings, Secrets, SyncSettings
from kiosk.leads.store import Store
from kiosk.leads.sync import Syncer
notify = NotifySettings(smtp_host="smtp.example.com", from_address="kiosk@example.com")
syncer = Syncer(Store(Path({str(tmp_path / "k.db")!r})), "k1", SyncSettings(), notify, RetentionSettings(), Secrets())
assert syncer.mailer is not None  # e-mail is configured
"""
    assert not {"smtplib", "email.policy", "kiosk.leads.smtp"} & _modules_after(code)


def test_realtime_connections_share_one_tls_context(cert: tuple[Path, Path]) -> None:
    # asyncio would make (and fill with the system's CAs) a context per wss:// connection:
    # 0.8 MB resident each, and ~30 ms of the event loop per connect.
    certfile, keyfile = cert
    code = f"""
import asyncio, json, os
from pathlib import Path
os.environ["SSL_CERT_FILE"] = {str(certfile)!r}  # the test's self-signed certificate is the trusted CA
from pydantic import SecretStr
from websockets.asyncio.server import serve
from kiosk.realtime.connection import RealtimeConnection
from tests.synckit import server_tls
async def main():
    async def hold(ws):
        await ws.wait_closed()
    tls = server_tls(Path({str(certfile)!r}), Path({str(keyfile)!r}))
    async with serve(hold, "127.0.0.1", 0, ssl=tls) as server:
        url = f"wss://127.0.0.1:{{server.sockets[0].getsockname()[1]}}/v1/realtime"
        contexts = []
        for _ in range(2):
            conn = await RealtimeConnection.open(url, "m", SecretStr("k"), connect_timeout=10, ping_interval=20)
            contexts.append(conn._ws.transport.get_extra_info("ssl_object").context)
            await conn.close()
    return contexts
first, second = asyncio.run(main())
print(json.dumps([first is second, first.verify_mode == 2]))
"""
    shared, verified = json.loads(_last_line(code))
    assert verified  # certificates are checked (CERT_REQUIRED)
    assert shared
