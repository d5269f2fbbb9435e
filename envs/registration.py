"""Gymnasium registration of the heatsync ids (see :mod:`heatsync.envs.registry`)."""

from __future__ import annotations

from .registry import TASK_SPECS, register_envs

__all__ = ["ENV_IDS", "register_envs"]

#: id -> (Gymnasium entry point, vector entry point), from the task registry
ENV_IDS = {s.env_id: (s.env, s.vector_entry) for s in TASK_SPECS.values()}
