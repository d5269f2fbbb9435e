"""XLA:CPU settings that heatsync applies when it is imported.

A control step of the plant is a few hundred small kernels on arrays of a few
racks. XLA:CPU's thunk runtime runs each kernel as a separate task, with about
0.5-1 us of overhead per kernel and a hop between threads per call, so a single
env step spent most of its time outside arithmetic (``results/PERF.md``,
section 4b). Two process-wide settings remove most of that overhead:

* ``xla_cpu_small_while_loop_byte_threshold`` (an ``xla_backend_extra_options``
  entry of ``XLA_FLAGS``): XLA:CPU compiles a while loop whose buffers are below
  this size as ONE kernel (its ``SmallWhileLoopHoistingPass``; the default limit
  is 1 kB). heatsync raises it to :data:`SMALL_LOOP_BYTES`, so the substep scan
  and, with :func:`heatsync.envs.drive.one_kernel`, a whole env step become one
  kernel each.
* ``jax_cpu_enable_async_dispatch = False``: a CPU computation runs on the
  calling thread instead of being handed to a worker thread and waited for. An
  env step always waits for its result, so the hand-off was pure overhead.

Both take effect only if they are set before JAX creates its CPU backend, which
``import heatsync`` does not do. :func:`configure` therefore runs at the top of
``heatsync/__init__.py``; if the backend already exists (JAX was used before
heatsync was imported), it warns and changes nothing. Each setting is left
alone where the user set it; ``HEATSYNC_XLA_TUNING=0`` turns all of it off.
:data:`APPLIED` records what was applied, and ``scripts/perf.py`` prints it.

Both settings change where and how kernels run, not what they compute: results
agree to floating-point rounding (the test suite runs with them on).
"""

from __future__ import annotations

import os
import re
import warnings

__all__ = ["SMALL_LOOP_BYTES", "APPLIED", "ORIGINAL_XLA_FLAGS", "configure",
           "loops_as_one_kernel", "status", "untuned_environ"]

#: while loops whose bytes accessed (XLA's cost analysis) are below this compile to one
#: kernel. Chosen by measurement on the default scenario: at 1 MB a single env step's
#: loop stays many kernels (Env.step ~445 us instead of ~110 us); from 8 MB up the
#: batch-4096 rollout becomes one kernel too and so runs on one core (147k-214k
#: env-steps/s in three perf.py runs against 195k before, within this VM's noise;
#: scripts/perf.py also runs it sharded over the cores)
SMALL_LOOP_BYTES = 64 * 2**20

_OPTION = "xla_cpu_small_while_loop_byte_threshold"
_EXTRA = "--xla_backend_extra_options="

#: what :func:`configure` did, by setting: "applied", "user" (set by the user, kept),
#: "off" (HEATSYNC_XLA_TUNING=0), "too late" (backend already initialized), or
#: "not run"
APPLIED: dict[str, str] = {"small_while_loop": "not run", "sync_dispatch": "not run"}

#: ``XLA_FLAGS`` as it was before :func:`configure` (``None``: unset); a subprocess that
#: must run with XLA's defaults restores it (it would inherit heatsync's flag otherwise)
ORIGINAL_XLA_FLAGS: str | None = os.environ.get("XLA_FLAGS")


_ENTRY = f"{_OPTION}={SMALL_LOOP_BYTES}"
#: set beside XLA_FLAGS when heatsync adds its entry, so that a subprocess (which
#: inherits both) knows the entry came from heatsync, not from its user
_MARKER = "HEATSYNC_XLA_FLAG_ADDED"


def _with_small_loop_option(flags: str) -> str:
    """``XLA_FLAGS`` with the small-while-loop threshold added to its backend options."""
    parts = flags.split()
    for i, part in enumerate(parts):
        if part.startswith(_EXTRA):
            rest = part[len(_EXTRA):]
            parts[i] = _EXTRA + (f"{rest},{_ENTRY}" if rest else _ENTRY)
            return " ".join(parts)
    return " ".join(parts + [_EXTRA + _ENTRY])


def _without_small_loop_option(flags: str) -> str:
    """``XLA_FLAGS`` with heatsync's own entry removed (the inverse of the above)."""
    parts = []
    for part in flags.split():
        if part.startswith(_EXTRA):
            rest = [x for x in part[len(_EXTRA):].split(",") if x and x != _ENTRY]
            if not rest:
                continue
            part = _EXTRA + ",".join(rest)
        parts.append(part)
    return " ".join(parts)


