"""Frozen dataclass pytrees with documented, range-checked fields.

Every constant of the plant is declared with :func:`param`, which records its
unit, allowed range and source. :mod:`heatsync.physics.scenario` validates
YAML against these declarations before any JAX tracing, so a bad value names
its field and the allowed range.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

__all__ = ["param", "static", "pytree_dataclass", "field_info", "replace"]


def param(
    default: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    unit: str = "",
    doc: str = "",
    source: str = "",
    per_rack: bool = False,
) -> Any:
    """A data field (a pytree leaf) with its unit, allowed range [lo, hi] and source."""
    meta = dict(lo=lo, hi=hi, unit=unit, doc=doc, source=source, per_rack=per_rack, static=False)
    return dataclasses.field(default=default, metadata=meta)


def static(default: Any, lo: float | None = None, hi: float | None = None, *, doc: str = "") -> Any:
    """A static (hashable, non-traced) field such as a count or a shape."""
    meta = dict(lo=lo, hi=hi, unit="", doc=doc, source="", per_rack=False, static=True)
    return dataclasses.field(default=default, metadata=meta)


def pytree_dataclass(cls: type) -> type:
    """Make ``cls`` a frozen dataclass registered as a JAX pytree.

    Fields declared with :func:`static` are metadata (part of the treedef);
    all other fields are leaves.
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(cls)
    meta = [f.name for f in fields if f.metadata.get("static", False)]
    data = [f.name for f in fields if not f.metadata.get("static", False)]
    jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)
    return cls


def field_info(cls: type) -> dict[str, dataclasses.Field]:
    """Name -> dataclass field, for validation and documentation."""
    return {f.name: f for f in dataclasses.fields(cls)}


def replace(obj: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` re-exported for frozen pytrees."""
    return dataclasses.replace(obj, **changes)
