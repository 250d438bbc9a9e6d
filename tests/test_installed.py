"""An installed kiosk needs nothing from the checkout.

The wheel is built from a copy of the sources, installed (without dependencies) into a
fresh venv in a temp directory, and run from a working directory outside the checkout,
with the configuration copied to a temp "etc" as ``scripts/install`` copies it:
``kiosk config check``, ``kiosk demo`` and ``kiosk selftest`` against ``kiosk sim serve``.

The third-party dependencies come from the dev venv through a ``.pth`` line naming its
site-packages: ``.pth`` files inside a directory added that way are not processed, so the
dev venv's editable kiosk (its import hook lives in such a ``.pth``) stays out.

A ``.pth`` line in the new venv imports an audit hook in every process (not a
``sitecustomize``: Debian's Python has its own, earlier on the path, which hides it): each
``open``, ``os.listdir`` or ``os.scandir`` of a path in the checkout (except the dev venv's
site-packages, where numpy and pydantic live) is written to a record the test reads.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
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


def build_wheel(tmp: Path) -> Path:
    """The wheel, built from a copy of the sources (an in-tree build would leave build/ behind)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "kiosk", src / "kiosk", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
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


def test_an_installed_wheel_runs_without_the_checkout(tmp_path: Path) -> None:
    assert not tmp_path.is_relative_to(REPO)
    record = tmp_path / "audit.log"
    wheel = build_wheel(tmp_path)
    bin_dir = make_venv(tmp_path, wheel, record)
    python, kiosk = bin_dir / "python", bin_dir / "kiosk"
    cwd = tmp_path / "run"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KIOSK_", "PYTHON", "VIRTUAL_ENV")) and k not in ("CREDENTIALS_DIRECTORY",)}

    # Every data file of the package is in the wheel (pyproject's package-data is complete).
    data = {p.relative_to(REPO).as_posix() for p in (REPO / "kiosk").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}
    assert data - set(zipfile.ZipFile(wheel).namelist()) == set()

    # The new venv imports its own kiosk, finds the packaged data, and the hook sees a checkout read.
    probe = (
        "import json, kiosk, sys\n"
        "from importlib.resources import files\n"
        "from kiosk.sim.scenario import load_scenario, scenario_names\n"
        "json.loads((files('kiosk') / 'schemas' / 'lead-batch.schema.json').read_text())\n"
        "assert all(t.visitor_audio is not None for t in load_scenario('happy_path').turns)\n"
        "print(kiosk.__file__, len(scenario_names()))\n"
        f"open({str(REPO / 'pyproject.toml')!r}).close()\n"
    )
    done = run([python, "-c", probe], cwd=cwd, env=env)
    assert done.returncode == 0, done.stderr
    where, count = done.stdout.split()
    assert Path(where).is_relative_to(tmp_path / "venv"), where
    assert int(count) >= 7
    assert any(line.endswith(str(REPO / "pyproject.toml")) for line in reads(record)), record.read_text()
    record.unlink()

    # The configuration where scripts/install puts it.
    etc = tmp_path / "etc" / "kiosk"
    shutil.copytree(REPO / "config", etc)
    config = etc / "kiosk.toml"
    state = {"KIOSK_STORE__PATH": str(tmp_path / "state" / "kiosk.db"),
             "KIOSK_SERVICE__STATUS_FILE": str(tmp_path / "state" / "status.json")}

    done = run([kiosk, "--config", config, "config", "check"], cwd=cwd, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"config OK: {config}" in done.stdout

    done = run([kiosk, "--config", config, "demo", "--speed", "10", "--workdir", tmp_path / "demo"], cwd=cwd, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout

    sim, url = start_simulator(kiosk, cwd, env, tmp_path / "sim.log")
    try:
        rt = {"KIOSK_REALTIME__URL": url, "KIOSK_SECRETS__OPENAI_API_KEY": "sim-key"}
        done = run([kiosk, "--config", config, "selftest", "--no-gpio", "--no-audio", "--json"],
                   cwd=cwd, env={**env, **state, **rt})
    finally:
        sim.terminate()
        sim.wait(10)
    assert done.returncode == 0, done.stdout + done.stderr
    results = {r["name"]: (r["status"], r["detail"]) for r in json.loads(done.stdout)}
    assert results["config"][0] == "PASS", results
    assert results["realtime"] == ("PASS", results["realtime"][1]), results

    # Every process ran with the hook, and none of them read the checkout.
    commands = started(record)
    for sub in ("config check", "demo", "sim serve", "selftest"):
        assert any(sub in c for c in commands), commands
    assert reads(record) == []
