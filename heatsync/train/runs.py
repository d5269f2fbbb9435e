"""Run directories: their files, checkpoints and what ``--resume`` reads back.

A run directory holds ``config.yml`` (the resolved config, seed and versions),
``command.txt`` (every command that ran it), ``seed.txt``, ``tb/`` (TensorBoard),
``checkpoints/`` (``model_<steps>.zip``, ``vecnormalize_<steps>.pkl``,
``replay_buffer.pkl``), ``best_model.zip`` (+ ``best_vecnormalize.pkl``, ``best.json``),
``model.zip`` (+ ``vecnormalize.pkl``), ``evaluations.npz``, ``eval_kpis.csv`` and
``timing.json``. Every file is written atomically (:mod:`heatsync._io`), so a killed
run leaves whole files only.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from pathlib import Path

from heatsync._io import atomic_path, write_text_atomic

from .config import yaml_dump, yaml_load
from .schema import ALGOS, OFF_POLICY, ConfigError

__all__ = ["EXPORTED", "export_run", "latest_checkpoint", "load_checkpoint", "new_run_dir",
           "read_run_config", "resume_run", "save_checkpoint", "save_final", "save_vecnormalize",
           "versions", "write_run_files", "write_timing"]

#: what :func:`export_run` copies of a JAX-trainer run (per seed: ``seed_<k>/...``): the
#: parameters, the evaluations and how the run was made, not the TensorBoard logs or the
#: optimiser checkpoints
EXPORTED = ("config.yml", "command.txt", "timing.json", "seed.txt")
EXPORTED_PER_SEED = ("policy.npz", "best_policy.npz", "best.json", "evaluations.npz")


def new_run_dir(root: str | os.PathLike, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ``-3``... if taken; created."""
    root = Path(root)
    path, i = root / name, 1
    while path.exists():
        i += 1
        path = root / f"{name}-{i}"
    path.mkdir(parents=True)
    return path


def versions() -> dict[str, str]:
    """Versions of heatsync, stable-baselines3, torch, JAX, Gymnasium and Python."""
    import gymnasium
    import jax
    import stable_baselines3
    import torch

    import heatsync

    v = {"heatsync": heatsync.__version__, "stable_baselines3": stable_baselines3.__version__,
         "torch": torch.__version__, "jax": jax.__version__,
         "gymnasium": gymnasium.__version__, "python": platform.python_version()}
    return {k: str(x) for k, x in v.items()}


def write_run_files(run_dir: Path, config: dict, command: str, note: str = "") -> None:
    """Save ``config.yml`` (resolved config, seed, versions) and ``seed.txt``, and
    append ``command`` (with the time and ``note``) to ``command.txt``."""
    run_dir = Path(run_dir)
    write_text_atomic(run_dir / "config.yml", yaml_dump(config))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with (run_dir / "command.txt").open("a") as f:
        f.write(f"# {stamp}{' ' + note if note else ''}\n{command}\n")
    write_text_atomic(run_dir / "seed.txt", f"{config['seed']}\n")


def read_run_config(run_dir: str | os.PathLike) -> dict:
    """The ``config.yml`` a run saved."""
    path = Path(run_dir) / "config.yml"
    if not path.exists():
        raise ConfigError(f"--resume {run_dir}: no config.yml there (not a run directory)")
    return yaml_load(path.read_text())


def resume_run(config, prefix: str = "model", suffix: str = ".zip"):
    """``(run_dir, saved config.yml, TrainConfig, (checkpoint, steps))`` of
    ``config.resume``: the run's own settings, but those in ``TrainConfig.RESUME_KEEPS``
    from ``config``. :class:`ConfigError` if the run has no checkpoint."""
    import dataclasses

    from .config import TrainConfig

    run_dir = Path(config.resume)
    saved = read_run_config(run_dir)
    keep = {k: getattr(config, k) for k in TrainConfig.RESUME_KEEPS}
    config = dataclasses.replace(TrainConfig(**saved["args"]), **keep)
    checkpoint = latest_checkpoint(run_dir, prefix, suffix)
    if checkpoint is None:
        raise ConfigError(f"--resume {run_dir}: no checkpoint in {run_dir}/checkpoints "
                          "(nothing to resume; start a new run)")
    return run_dir, saved, config, checkpoint


def save_vecnormalize(model, path: Path) -> bool:
    """Write the model's ``VecNormalize`` statistics to ``path`` (if it normalizes)."""
    vn = model.get_vec_normalize_env()
    if vn is None:
        return False
    with atomic_path(path) as tmp:
        vn.save(str(tmp))
    return True


