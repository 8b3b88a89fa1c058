"""The library as an installed package, not the repository (issue 35): a non-editable install of ``ewe`` into a
folder of its own lists its presets and makes a tiny digits run, reading the numbers it needs at run time (the
ETA's stage costs, the published tables, the shipped digits population) as package data."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """``pip install`` (not editable) of a copy of the sources: nothing is built inside the repository."""
    tmp = tmp_path_factory.mktemp("package")
    src = tmp / "src"
    shutil.copytree(ROOT / "ewe", src / "ewe", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    site = tmp / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--no-build-isolation", "--target", str(site), str(src)],
                          cwd=tmp, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(site), "EWE_CACHE_DIR": str(tmp / "cache")}
    env.pop("EWE_DATA_DIR", None)
    return {"site": site, "cwd": tmp, "env": env}


def _python(installed: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=installed["cwd"], env=installed["env"],
                          capture_output=True, text=True, timeout=300)


def test_the_installed_package_reads_its_measured_numbers_as_package_data(installed):
    done = _python(installed, "-c", """
import json
import ewe
from ewe.config import preset
from ewe.experiments import pipeline
from ewe.innocents import ready_population
from ewe.results import studies
print(json.dumps({"ewe": ewe.__file__, "stage_costs": str(pipeline.STAGE_COSTS),
                  "costs_read": "seconds_per_unit" in json.loads(pipeline.STAGE_COSTS.read_text()),
                  "published": len(studies.published().get("summaries", [])),
                  "population": str(ready_population(preset("digits", "quick")))}))
""")
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout)
    site = str(installed["site"])
    assert got["ewe"].startswith(site)                 # the installed copy, not the repository's
    assert got["stage_costs"].startswith(site) and got["costs_read"]
    assert got["published"] > 0
    assert got["population"].startswith(site)          # the digits demo's shipped population


def test_the_installed_command_line_lists_presets_and_makes_a_tiny_run(installed):
    done = _python(installed, "-m", "ewe", "presets")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "digits" in json.loads(done.stdout)
    out = installed["cwd"] / "run"
    done = _python(installed, "-m", "ewe", "run", "--dataset", "digits", "--out", str(out), "--batch-size", "32",
                   "--epochs", "1", "--w-epochs", "1", "--n-triggers", "32", "--n-heldout", "8", "--maxiter", "1",
                   "--extract-epochs", "1", "--query-draws", "10", "--threads", "1", "--device", "cpu",
                   "--innocents", "4")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "finished" and "extracted" in result["models"]
