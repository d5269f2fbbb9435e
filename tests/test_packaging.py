"""Packaging: the wheel carries the three code folders, the configs and py.typed, and a
plain (non-editable) install works from any working directory."""

from __future__ import annotations

import site
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
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(out), str(ROOT)], check=True)
    (whl,) = out.glob("heatsync-*.whl")
    return whl


def test_wheel__contains_packages_configs_and_py_typed(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("heatsync/__init__.py", "heatsync/py.typed", "heatsync/physics/plant.py",
                     "heatsync/envs/__init__.py", "heatsync/agents/__init__.py",
                     "heatsync/benchmark/run.py",
                     "heatsync/configs/scenarios/default.yaml",
                     "heatsync/configs/scenarios/chiller-trip.yaml"):
        assert required in names, required
    assert not any(n.startswith(("physics/", "envs/", "agents/", "tests/")) for n in names)


def test_wheel__installs_and_runs_from_another_directory(wheel, tmp_path):
    env = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env)
    py = env / "bin" / "python"
    # system_site_packages gives the base interpreter's packages; when this suite runs in
    # a virtualenv its dependencies (jax, ...) live in that venv's site-packages, so list
    # those too (plain paths: their .pth files, such as an editable heatsync, stay off)
    if sys.prefix != sys.base_prefix:
        own = subprocess.run([str(py), "-c", "import site; print(site.getsitepackages()[0])"],
                             check=True, capture_output=True, text=True).stdout.strip()
        (Path(own) / "outer_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True)
    code = ("import heatsync, heatsync.physics as ph; "
            "assert 'site-packages' in heatsync.__file__, heatsync.__file__; "
            "r = heatsync.simulate('sync-swings', steps=5); "
            "print(len(ph.list_scenarios()), round(r.kpis['energy_it_kwh'], 6))")
    out = subprocess.run([str(py), "-c", code], cwd=tmp_path, check=True, capture_output=True,
                         text=True).stdout.split()
    assert int(out[0]) >= 8 and float(out[1]) > 0
