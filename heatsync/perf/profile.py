"""Where a compiled XLA:CPU program spends its time: kernel times from ``jax.profiler``,
attributed to the plant's stages (``jax.named_scope`` in ``heatsync.physics.plant``) and
to the Python functions that emitted each operation.

XLA runs a program as a sequence of kernels ("thunks"): fusions, copies, reductions. The
profiler times each kernel; the compiled HLO text says which operations every kernel
runs, with the name scope of each (``op_name``) and the Python call stack that emitted
it (``stack_frame_id`` into the module's ``StackFrames`` table). A kernel's time is split
over its operations by count (parameters, constants, bitcasts and tuples not counted),
so a fusion that mixes two stages is shared between them. The split is by operation
count, not by cost: a fusion's exponentials weigh no more than its additions.

The attribution needs the program to run as separate kernels: under heatsync's XLA
setting a small while loop is one kernel and the profile sees only that. Callers run
this with ``HEATSYNC_XLA_TUNING=0`` (:mod:`heatsync.perf.breakdown` does, in a
subprocess).

Usage::

    compiled = jax.jit(fn).lower(*args).compile()
    ns = kernel_ns(lambda: compiled(*args))          # {kernel name: ns}, one call
    mod = Module(compiled.as_text())
    by_stage = attribute(ns, mod, lambda op: stage(op.op_name))
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import math
import re
import tempfile
from collections.abc import Callable

import jax

# the stages of heatsync.physics.plant.substep and step, and the rollout's exogenous
# inputs (their jax.named_scope names), in the order the substep runs them
STAGES = ("exogenous", "sources", "clocks", "gpu_power", "shedding", "ultracap", "heat",
          "ups_grid", "trips", "ln2", "jobs", "outputs", "accumulate")
LOCKSTEP = "lockstep"  # scope of the jobs x racks terms in heatsync.physics.workload
_NOT_COUNTED = frozenset({"parameter", "constant", "bitcast", "get-tuple-element", "tuple"})
_CONTROL = frozenset({"while", "conditional", "call"})  # their events enclose other kernels
# the opcodes XLA's cost analysis counts as transcendentals (HloCostAnalysis)
TRANSCENDENTAL = frozenset({"exponential", "exponential-minus-one", "log", "log-plus-one",
                            "power", "tanh", "logistic", "sqrt", "rsqrt", "cbrt", "sine",
                            "cosine", "tan", "atan2", "erf"})
_SECTIONS = ("FileNames", "FunctionNames", "FileLocations", "StackFrames")


@dataclasses.dataclass(frozen=True)
class Op:
    """One HLO operation: its name scope and the Python stack that emitted it
    (``(file, function, line)`` frames, innermost first)."""

    opcode: str
    op_name: str
    stack: tuple[tuple[str, str, int], ...]
    elements: int  # of its array result (0 for a tuple)


class Module:
    """The operations each kernel of a compiled HLO module runs (from ``as_text()``)."""

    def __init__(self, text: str):
        tables: dict[str, dict[int, str]] = {s: {} for s in _SECTIONS}
        comps: dict[str, list] = {}
        kernels: dict[str, tuple] = {}
        section, comp = None, None
        for line in text.splitlines():
            if line in _SECTIONS:
                section = line
                continue
            if section and (m := re.match(r"^(\d+) (.*)$", line)):
                tables[section][int(m.group(1))] = m.group(2)
                continue
            if not line.startswith(" ") and line.rstrip().endswith("{"):
                section = None
                m = re.match(r"^(?:ENTRY )?%?([\w.\-]+)", line)
                comp = m.group(1) if m else None
                comps[comp] = []
                continue
            m = re.match(r"^\s+(?:ROOT )?%([\w.\-]+) = (.*)$", line)
            if m is None or comp is None:
                continue
            name, rest = m.groups()
            opcode = re.match(r"(?:\([^=]*?\)|\S+) ([a-z][\w\-]*)\(", rest)
            op_name = re.search(r'op_name="([^"]*)"', rest)
            frame = re.search(r"stack_frame_id=(\d+)", rest)
            shape = re.match(r"[a-z]\w*\[([\d,]*)\]", rest)
            elements = (math.prod(int(d) for d in shape.group(1).split(",") if d)
                        if shape else 0)
            entry = (opcode.group(1) if opcode else "", op_name.group(1) if op_name else "",
                     int(frame.group(1)) if frame else 0, re.findall(r"calls=%([\w.\-]+)", rest),
                     elements)
            comps[comp].append(entry)
            kernels[name] = entry
        self._comps, self._kernels = comps, kernels
        self._stacks = _stack_table(tables)
        self._ops: dict[str, list[Op]] = {}

    def __contains__(self, kernel: str) -> bool:
        return kernel in self._kernels

    def is_control(self, kernel: str) -> bool:
        return self._kernels[kernel][0] in _CONTROL

    def ops(self, kernel: str) -> list[Op]:
        """The counted operations a kernel runs: a fusion's fused operations, or itself."""
        if kernel not in self._ops:
            opcode, op_name, frame, calls, n = self._kernels[kernel]
            out: list[Op] = []
            if opcode == "fusion":
                todo = list(calls)
                while todo:
                    for code, name, fr, sub, m in self._comps.get(todo.pop(), []):
                        todo.extend(sub)
                        if code not in _NOT_COUNTED:
                            out.append(Op(code, name, self._stacks(fr), m))
            if not out:
                out = [Op(opcode, op_name, self._stacks(frame), n)]
            self._ops[kernel] = out
        return self._ops[kernel]

    def all_ops(self) -> list[Op]:
        """Every counted operation of every computation (loop bodies once)."""
        return [Op(code, name, self._stacks(fr), m) for comp in self._comps.values()
                for code, name, fr, _, m in comp if code not in _NOT_COUNTED]


