"""heatsync.train: stable-baselines3 (PPO, SAC, TD3, A2C) on heatsync tasks.

From Python::

    import heatsync.train as ht

    run_dir = ht.run(ht.TrainConfig(algo="ppo", env="PowerSmoothing-v0", seed=0,
                                    hyperparams={"n_timesteps": 50_000, "n_envs": 16}))
    ht.run(ht.TrainConfig(resume=str(run_dir)))   # after an interruption: to the same total

or from the shell, ``python scripts/train.py --help`` (:func:`heatsync.train.cli.main`).
:func:`run` returns the run directory, which loads back as a policy
(``heatsync.agents.sb3_policy.SB3Policy.load(run_dir)``).

Modules, one concern each:

- :mod:`~heatsync.train.config`: :class:`TrainConfig` (every setting, a docstring
  each) and the hyperparameters: YAML keyed by env id with a ``default``
  (:func:`load_hyperparams`, :func:`parse_overrides`), schedules and SB3 constructor
  arguments (:func:`algo_kwargs`);
- :mod:`~heatsync.train.schema`: what each hyperparameter key allows
  (:class:`ConfigError` names the key and the allowed values);
- :mod:`~heatsync.train.vec`: the VecEnv stack (:func:`make_vec_env`), :class:`StepTimer`
  and :class:`PlantKPIs` (episode KPIs through :mod:`heatsync.physics.kpis`);
- :mod:`~heatsync.train.callbacks`: every callback (plant KPIs to TensorBoard,
  hyperparameters, held-out evaluation, checkpoints, progress bar);
- :mod:`~heatsync.train.runs`: run directories, their files, checkpoints, resume;
- :mod:`~heatsync.train.trainer`: :func:`run`, one run top to bottom;
- :mod:`~heatsync.train.cli`: the command line generated from :class:`TrainConfig`.
"""

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
    parse_overrides,
)
from .runs import latest_checkpoint, read_run_config, save_checkpoint
from .schema import ALGOS, ConfigError, allowed_keys, hyperparams_help
from .trainer import run
from .vec import KPI_NAMES, PlantKPIs, StepTimer, make_vec_env

__all__ = [
    "ALGOS", "CheckpointCallback", "ConfigError", "HParamCallback", "HeldOutEvalCallback",
    "KPI_NAMES", "PlantKPICallback", "PlantKPIs", "ProgressBarCallback", "StepTimer",
    "TrainConfig", "algo_kwargs", "allowed_keys", "check_task_algo", "default_hyperparams_path",
    "hyperparams_help", "latest_checkpoint", "load_hyperparams", "make_vec_env",
    "parse_overrides", "read_run_config", "run", "save_checkpoint",
]
