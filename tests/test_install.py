"""scripts/install and scripts/uninstall against a temporary root: idempotent, the
configuration never overwritten, credentials private, the unit installed and enabled."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.leads.store import Store
from tests.installkit import build_wheel, make_venv, reads, start_simulator
from tests.installkit import run as installkit_run
from tests.synckit import save_leads

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="install manages users and root-owned files: needs root"),
    pytest.mark.skipif(shutil.which("useradd") is None or shutil.which("systemctl") is None, reason="no useradd"),
]


def run(script: str, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(REPO / "scripts" / script), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A fake / with the host's account files (useradd --prefix edits these copies)."""
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow", "login.defs"):
        if Path("/etc", name).exists():
            shutil.copy2(Path("/etc", name), r / "etc" / name)
    return r


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run("install", root, "--no-apt", "--no-venv", *args)


def tree(root: Path) -> dict[str, bytes | str]:
    """Every file's content (symlinks by target), for comparing two runs."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


def systemd_version() -> int:
    out = subprocess.run(["systemctl", "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    return int(out.split()[1])


def test_install_lays_out_the_system(root: Path, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-test\n")
    install(root, "--credential", f"openai_api_key={key}")
    passwd = (root / "etc" / "passwd").read_text()
    assert any(line.startswith("kiosk:") and line.endswith(":/usr/sbin/nologin") for line in passwd.splitlines())
    group_lines = (root / "etc" / "group").read_text().splitlines()
    groups = {line.split(":")[0]: line.split(":")[3].split(",") for line in group_lines}
    assert "kiosk" in groups["audio"] and "kiosk" in groups["gpio"]
    # Code, config, credentials.
    assert (root / "opt/kiosk/src/kiosk/cli/main.py").is_file() and (root / "opt/kiosk/README.md").is_file()
    assert (root / "etc/kiosk/kiosk.toml").read_bytes() == (REPO / "config/kiosk.toml").read_bytes()
    assert (root / "etc/kiosk/knowledge/faq.md").is_file() and (root / "etc/kiosk/instructions.md").is_file()
    for shipped in (REPO / "config").iterdir():  # everything kiosk.toml refers to came along
        assert (root / "etc/kiosk" / shipped.name).exists(), shipped.name
    # The installed configuration is complete: it validates where it was installed.
    check = subprocess.run(
        [sys.executable, "-m", "kiosk", "--config", str(root / "etc/kiosk/kiosk.toml"), "config", "check"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")},
    )
    assert check.returncode == 0, check.stderr
    creds = root / "etc/kiosk/credentials"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o700
    assert stat.S_IMODE((creds / "openai_api_key").stat().st_mode) == 0o600
    assert (creds / "openai_api_key").read_text() == "sk-test\n"
    # The unit, installed and enabled; the back-off drop-in only where systemd knows it.
    unit = root / "etc/systemd/system/kiosk.service"
    assert unit.read_bytes() == (REPO / "systemd/kiosk.service").read_bytes()
    wants = root / "etc/systemd/system/multi-user.target.wants/kiosk.service"
    assert wants.is_symlink() and os.readlink(wants) == "/etc/systemd/system/kiosk.service"
    dropin = root / "etc/systemd/system/kiosk.service.d/10-restart-backoff.conf"
    assert dropin.exists() == (systemd_version() >= 254)
    assert (root / "etc/udev/rules.d/99-kiosk-audio.rules").is_file()


def test_install_is_idempotent_and_keeps_the_config(root: Path) -> None:
    install(root)
    first = tree(root)
    install(root)
    assert tree(root) == first  # nothing changed, nothing duplicated (users, groups, links)
    # The operator edits the config; an upgrade keeps it and offers the new one beside it.
    mine = root / "etc/kiosk/kiosk.toml"
    mine.write_text(mine.read_text().replace('# kiosk_id = "booth-7"', 'kiosk_id = "booth-7"'))
    (root / "etc/kiosk/knowledge/faq.md").write_text("our own FAQ\n")
    out = install(root).stdout
    assert 'kiosk_id = "booth-7"' in mine.read_text()
    assert (root / "etc/kiosk/kiosk.toml.new").read_bytes() == (REPO / "config/kiosk.toml").read_bytes()
    assert "kept your" in out
    assert (root / "etc/kiosk/knowledge/faq.md").read_text() == "our own FAQ\n"
    passwd = (root / "etc/passwd").read_text()
    assert sum(line.startswith("kiosk:") for line in passwd.splitlines()) == 1


def test_uninstall_keeps_data_and_purge_refuses_to_lose_leads(root: Path) -> None:
    install(root)
    state = root / "var/lib/kiosk"
    store = Store(state / "kiosk.db")
    save_leads(store, 2)  # two leads the CRM has not received
    store.close()
    run("uninstall", root)
    assert not (root / "opt/kiosk").exists() and not (root / "usr/local/bin/kiosk").is_symlink()
    assert not (root / "etc/systemd/system/kiosk.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/kiosk.service").exists()
    assert (root / "etc/kiosk/kiosk.toml").exists() and (state / "kiosk.db").exists()
    run("uninstall", root)  # again: nothing left to do, still fine
    refused = subprocess.run([str(REPO / "scripts/uninstall"), "--root", str(root), "--purge"],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert refused.returncode == 1 and "undelivered" in refused.stderr and "2 lead" in refused.stderr
    assert (state / "kiosk.db").exists() and (root / "etc/kiosk").exists()
    run("uninstall", root, "--purge", "--force")
    assert not (root / "etc/kiosk").exists() and not state.exists()
    assert not any(line.startswith("kiosk:") for line in (root / "etc/passwd").read_text().splitlines())
    # And it installs again after a purge.
    install(root)
    assert (root / "etc/kiosk/kiosk.toml").exists()


def test_install_checks_its_arguments_before_changing_anything(tmp_path: Path) -> None:
    empty = tmp_path / "image"
    for bad in (["--credential", "openai_key=/etc/hostname"], ["--credential", f"openai_api_key={tmp_path}/nope"]):
        r = subprocess.run([str(REPO / "scripts/install"), "--root", str(empty), "--no-apt", "--no-venv", *bad],
                           capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        assert r.returncode == 2 and "credential" in r.stderr
        assert not empty.exists()  # nothing was made


def test_an_empty_root_becomes_a_kiosk_whose_installed_code_checks_out(tmp_path: Path) -> None:
    """The image case: install into an empty directory, then run what was installed (its
    config check and its self-test against the simulator) outside the checkout."""
    image = tmp_path / "image"
    install(image)
    link = image / "usr/local/bin/kiosk"
    assert link.is_symlink() and os.readlink(link) == "/opt/kiosk/venv/bin/kiosk"  # on PATH once booted
    state = image / "var/lib/kiosk"
    uid, gid = next(line.split(":")[2:4] for line in (image / "etc/passwd").read_text().splitlines()
                    if line.startswith("kiosk:"))  # fmt: skip
    st = state.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (int(uid), int(gid), 0o750)
    install(image)
    assert not (image / "etc/kiosk/kiosk.toml.new").exists()  # unchanged config: no .new pile

    # The code scripts/install laid down, built and run from a venv outside the checkout.
    record = tmp_path / "audit.log"
    kiosk = make_venv(tmp_path, build_wheel(tmp_path, image / "opt/kiosk/src"), record) / "kiosk"
    cwd = tmp_path / "run"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KIOSK_", "PYTHON", "VIRTUAL_ENV")) and k != "CREDENTIALS_DIRECTORY"}
    env |= {"KIOSK_STORE__PATH": str(state / "kiosk.db"), "KIOSK_SERVICE__STATUS_FILE": str(state / "status.json"),
            "KIOSK_SERVICE__CREDENTIALS_DIR": str(image / "etc/kiosk/credentials")}  # fmt: skip
    config = image / "etc/kiosk/kiosk.toml"
    done = installkit_run([kiosk, "config", "check", "--config", config], cwd=cwd, env=env)
    assert done.returncode == 0 and f"config OK: {config}" in done.stdout, done.stdout + done.stderr
    sim, url = start_simulator(kiosk, cwd, env, tmp_path / "sim.log")
    try:
        rt = {"KIOSK_REALTIME__URL": url, "KIOSK_SECRETS__OPENAI_API_KEY": "sk-proj-sim"}
        done = installkit_run([kiosk, "selftest", "--config", config, "--no-gpio", "--no-audio", "--json"],
                              cwd=cwd, env={**env, **rt})  # fmt: skip
    finally:
        sim.terminate()
        sim.wait(10)
    assert done.returncode == 0, done.stdout + done.stderr
    results = {r["name"]: r["status"] for r in json.loads(done.stdout)}
    assert results["config"] == results["database"] == results["realtime"] == "PASS", results
    assert reads(record) == [], reads(record)
