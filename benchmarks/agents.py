"""Agent training throughput: every kind before and after the agents refactor, and PPO vs SB3.

Measures, in one run, env steps per second *with learning* (one seed, compile
excluded):

(a) **before/after**: for each kind that existed before ``innerlab.agents``
    (``ppo-lstm``, ``muzero``, ``ibp``), the same work (same config, same
    number of iterations per call) through the old code (a git revision,
    default ``e8f503f``, exported to a temporary directory) and through
    today's ``innerlab.agents`` driver (its jitted chunk). Old and new live in
    separate worker processes (two versions of one package cannot share a
    process); the parent times them in turns, so the machine's drifting load
    hits both alike.
(b) **vs Stable-Baselines3**: ``ppo-lstm`` and ``ppo-transformer`` through
    ``innerlab.agents`` against SB3 ``PPO("MlpPolicy")`` and sb3-contrib
    ``RecurrentPPO("MlpLstmPolicy")`` (LSTM of the same width) on
    ``gymnasium.make("innerlab/Orchard-v0")`` with the same PPO
    hyper-parameters, at 16, 64 and 256 envs, timed in turns.

Writes ``benchmarks/results/agents.json``. Run: ``python benchmarks/agents.py``
(``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

RESULTS = pathlib.Path(__file__).parent / "results" / "agents.json"
HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

# the same work per kind for old and new: native config fields and iterations per call
WORKLOADS = {
    "ppo-lstm": dict(native={"num_envs": 16, "num_steps": 32}, iterations=10),
    "muzero": dict(native={"num_envs": 16, "rollout_len": 16}, iterations=4),
    "ibp": dict(native={"num_envs": 32, "env": "Orchard-v0", "encoder": "mlp"}, iterations=100),
}


# --------------------------------------------------------------------------- workers


def _strip_editable_finder() -> None:
    """Let ``PYTHONPATH`` decide which innerlab is imported (an editable install's
    import hook would otherwise always pick the working tree)."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in str(f)]


