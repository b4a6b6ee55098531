"""Conv-encoder planners before and after their world model's convolution became a matmul.

``RewardModel``'s shared encoder (MuZero's and the IBP's world model) used XLA's native
convolution; it now uses ``conv_same``'s matmul lowering like every other encoder. This
measures what that buys where it matters: env steps per second *with learning* of
``muzero`` and ``ibp`` with ``encoder="conv"`` on the unidentifiability grid's setting
(``ProxyMaze-v0`` 7x7, egocentric view, width 64, seeds vmapped), through the code of a
git revision before the change (``--old``, exported to a temporary directory) and through
the working tree, each in its own worker process, timed in turns (old, new, old, ...) so
the machine's drifting load hits both alike. One timed call is one jitted training chunk.

Writes ``benchmarks/results/conv_lowering.json``. Run: ``python benchmarks/conv_lowering.py``
(``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

from agents import _export, _strip_editable_finder, time_in_turns

RESULTS = pathlib.Path(__file__).parent / "results" / "conv_lowering.json"
HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

SHARED = {"env": "ProxyMaze-v0", "env_overrides": {"height": 7, "width": 7, "max_steps": 30},
          "egocentric": True, "encoder": "conv", "width": 64, "num_envs": 16}
BUDGETS = {"muzero": 16, "ibp": 3}  # the grid's base search budgets
ITERATIONS = {"muzero": 2, "ibp": 20}  # training iterations per timed call


def grid_options(kind: str) -> dict:
    """The kind's own options in the unidentifiability grid (its base cell)."""
    from innerlab.recipes.unidentifiability import BUDGET_OPTION, KIND_OPTIONS

    return {**KIND_OPTIONS[kind], BUDGET_OPTION[kind]: BUDGETS[kind]}


def worker(kind: str, seeds: int) -> None:
    """Serve timings over stdin/stdout: ``run`` -> seconds of one chunk; EOF ends."""
    _strip_editable_finder()
    import jax
    import jax.numpy as jnp

    import innerlab.agents as agents
    from innerlab.agents import driver

    options, iterations = grid_options(kind), ITERATIONS[kind]
    t = time.perf_counter()
    per = agents.make(kind, **SHARED, **options).steps_per_iteration
    config = agents.make(kind, **SHARED, **options, total_steps=per * iterations,
                         log_every=iterations)
    key = driver.compile_key(config, iterations)
    state = driver._init_fn(key)(jnp.arange(seeds, dtype=jnp.uint32))
    chunk = driver._chunk_fn(key, iterations)
    jax.block_until_ready(chunk(state))
    print(json.dumps({"ready": True, "compile_and_first_s": time.perf_counter() - t,
                      "env_steps_per_call": per * iterations * seeds}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t = time.perf_counter()
        jax.block_until_ready(chunk(state))
        print(json.dumps({"seconds": time.perf_counter() - t}), flush=True)


def _spawn(kind: str, seeds: int, tree: pathlib.Path):
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{HERE}"}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "conv_lowering.py"), "--worker", kind, str(seeds)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree,
    )
    return proc, json.loads(proc.stdout.readline())


def before_after(kind: str, seeds: int, old_tree: pathlib.Path, repeats: int) -> dict:
    procs = {"old": _spawn(kind, seeds, old_tree), "new": _spawn(kind, seeds, ROOT)}
    steps, times, rate = time_in_turns(procs, repeats)
    return {
        "kind": kind, "seeds": seeds,
        "options": {**SHARED, "kind_options": "the grid's base cell", "budget": BUDGETS[kind]},
        "env_steps_per_call": steps, "seconds": times,
        "old_env_steps_per_s": rate["old"], "new_env_steps_per_s": rate["new"],
        "new_over_old": rate["new"] / rate["old"],
        "compile_and_first_s": {name: p[1]["compile_and_first_s"] for name, p in procs.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", nargs=2, metavar=("KIND", "SEEDS"), help=argparse.SUPPRESS)
    p.add_argument("--old", default="784e79c", help="git revision with the native lowering")
    p.add_argument("--kinds", nargs="+", default=sorted(BUDGETS), choices=sorted(BUDGETS))
    p.add_argument("--seeds", type=int, default=2, help="seeds vmapped in each chunk")
    p.add_argument("--repeats", type=int, default=3, help="timed chunks per contender")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, 1 seed")
    args = p.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return
    if args.quick:
        args.repeats, args.seeds = 1, 1
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg_1m_start": os.getloadavg()[0]},
        "old_revision": args.old,
    }
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = _export(args.old, pathlib.Path(tmp))
        result["before_after"] = [before_after(k, args.seeds, old_tree, args.repeats)
                                  for k in args.kinds]
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