def _stack_table(tables) -> Callable[[int], tuple]:
    """``frame id -> stack`` from the module's tables. In the text, a frame's
    ``parent_frame_id`` is its parent's id plus one (0 or 1: no parent)."""
    files = {i: v.strip('"') for i, v in tables["FileNames"].items()}
    funcs = {i: v.strip('"') for i, v in tables["FunctionNames"].items()}
    locs, frames = {}, {}
    for i, v in tables["FileLocations"].items():
        d = dict(re.findall(r"(\w+)=(\d+)", v))
        locs[i] = (files.get(int(d.get("file_name_id", 0)), "?"),
                   funcs.get(int(d.get("function_name_id", 0)), "?"), int(d.get("line", 0)))
    for i, v in tables["StackFrames"].items():
        d = dict(re.findall(r"(\w+)=(\d+)", v))
        frames[i] = (int(d.get("file_location_id", 0)), int(d.get("parent_frame_id", 0)) - 1)
    cache: dict[int, tuple] = {}

    def stack(fid: int) -> tuple:
        if fid not in cache:
            out, seen, f = [], set(), fid
            while f in frames and f not in seen:
                seen.add(f)
                loc, f = frames[f]
                if loc in locs:
                    out.append(locs[loc])
            cache[fid] = tuple(out)
        return cache[fid]

    return stack


def kernel_ns(call: Callable[[], object], calls: int = 1) -> collections.Counter:
    """Nanoseconds in each event the profiler records during ``calls`` calls of
    ``call()`` (after one unprofiled call), summed over calls and threads: a kernel XLA
    splits across cores counts each part. :func:`attribute` keeps the events that are
    kernels of a module."""
    with tempfile.TemporaryDirectory() as d:
        jax.block_until_ready(call())
        jax.profiler.start_trace(d)
        try:
            for _ in range(calls):
                jax.block_until_ready(call())
        finally:
            jax.profiler.stop_trace()
        paths = glob.glob(f"{d}/**/*.xplane.pb", recursive=True)
        if not paths:
            raise RuntimeError("jax.profiler wrote no trace")
        data = jax.profiler.ProfileData.from_file(paths[0])
        ns: collections.Counter = collections.Counter()
        for plane in data.planes:
            for line in plane.lines:
                for ev in line.events:
                    ns[ev.name] += ev.duration_ns
    return ns


def attribute(ns: dict, module: Module, key: Callable[[Op], object]) -> collections.Counter:
    """Kernel time (ns) by ``key(op)``: each kernel's time split over its operations by
    count. Events that are not kernels of ``module`` (the profiler's own, thread-pool
    waits) and loops or calls (whose events enclose their bodies' kernels) are left out."""
    out: collections.Counter = collections.Counter()
    for kernel, t in ns.items():
        if kernel not in module or module.is_control(kernel):
            continue
        ops = module.ops(kernel)
        for op in ops:
            out[key(op)] += t / len(ops)
    return out


def stage(op_name: str) -> str:
    """The innermost plant stage in a name scope path, or ``"other"``."""
    return next((p for p in reversed(op_name.split("/")) if p in STAGES), "other")


def is_lockstep(op_name: str) -> bool:
    return LOCKSTEP in op_name.split("/")


def function(stack: tuple, within: str = "substep") -> str:
    """``module.function`` that emitted an operation: the function ``within`` called, if
    the stack passes through ``within`` (``within`` itself for its own lines); otherwise
    the innermost function of the stack."""
    names = [f for _, f, _ in stack]
    if within in names:
        i = names.index(within)
        frame = stack[i - 1] if i > 0 else stack[i]
    elif stack:
        frame = stack[0]
    else:
        return "(no source)"
    path, func, _ = frame
    return f"{_module(path)}.{func.split('.<locals>')[0]}"


def part(op: Op) -> str:
    """``plant`` for an operation of the plant's step or the rollout's exogenous inputs
    (a stage scope, or ``plant.py`` on its stack); otherwise the module that emitted
    it (the innermost frame's file), e.g. ``_queue`` for the scheduling tasks' queue."""
    if stage(op.op_name) != "other" or any(p.endswith("plant.py") for p, _, _ in op.stack):
        return "plant"
    if not op.stack:
        return "(no source)"
    return _module(op.stack[0][0])


def _module(path: str) -> str:
    """A source file's module name: ``.../physics/gpu.py`` -> ``gpu``."""
    return re.sub(r"\.py$", "", path.replace("\\", "/").rsplit("/", 1)[-1])
