"""Packaging: the wheel carries the three code folders, the configs and py.typed, and a
plain (non-editable) install works from any working directory."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(ROOT)], check=True)
    (whl,) = out.glob("heatsync-*.whl")
    return whl


def test_wheel__contains_packages_configs_and_py_typed(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("heatsync/__init__.py", "heatsync/py.typed", "heatsync/physics/plant.py",
                     "heatsync/envs/__init__.py", "heatsync/agents/__init__.py",
                     "heatsync/configs/scenarios/default.yaml",
                     "heatsync/configs/scenarios/chiller-trip.yaml"):
        assert required in names, required
    assert not any(n.startswith(("physics/", "envs/", "agents/", "tests/")) for n in names)


def test_wheel__installs_and_runs_from_another_directory(wheel, tmp_path):
    env = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env)
    py = env / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True)
    code = ("import heatsync, heatsync.physics as ph; "
            "assert 'site-packages' in heatsync.__file__, heatsync.__file__; "
            "r = heatsync.simulate('sync-swings', steps=5); "
            "print(len(ph.list_scenarios()), round(r.kpis['energy_it_kwh'], 6))")
    out = subprocess.run([str(py), "-c", code], cwd=tmp_path, check=True, capture_output=True,
                         text=True).stdout.split()
    assert int(out[0]) >= 8 and float(out[1]) > 0
