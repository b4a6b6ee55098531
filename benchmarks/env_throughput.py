"""Environment throughput: innerlab under jit+vmap vs its gymnasium adapter vs Minigrid.

Measures, in one run, environment steps per second with uniformly random actions of

(a) ``Orchard-v0`` as a functional JAX env: ``jit`` + ``vmap`` over 4096 envs,
    ``lax.scan`` over steps, auto-reset through ``innerlab.envs.batched_step``
    (identical results to ``vmap(env.step)``, resets computed only where
    episodes ended), observations consumed (summed) so they are really
    computed, ``block_until_ready`` (compile and a warm-up run excluded);
    (a-vmap) the same with plain ``jax.vmap(env.step)`` (gymnax idiom: every env
    computes a reset every step); (a') ``env.step_env`` (no auto-reset: the
    transition alone);
(b) the same env through ``GymnasiumEnv`` (``gymnasium.make``), one step per call;
(c) Minigrid's ``MiniGrid-Empty-8x8-v0`` (the named peer), one step per call;
(d) the same env through ``gymnasium.make_vec`` (``GymnasiumVectorEnv``, one
    jitted call per batched step, NumPy in and out), 4096 envs;
(e) (a) with integer observations (``make(..., observation="int")``: ``uint8``
    slots instead of the float one-hot grid, the same information);
(f) the JAX peers navix (``Navix-Empty-8x8-v0``) and XLand-MiniGrid
    (``MiniGrid-Empty-8x8``), each as its authors recommend (see
    ``benchmarks/env_peers.py``), run in their own virtualenv
    (``make bench-peers-venv``: their pins are not ours) and measured in turns
    with (a) and (e), ``--repeats`` rounds;

and writes rates and ratios to ``benchmarks/results/env_throughput.json``.
Each rate is the median of ``--repeats`` timed runs. Run: ``python benchmarks/env_throughput.py``
(``make bench`` runs every benchmark).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import time

import gymnasium
import jax
import numpy as np

import innerlab
from innerlab.envs import make
from innerlab.envs.batched import batched_step

HERE = pathlib.Path(__file__).parent
RESULTS = HERE / "results" / "env_throughput.json"
PEERS_PYTHON = HERE.parent / ".venv-peers" / "bin" / "python"
ENV = "Orchard-v0"
PEER = "MiniGrid-Empty-8x8-v0"


def median_rate(run, steps: int, repeats: int) -> tuple[float, list[float]]:
    """Median steps/second of ``repeats`` timed calls of ``run()`` (each doing ``steps`` steps)."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        rates.append(steps / (time.perf_counter() - start))
    return statistics.median(rates), rates


STEPPERS = ("batched_step", "vmap_step", "step_env")


def jax_vmap_rate(
    num_envs: int, num_steps: int, repeats: int, stepper: str = "batched_step",
    observation: str = "onehot",
):
    """(a) functional env, jit + vmap + lax.scan, stepping with one of ``STEPPERS``."""
    env, params = make(ENV, observation=observation)
    n_actions = env.num_actions(params)

    def step_batch(keys, state, actions):
        if stepper == "batched_step":
            return batched_step(env, keys, state, actions, params)
        step = env.step if stepper == "vmap_step" else env.step_env
        return jax.vmap(lambda k, s, a: step(k, s, a, params))(keys, state, actions)

    @jax.jit
    def rollout(key):
        k_reset, k_run = jax.random.split(key)
        _, state = jax.vmap(lambda k: env.reset(k, params))(jax.random.split(k_reset, num_envs))

        def body(state, key):
            k_act, k_step = jax.random.split(key)
            actions = jax.random.randint(k_act, (num_envs,), 0, n_actions)
            obs, state, reward, *_ = step_batch(jax.random.split(k_step, num_envs), state, actions)
            # use the observations, as a policy would (and as the peers must produce
            # them), so XLA cannot drop their computation as dead code
            return state, reward.sum() + obs.sum()

        _, rewards = jax.lax.scan(body, state, jax.random.split(k_run, num_steps))
        return rewards.sum()

    key = jax.random.key(0)
    rollout(key).block_until_ready()  # compile
    rollout(key).block_until_ready()  # warm-up
    return median_rate(lambda: rollout(key).block_until_ready(), num_envs * num_steps, repeats)


def peer_rates(num_envs: int, num_steps: int) -> dict | str:
    """(f) one round of the JAX peers in their own virtualenv; a reason string if absent."""
    if not PEERS_PYTHON.exists():
        missing = PEERS_PYTHON.relative_to(HERE.parent)
        return f"not run: {missing} is missing (make bench-peers-venv)"
    cmd = [str(PEERS_PYTHON), str(HERE / "env_peers.py"), "--num-envs", str(num_envs),
           "--steps", str(num_steps), "--repeats", "1"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def in_turns(num_envs: int, num_steps: int, rounds: int) -> dict:
    """(a), (e) and (f) measured in turns, one run each per round (this machine drifts)."""
    runs: dict[str, list[float]] = {"jax_vmap": [], "jax_vmap_int_obs": []}
    peers_info: dict = {}
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}: (a), (e), (f) ...", flush=True)
        runs["jax_vmap"] += jax_vmap_rate(num_envs, num_steps, 1)[1]
        runs["jax_vmap_int_obs"] += jax_vmap_rate(num_envs, num_steps, 1, observation="int")[1]
        peers = peer_rates(num_envs, num_steps)
        if isinstance(peers, str):
            peers_info = {"status": peers}
            continue
        for name in ("navix", "xland_minigrid"):
            runs.setdefault(name, []).extend(peers[name]["runs"])
            peers_info[name] = {k: v for k, v in peers[name].items() if k not in ("rate", "runs")}
        peers_info["jax"] = peers["jax"]
    return {"runs": runs, "peers": peers_info}


