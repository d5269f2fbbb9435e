"""Every callback of a training run (stable-baselines3 ``BaseCallback`` s).

- :class:`PlantKPICallback`: ``plant/<kpi>`` and ``reward/<term>`` of each finished
  episode (from :class:`~heatsync.train.PlantKPIs`) and the share of time spent
  stepping the env;
- :class:`HParamCallback`: the hyperparameters as an SB3 ``HParam``;
- :class:`HeldOutEvalCallback`: evaluation on held-out seeds, the best model and its
  normalization statistics, ``evaluations.npz`` and ``eval_kpis.csv``;
- :class:`CheckpointCallback`: model, normalization and replay buffer every n steps;
- :class:`ProgressBarCallback`: a tqdm bar.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.logger import HParam
from tqdm.auto import tqdm

from heatsync._io import write_text_atomic

from .runs import save_checkpoint, save_vecnormalize
from .vec import KPI_NAMES, StepTimer

__all__ = ["CheckpointCallback", "HParamCallback", "HeldOutEvalCallback", "PARTIAL",
           "PlantKPICallback", "ProgressBarCallback"]


class PlantKPICallback(BaseCallback):
    """Logs ``plant/<kpi>`` and ``reward/<term>`` (means over the episodes that ended
    since the last dump) from ``info["plant"]`` / ``info["reward_terms"]``, and the
    share of wall time spent stepping the env (``time/env_step_share``; the whole
    wrapper stack: ``time/env_stack_step_share``)."""

    def __init__(self, timers: Sequence[StepTimer] = (), verbose: int = 0):
        super().__init__(verbose)
        self.timers = tuple(timers)
        self._t0 = None

    def _on_training_start(self) -> None:
        self._t0 = time.perf_counter()
        for t in self.timers:
            t.seconds, t.steps = 0.0, 0

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            kpis = info.get("plant")
            if kpis is None:
                continue
            for k, v in kpis.items():
                self.logger.record_mean(f"plant/{k}", v)
            for k, v in info["reward_terms"].items():
                self.logger.record_mean(f"reward/{k}", v)
        return True

    def timing(self) -> dict:
        """Wall seconds since training started and the seconds spent in env steps."""
        wall = time.perf_counter() - self._t0 if self._t0 else 0.0
        env_s, stack_s = (t.seconds for t in self.timers) if self.timers else (0.0, 0.0)
        return {"wall_s": wall, "env_step_s": env_s, "env_stack_step_s": stack_s,
                "env_step_share": env_s / wall if wall else 0.0,
                "env_stack_step_share": stack_s / wall if wall else 0.0}

    def _on_rollout_end(self) -> None:
        t = self.timing()
        self.logger.record("time/env_step_share", t["env_step_share"])
        self.logger.record("time/env_stack_step_share", t["env_stack_step_share"])

    def _on_training_end(self) -> None:
        self._on_rollout_end()
        self.logger.dump(self.num_timesteps)


class HParamCallback(BaseCallback):
    """Records the hyperparameters as an SB3 ``HParam`` (TensorBoard's HPARAMS tab)."""

    def __init__(self, hparams: dict):
        super().__init__()
        self.hparams = hparams

    def _on_training_start(self) -> None:
        flat = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
                for k, v in _flatten(self.hparams).items()}
        metrics = {"eval/mean_reward": 0.0, "rollout/ep_rew_mean": 0.0}
        self.logger.record("hparams", HParam(flat, metrics),
                           exclude=("stdout", "log", "json", "csv"))

    def _on_step(self) -> bool:
        return True


