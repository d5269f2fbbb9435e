"""Train a stable-baselines3 agent (PPO, SAC, TD3 or A2C) on a heatsync task.

Hyperparameters come from ``configs/hyperparams/<algo>.yml`` (keyed by env id,
with a ``default`` entry; see :mod:`heatsync._train` for the format), overridden
by ``--hyperparams key=value``; every key and value is checked before anything
is built. The envs are the batched JAX ``SB3VecEnv``: ``n_envs`` envs advance in
one jitted call per step, no Python loop over envs.

Each run directory (``runs/<algo>-<Task>-s<seed>`` by default) holds
``config.yml`` (the resolved config, seed and versions), ``command.txt`` (every
command line that ran it), ``seed.txt``, ``tb/`` (TensorBoard: SB3's metrics,
``plant/<kpi>`` and ``reward/<term>`` per finished episode, ``eval/...`` on
held-out seeds, the hyperparameters), ``checkpoints/``, ``best_model.zip`` (+
``best_vecnormalize.pkl``), ``model.zip`` (+ ``vecnormalize.pkl``),
``evaluations.npz``, ``eval_kpis.csv`` and ``timing.json``.

Examples::

    python scripts/train.py --algo ppo --env PowerSmoothing-v0 --seed 0
    python scripts/train.py --algo sac --env CoolingDispatch-v0 \\
        --hyperparams n_timesteps=50000 learning_rate=lin_1e-3 --env-kwargs episode__steps=900
    python scripts/train.py --resume runs/ppo-PowerSmoothing-s0     # after an interruption
    tensorboard --logdir runs
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import stable_baselines3
import torch
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.vec_env import VecNormalize

from heatsync._io import write_text_atomic
from heatsync._train import (
    ALGOS,
    CheckpointCallback,
    ConfigError,
    HeldOutEvalCallback,
    HParamCallback,
    PlantKPICallback,
    ProgressBarCallback,
    algo_kwargs,
    check_algo,
    check_task_algo,
    default_hyperparams_path,
    hyperparams_help,
    latest_checkpoint,
    load_hyperparams,
    make_vec_env,
    new_run_dir,
    parse_args,
    parse_overrides,
    read_run_config,
    save_checkpoint,
    save_final,
    setup_jax_cache,
    versions,
    warm_up,
    write_run_files,
)
from heatsync.envs import make_task
from heatsync.physics import ScenarioError


@dataclass
class Args:
    """Train PPO, SAC, TD3 or A2C on a heatsync task (see the module docstring)."""

    algo: str = "ppo"
    """algorithm: ppo, sac, td3 or a2c (sac and td3 need continuous actions)"""
    env: str = "heatsync/PowerSmoothing-v0"
    """task: an env id (heatsync/PowerSmoothing-v0, heatsync/CoolingDispatch-v0,
    heatsync/PowerAwareScheduling-v0, heatsync/Facility-v0) or its short name"""
    scenario: str | None = None
    """scenario name or YAML path (default: the task's own, e.g. sync-swings)"""
    env_kwargs: list[str] = field(default_factory=list)
    """scenario overrides key=value, merged over the YAML's env_kwargs
    (e.g. episode__steps=900 plant__ups__e_max_j=1e8)"""
    conf_file: str | None = None
    """hyperparameter YAML (default: the bundled configs/hyperparams/<algo>.yml)"""
    hyperparams: list[str] = field(default_factory=list)
    """hyperparameter overrides key=value, values in YAML (e.g. n_timesteps=50000
    learning_rate=lin_1e-3 policy_kwargs.net_arch=[64,64] normalize=false)"""
    seed: int = 0
    """seed of the model (torch, action sampling)"""
    env_seed: int | None = None
    """first seed of the training envs: env i starts with env_seed + i (default
    1000 x (seed + 1), so seeds 0-4, held out for the benchmark, are never trained on)"""
    eval_seed: int = 1_000_000
    """first seed of the held-out evaluation episodes (eval env i gets eval_seed + i)"""
    eval_freq: int = 25_000
    """evaluate every this many env steps (0: never); the best model is kept"""
    eval_episodes: int = 4
    """episodes per evaluation (one eval env each)"""
    checkpoint_freq: int = 50_000
    """save a checkpoint every this many env steps (0: never)"""
    save_replay_buffer: bool = True
    """with the checkpoints of SAC/TD3, save the replay buffer (latest only) for --resume"""
    run_dir: str | None = None
    """run directory (default: <runs-root>/<algo>-<Task>-s<seed>, suffixed -2, -3... if taken)"""
    runs_root: str = "runs"
    """parent of the default run directories"""
    resume: str | None = None
    """continue this run directory from its last checkpoint, to the same total steps
    (its saved config is used; other arguments except --progress, --verbose,
    --device, --threads, --jax-cache and --log-interval are ignored)"""
    device: str = "auto"
    """torch device: auto, cpu, cuda"""
    threads: int = 1
    """torch CPU threads (0: torch's default). One is fastest for these small MLPs and
    does not fight the JAX env for cores (two threads on a busy 2-core machine made
    each gradient step 30x slower)"""
    jax_cache: str = "~/.cache/heatsync/jax"
    """persistent JAX compilation cache directory ('' to disable): the env's first
    compile takes ~30 s on CPU, a cached one a few seconds"""
    log_interval: int = 0
    """write SB3's rollout/ metrics every this many iterations (ppo, a2c) or episodes
    (sac, td3); 0: SB3's default (ppo 1, a2c 100, sac/td3 4)"""
    progress: bool = True
    """show a progress bar"""
    verbose: int = 0
    """SB3 verbosity: 0 quiet, 1 prints the logger's table at each dump"""


def main(argv: Sequence[str] | None = None, callbacks: Sequence = ()) -> Path:
    """Train as the command line says; returns the run directory. ``callbacks`` are
    extra SB3 callbacks (tests use one to interrupt a run)."""
    args = parse_args(Args, argv, description=__doc__, epilog=hyperparams_help())
    cli = args

    # ---- 1. the run: a new one, or the one being resumed (its saved config wins) -------------
    checkpoint = None
    if args.resume:
        run_dir = Path(args.resume)
        saved = read_run_config(run_dir)
        keep = {k: getattr(cli, k) for k in ("resume", "progress", "verbose", "device",
                                             "threads", "jax_cache", "log_interval")}
        args = dataclasses.replace(Args(**saved["args"]), **keep)
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise ConfigError(f"--resume {run_dir}: no checkpoint in {run_dir}/checkpoints "
                              "(nothing to resume; start a new run)")
    algo = check_algo(args.algo)
    try:
        task = make_task(args.env)
    except ValueError as e:
        raise ConfigError(f"--env: {e}") from None

    # ---- 2. hyperparameters: YAML + overrides, validated before anything is built ------------
    if args.resume:
        hp = saved["hyperparams"]
    else:
        hp = load_hyperparams(algo, task.env_id, args.conf_file,
                              parse_overrides(args.hyperparams))
        env_kwargs = {**hp.get("env_kwargs", {}),
                      **parse_overrides(args.env_kwargs, where="--env-kwargs")}
        hp["env_kwargs"] = env_kwargs
    try:  # the scenario and its overrides are checked here too (ScenarioError names the field)
        params = task.make_params(args.scenario, **hp.get("env_kwargs", {}))
    except (ScenarioError, ValueError, TypeError) as e:
        raise ConfigError(f"scenario / env_kwargs: {e}") from None
    check_task_algo(algo, task.env_id, task.action_space(params))
    n_envs, n_timesteps = hp["n_envs"], hp["n_timesteps"]
    env_seed = args.env_seed if args.env_seed is not None else 1000 * (args.seed + 1)
    gamma = hp.get("gamma", 0.99)

    # ---- 3. run directory: resolved config, command line and seed beside the model -------------
    if not args.resume:
        run_dir = Path(args.run_dir) if args.run_dir else new_run_dir(
            args.runs_root, f"{algo}-{task.name}-s{args.seed}")
        run_dir.mkdir(parents=True, exist_ok=True)
        config = {"algo": algo, "env_id": task.env_id,
                  "scenario": args.scenario or task.default_scenario, "seed": args.seed,
                  "env_seeds": [env_seed, env_seed + n_envs - 1],
                  "n_timesteps": n_timesteps, "hyperparams": hp,
                  "hyperparams_file": str(args.conf_file or default_hyperparams_path(algo)),
                  "args": dataclasses.asdict(args), "versions": versions()}
        write_run_files(run_dir, config, argv)
    else:
        ckpt_path, ckpt_steps = checkpoint
        write_run_files(run_dir, saved, argv,
                        note=f"resumed from {ckpt_path.name} at {ckpt_steps} steps")

    # ---- 4. envs: one batched JAX env for training, another on held-out seeds for eval ---------
    setup_jax_cache(args.jax_cache)
    if args.threads:
        torch.set_num_threads(args.threads)
    normalize = hp.get("normalize", False)
    venv, timers = make_vec_env(task.env_id, n_envs, args.scenario, hp["env_kwargs"],
                                normalize, gamma)
    compile_s = warm_up(venv)  # jit compiles now, not inside the timed training
    eval_env = None
    if args.eval_freq > 0:
        eval_env, _ = make_vec_env(task.env_id, args.eval_episodes, args.scenario,
                                   hp["env_kwargs"], normalize, gamma, training=False)
        compile_s += warm_up(eval_env)

    # ---- 5. the model: new, or the last checkpoint with its normalization and replay buffer ----
    Algo = getattr(stable_baselines3, ALGOS[algo])
    tb_dir = str(run_dir / "tb")
    if checkpoint is None:
        model = Algo(hp.get("policy", "MlpPolicy"), venv, seed=args.seed, verbose=args.verbose,
                     tensorboard_log=tb_dir, device=args.device,
                     **algo_kwargs(algo, hp, venv.action_space))
        venv.seed(env_seed)  # after the model, which seeds the envs with its own seed
    else:
        ckpt_path, ckpt_steps = checkpoint
        stats = ckpt_path.with_name(f"vecnormalize_{ckpt_steps}.pkl")
        if isinstance(venv, VecNormalize) and stats.exists():
            venv = VecNormalize.load(str(stats), venv.venv)
            venv.training = True
        model = Algo.load(str(ckpt_path), env=venv, device=args.device,
                          tensorboard_log=tb_dir, verbose=args.verbose)
        buffer = run_dir / "checkpoints" / "replay_buffer.pkl"
        if algo in ("sac", "td3") and buffer.exists():
            model.load_replay_buffer(str(buffer))
        model.set_random_seed(args.seed + ckpt_steps)  # fresh noise after the checkpoint...
        venv.seed(env_seed + n_envs)  # ...and fresh episodes (a block after the first)
        print(f"resuming {run_dir} from {ckpt_path.name} ({ckpt_steps} of {n_timesteps} steps)")

    # ---- 6. callbacks: plant KPIs, hyperparameters, evaluation, checkpoints, progress ----------
    kpi_cb = PlantKPICallback(timers)
    cbs = [kpi_cb, HParamCallback({"algo": algo, "env_id": task.env_id, "seed": args.seed,
                                   **hp})]
    eval_cb = None
    if eval_env is not None:
        eval_cb = HeldOutEvalCallback(eval_env, run_dir, args.eval_seed,
                                      max(args.eval_freq // n_envs, 1), args.eval_episodes)
        cbs.append(eval_cb)
    if args.checkpoint_freq > 0:
        cbs.append(CheckpointCallback(run_dir, args.checkpoint_freq, args.save_replay_buffer))
    if args.progress:
        cbs.append(ProgressBarCallback(n_timesteps, f"{algo} {task.name} s{args.seed}"))
    cbs.extend(callbacks)

    # ---- 7. learn (to the same total steps on resume) -------------------------------------------
    remaining = max(n_timesteps - model.num_timesteps, 0)
    try:
        log = {"log_interval": args.log_interval} if args.log_interval > 0 else {}
        model.learn(remaining, callback=CallbackList(cbs), tb_log_name=ALGOS[algo],
                    reset_num_timesteps=checkpoint is None, **log)
    except KeyboardInterrupt:
        path = save_checkpoint(model, run_dir / "checkpoints", args.save_replay_buffer)
        print(f"\ninterrupted at {model.num_timesteps} steps; saved {path}; continue with:\n"
              f"  python scripts/train.py --resume {run_dir}", file=sys.stderr)
        raise

    # ---- 8. save, evaluate the final model, report the timing -----------------------------------
    save_final(model, run_dir)
    if eval_cb is not None:
        eval_cb.evaluate_now()
    timing = kpi_cb.timing()
    timing.update(steps=int(model.num_timesteps) - (checkpoint[1] if checkpoint else 0),
                  n_envs=n_envs, torch_threads=torch.get_num_threads(), compile_s=compile_s)
    timing["wall_s_per_100k_steps"] = timing["wall_s"] / max(timing["steps"], 1) * 1e5
    write_text_atomic(run_dir / "timing.json", json.dumps(timing, indent=1))
    summary = (f"{algo} {task.env_id} seed {args.seed}: {model.num_timesteps} steps, "
               f"{timing['wall_s']:.0f} s ({timing['wall_s_per_100k_steps']:.0f} s per 100k "
               f"steps, {100 * timing['env_step_share']:.0f} % stepping the env)")
    if eval_cb is not None and eval_cb.evaluations_results:
        r = np.asarray(eval_cb.evaluations_results[-1])
        summary += f"; eval return {r.mean():.2f} +/- {r.std():.2f}"
    print(summary)
    print(f"run directory: {run_dir}")
    venv.close()
    if eval_env is not None:
        eval_env.close()
    return run_dir


if __name__ == "__main__":
    try:
        main()
    except ConfigError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
