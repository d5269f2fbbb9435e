"""Trained stable-baselines3 models as :class:`~heatsync.agents.Policy` objects.

A run of ``scripts/train.py`` (or a committed copy under ``models/``) loads back
as a deterministic policy that applies the run's saved VecNormalize statistics
to the observations itself::

    from heatsync.agents.sb3_policy import SB3Policy, load_models

    policy = SB3Policy.load("models/ppo-PowerSmoothing-s0")  # a run directory or a .zip
    actions = policy.act(obs)        # (obs_dim,) -> (act_dim,), (N, obs_dim) -> (N, act_dim)
    policies = load_models("models", task="PowerSmoothing-v0")  # {name: SB3Policy}

From a run directory, ``which="auto"`` (the default) takes ``best_model.zip`` (the
best evaluation on held-out seeds during training, with ``best_vecnormalize.pkl``)
if there is one, else ``model.zip`` (the final model, with ``vecnormalize.pkl``).

As a ``module:attr`` path (:func:`heatsync.agents.load_policy`, the benchmark's
``--policy``): ``heatsync.agents.sb3_policy:models.<name>`` loads
``<models dir>/<name>``, the models dir being ``$HEATSYNC_MODELS_DIR``, else
``./models``, else the repository's ``models/``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import yaml

from ._policy import PolicyError

__all__ = ["SB3Policy", "from_run", "load_models", "models", "models_dir"]

_ALGOS = {"ppo": "PPO", "sac": "SAC", "td3": "TD3", "a2c": "A2C"}


def _stats_for(zip_path: Path) -> Path:
    """The VecNormalize statistics saved beside a model zip (they may not exist)."""
    name = zip_path.stem
    if name == "best_model":
        return zip_path.with_name("best_vecnormalize.pkl")
    if name.startswith("model_"):  # checkpoints/model_<steps>.zip
        return zip_path.with_name(f"vecnormalize_{name[len('model_'):]}.pkl")
    return zip_path.with_name("vecnormalize.pkl")


def _read_config(path: Path) -> dict:
    for d in (path, path.parent, path.parent.parent):
        cfg = d / "config.yml"
        if cfg.is_file():
            return yaml.safe_load(cfg.read_text()) or {}
    return {}


class SB3Policy:
    """A trained SB3 model acting deterministically, observations normalized with the
    run's saved statistics.

    **Arguments**: ``model`` (an SB3 algorithm), ``obs_norm`` (an unpickled
    ``VecNormalize`` or ``None``), ``name``, ``config`` (the run's ``config.yml``).
    Attributes: ``algo``, ``env_id``, ``scenario``, ``env_kwargs``, ``path``,
    ``tuned_on`` (task, scenario and first seeds of the training envs).
    """

    def __init__(self, model, obs_norm=None, name: str = "", config: dict | None = None,
                 path: Path | None = None):
        self.model = model
        self.obs_norm = obs_norm
        self.name = name
        self.config = config or {}
        self.path = path
        self.algo = self.config.get("algo", type(model).__name__.lower())
        self.env_id = self.config.get("env_id")
        self.scenario = self.config.get("scenario")
        self.env_kwargs = dict((self.config.get("hyperparams") or {}).get("env_kwargs") or {})
        self.observation_space = model.observation_space
        self.action_space = model.action_space
        #: what the model was trained on, for the benchmark's held-out split (None: unknown)
        self.tuned_on = self._tuned_on()

    def _tuned_on(self) -> dict | None:
        seeds = self.config.get("env_seeds")
        if not self.env_id or not seeds:
            return None
        steps = self.env_kwargs.get("episode__steps")
        return {"task": self.env_id.split("/")[-1].removesuffix("-v0"),
                "scenarios": [self.scenario], "seeds": list(range(seeds[0], seeds[1] + 1)),
                "steps": steps, "objective": "the env reward (SB3 training; each env's episodes "
                "after the first continue its key chain)"}

    @classmethod
    def load(cls, path: str | os.PathLike, which: str = "auto",
             device: str = "cpu") -> SB3Policy:
        """Load a run directory or a model ``.zip``.

        **Arguments**: ``path``; ``which`` for a directory: ``"auto"`` (best, else
        final), ``"best"`` or ``"final"``; ``device`` (torch).

        **Returns**: an :class:`SB3Policy`. Raises :class:`PolicyError` naming the
        path when nothing loads.
        """
        import stable_baselines3

        path = Path(path)
        if path.is_dir():
            best, final = path / "best_model.zip", path / "model.zip"
            options = {"auto": [best, final], "best": [best], "final": [final]}
            if which not in options:
                raise PolicyError(f"which: {which!r}; allowed: auto, best, final")
            found = [p for p in options[which] if p.is_file()]
            if not found:
                raise PolicyError(f"{path}: no {' or '.join(p.name for p in options[which])} "
                                  "(not a training run directory?)")
            zip_path = found[0]
        elif path.is_file() or path.with_suffix(".zip").is_file():
            zip_path = path if path.is_file() else path.with_suffix(".zip")
        else:
            raise PolicyError(f"{path}: no such run directory or model file")
        config = _read_config(zip_path.parent)
        algo = config.get("algo")
        names = [_ALGOS[algo]] if algo in _ALGOS else list(_ALGOS.values())
        model, errors = None, []
        for n in names:  # without a config, try each algorithm class
            try:
                model = getattr(stable_baselines3, n).load(str(zip_path), device=device)
                break
            except Exception as e:  # a zip of another algorithm
                errors.append(f"{n}: {type(e).__name__}: {e}")
        if model is None:
            raise PolicyError(f"{zip_path}: does not load as an SB3 model ({'; '.join(errors)})")
        obs_norm = None
        stats = _stats_for(zip_path)
        if stats.is_file():
            with stats.open("rb") as f:
                obs_norm = pickle.load(f)  # noqa: S301 (statistics written by scripts/train.py)
        run = zip_path.parent
        name = (run.parent.name if run.name == "checkpoints" else run.name)
        return cls(model, obs_norm, name=name, config=config, path=zip_path)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action(s) for ``obs`` of shape (obs_dim,) or (N, obs_dim)."""
        obs = np.asarray(obs, dtype=np.float32)
        dim = self.observation_space.shape[0]
        if obs.ndim not in (1, 2) or obs.shape[-1] != dim:
            raise PolicyError(f"{self.name}: obs of shape {obs.shape}; expected ({dim},) or "
                              f"(N, {dim}) (trained on {self.env_id})")
        if self.obs_norm is not None and self.obs_norm.norm_obs:
            obs = self.obs_norm.normalize_obs(obs).astype(np.float32)
        action, _ = self.model.predict(obs, deterministic=True)
        if np.issubdtype(np.asarray(action).dtype, np.floating):
            return np.asarray(action, dtype=np.float32)
        return np.asarray(action)

    def reset(self, seed: int | None = None) -> None:
        """Nothing to clear: the policy has no memory."""

    def __repr__(self) -> str:
        return f"SB3Policy({self.name!r}, {self.algo}, {self.env_id})"


def from_run(path: str | os.PathLike, which: str = "auto") -> SB3Policy:
    """:meth:`SB3Policy.load` as a plain function (a factory for scripts)."""
    return SB3Policy.load(path, which=which)


def models_dir() -> Path:
    """``$HEATSYNC_MODELS_DIR``, else ``./models``, else the repository's ``models/``."""
    env = os.environ.get("HEATSYNC_MODELS_DIR")
    if env:
        return Path(env)
    here = Path("models")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "models"


def load_models(directory: str | os.PathLike | None = None, task: str | None = None,
                which: str = "auto") -> dict[str, SB3Policy]:
    """Every trained model under ``directory`` (default :func:`models_dir`), by name.

    **Arguments**: ``directory`` holding run directories (``<name>/config.yml`` and
    a model zip); ``task`` keeps only models trained on that task (an env id or a
    short name such as ``PowerSmoothing-v0``); ``which`` as in :meth:`SB3Policy.load`.

    **Returns**: ``{name: SB3Policy}`` sorted by name (empty if there are none).
    """
    root = Path(directory) if directory is not None else models_dir()
    if not root.is_dir():
        raise PolicyError(f"models directory {root}: not found")
    want = None
    if task is not None:
        from heatsync.envs import make_task

        want = make_task(task).env_id
    out = {}
    for run in sorted(p for p in root.iterdir() if (p / "config.yml").is_file()):
        if want is not None and _read_config(run).get("env_id") != want:
            continue
        if not ((run / "best_model.zip").is_file() or (run / "model.zip").is_file()):
            continue
        out[run.name] = SB3Policy.load(run, which=which)
    return out


class _Models:
    """``models.<name>`` loads ``models_dir()/<name>`` (for ``module:attr`` paths)."""

    def __getattr__(self, name: str) -> SB3Policy:
        if name.startswith("__"):
            raise AttributeError(name)
        return SB3Policy.load(models_dir() / name)

    def __dir__(self):
        d = models_dir()
        return sorted(p.name for p in d.iterdir() if (p / "config.yml").is_file()) \
            if d.is_dir() else []


#: ``heatsync.agents.sb3_policy:models.ppo-PowerSmoothing-s0`` as a policy path
models = _Models()
