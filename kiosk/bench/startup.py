"""Start-up to ``READY=1``: ``kiosk run --no-gpio`` as systemd would start it, on a virtual sound card.

The bench binds the ``$NOTIFY_SOCKET`` datagram socket itself and times from spawning the
process to the ``READY=1`` datagram. Audio devices are real PortAudio on ALSA devices the
bench defines (``ALSA_CONFIG_PATH``, as in the tests): capture reads a FIFO fed in real
time, playback writes a file. The Realtime URL points at the bench's simulator; the
configuration is the one the bench was given (``--config``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from kiosk.bench.probe import FifoCard

ASOUND = """
pcm.!default {{ type asym; playback.pcm "vplay"; capture.pcm "vcap" }}
pcm.vplay {{ type file; slave.pcm {{ type null }}; file "{spk}"; format "raw"; perm 0644 }}
pcm.vcap {{ type file; slave.pcm {{ type null }}; file "/dev/null"; infile "{mic}"; format "raw" }}
"""


def time_to_ready(workdir: Path, url: str, config: Path | None, *, limit_s: float = 20.0) -> float:
    """Seconds from spawning ``kiosk run`` to its ``READY=1``; the daemon is stopped with SIGTERM after.

    ``config`` is passed as ``--config`` (None: the kiosk's own default).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    card = FifoCard(workdir / "card", marks=False)
    conf = workdir / "asound.conf"
    conf.write_text(ASOUND.format(mic=card.mic_path, spk=workdir / "spk.raw"))
    sock_path = workdir / "notify.sock"
    sock_path.unlink(missing_ok=True)
    env = {
        **os.environ,
        "ALSA_CONFIG_PATH": str(conf),
        "NOTIFY_SOCKET": str(sock_path),
        "KIOSK_REALTIME__URL": url,
        "KIOSK_SECRETS__OPENAI_API_KEY": "sim-key",
        "KIOSK_STORE__PATH": str(workdir / "data" / "kiosk.db"),
        "KIOSK_SERVICE__STATUS_FILE": str(workdir / "status.json"),
    }
    cmd = [sys.executable, "-m", "kiosk", *(["--config", str(config)] if config else []), "run", "--no-gpio"]
    card.start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, (workdir / "daemon.log").open("ab") as log:
        sock.bind(str(sock_path))
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=log, stderr=log)
        try:
            return _wait_ready(sock, proc, t0, limit_s)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            card.close()


def _wait_ready(sock: socket.socket, proc: subprocess.Popen[bytes], t0: float, limit_s: float) -> float:
    while True:
        left = t0 + limit_s - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise RuntimeError(f"kiosk run sent no READY=1 (exit status {proc.poll()}); see daemon.log")
        sock.settimeout(min(left, 0.5))
        try:
            msg = sock.recv(4096)
        except TimeoutError:
            continue
        if b"READY=1" in msg.split(b"\n"):
            return time.monotonic() - t0