#: hidden folder SB3's EvalCallback writes into before the files are moved into place
PARTIAL = ".partial"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class HeldOutEvalCallback(EvalCallback):
    """``EvalCallback`` on held-out seeds.

    Reseeds the eval env with ``eval_seed`` before every evaluation (the same
    held-out episodes each time; env i gets ``eval_seed + i``), logs
    ``eval/plant/<kpi>`` and ``eval/reward/<term>``, saves ``best_model.zip`` with
    ``best_vecnormalize.pkl``, keeps the best mean reward in ``best.json`` (a
    resumed run does not forget it) and appends a row per evaluation to
    ``eval_kpis.csv``.
    """

    def __init__(self, eval_env, run_dir: Path, eval_seed: int, eval_freq: int,
                 n_eval_episodes: int, verbose: int = 0):
        super().__init__(eval_env, n_eval_episodes=n_eval_episodes, eval_freq=eval_freq,
                         log_path=str(Path(run_dir) / PARTIAL),
                         best_model_save_path=str(Path(run_dir) / PARTIAL),
                         deterministic=True, verbose=verbose, warn=False)
        self.run_dir = Path(run_dir)
        self.eval_seed = int(eval_seed)
        self.last_kpis: dict[str, float] = {}
        self._kpis: list[dict] = []
        best = self.run_dir / "best.json"
        if best.exists():  # a resumed run
            self.best_mean_reward = float(json.loads(best.read_text())["mean_reward"])
        old = self.run_dir / "evaluations.npz"
        if old.exists():
            with np.load(old) as z:
                self.evaluations_timesteps = [int(t) for t in z["timesteps"]]
                self.evaluations_results = [list(r) for r in z["results"]]
                self.evaluations_length = [list(r) for r in z["ep_lengths"]]

    def _log_success_callback(self, locals_, globals_) -> None:
        super()._log_success_callback(locals_, globals_)
        info = locals_["info"]
        if locals_["done"] and "plant" in info:  # a counted episode ended
            self._kpis.append(info["plant"])
            for k, v in info["plant"].items():
                self.logger.record_mean(f"eval/plant/{k}", v)
            for k, v in info["reward_terms"].items():
                self.logger.record_mean(f"eval/reward/{k}", v)

    def _on_step(self) -> bool:
        if not (self.eval_freq > 0 and self.n_calls % self.eval_freq == 0):
            return True
        self.eval_env.seed(self.eval_seed)
        self._kpis = []
        best_before = self.best_mean_reward
        go = super()._on_step()
        self._publish()
        self.last_kpis = {k: float(np.mean([d[k] for d in self._kpis])) for k in KPI_NAMES} \
            if self._kpis else {}
        self._append_row()
        if self.best_mean_reward > best_before:
            save_vecnormalize(self.model, self.run_dir / "best_vecnormalize.pkl")
            write_text_atomic(self.run_dir / "best.json", json.dumps(
                {"mean_reward": self.best_mean_reward, "timesteps": self.num_timesteps}))
        return go

    def evaluate_now(self) -> None:
        """Evaluate at once (the end of training), unless this step was just evaluated."""
        if self.eval_freq <= 0 or (self.evaluations_timesteps
                                   and self.evaluations_timesteps[-1] == self.num_timesteps):
            return
        n_calls, self.n_calls = self.n_calls, 0
        try:
            self._on_step()
        finally:
            self.n_calls = n_calls

    def _publish(self) -> None:
        """Move what SB3 just wrote into the hidden folder over the run's files (each
        rename is atomic, so a killed run never leaves a half-written one)."""
        part = self.run_dir / PARTIAL
        for name in ("evaluations.npz", "best_model.zip"):
            if (part / name).exists():
                os.replace(part / name, self.run_dir / name)

    def _append_row(self) -> None:
        path = self.run_dir / "eval_kpis.csv"
        row = {"timesteps": self.num_timesteps, "mean_reward": self.last_mean_reward,
               "std_reward": float(np.std(self.evaluations_results[-1])), **self.last_kpis}
        old = path.read_text() if path.exists() else ",".join(row) + "\n"
        line = ",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values())
        write_text_atomic(path, old + line + "\n")


class CheckpointCallback(BaseCallback):
    """Every ``save_freq_steps`` env steps, :func:`save_checkpoint` into
    ``run_dir/checkpoints``."""

    def __init__(self, run_dir: Path, save_freq_steps: int, save_replay_buffer: bool):
        super().__init__()
        self.dir = Path(run_dir) / "checkpoints"
        self.every = int(save_freq_steps)
        self.save_replay_buffer = save_replay_buffer
        self._next = 0

    def _on_training_start(self) -> None:
        self._next = (self.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            save_checkpoint(self.model, self.dir, self.save_replay_buffer)
            self._next = (self.num_timesteps // self.every + 1) * self.every
        return True


class ProgressBarCallback(BaseCallback):
    """A tqdm bar over the run's total steps (starts at the checkpoint on resume)."""

    def __init__(self, total: int, desc: str):
        super().__init__()
        self.total, self.desc, self.bar = total, desc, None

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, initial=self.num_timesteps, desc=self.desc,
                        unit="step", dynamic_ncols=True, mininterval=1.0)

    def _on_step(self) -> bool:
        self.bar.update(self.num_timesteps - self.bar.n)
        return True

    def _on_training_end(self) -> None:
        self.bar.update(self.num_timesteps - self.bar.n)
        self.bar.close()
