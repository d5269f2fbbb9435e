"""scripts/perf.py --quick runs end to end, writes where it is told and never over the
committed results/PERF.md, and its report has every section, a number for every figure
and the targets. Nothing timed is asserted: the figures depend on the machine.

One subprocess run (a module fixture) serves every test of the report here.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from heatsync.perf import cli
from heatsync.perf.runner import Probe, SubprocessProbe, settings

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "PERF.md"
NUM = r"-?[0-9][0-9,]*(?:\.[0-9]+)?"
HEADINGS = ("# heatsync performance", "## Targets", "## Machine",
            "## 1. Batched plant throughput", "## 2. Large hall",
            "## 3. Environment step latency and vector throughput", "## 4. Compile time",
            "## 5. Gradient of a 1 h rollout", "## 6. Where the time goes",
            "### Operation count: the batched plant's floor", "## 7. What bounds each target",
            "## 8. Training throughput")


def _digest(path: Path) -> tuple[int, str] | None:
    """``(mtime_ns, sha256)`` of a file, ``None`` if there is none."""
    if not path.is_file():
        return None
    return path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("perf") / "PERF.md"
    before = _digest(COMMITTED)
    proc = subprocess.run([sys.executable, "scripts/perf.py", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    return proc, out, before


@pytest.fixture(scope="module")
def report(quick_run) -> str:
    proc, out, _ = quick_run
    assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-5000:]}"
    return out.read_text()


def test_cli__quick_writes_apart_from_the_committed_report_unless_told():
    assert cli.parse_args([]).out == Path("results/PERF.md")
    quick = cli.parse_args(["--quick"]).out
    assert quick != Path("results/PERF.md")
    if (ROOT / ".git").exists():
        assert subprocess.run(["git", "check-ignore", "-q", str(quick)],
                              cwd=ROOT).returncode == 0
    assert cli.parse_args(["--quick", "--out", "x/y.md"]).out == Path("x/y.md")


def test_cli__every_probe_of_a_full_run_follows_the_probe_protocol():
    ps = cli.probes(settings(quick=False))
    every = [p for v in ps.values() for p in (v if isinstance(v, list) else [v])]
    assert None not in every  # a full run skips nothing
    for p in every:
        assert isinstance(p, Probe), type(p).__name__
        assert isinstance(p.label, str) and p.label
        # subprocess probes compile nothing here; every other probe compiles in prepare
        assert (p.weight == 0) == isinstance(p, SubprocessProbe), type(p).__name__


def test_gymnax_task__runs_pendulum_through_the_trainers_task_interface():
    pytest.importorskip("gymnax")
    import jax
    import numpy as np

    from heatsync.perf.train import GymnaxTask

    task = GymnaxTask("Pendulum-v1")
    obs, st = task.reset(jax.random.PRNGKey(0), task.params)
    step = jax.jit(task.step)
    a = np.array([0.5], np.float32)
    _, inner, r_ref, _, _ = task.env.step_env(jax.random.PRNGKey(1), st.inner, a, task.params)
    obs, st, r, term, trunc, info = step(jax.random.PRNGKey(1), st, a, task.params)
    assert float(r) == float(r_ref) and float(info["reward_env"]) == float(r)
    assert obs.shape == (3,) and int(st.t) == 1 and not bool(term) and not bool(trunc)
    for _ in range(task.params.max_steps_in_episode - 1):
        obs, st, r, term, trunc, info = step(jax.random.PRNGKey(1), st, a, task.params)
    assert int(st.t) == task.params.max_steps_in_episode
    assert bool(trunc) and not bool(term)  # the time limit is a truncation


def test_perf_package__reads_the_envs_through_their_public_api_only():
    # no private module of physics, envs or agents; no private attribute of an env
    private_module = re.compile(r"\b(?:physics|envs|agents)\._\w+")
    private_attr = re.compile(r"\b(?:env|venv|vec|senv)\._\w+")
    for path in sorted((ROOT / "heatsync" / "perf").glob("*.py")):
        text = path.read_text()
        assert not private_module.search(text), path.name
        assert not private_attr.search(text), path.name


@pytest.mark.slow  # XLA compiles about twenty programs: a minute or two on 2 cores
def test_perf_quick__leaves_the_committed_report_alone(quick_run):
    proc, out, before = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.is_file()
    assert _digest(COMMITTED) == before


def _has(text: str, pattern: str) -> None:
    assert re.search(pattern, text, re.MULTILINE), f"no line matches {pattern!r} in:\n{text}"


@pytest.mark.slow
def test_perf_quick__exits_0_and_writes_only_the_report(quick_run, report):
    proc, out, _ = quick_run
    assert report.strip()
    assert [p.name for p in out.parent.iterdir()] == ["PERF.md"]  # no temp file left behind
    assert "wrote" in proc.stdout


@pytest.mark.slow
def test_perf_quick__has_every_section_and_the_targets(report):
    for heading in HEADINGS:
        _has(report, rf"^{re.escape(heading)}$")
    assert "target" in report.lower()
    _has(report, r"^\*\*--quick\*\* \(a smoke run")


@pytest.mark.slow
def test_perf_quick__has_the_machine(report):
    _has(report, rf"^- CPU: .+, {NUM} cores available$")
    _has(report, r"^- JAX backend: \w+")
    _has(report, rf"^- versions: python {NUM}.*jax ")


@pytest.mark.slow
def test_perf_quick__has_a_number_for_every_figure_it_measures(report):
    # 1. batched plant at 1 and 64 (1024 and 4096 skipped in --quick), with the target
    for b in (1, 64):
        _has(report, rf"^\| {b} \| {NUM} \| {NUM} \| {NUM} \| ")
    for b in (1024, 4096):
        _has(report, rf"^\| {b} \| - \| - \| skipped \(--quick\) \| >= 1,000,000 \|")
    _has(report, r"^\| batched plant, batch 4096 \| skipped \(--quick\) \| >= 1,000,000 ")
    # 2. the hall (200 racks in --quick)
    _has(report, rf"^200 racks \({NUM} MW rated IT\).*\*\*{NUM}x real time\*\*.*target >= 10,000x")
    _has(report, rf"^\| large hall, 200 racks \| {NUM}x real time \| >= 10,000x \| ")
    # 3. Env.step median and p99 beside the target; 4. compile of reset and step
    task = "PowerSmoothing"
    _has(report, rf"^\| {task} \| {NUM} \| {NUM} \| {NUM} \| {NUM} \| median <= 50 us: ")
    for fn in ("reset", "step"):
        _has(report, rf"^\| {task} \| Env\.{fn} \| {NUM} \| <= 10 s: ")
        _has(report, rf"^\| {task} \| JaxVectorEnv\.{fn}, N = 64 \| {NUM} \| <= 10 s: ")
    _has(report, rf"^\| Env\.step median, slowest task \(\w+\) \| {NUM} us \| <= 50 us \| ")
    _has(report, rf"^\| compile, slowest reset or step \(\w+ [\w.]+.*\) \| {NUM} s \| <= 10 s \| ")
    _has(report, rf"^\| - \| plant `step` \(physics\) \| {NUM} \| <= 10 s: ")
    # 3. vector env steps/s at N = 64 (SB3VecEnv a number or n/a); 1024 skipped
    _has(report, rf"^\| {task} \| 64 \| {NUM} \| {NUM} \| (?:{NUM}|n/a) \| (?:{NUM}|n/a) \| ")
    _has(report, r"^\| JaxVectorEnv at N = 1024 \| skipped \(--quick\) \| >= 200,000 ")
    # 5. the gradient is skipped in --quick, and says so
    _has(report, r"^\| gradient of a 1 h rollout \| skipped \(--quick\) \|")
    _has(report, r"^Skipped with --quick")
    # 8. training: ppo-jax on the task and gymnax Pendulum (a number, or skipped without
    # gymnax), SB3 PPO, their ratio and the env's share, beside the targets
    _has(report, rf"^\| ppo-jax \| {task} \| 64 x 8 \| 4 x 8 \| 64 x 64 tanh \| {NUM} \| "
                 rf"{NUM} \| {NUM} % \| {NUM} \|$")
    _has(report, r"^\| ppo-jax \| gymnax:Pendulum-v1 \| (?:64 x 10 \| 4 x 32 \| 256 x 256 "
                 rf"tanh \| {NUM} \| {NUM} \| {NUM} % \| {NUM}"
                 r"|- \| - \| - \| - \| skipped: gymnax .*) \|$")
    _has(report, rf"^\| SB3 PPO \| {task} \| 32 x 128 \| \(ppo\.yml\) \| 64 x 64 tanh \| "
                 rf"{NUM} \| {NUM} \| {NUM} % \| - \|$")
    _has(report, rf"^- ppo-jax / SB3 PPO on {task}: \*\*{NUM}x\*\*\.$")
    _has(report, rf"^\| training, ppo-jax on {task} \(learning included\) \| {NUM} "
                 r"env-steps/s \| >= 50,000 env-steps/s \| ")
    _has(report, rf"^\| training, ppo-jax / SB3 PPO on {task}, this run \| {NUM}x \| "
                 r">= 15x \| ")


@pytest.mark.slow
def test_perf_quick__section_6_has_the_operation_count_floor(report):
    # XLA's cost model of a substep, its transcendentals by function, the machine's rates
    # and the floor they give; the kernel profiles (a subprocess) are skipped in --quick
    _has(report, rf"^XLA's cost model of one substep .*: {NUM} flops, {NUM} transcendentals "
                 rf"and {NUM} bytes accessed per env\. .*`gpu\.throttle_implicit` {NUM}")
    _has(report, rf"takes {NUM} ns per arithmetic operation and element and {NUM} ns per exp "
                 rf"or log\. .* at most {NUM} env-steps/s per core")
    _has(report, rf"^Batch 64 reached {NUM} env-steps/s, {NUM} % of one core's floor")
    _has(report, r"^Kernel profiles: skipped \(--quick\)\.$")
    _has(report, r"^- \*\*Batched plant\.\*\* .*Its operation count alone \(section 6\)")