def save_checkpoint(model, directory: Path, save_replay_buffer: bool) -> Path:
    """Write ``model_<steps>.zip``, ``vecnormalize_<steps>.pkl`` (if normalizing) and,
    for off-policy algorithms, ``replay_buffer.pkl`` (the latest only: it is large)
    into ``directory``; the model last, so a checkpoint counts once its model exists."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    steps = int(model.num_timesteps)
    save_vecnormalize(model, directory / f"vecnormalize_{steps}.pkl")
    if save_replay_buffer and getattr(model, "replay_buffer", None) is not None:
        with atomic_path(directory / "replay_buffer.pkl") as tmp:
            model.save_replay_buffer(str(tmp))
        write_text_atomic(directory / "replay_buffer.json", json.dumps({"timesteps": steps}))
    path = directory / f"model_{steps}.zip"
    with atomic_path(path) as tmp:
        model.save(str(tmp))
    return path


def latest_checkpoint(run_dir: str | os.PathLike, prefix: str = "model",
                      suffix: str = ".zip") -> tuple[Path, int] | None:
    """``(file, steps)`` of the newest ``checkpoints/<prefix>_<steps><suffix>`` of a run
    (SB3 model zips by default; the JAX trainer's ``state_<steps>.npz``), or ``None``."""
    found = []
    for p in (Path(run_dir) / "checkpoints").glob(f"{prefix}_*{suffix}"):
        m = re.fullmatch(rf"{prefix}_(\d+){re.escape(suffix)}", p.name)
        if m:
            found.append((int(m.group(1)), p))
    if not found:
        return None
    steps, path = max(found)
    return path, steps


def load_checkpoint(algo: str, checkpoint: tuple[Path, int], venv, **load_kw):
    """The model of ``checkpoint`` (from :func:`latest_checkpoint`) on ``venv``, with the
    normalization statistics saved beside it and, off-policy, the run's replay buffer.

    **Returns**: ``(model, venv)``: ``venv`` is a new ``VecNormalize`` over the same
    stack when statistics were restored. ``load_kw`` go to the algorithm's ``load``.
    """
    import stable_baselines3
    from stable_baselines3.common.vec_env import VecNormalize


    path, steps = checkpoint
    stats = path.with_name(f"vecnormalize_{steps}.pkl")
    if isinstance(venv, VecNormalize) and stats.exists():
        venv = VecNormalize.load(str(stats), venv.venv)
        venv.training = True
    model = getattr(stable_baselines3, ALGOS[algo]).load(str(path), env=venv, **load_kw)
    buffer = path.parent / "replay_buffer.pkl"
    if algo in OFF_POLICY and buffer.exists():
        model.load_replay_buffer(str(buffer))
    return model, venv


def save_final(model, run_dir: Path) -> None:
    """``model.zip`` and ``vecnormalize.pkl`` of the finished run."""
    save_vecnormalize(model, Path(run_dir) / "vecnormalize.pkl")
    with atomic_path(Path(run_dir) / "model.zip") as tmp:  # last: a run is done once it exists
        model.save(str(tmp))


def write_timing(run_dir: Path, timing: dict) -> None:
    """``timing.json``: wall and env-step seconds, steps, compile seconds."""
    write_text_atomic(Path(run_dir) / "timing.json", json.dumps(timing, indent=1))


def export_run(run_dir: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Copy what a JAX-trainer run's users need into ``dest`` (created): the run's
    :data:`EXPORTED` files and each ``seed_<k>/``'s parameters (``policy.npz``,
    ``best_policy.npz``), ``best.json`` and ``evaluations.npz``; the result loads as a
    policy and draws its learning curves like the run itself. Each file is written
    atomically. **Returns** the files written."""
    src, dest = Path(run_dir), Path(dest)
    cfg = read_run_config(src)
    if cfg.get("algo") != "ppo-jax":
        raise ConfigError(f"{src}: algo {cfg.get('algo')!r}; export takes a ppo-jax run (an "
                          "SB3 run's model.zip is already its whole agent)")
    if src.resolve() == dest.resolve():
        raise ConfigError(f"export: {dest} is the run itself")
    names = [n for n in EXPORTED if (src / n).is_file()]
    for k in range(len(cfg["seeds"])):
        names += [f"seed_{k}/{n}" for n in EXPORTED_PER_SEED if (src / f"seed_{k}" / n).is_file()]
    written = []
    for n in names:
        with atomic_path(dest / n) as tmp:
            tmp.write_bytes((src / n).read_bytes())
        written.append(dest / n)
    return written
