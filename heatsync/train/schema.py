"""What each hyperparameter allows: the key table behind :func:`~heatsync.train.load_hyperparams`.

:data:`SCHEMA` maps every key to the algorithms accepting it, its validator, what
it allows and what it means (``python scripts/train.py --help`` prints it through
:func:`hyperparams_help`). A bad value raises :class:`ConfigError` naming the key
and what is allowed; an unknown key names the nearest allowed one.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["ALGOS", "JAX_ALGOS", "ConfigError", "SCHEMA", "SCRIPT_KEYS", "allowed_keys",
           "check_algo", "check_policy_kwargs", "check_value", "hyperparams_help", "unknown_error"]

#: algorithm name -> stable-baselines3 class name
ALGOS = {"ppo": "PPO", "sac": "SAC", "td3": "TD3", "a2c": "A2C"}
ON_POLICY = ("ppo", "a2c")
OFF_POLICY = ("sac", "td3")
#: ``policy_kwargs.activation_fn`` name -> ``torch.nn`` class name
ACTIVATIONS = {"tanh": "Tanh", "relu": "ReLU", "elu": "ELU", "leaky_relu": "LeakyReLU",
               "gelu": "GELU", "silu": "SiLU", "selu": "SELU"}
#: ``policy_kwargs.optimizer_class`` name -> ``torch.optim`` class name
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "sgd": "SGD"}
NORMALIZE_KEYS = ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "epsilon")
NOISE_TYPES = ("normal", "ornstein-uhlenbeck")
SCHEDULE_HELP = "a positive float, 'lin_<float>' (linear decay to 0) or 'const_<float>'"


class ConfigError(ValueError):
    """A bad hyperparameter file, override or argument: names the key and what is allowed."""


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
        and math.isfinite(float(v))


def _int(lo: int, hi: int | None = None, extra: tuple = ()):
    rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
    desc = f"an integer {rng}" + "".join(f" or {e!r}" for e in extra)

    def check(v):
        if v in extra and not isinstance(v, bool):
            return v
        if _is_num(v) and float(v).is_integer():
            v = int(v)
        if not _is_int(v) or v < lo or (hi is not None and v > hi):
            raise ValueError(desc)
        return int(v)

    return check, desc


def _float(lo: float, hi: float | None = None, lo_open=False, hi_open=False, none_ok=False):
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    desc = f"a number in {left}{lo}, {'inf' if hi is None else hi}{right}" + \
        (" or null" if none_ok else "")

    def check(v):
        if v is None and none_ok:
            return None
        if not _is_num(v):
            raise ValueError(desc)
        x = float(v)
        above = hi is not None and (x > hi or (hi_open and x == hi))
        if x < lo or (lo_open and x == lo) or above:
            raise ValueError(desc)
        return x

    return check, desc


def _bool():
    def check(v):
        if not isinstance(v, bool):
            raise ValueError("true or false")
        return v

    return check, "true or false"


def _choice(options: Sequence):
    desc = "one of " + ", ".join(repr(o) for o in options)

    def check(v):
        if v not in options:
            raise ValueError(desc)
        return v

    return check, desc


def _schedule(none_ok=False):
    desc = SCHEDULE_HELP + (" or null" if none_ok else "")

    def check(v):
        if v is None and none_ok:
            return None
        if isinstance(v, str):
            m = re.fullmatch(r"(lin|const)_(.+)", v.strip())
            if m is None:
                raise ValueError(f"{desc} (unknown schedule {v!r}; schedules: lin, const)")
            try:
                x = float(m.group(2))
            except ValueError:
                raise ValueError(desc) from None
            if not (math.isfinite(x) and x > 0):
                raise ValueError(desc)
            return v.strip()
        if not _is_num(v) or float(v) <= 0:
            raise ValueError(desc)
        return float(v)

    return check, desc


def _train_freq():
    desc = "an integer >= 1 or [n, 'step' | 'episode']"

    def check(v):
        if _is_int(v) and v >= 1:
            return int(v)
        if isinstance(v, (list, tuple)) and len(v) == 2 and _is_int(v[0]) and v[0] >= 1 \
                and v[1] in ("step", "episode"):
            return [int(v[0]), v[1]]
        raise ValueError(desc)

    return check, desc


def _ent_coef_sac():
    desc = "a number > 0, 'auto' or 'auto_<float>' (learned, with that initial value)"

    def check(v):
        if isinstance(v, str) and re.fullmatch(r"auto(_[0-9.eE+-]+)?", v):
            return v
        if _is_num(v) and float(v) > 0:
            return float(v)
        raise ValueError(desc)

    return check, desc


def _target_entropy():
    desc = "'auto' or a number"

    def check(v):
        if v == "auto":
            return v
        if _is_num(v):
            return float(v)
        raise ValueError(desc)

    return check, desc


def _mapping(desc: str = "a mapping"):
    def check(v):
        if not isinstance(v, dict):
            raise ValueError(desc)
        return dict(v)

    return check, desc


def _normalize():
    desc = f"true, false or a mapping with keys {', '.join(NORMALIZE_KEYS)}"

    def check(v):
        if isinstance(v, bool):
            return v
        if not isinstance(v, dict):
            raise ValueError(desc)
        out = {}
        for k, x in v.items():
            if k not in NORMALIZE_KEYS:
                raise ValueError(f"{desc} (unknown key {k!r})")
            if k.startswith("norm_"):
                if not isinstance(x, bool):
                    raise ValueError(f"{desc} ({k}: true or false)")
                out[k] = x
            else:
                if not _is_num(x) or float(x) <= 0:
                    raise ValueError(f"{desc} ({k}: a number > 0)")
                out[k] = float(x)
        return out

    return check, desc


ALL = tuple(ALGOS)
#: key -> (algorithms that accept it, validator, what is allowed, meaning)
SCHEMA: dict[str, tuple[tuple[str, ...], Callable, str, str]] = {}


def _key(name, algos, spec, meaning):
    check, desc = spec
    SCHEMA[name] = (algos, check, desc, meaning)


_key("n_envs", ALL, _int(1), "envs stepped together (one jitted call per batch step)")
_key("n_timesteps", ALL, _int(1), "total env steps of the run")
_key("policy", ALL, _choice(("MlpPolicy",)), "SB3 policy (observations are flat vectors)")
_key("policy_kwargs", ALL, _mapping(), "policy arguments (net_arch, activation_fn, ...)")
_key("normalize", ALL, _normalize(), "VecNormalize: true, false or its keyword arguments")
_key("env_kwargs", ALL, _mapping("a mapping of load_scenario overrides, e.g. "
                                 "{episode__steps: 900}"), "scenario overrides")
_key("learning_rate", ALL, _schedule(), "optimizer step size, or its schedule")
_key("gamma", ALL, _float(0.0, 1.0, lo_open=True), "discount factor")
_key("stats_window_size", ALL, _int(1), "episodes averaged in rollout/ep_rew_mean")
_key("n_steps", ALL, _int(1), "on-policy: steps per env per rollout; off-policy: n-step returns")
_key("batch_size", ("ppo", "sac", "td3"), _int(2), "minibatch size")
_key("n_epochs", ("ppo",), _int(1), "passes over each rollout")
_key("gae_lambda", ON_POLICY, _float(0.0, 1.0), "GAE lambda")
_key("clip_range", ("ppo",), _schedule(), "PPO clip range, or its schedule")
_key("clip_range_vf", ("ppo",), _schedule(none_ok=True), "value clip range (null: none)")
_key("normalize_advantage", ON_POLICY, _bool(), "normalize advantages per batch")
_key("ent_coef", ("ppo", "a2c", "sac"), _float(0.0),
     "entropy coefficient (SAC: also 'auto' or 'auto_<float>', learned)")
_key("vf_coef", ON_POLICY, _float(0.0), "value loss coefficient")
_key("max_grad_norm", ON_POLICY, _float(0.0, lo_open=True), "gradient clipping norm")
_key("target_kl", ("ppo",), _float(0.0, lo_open=True, none_ok=True), "early stop KL (null: off)")
_key("use_rms_prop", ("a2c",), _bool(), "RMSprop instead of Adam")
_key("rms_prop_eps", ("a2c",), _float(0.0, lo_open=True), "RMSprop epsilon")
_key("use_sde", ("ppo", "a2c", "sac"), _bool(), "state-dependent exploration")
_key("sde_sample_freq", ("ppo", "a2c", "sac"), _int(-1), "resample gSDE noise every n steps")
_key("buffer_size", OFF_POLICY, _int(1), "replay buffer size (transitions)")
_key("learning_starts", OFF_POLICY, _int(0), "env steps of random actions before learning")
_key("tau", OFF_POLICY, _float(0.0, 1.0, lo_open=True), "target network soft-update rate")
_key("train_freq", OFF_POLICY, _train_freq(), "update every n steps (per env batch)")
_key("gradient_steps", OFF_POLICY, _int(1, extra=(-1,)),
     "gradient steps per update (-1: as many as env steps collected)")
_key("optimize_memory_usage", OFF_POLICY, _bool(), "memory-efficient replay buffer")
_key("noise_type", OFF_POLICY, _choice((None,) + NOISE_TYPES), "action noise (null: none)")
_key("noise_std", OFF_POLICY, _float(0.0), "action noise standard deviation (action units)")
_key("target_update_interval", ("sac",), _int(1), "target update every n gradient steps")
_key("target_entropy", ("sac",), _target_entropy(), "entropy target ('auto': -dim(A))")
_key("use_sde_at_warmup", ("sac",), _bool(), "gSDE during the warm-up")
_key("policy_delay", ("td3",), _int(1), "actor update every n critic updates")
_key("target_policy_noise", ("td3",), _float(0.0), "target policy smoothing noise")
_key("target_noise_clip", ("td3",), _float(0.0), "target noise clip")

#: keys that are not constructor arguments of the algorithm
SCRIPT_KEYS = ("n_envs", "n_timesteps", "policy", "normalize", "env_kwargs", "noise_type",
               "noise_std")


def allowed_keys(algo: str) -> list[str]:
    """Hyperparameter keys ``algo`` accepts."""
    return sorted(k for k, (algos, *_rest) in SCHEMA.items() if algo in algos)


def hyperparams_help() -> str:
    """The hyperparameter keys, what each allows and means, and the algorithms taking it."""
    lines = ["hyperparameter keys (YAML or --hyperparams key=value):"]
    for k in sorted(SCHEMA):
        algos, _, desc, meaning = SCHEMA[k]
        which = "all" if set(algos) == set(ALL) else ", ".join(algos)
        lines.append(f"  {k} [{which}]: {meaning}; {desc}")
    lines.append("  policy_kwargs keys: the SB3 policy's arguments, e.g. net_arch "
                 "([64, 64] or {pi: [...], vf|qf: [...]}), activation_fn "
                 f"({', '.join(ACTIVATIONS)}), log_std_init, ortho_init")
    return "\n".join(lines)


def check_value(algo: str, key: str, value, where: str):
    """``value`` as :data:`SCHEMA` normalizes it, or :class:`ConfigError` naming
    ``where``, the key and what is allowed."""
    if key == "ent_coef" and algo == "sac":
        check, desc = _ent_coef_sac()
    else:
        _, check, desc, _ = SCHEMA[key]
    try:
        return check(value)
    except ValueError as e:
        raise ConfigError(f"{where}{key}: {value!r} is not allowed; expected {e}") from None


def unknown_error(kind: str, key, allowed: Sequence[str], where: str) -> ConfigError:
    """The error for an unknown ``key``: the nearest allowed name and all of them."""
    near = difflib.get_close_matches(str(key), list(allowed), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return ConfigError(f"{where}unknown {kind} {key!r}{hint}; allowed: {', '.join(allowed)}")


#: algorithms of the JAX-native trainer (:mod:`heatsync.train.jax_run`)
JAX_ALGOS = ("ppo-jax",)


def check_algo(algo: str) -> str:
    """Lower-case ``algo`` if it is a stable-baselines3 algorithm, else
    :class:`ConfigError` with the allowed names (those and the JAX trainer's)."""
    a = str(algo).lower()
    if a not in ALGOS:
        raise unknown_error("algo", algo, [*ALGOS, *JAX_ALGOS], "")
    return a


def check_policy_kwargs(algo: str, pk: dict, where: str) -> dict:
    """Validate ``policy_kwargs`` (keys from the SB3 policy's constructor)."""
    import stable_baselines3 as sb3

    cls = getattr(sb3, ALGOS[algo]).policy_aliases["MlpPolicy"]
    sig = inspect.signature(cls.__init__).parameters
    allowed = sorted(k for k in sig if k not in ("self", "observation_space", "action_space",
                                                  "lr_schedule", "features_extractor_class",
                                                  "features_extractor_kwargs"))
    where = f"{where}policy_kwargs."
    for k, v in pk.items():
        if k not in allowed:
            raise unknown_error("key", k, allowed, where)
        if k == "net_arch":
            heads = ("pi", "vf") if algo in ON_POLICY else ("pi", "qf")
            desc = (f"a list of positive layer sizes, or a mapping with keys "
                    f"{', '.join(heads)} to such lists")

            def layers(x):
                return isinstance(x, list) and all(_is_int(n) and n > 0 for n in x)

            ok = layers(v) or (isinstance(v, dict) and set(v) <= set(heads)
                               and all(layers(x) for x in v.values()))
            if not ok:
                raise ConfigError(f"{where}net_arch: {v!r} is not allowed; expected {desc}")
        elif k == "activation_fn":
            if v not in ACTIVATIONS:
                raise ConfigError(f"{where}activation_fn: unknown {v!r}; allowed: "
                                  f"{', '.join(ACTIVATIONS)}")
        elif k == "optimizer_class":
            if v not in OPTIMIZERS:
                raise ConfigError(f"{where}optimizer_class: unknown {v!r}; allowed: "
                                  f"{', '.join(OPTIMIZERS)}")
        elif k == "log_std_init":
            if not _is_num(v):
                raise ConfigError(f"{where}log_std_init: {v!r} is not allowed; expected a number")
        elif isinstance(v, (dict, list)) and k != "optimizer_kwargs":
            raise ConfigError(f"{where}{k}: {v!r} is not allowed; expected a scalar")
    return pk

