"""One run of the JAX-native trainer (``--algo ppo-jax``): :func:`run_jax`.

The training seeds ``seed .. seed + n_seeds - 1`` run as one vmapped program; between
its jitted chunks the driver writes TensorBoard scalars (one point per PPO update, per
seed), evaluates the greedy policies on held-out episodes, keeps the best, and saves
checkpoints. A run directory holds::

    config.yml  command.txt  timing.json
    checkpoints/state_<steps>.npz     every seed's whole training state (atomic; the last two)
    seed_<k>/tb/                      TensorBoard: loss/, episode/, reward/<term>, eval/, time/
    seed_<k>/policy.npz               the final policy (weights + observation statistics)
    seed_<k>/best_policy.npz          the best held-out evaluation so far
    seed_<k>/evaluations.npz          timesteps, held-out returns, costs, violations

``--resume <run dir>`` loads the last checkpoint and runs the remaining chunks of the
same program, so a run killed (even with ``kill -9``) and resumed ends with the same
weights as one never interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from heatsync._io import atomic_path, write_text_atomic

from .config import TrainConfig, yaml_load
from .ppo_jax import PPOJaxHyperparams, arrays_to_tree, make_ppo, tree_to_arrays
from .runs import latest_checkpoint, new_run_dir, resume_run, versions, write_run_files
from .schema import ConfigError

__all__ = ["run_jax", "load_jax_hyperparams", "jax_hyperparams_path", "latest_state"]
#: the JAX trainer's default first env seed of training seed s: ENV_SEED_STRIDE x (s + 1)
ENV_SEED_STRIDE = 100_000


def jax_hyperparams_path() -> Path:
    from importlib import resources

    return Path(str(resources.files("heatsync.configs") / "hyperparams" / "ppo-jax.yml"))


def load_jax_hyperparams(env_id: str, path=None, overrides: dict | None = None
                         ) -> PPOJaxHyperparams:
    """``default`` of the YAML merged with the env's entry and ``overrides``, validated."""
    from heatsync.envs import ENV_IDS
    from heatsync.physics import deep_merge

    from .schema import unknown_error

    path = Path(path) if path is not None else jax_hyperparams_path()
    try:
        doc = yaml_load(path.read_text()) or {}
    except OSError as e:
        raise ConfigError(f"hyperparameter file {path}: cannot read ({e.strerror})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping of env ids to hyperparameters")
    for top in doc:
        if top not in ("default", *ENV_IDS):
            raise unknown_error("entry", top, ["default", *ENV_IDS], f"{path}: ")
    merged = deep_merge(doc.get("default") or {}, doc.get(env_id) or {})
    hp = PPOJaxHyperparams.from_dict(merged, f"{path} ({env_id}): ")
    if overrides:
        hp = PPOJaxHyperparams.from_dict(deep_merge(merged, overrides),
                                         f"{env_id} hyperparameters: ")
    return hp


def latest_state(run_dir) -> tuple[Path, int] | None:
    """``(checkpoint file, env steps per seed)`` of a run's newest checkpoint, or None."""
    return latest_checkpoint(run_dir, "state", ".npz")


def _save_state(run_dir: Path, ts, steps: int, keep: int = 2) -> Path:
    d = run_dir / "checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"state_{steps}.npz"
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **tree_to_arrays(ts))
    for old in sorted(d.glob("state_*.npz"), key=lambda p: int(p.stem.split("_")[1]))[:-keep]:
        old.unlink()
    return path


def _writers(run_dir: Path, n: int):
    from torch.utils.tensorboard import SummaryWriter

    return [SummaryWriter(str(run_dir / f"seed_{k}" / "tb")) for k in range(n)]


