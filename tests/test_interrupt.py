"""SIGINT and SIGKILL mid-run: scripts/benchmark.py and scripts/train.py lose no finished
work, never leave a half-written results file, and resume to the same end.

Each script runs as a real subprocess, killed as soon as its first piece of work is on
disk; the runs share one persistent JAX compilation cache so the restarts skip compiling.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from heatsync.benchmark import MANIFEST, read_csv

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("jax-cache"))


def _start(args: list[str]) -> subprocess.Popen:
    """Start a script with SIGINT caught in this process while it spawns: pytest-xdist
    workers ignore SIGINT, an ignored signal stays ignored across exec (and Python then
    installs no KeyboardInterrupt handler), while a caught one is reset to its default."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finally:
        signal.signal(signal.SIGINT, old)


def _wait_for(proc: subprocess.Popen, ready, timeout_s: float = 600.0) -> None:
    """Poll ``ready()`` every 20 ms until true; fail if the process ends first."""
    t_end = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) before the expected point:\n"
                        f"{out[-2000:]}\n{err[-4000:]}")
        if time.monotonic() > t_end:
            proc.kill()
            pytest.fail("timed out waiting for the run to reach the expected point")
        time.sleep(0.02)


def _rows(path: Path) -> list[dict]:
    rows, warnings = read_csv(path)
    assert not warnings, warnings  # never half-written
    return rows


def _cells(rows) -> set:
    return {(r["controller"], r["task"], r["scenario"]) for r in rows}


BENCH = ["scripts/benchmark.py", "--tasks", "CoolingDispatch", "--scenarios", "chiller-trip",
         "--controllers", "fixed,thermostat,pid", "--seeds", "0-1", "--steps", "120",
         "--no-plots", "--no-progress"]


def test_benchmark__sigint_then_sigkill_lose_no_finished_cell_and_resume(tmp_path, jax_cache):
    out = tmp_path / "results"
    csv = out / "benchmark.csv"
    args = [*BENCH, "--out", str(out), "--jax-cache", jax_cache]

    # 1. SIGINT once the first cell is written: exit 130, the finished cells kept
    proc = _start(args)
    _wait_for(proc, lambda: csv.exists())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    first = _rows(csv)
    if proc.returncode != 0:
        assert proc.returncode == 130, err[-3000:]
        assert "interrupted" in err and "resume" in err
        assert (out / MANIFEST).exists()  # the interrupted run's record, to resume from
    else:  # it finished before the signal landed: resume from the CSV on request
        assert len(_cells(_rows(csv))) == 3
        args.append("--resume")
    assert len(_cells(first)) >= 1 and len(first) == 2 * len(_cells(first))

    # 2. SIGKILL the resumed run as soon as it has written one more cell
    n_first = len(_cells(first))
    proc = _start(args)
    _wait_for(proc, lambda: len(_cells(read_csv(csv)[0])) > n_first or proc.poll() == 0)
    proc.kill()
    _, err = proc.communicate(timeout=60)
    assert f"resume: {n_first} finished cell(s)" in err
    second = _rows(csv)
    assert first == [r for r in second if _cells([r]) <= _cells(first)]  # untouched

    # 3. run to the end: only the missing cells are computed, the others are read back
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    n_second = len(_cells(second))
    assert f"resume: {n_second} finished cell(s)" in done.stderr
    assert f"{3 - n_second} cell(s) computed, {n_second} resumed" in done.stdout
    final = _rows(csv)
    assert len(final) == 3 * 2
    assert second == [r for r in final if _cells([r]) <= _cells(second)]
    assert (out / "BENCHMARK.md").read_text().count("| ") > 0
    assert not (out / MANIFEST).exists()  # a clean end: nothing left to resume


TRAIN = ["scripts/train.py", "--algo", "ppo", "--env", "CoolingDispatch-v0", "--seed", "0",
         "--env-kwargs", "episode__steps=20", "--eval-freq", "0", "--checkpoint-freq", "200",
         "--no-progress", "--hyperparams", "n_envs=2", "n_timesteps=3000", "n_steps=20",
         "batch_size=40", "n_epochs=1"]


def _zips_whole(folder: Path) -> list[Path]:
    found = sorted(folder.glob("model_*.zip"))
    for p in found:
        with zipfile.ZipFile(p) as z:
            assert z.testzip() is None, p
    return found


def _latest(run: Path) -> int:
    ckpts = _zips_whole(run / "checkpoints")
    assert ckpts
    return max(int(p.stem.split("_")[1]) for p in ckpts)


def test_train__sigint_then_sigkill_keep_whole_checkpoints_and_resume_to_the_total(
        tmp_path, jax_cache):
    root = tmp_path / "runs"
    run = root / "ppo-CoolingDispatch-s0"
    resume = ["scripts/train.py", "--resume", str(run), "--no-progress", "--jax-cache", jax_cache]

    # 1. SIGINT after the first checkpoint: a checkpoint of the moment is saved, exit 130
    proc = _start([*TRAIN, "--runs-root", str(root), "--jax-cache", jax_cache])
    _wait_for(proc, lambda: (run / "checkpoints" / "model_200.zip").exists())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    first = _latest(run)
    assert "interrupted at" in err and f"model_{first}.zip" in err
    assert not (run / "model.zip").exists()

    # 2. SIGKILL the resumed run once it has written a newer checkpoint
    proc = _start(resume)
    _wait_for(proc, lambda: _latest(run) > first)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    second = _latest(run)  # every checkpoint on disk is a whole zip
    assert f"resumed from model_{first}.zip at {first} steps" in (run / "command.txt").read_text()

    # 3. resume to the end: the same total (PPO rounds up to whole rollouts of 2 x 20 steps)
    done = subprocess.run([sys.executable, *resume], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed from model_{second}.zip at {second} steps" in (
        run / "command.txt").read_text()
    with zipfile.ZipFile(run / "model.zip") as z:
        assert z.testzip() is None
    from heatsync.agents.sb3_policy import SB3Policy

    assert 3000 <= SB3Policy.load(run, which="final").model.num_timesteps < 3000 + 40
