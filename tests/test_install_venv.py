"""An image built with ``scripts/install --root DIR`` starts: its venv names /opt/kiosk, not DIR.

The installer makes the venv at DIR/opt/kiosk/venv, where pip writes that path into every
script's shebang, ``activate`` and ``pyvenv.cfg``; on the booted image the venv is at
/opt/kiosk/venv. The test runs the real installer, venv step included, offline: pip gets no
index and no dependencies, and builds kiosk without isolation with the setuptools of the
venv running the tests (on PYTHONPATH, as are numpy, pydantic, ... for the start check).
Then the image's venv is looked at from inside: DIR/opt/kiosk is mounted on /opt/kiosk in a
private mount namespace and the installed ``kiosk`` is run by its own shebang.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = Path("/usr/bin/python3")  # the installer's interpreter
DEV_SITE = sorted({os.path.realpath(sysconfig.get_path(k)) for k in ("purelib", "platlib")})
LIMIT_S = 600.0  # pip builds kiosk: seconds here, minutes on an emulated arm64


def system_python_version() -> tuple[int, int] | None:
    """(major, minor) of Debian's python3 when it can make a venv, else None."""
    if not SYSTEM_PYTHON.exists():
        return None
    probe = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import ensurepip, sys, venv; print(*sys.version_info[:2])"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    if probe.returncode != 0:
        return None
    major, minor = probe.stdout.split()
    return int(major), int(minor)


pytestmark = [
    pytest.mark.timeout(LIMIT_S + 120),
    pytest.mark.skipif(os.geteuid() != 0, reason="install manages users and root-owned files: needs root"),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="no useradd"),
    # The packages borrowed from this venv must fit the image's interpreter.
    pytest.mark.skipif(system_python_version() != sys.version_info[:2],
                       reason="no /usr/bin/python3 with venv of this Python version"),
]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DIR after ``scripts/install --root DIR`` with the venv step (offline)."""
    root = tmp_path_factory.mktemp("image")
    (root / "etc").mkdir()
    for name in ("passwd", "group", "shadow", "gshadow", "login.defs"):
        if Path("/etc", name).exists():
            shutil.copy2(Path("/etc", name), root / "etc" / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "KIOSK_"))}
    env |= {"PIP_NO_INDEX": "1", "PIP_NO_DEPS": "1", "PIP_NO_BUILD_ISOLATION": "0",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONPATH": os.pathsep.join(DEV_SITE)}
    result = subprocess.run(
        [str(REPO / "scripts/install"), "--root", str(root), "--no-apt", "--no-systemctl"],
        env=env, capture_output=True, text=True, timeout=LIMIT_S, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return root


def test_the_venv_names_its_booted_path_not_the_build_root(image: Path) -> None:
    venv = image / "opt/kiosk/venv"
    kiosk = (venv / "bin/kiosk").read_text()
    assert kiosk.splitlines()[0] == "#!/opt/kiosk/venv/bin/python"
    cfg = (venv / "pyvenv.cfg").read_text()
    assert str(image) not in cfg and "/opt/kiosk/venv" in cfg
    # Every script and text file (activate, pip, direct_url.json ...); compiled files excepted.
    mentions = []
    for path in venv.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if b"\0" not in data and str(image).encode() in data:
                mentions.append(str(path.relative_to(venv)))
    assert mentions == []


def test_the_installed_kiosk_starts_at_the_booted_path(image: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare to mount the image's /opt/kiosk")
    # /opt on a tmpfs, so the host's /opt needs no kiosk directory; private, so nothing leaks.
    # Then DIR is covered by an empty tmpfs: as on the booted image, the build path is gone.
    script = (
        "set -e; mount --make-rprivate /; mount -t tmpfs tmpfs /opt; mkdir /opt/kiosk;"
        f" mount --bind '{image}/opt/kiosk' /opt/kiosk; mount -t tmpfs tmpfs '{image}';"
        " /opt/kiosk/venv/bin/kiosk --version;"
        " /opt/kiosk/venv/bin/python -c 'import kiosk, sys; print(kiosk.__file__, sys.prefix)'"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    env["PYTHONPATH"] = os.pathsep.join(DEV_SITE)
    result = subprocess.run(["unshare", "--mount", "sh", "-c", script], env=env, cwd="/",
                            capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0 and result.stderr.startswith("unshare:"):  # e.g. in a chroot whose / is no mount
        pytest.skip(f"no mount namespace here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr
    version, where = result.stdout.strip().splitlines()
    assert version.startswith("kiosk ")
    assert where == "/opt/kiosk/venv/lib/python{}.{}/site-packages/kiosk/__init__.py /opt/kiosk/venv".format(
        *sys.version_info[:2])
