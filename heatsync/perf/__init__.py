"""heatsync.perf: measure heatsync's speed on this machine and write a report.

Figures, each beside its target (medians of repeats after a warm-up; compile time
excluded except where it is the figure):

1. batched plant throughput (env-steps/s; ``default`` scenario, dt = 1 s, 10 substeps)
   from a jitted, vmapped ``lax.scan`` rollout at batch 1, 64, 1024 and 4096;
2. a large hall: 800 racks (~100 MW) as one plant, simulated s per wall s;
3. single ``gymnasium.Env.step`` latency (median and p99) of each of the four tasks,
   and the steps per second of ``JaxVectorEnv`` (and stable-baselines3's
   ``SB3VecEnv`` when installed) at N = 64 and 1024;
4. compile time of each task's reset and step (first call minus a warm call), of the
   vector env's reset and step and of the plant's ``step`` (with its XLA cost model);
5. the reverse-mode gradient of a 1 h rollout (``jax.checkpoint`` on the per-step body)
   as a multiple of the forward rollout's time, with XLA's planned temporary memory.
6. where the time goes: the batched plant's floor from its operation count (XLA's cost
   model of one substep, and the rates this machine's XLA reaches in a fused loop), and
   kernel profiles (``heatsync/perf/profile.py``) of the batch-4096 plant, the hall and
   Facility's vector step by plant stage and by function, in a subprocess under XLA's
   defaults;
7. what bounds each missed target, from the run's own figures.

Also the CPU model, core count, JAX backend and versions, and the load average (other
processes inflate wall times; the CPU-time columns much less).

Compiles come first (a warm-up phase: ``--jobs`` programs at a time), then every
timing runs alone, one after another. XLA compiles dominate a ``--quick`` run, which
takes about a minute on 2 cores.

Modules: ``runner`` (the :class:`~heatsync.perf.runner.Probe` protocol, settings,
warm-up, subprocess probes, timing helpers); the probes by concern: ``plant`` (batched
plant, sharded, hall, step cost, operation-count floor), ``envs`` (``Env.step``
latency and compile, compile split, step anatomy, XLA's defaults), ``vector``
(vector envs), ``grad`` (the gradient of a rollout; also ``python -m
heatsync.perf.grad``), ``breakdown`` (kernel profiles, with ``profile``: kernel time
attributed from compiled HLO); ``report`` and ``diagnosis`` (the markdown); ``cli``.

Usage::

    python scripts/perf.py                 # full run (~7 min on 2 cores), writes results/PERF.md
    python scripts/perf.py --quick         # smoke run: tiny step counts, same code paths,
                                           # writes results/perf-quick/PERF.md
    python scripts/perf.py --out /tmp/PERF.md
"""
