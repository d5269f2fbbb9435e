"""One training run, top to bottom: :func:`run`.

Resolve the run (new, or the one being resumed), validate its hyperparameters and
scenario before anything is built, write the run directory, build the batched envs,
make or load the model, learn with the callbacks, save and report.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .callbacks import (
    CheckpointCallback,
    HeldOutEvalCallback,
    HParamCallback,
    PlantKPICallback,
    ProgressBarCallback,
)
from .config import (
    TrainConfig,
    algo_kwargs,
    check_task_algo,
    default_hyperparams_path,
    load_hyperparams,
)
from .runs import (
    load_checkpoint,
    new_run_dir,
    read_run_config,
    resume_run,
    save_checkpoint,
    save_final,
    versions,
    write_run_files,
    write_timing,
)
from .schema import ALGOS, JAX_ALGOS, ConfigError, check_algo
from .vec import make_vec_env, setup_jax_cache, warm_up

__all__ = ["run"]


def _is_jax_run(config: TrainConfig) -> bool:
    if config.resume:
        return read_run_config(config.resume).get("algo") in JAX_ALGOS
    return str(config.algo).lower() in JAX_ALGOS


def run(config: TrainConfig, callbacks: Sequence = (), command: str | None = None) -> Path:
    """Train as ``config`` says; the run directory is returned once the model is saved.

    **Arguments**: ``config`` (:class:`TrainConfig`; ``TrainConfig(resume=run_dir)``
    continues that run from its last checkpoint to the same total steps, with its saved
    config), ``callbacks`` (extra SB3 callbacks, e.g. one that stops a run),
    ``command`` (the command line recorded in ``command.txt``; default: this call).

    **Returns**: the run directory (its files: :mod:`heatsync.train.runs`).

    Raises :class:`ConfigError` for a bad algorithm, task, hyperparameter or scenario
    override before anything is written; on ``KeyboardInterrupt`` saves a checkpoint
    of the moment and re-raises.
    """
    if _is_jax_run(config):  # the JAX-native trainer: its own driver
        from .jax_run import run_jax

        return run_jax(config, command)
    import stable_baselines3
    import torch
    from stable_baselines3.common.callbacks import CallbackList

    from heatsync.envs import make_task
    from heatsync.physics import ScenarioError

    if command is None:
        command = f"heatsync.train.run({config!r})  # Python API, {sys.executable}"

    # ---- 1. the run: a new one, or the one being resumed (its saved config wins) -------------
    checkpoint = None
    if config.resume:
        run_dir, saved, config, checkpoint = resume_run(config)
    algo = check_algo(config.algo)
    try:
        task = make_task(config.env)
    except ValueError as e:
        raise ConfigError(f"--env: {e}") from None

    # ---- 2. hyperparameters: YAML + overrides, validated before anything is built ------------
    if config.resume:
        hp = saved["hyperparams"]
    else:
        hp = load_hyperparams(algo, task.env_id, config.conf_file, config.hyperparams)
        hp["env_kwargs"] = {**hp.get("env_kwargs", {}), **config.env_kwargs}
    try:  # the scenario and its overrides are checked here too (ScenarioError names the field)
        params = task.make_params(config.scenario, **hp.get("env_kwargs", {}))
    except (ScenarioError, ValueError, TypeError) as e:
        raise ConfigError(f"scenario / env_kwargs: {e}") from None
    check_task_algo(algo, task.env_id, task.action_space(params))
    n_envs, n_timesteps = hp["n_envs"], hp["n_timesteps"]
    env_seed = config.env_seed if config.env_seed is not None else 1000 * (config.seed + 1)
    gamma = hp.get("gamma", 0.99)

    # ---- 3. run directory: resolved config, command line and seed beside the model -------------
    if not config.resume:
        run_dir = Path(config.run_dir) if config.run_dir else new_run_dir(
            config.runs_root, f"{algo}-{task.name}-s{config.seed}")
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved = {"algo": algo, "env_id": task.env_id,
                    "scenario": config.scenario or task.default_scenario, "seed": config.seed,
                    "env_seeds": [env_seed, env_seed + n_envs - 1],
                    "n_timesteps": n_timesteps, "hyperparams": hp,
                    "hyperparams_file": str(config.conf_file or default_hyperparams_path(algo)),
                    "args": dataclasses.asdict(config), "versions": versions()}
        write_run_files(run_dir, resolved, command)
    else:
        ckpt_path, ckpt_steps = checkpoint
        write_run_files(run_dir, saved, command,
                        note=f"resumed from {ckpt_path.name} at {ckpt_steps} steps")

    # ---- 4. envs: one batched JAX env for training, another on held-out seeds for eval ---------
    setup_jax_cache(config.jax_cache)
    if config.threads:
        torch.set_num_threads(config.threads)
    normalize = hp.get("normalize", False)
    venv, timers = make_vec_env(task.env_id, n_envs, config.scenario, hp["env_kwargs"],
                                normalize, gamma)
    compile_s = warm_up(venv)  # jit compiles now, not inside the timed training
    eval_env = None
    if config.eval_freq > 0:
        eval_env, _ = make_vec_env(task.env_id, config.eval_episodes, config.scenario,
                                   hp["env_kwargs"], normalize, gamma, training=False)
        compile_s += warm_up(eval_env)

    # ---- 5. the model: new, or the last checkpoint with its normalization and replay buffer ----
    tb_dir = str(run_dir / "tb")
    if checkpoint is None:
        Algo = getattr(stable_baselines3, ALGOS[algo])
        model = Algo(hp.get("policy", "MlpPolicy"), venv, seed=config.seed,
                     verbose=config.verbose, tensorboard_log=tb_dir, device=config.device,
                     **algo_kwargs(algo, hp, venv.action_space))
        venv.seed(env_seed)  # after the model, which seeds the envs with its own seed
    else:
        ckpt_path, ckpt_steps = checkpoint
        model, venv = load_checkpoint(algo, checkpoint, venv, device=config.device,
                                      tensorboard_log=tb_dir, verbose=config.verbose)
        model.set_random_seed(config.seed + ckpt_steps)  # fresh noise after the checkpoint...
        venv.seed(env_seed + n_envs)  # ...and fresh episodes (a block after the first)
        print(f"resuming {run_dir} from {ckpt_path.name} ({ckpt_steps} of {n_timesteps} steps)")

    # ---- 6. callbacks: plant KPIs, hyperparameters, evaluation, checkpoints, progress ----------
    kpi_cb = PlantKPICallback(timers)
    cbs = [kpi_cb, HParamCallback({"algo": algo, "env_id": task.env_id, "seed": config.seed,
                                   **hp})]
    eval_cb = None
    if eval_env is not None:
        eval_cb = HeldOutEvalCallback(eval_env, run_dir, config.eval_seed,
                                      max(config.eval_freq // n_envs, 1), config.eval_episodes)
        cbs.append(eval_cb)
    if config.checkpoint_freq > 0:
        cbs.append(CheckpointCallback(run_dir, config.checkpoint_freq,
                                      config.save_replay_buffer))
    if config.progress:
        cbs.append(ProgressBarCallback(n_timesteps, f"{algo} {task.name} s{config.seed}"))
    cbs.extend(callbacks)

    # ---- 7. learn (to the same total steps on resume) -------------------------------------------
    remaining = max(n_timesteps - model.num_timesteps, 0)
    try:
        log = {"log_interval": config.log_interval} if config.log_interval > 0 else {}
        model.learn(remaining, callback=CallbackList(cbs), tb_log_name=ALGOS[algo],
                    reset_num_timesteps=checkpoint is None, **log)
    except KeyboardInterrupt:
        path = save_checkpoint(model, run_dir / "checkpoints", config.save_replay_buffer)
        print(f"\ninterrupted at {model.num_timesteps} steps; saved {path}; continue with:\n"
              f"  python scripts/train.py --resume {run_dir}\n"
              f"  (or heatsync.train.run(TrainConfig(resume={str(run_dir)!r})))",
              file=sys.stderr)
        raise

    # ---- 8. save, evaluate the final model, report the timing -----------------------------------
    save_final(model, run_dir)
    if eval_cb is not None:
        eval_cb.evaluate_now()
    timing = kpi_cb.timing()
    timing.update(steps=int(model.num_timesteps) - (checkpoint[1] if checkpoint else 0),
                  n_envs=n_envs, torch_threads=torch.get_num_threads(), compile_s=compile_s)
    timing["wall_s_per_100k_steps"] = timing["wall_s"] / max(timing["steps"], 1) * 1e5
    write_timing(run_dir, timing)
    summary = (f"{algo} {task.env_id} seed {config.seed}: {model.num_timesteps} steps, "
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