def _old_call(kind: str, native: dict, iterations: int):
    """The workload through the code of the old revision (its own driver's pieces)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    if kind == "ppo-lstm":
        from innerlab.planners.ppo import PPOConfig, make_train

        steps = native["num_envs"] * native["num_steps"] * iterations
        config = PPOConfig(**native, total_timesteps=steps)
        train = eqx.filter_jit(make_train(config))
        seeds = itertools.count(1)
        return (lambda: train(jax.random.key(next(seeds)))), steps
    if kind == "muzero":
        from innerlab.planners import muzero

        config = muzero.MuZeroConfig(**native, num_iterations=iterations, chunk=iterations)
        env, params = muzero.make_env(config)
        state = muzero.make_init_fn(config, env, params)(jnp.asarray([0], jnp.uint32))
        chunk = muzero.make_chunk_fn(config, env, params)
        return (lambda: chunk(state)), native["num_envs"] * native["rollout_len"] * iterations
    if kind == "ibp":
        from innerlab.planners import ibp_train

        config = ibp_train.IBPTrainConfig(**native, iterations=iterations, log_every=iterations)
        states = ibp_train.init_states(config, (0,))
        chunk = ibp_train._jitted_chunk(config)
        return (lambda: chunk(states)), native["num_envs"] * iterations
    raise ValueError(f"no old workload for kind {kind!r}")


def agents_call(kind: str, shared: dict, options: dict, iterations: int):
    """The workload through ``innerlab.agents``: one jitted chunk of ``iterations``, one seed."""
    import jax.numpy as jnp

    import innerlab.agents as agents
    from innerlab.agents import driver

    probe = agents.make(kind, **shared, **options)
    per = probe.steps_per_iteration
    config = agents.make(kind, **shared, **options, total_steps=per * iterations,
                         log_every=iterations)
    key = driver.compile_key(config, iterations)
    state = driver._init_fn(key)(jnp.asarray([0], jnp.uint32))
    chunk = driver._chunk_fn(key, iterations)
    return (lambda: chunk(state)), per * iterations


_NEW_NAMES = {  # native field -> agents option, for the before/after workloads
    "num_envs": "num_envs", "env": "env", "encoder": "encoder",
}


def _new_call(kind: str, native: dict, iterations: int):
    shared = {_NEW_NAMES[k]: v for k, v in native.items() if k in _NEW_NAMES}
    options = {k: v for k, v in native.items() if k not in _NEW_NAMES}
    return agents_call(kind, shared, options, iterations)


def worker(version: str, kind: str) -> None:
    """Serve timings over stdin/stdout: ``run`` -> seconds of one call; EOF ends."""
    _strip_editable_finder()
    import jax

    load = WORKLOADS[kind]
    make = _old_call if version == "old" else _new_call
    t = time.perf_counter()
    fn, steps = make(kind, load["native"], load["iterations"])
    jax.block_until_ready(fn())
    print(json.dumps({"ready": True, "compile_and_first_s": time.perf_counter() - t,
                      "env_steps_per_call": steps}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t = time.perf_counter()
        jax.block_until_ready(fn())
        print(json.dumps({"seconds": time.perf_counter() - t}), flush=True)


def _spawn(version: str, kind: str, tree: pathlib.Path) -> tuple[subprocess.Popen, dict]:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{HERE}"}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "agents.py"), "--worker", version, kind],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tree,
    )
    first = json.loads(proc.stdout.readline())
    return proc, first


def time_in_turns(procs: dict[str, tuple[subprocess.Popen, dict]], repeats: int):
    """Time started workers (``name -> (process, ready message)``) in turns, ``repeats``
    calls each, then end them. Returns ``(steps per call, seconds per name, median env
    steps/s per name)``; every worker must do the same work per call."""
    import statistics

    times: dict[str, list[float]] = {name: [] for name in procs}
    for _ in range(repeats):
        for name, (proc, _) in procs.items():
            proc.stdin.write("run\n")
            proc.stdin.flush()
            times[name].append(json.loads(proc.stdout.readline())["seconds"])
    for proc, _ in procs.values():
        proc.stdin.close()
        proc.wait()
    steps = {p[1]["env_steps_per_call"] for p in procs.values()}
    assert len(steps) == 1, steps
    (steps,) = steps
    return steps, times, {name: steps / statistics.median(t) for name, t in times.items()}


def before_after(kind: str, old_tree: pathlib.Path, repeats: int) -> dict:
    """Old and new code in two worker processes, timed in turns (old, new, old, new, ...)."""
    procs = {"old": _spawn("old", kind, old_tree), "new": _spawn("new", kind, ROOT)}
    steps, _, rate = time_in_turns(procs, repeats)
    return {
        "kind": kind,
        "workload": WORKLOADS[kind],
        "env_steps_per_call": steps,
        "old_env_steps_per_s": rate["old"],
        "new_env_steps_per_s": rate["new"],
        "new_over_old": rate["new"] / rate["old"],
        "compile_and_first_s": {name: p[1]["compile_and_first_s"] for name, p in procs.items()},
    }


# --------------------------------------------------------------------------- vs SB3


def versus_sb3(num_envs: int, updates: int, peer_updates: int, repeats: int) -> dict:
    """Env steps/s of ppo-lstm and ppo-transformer (agents) and of two SB3 peers, in turns."""
    import jax
    from planners import _sb3_learner
    from sb3_contrib import RecurrentPPO
    from stable_baselines3 import PPO
    from timing import interleaved_median_seconds

    import innerlab  # noqa: F401  (registers innerlab/Orchard-v0 with gymnasium)
    import innerlab.agents as agents

    shared = {"num_envs": num_envs}
    fns, steps, compile_s = {}, {}, {}
    for kind in ("ppo-lstm", "ppo-transformer"):
        t = time.perf_counter()
        fn, n = agents_call(kind, shared, {}, updates)
        jax.block_until_ready(fn())
        fns[kind], steps[kind], compile_s[kind] = fn, n, time.perf_counter() - t
    native = agents.make("ppo-lstm", **shared).native()
    peers = {
        "sb3_ppo": _sb3_learner(PPO, "MlpPolicy", native),
        "sb3_contrib_recurrent_ppo": _sb3_learner(
            RecurrentPPO, "MlpLstmPolicy", native, lstm_hidden_size=native.hidden
        ),
    }
    peer_steps = peer_updates * num_envs * native.num_steps
    for name, model in peers.items():
        fns[name] = lambda m=model: m.learn(peer_steps, reset_num_timesteps=False)
        steps[name] = peer_steps
    t = interleaved_median_seconds(fns, repeats)
    rate = {name: steps[name] / t[name] for name in fns}
    return {
        "num_envs": num_envs,
        "hyper_parameters": {k: getattr(native, k) for k in (
            "num_steps", "update_epochs", "num_minibatches", "gamma", "gae_lambda", "clip_eps",
            "ent_coef", "vf_coef", "max_grad_norm", "learning_rate", "hidden")},
        "env_steps_per_s": rate,
        "compile_and_first_s": compile_s,
        "speedup_x": {
            ours: {peer: rate[ours] / rate[peer] for peer in peers}
            for ours in ("ppo-lstm", "ppo-transformer")
        },
    }


def _export(revision: str, into: pathlib.Path) -> pathlib.Path:
    """``innerlab/`` at ``revision`` (git archive) under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "innerlab"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", nargs=2, metavar=("VERSION", "KIND"), help=argparse.SUPPRESS)
    p.add_argument("--old", default="e8f503f", help="git revision before innerlab.agents")
    p.add_argument("--kinds", nargs="+", default=sorted(WORKLOADS))
    p.add_argument("--repeats", type=int, default=7, help="timed calls per contender")
    p.add_argument("--ppo-envs", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--ppo-updates", type=int, default=10, help="updates per timed call of ours")
    p.add_argument("--peer-updates", type=int, default=2, help="updates per timed SB3 call")
    p.add_argument("--ppo-repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="smoke run: 2 repeats, 16 envs")
    args = p.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    if args.quick:
        args.repeats, args.ppo_repeats, args.ppo_envs, args.ppo_updates = 2, 1, [16], 2
    import jax

    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "jax_backend": jax.default_backend(),
                    "load_avg_1m_start": os.getloadavg()[0]},
        "old_revision": args.old,
    }
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = _export(args.old, pathlib.Path(tmp))
        result["before_after"] = [before_after(k, old_tree, args.repeats) for k in args.kinds]
    result["versus_sb3"] = [
        versus_sb3(e, args.ppo_updates, args.peer_updates, args.ppo_repeats)
        for e in args.ppo_envs
    ]
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
