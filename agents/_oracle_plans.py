"""The oracle's stored plans (private to :mod:`heatsync.agents`; the public names are
re-exported by :mod:`heatsync.agents.oracle`): the result record, its file format, where
it lives and whether it covers a benchmark cell."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import jax
import numpy as np

from heatsync.envs import JaxVectorEnv


@dataclasses.dataclass
class OracleResult:
    """The oracle's plans of one task and scenario (leading axis N = seeds).

    ``actions`` (N, T, d): the best sequence found per seed; ``ret``, ``cost_usd``,
    ``violation_s``, ``spec_met``: its exact replay; ``start_names`` and ``start_j``
    (S0, N): the recorded starts' ``-return``; ``grad_j`` (2, N, iters + 1): the best
    ``-return`` after each Adam iteration from the best start (row 0) and from
    ``best-constant`` (row 1); ``search_j`` (N, generations); ``meta``: config, scenario
    fingerprint, wall time.
    """

    task: str
    scenario: str
    seeds: list
    steps: int
    actions: np.ndarray
    ret: np.ndarray
    cost_usd: np.ndarray
    violation_s: np.ndarray
    spec_met: np.ndarray
    start_names: list
    start_j: np.ndarray
    grad_j: np.ndarray
    search_j: np.ndarray
    meta: dict


def _fingerprint(env: JaxVectorEnv) -> str:
    """A hash of the episode's configuration (the resolved scenario and task params)."""
    leaves = jax.tree.leaves(env.params)
    h = hashlib.sha256(env.task.name.encode())
    for x in leaves:
        h.update(np.asarray(x).tobytes())
    return h.hexdigest()[:16]


def plan_path(scenario: str, folder: str | Path | None = None) -> Path:
    """Where the plans of ``scenario`` are stored (default: ``configs/oracle/``)."""
    if folder is None:
        folder = Path(str(resources.files("heatsync.configs"))) / "oracle"
    name = Path(scenario).name
    for suffix in (".yaml", ".yml"):
        name = name.removesuffix(suffix)
    return Path(folder) / f"{name}.npz"


def save(result: OracleResult, path: str | Path) -> Path:
    """Write ``result`` to ``path`` (compressed NumPy archive, atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"task": result.task, "scenario": result.scenario, "seeds": result.seeds,
            "steps": result.steps, "start_names": result.start_names, **result.meta}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, actions=result.actions, ret=result.ret,
                        cost_usd=result.cost_usd, violation_s=result.violation_s,
                        spec_met=result.spec_met, start_j=result.start_j,
                        grad_j=result.grad_j, search_j=result.search_j,
                        meta=np.asarray(json.dumps(meta)))
    tmp.replace(path)
    return path


def load(path: str | Path) -> OracleResult:
    """Read plans written by :func:`save`."""
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"oracle plans {path}: cannot read ({type(e).__name__}: {e})") from e
    return OracleResult(task=meta.pop("task"), scenario=meta.pop("scenario"),
                        seeds=list(meta.pop("seeds")), steps=int(meta.pop("steps")),
                        actions=arrays["actions"], ret=arrays["ret"],
                        cost_usd=arrays["cost_usd"], violation_s=arrays["violation_s"],
                        spec_met=arrays["spec_met"], start_names=list(meta.pop("start_names")),
                        start_j=arrays["start_j"], grad_j=arrays["grad_j"],
                        search_j=arrays["search_j"], meta=meta)


def covers(task: str, scenario: str, seeds: Sequence[int], steps: int | None = None,
           folder: str | Path | None = None) -> bool:
    """Whether stored plans exist for every seed of ``task`` on ``scenario`` at ``steps``
    intervals (``None``: the scenario's own length), computed for the same resolved
    scenario (its fingerprint)."""
    path = plan_path(scenario, folder)
    if not path.exists():
        return False
    try:
        r = load(path)
    except ValueError:
        return False
    env = JaxVectorEnv(task, 1, scenario=scenario,
                       **({} if steps is None else {"episode__steps": int(steps)}))
    ok = (r.task == env.task.name and r.steps == int(env.params.episode_steps)
          and r.meta.get("fingerprint") == _fingerprint(env)
          and set(int(s) for s in seeds) <= set(r.seeds))
    env.close()
    return ok


def _stored_plans(task, scenario: str, seeds: Sequence[int], folder) -> np.ndarray:
    """The stored plans (N, T, d) of ``seeds``, refusing plans of another scenario
    configuration (fingerprint) or without every seed."""
    path = plan_path(scenario, folder)
    if not covers(task, scenario, seeds, None, folder):
        raise ValueError(f"oracle --continue: {path} has no plans of the current {task} "
                         f"scenario {scenario} for every seed of {list(seeds)}; compute "
                         "without --continue")
    r = load(path)
    row = {s: i for i, s in enumerate(r.seeds)}
    return r.actions[[row[int(s)] for s in seeds]]