def python_loop_rate(env: gymnasium.Env, num_steps: int, repeats: int, seed: int = 0):
    """(b), (c): one ``env.step`` per call, random actions, reset when an episode ends."""
    env.action_space.seed(seed)
    env.reset(seed=seed)
    actions = [env.action_space.sample() for _ in range(num_steps)]

    def run():
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()

    run()  # warm-up (compiles the adapter's kernels)
    return median_rate(run, num_steps, repeats)


def vector_env_rate(num_envs: int, num_steps: int, repeats: int):
    """(d) gymnasium.make_vec: batched NumPy steps through one jitted call each."""
    venv = gymnasium.make_vec(f"innerlab/{ENV}", num_envs=num_envs)
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, venv.single_action_space.n, (num_steps, num_envs))

    def run():
        for a in actions:
            venv.step(a)

    run()  # warm-up
    return median_rate(run, num_envs * num_steps, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-envs", type=int, default=4096)
    parser.add_argument("--scan-steps", type=int, default=100)
    parser.add_argument("--python-steps", type=int, default=1000)
    parser.add_argument("--vector-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()

    import minigrid  # noqa: F401  (registers MiniGrid-* with gymnasium)

    results = {}
    turns = in_turns(args.num_envs, args.scan_steps, args.repeats)
    for name, runs in turns["runs"].items():
        results[name] = (statistics.median(runs), runs)
    print("(a-vmap) the same with plain vmap(env.step) ...", flush=True)
    results["jax_vmap_step"] = jax_vmap_rate(
        args.num_envs, args.scan_steps, args.repeats, stepper="vmap_step"
    )
    print("(a') the same without auto-reset (env.step_env) ...", flush=True)
    results["jax_vmap_no_reset"] = jax_vmap_rate(
        args.num_envs, args.scan_steps, args.repeats, stepper="step_env"
    )
    print(f"(b) {ENV} through GymnasiumEnv, {args.python_steps} steps ...", flush=True)
    results["gymnasium_adapter"] = python_loop_rate(
        gymnasium.make(f"innerlab/{ENV}"), args.python_steps, args.repeats
    )
    print(f"(c) {PEER}, {args.python_steps} steps ...", flush=True)
    results["minigrid"] = python_loop_rate(gymnasium.make(PEER), args.python_steps, args.repeats)
    print(f"(d) {ENV} make_vec, {args.num_envs} envs x {args.vector_steps} steps", flush=True)
    results["gymnasium_make_vec"] = vector_env_rate(
        args.num_envs, args.vector_steps, args.repeats
    )

    rates = {k: v[0] for k, v in results.items()}
    report = {
        "benchmark": "env_throughput",
        "unit": "environment steps per second (median of repeats)",
        "env": ENV,
        "peer": PEER,
        "rates": rates,
        "all_runs": {k: v[1] for k, v in results.items()},
        "ratios": {
            "jax_vmap_over_minigrid": rates["jax_vmap"] / rates["minigrid"],
            "jax_vmap_step_over_minigrid": rates["jax_vmap_step"] / rates["minigrid"],
            "batched_step_over_vmap_step": rates["jax_vmap"] / rates["jax_vmap_step"],
            "jax_vmap_no_reset_over_minigrid": rates["jax_vmap_no_reset"] / rates["minigrid"],
            "jax_vmap_over_gymnasium_adapter": rates["jax_vmap"] / rates["gymnasium_adapter"],
            "gymnasium_adapter_over_minigrid": rates["gymnasium_adapter"] / rates["minigrid"],
            "make_vec_over_minigrid": rates["gymnasium_make_vec"] / rates["minigrid"],
            "int_obs_over_onehot": rates["jax_vmap_int_obs"] / rates["jax_vmap"],
            "jax_vmap_int_obs_over_minigrid": rates["jax_vmap_int_obs"] / rates["minigrid"],
            **{
                f"{ours}_over_{peer}": rates[ours] / rates[peer]
                for ours in ("jax_vmap", "jax_vmap_int_obs")
                for peer in ("navix", "xland_minigrid")
                if peer in rates
            },
        },
        "targets": {
            "jax_vmap >= 1000 x minigrid": rates["jax_vmap"] >= 1000 * rates["minigrid"],
            "jax_vmap_int_obs >= 1000 x minigrid": (
                rates["jax_vmap_int_obs"] >= 1000 * rates["minigrid"]
            ),
            "jax_vmap_int_obs >= navix": (
                rates["jax_vmap_int_obs"] >= rates["navix"] if "navix" in rates else None
            ),
        },
        "peers": turns["peers"],
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_1min_at_end": os.getloadavg()[0],
            "platform": platform.platform(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jax_backend": jax.default_backend(),
            "gymnasium": gymnasium.__version__,
            "innerlab": innerlab.__version__,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, rate in rates.items():
        print(f"{name:>20}: {rate:14,.0f} steps/s")
    for name, ratio in report["ratios"].items():
        print(f"{name:>32}: {ratio:10,.1f}x")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