class _Evaluator:
    """Greedy policies of every seed on held-out episodes of the training distribution."""

    def __init__(self, task, params, spec, hp, seeds: list[int], n_seeds: int):
        from heatsync.agents.jax_agent import AgentJaxPolicy
        from heatsync.envs import episode_keys

        self.task, self.params, self.n, self.E = task, params, n_seeds, len(seeds)
        self.policy = AgentJaxPolicy(spec, hp.norm_obs, hp.clip_obs, {})
        self.reset_keys = jnp.tile(episode_keys(seeds), (n_seeds, 1))
        self.keys = jax.random.split(jax.random.PRNGKey(0), n_seeds * self.E)
        self.steps = int(params.episode_steps)

    def __call__(self, ts) -> list[dict]:
        from heatsync.envs import rollout
        from heatsync.physics import KPI_DOC, compute_kpis

        rep = jax.tree.map(lambda x: jnp.repeat(x, self.E, axis=0),
                           {"net": ts.net, "obs_mean": ts.obs_norm.mean,
                            "obs_var": ts.obs_norm.var})
        out = rollout(self.task, self.params, self.policy, self.keys, self.steps,
                      constants=rep, reset_keys=self.reset_keys)
        ret, cost, viol = (np.asarray(x, np.float64) for x in
                           (out.returns, out.cost_usd, out.violation_s))
        length, term = np.asarray(out.steps), np.asarray(out.terminated)
        series = jax.tree.map(np.asarray, out.series)
        s0, s1 = jax.tree.map(np.asarray, out.s0), jax.tree.map(np.asarray, out.s1)
        res = []
        for k in range(self.n):
            rows = range(k * self.E, (k + 1) * self.E)
            kp = []
            for i in rows:
                L = int(length[i])
                kpis = compute_kpis(self.params.plant, _take(s0, i), _take(s1, i),
                                    {n: v[i, :L] for n, v in series.items()})
                kp.append({n: float(kpis[n]) for n in KPI_DOC})
            idx = list(rows)
            res.append({"return": ret[idx], "cost_usd": cost[idx], "violation_s": viol[idx],
                        "spec_met": ((viol[idx] == 0) & ~term[idx]).astype(float),
                        "kpis": {n: float(np.mean([r[n] for r in kp])) for n in KPI_DOC}})
        return res


def _take(tree, i: int):
    return jax.tree.map(lambda x: x[i], tree)


def _seed_net(ts, k: int):
    return jax.tree.map(lambda x: x[k], ts.net), jax.tree.map(lambda x: x[k], ts.obs_norm)


def _save_policies(run_dir: Path, ts, hp, meta: dict, name: str, ks=None) -> None:
    from heatsync.agents.networks import save_policy

    for k in (range(len(meta["seeds"])) if ks is None else ks):
        net, norm = _seed_net(ts, k)
        m = dict(meta, name=f"{meta['name']}-s{meta['seeds'][k]}", seed=meta["seeds"][k],
                 tuned_on=dict(meta["tuned_on"], seeds=meta["tuned_on"]["seeds"][k]))
        save_policy(run_dir / f"seed_{k}" / name, net, norm if hp.norm_obs else None, m)


