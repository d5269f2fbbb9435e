"""scripts/perf.py --quick runs end to end and its report has every section, a number for
every figure and the targets. Nothing timed is asserted: the figures depend on the machine.

One subprocess run (a module fixture) serves every test here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # XLA compiles seven programs: about a minute on 2 cores

ROOT = Path(__file__).resolve().parents[1]
NUM = r"-?[0-9][0-9,]*(?:\.[0-9]+)?"
HEADINGS = ("# heatsync performance", "## Targets", "## Machine",
            "## 1. Batched plant throughput", "## 2. Large hall",
            "## 3. Environment step latency and vector throughput", "## 4. Compile time",
            "## 5. Gradient of a 1 h rollout", "## 6. Where the time goes",
            "### Operation count: the batched plant's floor", "## 7. What bounds each target")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("perf") / "PERF.md"
    proc = subprocess.run([sys.executable, "scripts/perf.py", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    return proc, out


@pytest.fixture(scope="module")
def report(quick_run) -> str:
    proc, out = quick_run
    assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-5000:]}"
    return out.read_text()


def _has(text: str, pattern: str) -> None:
    assert re.search(pattern, text, re.MULTILINE), f"no line matches {pattern!r} in:\n{text}"


def test_perf_quick__exits_0_and_writes_only_the_report(quick_run, report):
    proc, out = quick_run
    assert report.strip()
    assert [p.name for p in out.parent.iterdir()] == ["PERF.md"]  # no temp file left behind
    assert "wrote" in proc.stdout


def test_perf_quick__has_every_section_and_the_targets(report):
    for heading in HEADINGS:
        _has(report, rf"^{re.escape(heading)}$")
    assert "target" in report.lower()
    _has(report, r"^\*\*--quick\*\* \(a smoke run")


def test_perf_quick__has_the_machine(report):
    _has(report, rf"^- CPU: .+, {NUM} cores available$")
    _has(report, r"^- JAX backend: \w+")
    _has(report, rf"^- versions: python {NUM}.*jax ")


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
