"""Building and running an installed kiosk outside the checkout: wheel, fresh venv, audit hook."""


from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Where numpy, pydantic, websockets, ... are installed: the venv running the tests.
DEV_SITE = sorted({os.path.realpath(sysconfig.get_path(k)) for k in ("purelib", "platlib")})
STEP_LIMIT_S = 90.0

AUDIT = '''\
"""Test instrumentation: record every file-system read under the kiosk checkout."""
import os
import sys

_ROOT = {root!r}
_ALLOWED = {allowed!r}
_RECORD = {record!r}
_EVENTS = ("open", "os.listdir", "os.scandir")


def _write(line):
    fd = os.open(_RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\\n").encode("utf-8", "backslashreplace"))
    finally:
        os.close(fd)


def _hook(event, args):
    if event not in _EVENTS or not args or args[0] is None or isinstance(args[0], int):
        return
    try:
        path = os.path.realpath(os.fsdecode(args[0]))
    except (TypeError, ValueError, OSError):
        return
    inside = path == _ROOT or path.startswith(_ROOT + os.sep)
    if inside and not any(path == a or path.startswith(a + os.sep) for a in _ALLOWED):
        _write(f"{{os.getpid()}} READ {{event}} {{path}}")


_write(f"{{os.getpid()}} START {{' '.join(getattr(sys, 'argv', []))}}")
sys.addaudithook(_hook)
'''


def run(
    cmd: list[str | Path], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run with a time limit; the output is kept for the assertion messages."""
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=STEP_LIMIT_S, check=False)


def build_wheel(tmp: Path, source: Path = REPO) -> Path:
    """The wheel, built from a copy of ``source`` (an in-tree build would leave build/ behind)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(source / name, src / name)
    shutil.copytree(source / "kiosk", src / "kiosk", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp / "wheels"
    done = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                "-q", "-w", out, src])
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("kiosk-*.whl")
    return wheel


def make_venv(tmp: Path, wheel: Path, record: Path) -> Path:
    """A fresh venv with the wheel, the dev venv's dependencies and the audit hook; its bin/."""
    venv = tmp / "venv"
    done = run([sys.executable, "-m", "venv", "--without-pip", venv])
    assert done.returncode == 0, done.stderr
    python = venv / "bin" / "python"
    # Installed before the .pth exists: pip must not see the dev venv's kiosk.
    done = run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel])
    assert done.returncode == 0, done.stdout + done.stderr
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    assert site.is_dir() and site.is_relative_to(tmp)
    (site / "_kiosk_dev_deps.pth").write_text("".join(f"{d}\n" for d in DEV_SITE))
    root = os.path.realpath(REPO)
    # A .pth line imports the hook in every process (not a sitecustomize: Debian's Python
    # has its own, earlier on the path, which hides one placed here).
    (site / "_kiosk_audit.py").write_text(AUDIT.format(root=root, allowed=DEV_SITE, record=str(record)))
    (site / "_kiosk_audit.pth").write_text("import _kiosk_audit\n")
    return venv / "bin"


def reads(record: Path) -> list[str]:
    """Checkout paths read since the record was last cleared."""
    lines = record.read_text().splitlines() if record.exists() else []
    return [line for line in lines if " READ " in line]


def started(record: Path) -> list[str]:
    """Command lines of the processes that ran with the audit hook."""
    lines = record.read_text().splitlines() if record.exists() else []
    return [line.split(" START ", 1)[1] for line in lines if " START " in line]


def start_simulator(kiosk: Path, cwd: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[str], str]:
    """``kiosk sim serve`` on a free loopback port; the process and its realtime URL."""
    proc = subprocess.Popen([str(kiosk), "sim", "serve", "--port", "0"], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=log.open("w"))
    assert proc.stdout is not None
    deadline = time.monotonic() + STEP_LIMIT_S
    while not select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
        if time.monotonic() >= deadline:
            proc.kill()
            raise AssertionError(f"no simulator banner within {STEP_LIMIT_S} s: {log.read_text()}")
    line = proc.stdout.readline()  # "simulator: ws://127.0.0.1:PORT/v1/realtime?model=... (scenario ...)"
    assert line.startswith("simulator: ws://127.0.0.1:"), line + log.read_text()
    return proc, line.split()[1].split("?")[0]


