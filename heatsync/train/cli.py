"""Train a stable-baselines3 agent (PPO, SAC, TD3 or A2C) on a heatsync task.

Hyperparameters come from ``configs/hyperparams/<algo>.yml`` (keyed by env id,
with a ``default`` entry; see :mod:`heatsync.train.config` for the format), overridden
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

import argparse
import ast
import dataclasses
import inspect
import shlex
import sys
import textwrap
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .runs import export_run
from .schema import ConfigError, hyperparams_help
from .trainer import run

__all__ = ["console", "field_docs", "main", "parse_args"]


def field_docs(cls) -> dict[str, str]:
    """Docstrings written under each field of a dataclass (read from its source)."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = ast.parse(src).body[0].body
    docs = {}
    for a, b in zip(body, body[1:], strict=False):
        if isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) \
                and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) \
                and isinstance(b.value.value, str):
            docs[a.target.id] = " ".join(b.value.value.split())
    return docs


def parse_args(cls, argv: Sequence[str] | None = None, description: str | None = None,
               epilog: str | None = None):
    """An instance of dataclass ``cls`` from the command line: one ``--flag`` per field,
    its docstring as the help text; ``bool`` fields get ``--x/--no-x``, lists take
    several values and ``dict`` fields several ``key=value`` strings (the dataclass
    parses them)."""
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    parser = argparse.ArgumentParser(
        description=description or cls.__doc__, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        args = typing.get_args(tp)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), tp) if optional else tp
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        text = docs.get(f.name, "")
        if "default" not in text:
            text += f" (default: {default!r})"
        kw: dict[str, Any] = {"default": default, "help": text.replace("%", "%%")}
        flag = "--" + f.name.replace("_", "-")
        if base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is list:
            kw.update(nargs="*", type=typing.get_args(base)[0], metavar="VALUE")
        elif typing.get_origin(base) is dict:
            kw.update(nargs="*", type=str, metavar="KEY=VALUE")
        else:
            kw["type"] = base
        parser.add_argument(flag, **kw)
    ns = parser.parse_args(argv)
    return cls(**vars(ns))


def main(argv: Sequence[str] | None = None, callbacks: Sequence = ()) -> Path:
    """Train as the command line ``argv`` (default ``sys.argv[1:]``) says; returns the
    run directory. ``callbacks`` are extra SB3 callbacks (tests use one to interrupt a
    run). Raises :class:`ConfigError` for a bad argument, ``SystemExit`` for ``--help``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    config = parse_args(TrainConfig, argv, description=__doc__, epilog=hyperparams_help())
    command = " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv[:1], *argv])
    return run(config, callbacks=callbacks, command=command)


def _export(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python scripts/train.py export",
        description="Copy a ppo-jax run's parameters, evaluations and config (not its "
                    "TensorBoard logs or optimiser checkpoints) into a small folder that "
                    "loads as a policy (e.g. to commit a trained agent).")
    ap.add_argument("run", type=Path, help="the run directory")
    ap.add_argument("dest", type=Path, help="the folder to write (created)")
    args = ap.parse_args(argv)
    files = export_run(args.run, args.dest)
    size = sum(f.stat().st_size for f in files)
    print(f"wrote {len(files)} files ({size / 1e3:.0f} kB) to {args.dest}")
    return 0


#: ``scripts/train.py <subcommand> ...``; anything else is a training run
SUBCOMMANDS = ("curves", "export")


def console(argv: Sequence[str] | None = None) -> int:
    """:func:`main` as a program: exit status 0, 2 for a bad argument (the message on
    stderr) or 130 when interrupted (a checkpoint of the moment was saved). ``curves``
    and ``export`` as the first argument run those subcommands
    (:mod:`heatsync.train.curves`, :func:`heatsync.train.runs.export_run`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "curves":
            from .curves import main as curves_main

            return curves_main(argv[1:])
        if argv and argv[0] == "export":
            return _export(argv[1:])
        main(argv)
    except ConfigError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