def run_jax(config: TrainConfig, command: str | None = None) -> Path:
    """Train ``--algo ppo-jax`` as ``config`` says (see the module docstring); returns the
    run directory. Raises :class:`ConfigError` for a bad setting before anything is
    written; on ``KeyboardInterrupt`` saves the last whole chunk's state and re-raises."""
    from heatsync.envs import episode_keys, make_task
    from heatsync.physics import ScenarioError

    from .vec import setup_jax_cache

    if command is None:
        command = f"heatsync.train.run({config!r})  # Python API, {sys.executable}"
    checkpoint, saved = None, None
    if config.resume:
        run_dir, saved, config, checkpoint = resume_run(config, "state", ".npz")
    if config.n_seeds < 1:
        raise ConfigError(f"--n-seeds: {config.n_seeds}; allowed: an integer >= 1")
    try:
        task = make_task(config.env)
    except ValueError as e:
        raise ConfigError(f"--env: {e}") from None
    if saved is not None:
        hp = PPOJaxHyperparams.from_dict(saved["hyperparams"], f"{run_dir}/config.yml: ")
    else:
        hp = load_jax_hyperparams(task.env_id, config.conf_file, config.hyperparams)
        hp = dataclasses.replace(hp, env_kwargs={**hp.env_kwargs, **config.env_kwargs})
    scenario = config.scenario or task.default_scenario
    try:
        params = task.make_params(scenario, **hp.env_kwargs)
    except (ScenarioError, ValueError, TypeError) as e:
        raise ConfigError(f"scenario / env_kwargs: {e}") from None
    from heatsync.agents.networks import NetSpec

    spec = NetSpec.of(task, params, net_arch=hp.net_arch, activation=hp.activation,
                      log_std_init=hp.log_std_init)
    seeds = [config.seed + i for i in range(config.n_seeds)]
    first = [config.env_seed + i * hp.n_envs if config.env_seed is not None
             else ENV_SEED_STRIDE * (s + 1) for i, s in enumerate(seeds)]
    if hp.n_envs > ENV_SEED_STRIDE and config.env_seed is None:
        raise ConfigError(f"n_envs: {hp.n_envs}; allowed: <= {ENV_SEED_STRIDE} with the "
                          "default env seeds (set --env-seed)")
    chunk_steps = hp.batch * hp.chunk_updates

    if saved is None:
        tag = f"s{seeds[0]}" if len(seeds) == 1 else f"s{seeds[0]}-{seeds[-1]}"
        run_dir = Path(config.run_dir) if config.run_dir else new_run_dir(
            config.runs_root, f"ppo-jax-{task.name}-{tag}")
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved = {"algo": "ppo-jax", "env_id": task.env_id, "scenario": scenario,
                    "seed": config.seed, "seeds": seeds,
                    "env_seeds": [[f, f + hp.n_envs - 1] for f in first],
                    "n_timesteps": hp.total_steps, "hyperparams": hp.to_dict(),
                    "hyperparams_file": str(config.conf_file or jax_hyperparams_path()),
                    "args": dataclasses.asdict(config), "versions": versions()}
        write_run_files(run_dir, resolved, command)
    else:
        write_run_files(run_dir, saved, command, note=f"resumed from {checkpoint[0].name} at "
                                                      f"{checkpoint[1]} steps")
    setup_jax_cache(config.jax_cache)

    init, chunk = make_ppo(task, params, hp, spec)[:2]
    t_start = time.perf_counter()
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    reset_keys = jnp.stack([episode_keys(range(f, f + hp.n_envs)) for f in first])
    # one seed at a time, stacked: jit(vmap(init)) hung in XLA:CPU (jax 0.10.2) at
    # n_envs 64-256 while it ran at 512; a per-seed init is cheap either way
    one = jax.jit(init)
    ts = jax.tree.map(lambda *xs: jnp.stack(xs), *(one(k, r) for k, r in
                                                   zip(keys, reset_keys, strict=True)))
    done_chunks = 0
    if checkpoint is not None:
        with np.load(checkpoint[0]) as z:
            ts = arrays_to_tree(ts, {k: z[k] for k in z.files}, str(checkpoint[0]))
        done_chunks = checkpoint[1] // chunk_steps
        print(f"resuming {run_dir} from {checkpoint[0].name} ({checkpoint[1]} of "
              f"{hp.total_steps} steps per seed)")
    step_fn = jax.jit(jax.vmap(chunk))
    t0 = time.perf_counter()
    step_fn = step_fn.lower(ts).compile()
    compile_s = time.perf_counter() - t0

    meta = {"algo": "ppo-jax", "env_id": task.env_id, "scenario": scenario,
            "name": f"ppo-jax-{task.name}", "seeds": seeds, "clip_obs": hp.clip_obs,
            "tuned_on": {"task": task.name, "scenarios": [Path(scenario).stem],
                         "seeds": [f"{f}-{f + hp.n_envs - 1}" for f in first],
                         "objective": "the env reward (ppo-jax training)"}}
    eval_seeds = list(range(config.eval_seed, config.eval_seed + config.eval_episodes))
    evaluate = _Evaluator(task, params, spec, hp, eval_seeds, len(seeds)) \
        if config.eval_freq > 0 and config.eval_episodes > 0 else None
    writers = _writers(run_dir, len(seeds))
    evals = [_read_evals(run_dir / f"seed_{k}") for k in range(len(seeds))]
    train_s = eval_s = 0.0
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=hp.total_steps, initial=done_chunks * chunk_steps, unit="step",
                   desc=f"ppo-jax {task.name} x{len(seeds)} seeds")
    steps = done_chunks * chunk_steps
    if evaluate is not None and done_chunks == 0:  # the untrained policy: the curves' origin
        _evaluate(evaluate, ts, 0, writers, evals, run_dir, hp, meta)
    try:
        for c in range(done_chunks, hp.n_chunks):
            t1 = time.perf_counter()
            ts, metrics = step_fn(ts)
            metrics = jax.device_get(metrics)
            dt = time.perf_counter() - t1
            train_s += dt
            prev, steps = steps, (c + 1) * chunk_steps
            _log_chunk(writers, metrics, c, hp, len(seeds) * chunk_steps / dt)
            last = c == hp.n_chunks - 1
            if evaluate is not None and (last or steps // config.eval_freq > prev //
                                         config.eval_freq):
                t2 = time.perf_counter()
                _evaluate(evaluate, ts, steps, writers, evals, run_dir, hp, meta)
                eval_s += time.perf_counter() - t2
            if config.checkpoint_freq > 0 and (last or steps // config.checkpoint_freq >
                                               prev // config.checkpoint_freq):
                _save_state(run_dir, ts, steps)
            if bar is not None:
                bar.update(chunk_steps)
    except KeyboardInterrupt:
        path = _save_state(run_dir, ts, steps)
        print(f"\ninterrupted; saved {path} ({steps} steps per seed); continue with:\n"
              f"  python scripts/train.py --resume {run_dir}", file=sys.stderr)
        raise
    finally:
        if bar is not None:
            bar.close()
        for w in writers:
            w.close()
    _save_policies(run_dir, ts, hp, meta, "policy.npz")
    done_steps = (hp.n_chunks - done_chunks) * chunk_steps * len(seeds)
    timing = {"wall_s": time.perf_counter() - t_start, "train_s": train_s, "eval_s": eval_s,
              "compile_s": compile_s, "steps": done_steps, "n_seeds": len(seeds),
              "n_envs": hp.n_envs, "env_steps_per_s": done_steps / max(train_s, 1e-9)}
    write_text_atomic(run_dir / "timing.json", json.dumps(timing, indent=1))
    summary = (f"ppo-jax {task.env_id} seeds {seeds[0]}-{seeds[-1]}: {hp.total_steps} steps "
               f"each, {timing['wall_s']:.0f} s ({timing['env_steps_per_s']:.0f} env-steps/s "
               f"training, {compile_s:.0f} s compile)")
    if evals[0]["timesteps"]:
        summary += "; held-out return " + ", ".join(
            f"{np.mean(e['returns'][-1]):.2f}" for e in evals)
    print(summary)
    print(f"run directory: {run_dir}")
    return run_dir


def _log_chunk(writers, metrics: dict, c: int, hp, steps_per_s: float) -> None:
    U = hp.chunk_updates
    for k, w in enumerate(writers):
        for u in range(U):
            step = (c * U + u + 1) * hp.batch
            for name, v in metrics.items():
                x = float(v[k, u])
                if (name.startswith("episode/") or name.startswith("reward/")) and \
                        float(metrics["episode/count"][k, u]) == 0:
                    continue
                w.add_scalar(name, x, step)
        w.add_scalar("time/env_steps_per_s", steps_per_s, (c + 1) * U * hp.batch)
        w.flush()


def _read_evals(seed_dir: Path) -> dict:
    f = seed_dir / "evaluations.npz"
    if f.is_file():
        with np.load(f) as z:
            return {"timesteps": list(z["timesteps"]), "returns": list(z["returns"]),
                    "cost_usd": list(z["cost_usd"]), "violation_s": list(z["violation_s"])}
    return {"timesteps": [], "returns": [], "cost_usd": [], "violation_s": []}


def _evaluate(evaluate, ts, steps, writers, evals, run_dir, hp, meta) -> None:
    res = evaluate(ts)
    for k, (r, w, e) in enumerate(zip(res, writers, evals, strict=True)):
        if e["timesteps"] and e["timesteps"][-1] >= steps and steps > 0:
            continue  # already evaluated at this step (a resumed run)
        w.add_scalar("eval/return", float(np.mean(r["return"])), steps)
        w.add_scalar("eval/cost_usd", float(np.mean(r["cost_usd"])), steps)
        w.add_scalar("eval/violation_s", float(np.mean(r["violation_s"])), steps)
        w.add_scalar("eval/spec_met_share", float(np.mean(r["spec_met"])), steps)
        for n, v in r["kpis"].items():
            w.add_scalar(f"eval_plant/{n}", v, steps)
        best = max((float(np.mean(x)) for x in e["returns"]), default=-np.inf)
        e["timesteps"].append(steps)
        for key in ("returns", "cost_usd", "violation_s"):
            e[key].append(r["return" if key == "returns" else key])
        seed_dir = run_dir / f"seed_{k}"
        seed_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(seed_dir / "evaluations.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **{key: np.asarray(v) for key, v in e.items()})
        if float(np.mean(r["return"])) > best:
            _save_policies(run_dir, ts, hp, meta, "best_policy.npz", ks=[k])
            write_text_atomic(seed_dir / "best.json", json.dumps(
                {"timesteps": steps, "mean_return": float(np.mean(r["return"]))}))