def _inherited() -> bool:
    """Whether XLA_FLAGS holds heatsync's entry because a heatsync parent process put it
    there (the process inherited both it and the marker)."""
    return os.environ.get(_MARKER) == _ENTRY and _ENTRY in os.environ.get("XLA_FLAGS", "")


def configure() -> dict[str, str]:
    """Apply heatsync's XLA:CPU settings if JAX's backend does not exist yet.

    **Returns**: :data:`APPLIED`.
    """
    global ORIGINAL_XLA_FLAGS
    inherited = _inherited()
    if inherited:  # what the user had, before a heatsync parent added the entry
        ORIGINAL_XLA_FLAGS = _without_small_loop_option(os.environ["XLA_FLAGS"]) or None
    if os.environ.get("HEATSYNC_XLA_TUNING", "1").strip().lower() in ("0", "false", "no", "off"):
        if inherited:
            _restore_flags()
        APPLIED.update(small_while_loop="off", sync_dispatch="off")
        return APPLIED
    from jax._src import xla_bridge  # the only way to ask whether the backend exists

    if xla_bridge.backends_are_initialized():
        APPLIED.update(small_while_loop="too late", sync_dispatch="too late")
        warnings.warn(
            "heatsync was imported after JAX created its backend, so its XLA:CPU settings "
            "(one kernel per small while loop, synchronous CPU dispatch) are not applied and "
            "single env steps run about 3x slower. Import heatsync before running any JAX "
            "code, or set them yourself (see heatsync/_xla.py); HEATSYNC_XLA_TUNING=0 "
            "silences this.", RuntimeWarning, stacklevel=3)
        return APPLIED
    flags = os.environ.get("XLA_FLAGS", "")
    if inherited:
        APPLIED["small_while_loop"] = "applied"
    elif _OPTION in flags:
        APPLIED["small_while_loop"] = "user"
    else:
        os.environ["XLA_FLAGS"] = _with_small_loop_option(flags)
        os.environ[_MARKER] = _ENTRY
        APPLIED["small_while_loop"] = "applied"
    if "JAX_CPU_ENABLE_ASYNC_DISPATCH" in os.environ:
        APPLIED["sync_dispatch"] = "user"
    else:
        import jax

        jax.config.update("jax_cpu_enable_async_dispatch", False)
        APPLIED["sync_dispatch"] = "applied"
    return APPLIED


def _restore_flags() -> None:
    os.environ.pop(_MARKER, None)
    if ORIGINAL_XLA_FLAGS is None:
        os.environ.pop("XLA_FLAGS", None)
    else:
        os.environ["XLA_FLAGS"] = ORIGINAL_XLA_FLAGS


def loops_as_one_kernel() -> bool:
    """Whether XLA compiles heatsync's step loops as one kernel in this process: the
    setting was applied, or the user's own threshold is at least 1 MB. Without it,
    :func:`heatsync.envs.drive.one_kernel` would only add a loop (measured: an
    ``Env.step`` 3x slower), so it then calls the function directly."""
    state = APPLIED["small_while_loop"]
    if state == "applied":
        return True
    if state != "user":
        return False
    m = re.search(rf"{_OPTION}=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return m is not None and int(m.group(1)) >= 2**20


def untuned_environ() -> dict[str, str]:
    """``os.environ`` for a subprocess that must run with XLA's defaults: heatsync's
    settings off and ``XLA_FLAGS`` as the user had it."""
    env = dict(os.environ, HEATSYNC_XLA_TUNING="0")
    env.pop("XLA_FLAGS", None)
    env.pop(_MARKER, None)
    if ORIGINAL_XLA_FLAGS is not None:
        env["XLA_FLAGS"] = ORIGINAL_XLA_FLAGS
    return env


def status() -> str:
    """One line saying which settings are in effect (for logs and PERF.md)."""
    return (f"small while loops as one kernel: {APPLIED['small_while_loop']} "
            f"({_OPTION}={SMALL_LOOP_BYTES}); synchronous CPU dispatch: "
            f"{APPLIED['sync_dispatch']}")
