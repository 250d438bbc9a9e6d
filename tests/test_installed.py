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
import shutil
import zipfile
from pathlib import Path

from tests.installkit import (
    REPO,
    build_wheel,
    make_venv,
    reads,
    run,
    start_simulator,
    started,
)


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
        "from kiosk.fleet.documents import schema\n"
        "assert schema('daily_stats')['$id'] == 'urn:kiosk:daily-stats:1' and schema('heartbeat')['title']\n"
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
