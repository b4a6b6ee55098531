"""Peer gridworlds' throughput, run inside the peers' own virtualenv (their pins are not ours).

``benchmarks/env_throughput.py`` runs this file with ``.venv-peers/bin/python``
(made by ``make bench-peers-venv``) and reads one JSON object from its stdout.
Each peer is measured as its authors recommend using it: ``jax.jit`` of a
``lax.scan`` over steps of ``jax.vmap``-ed envs, random actions, auto-reset
(navix resets inside ``step``; XLand-MiniGrid through its
``GymAutoResetWrapper``), default observations, which are consumed (summed)
so XLA cannot drop them; compile and a warm-up run excluded; median of repeats.

Usage: ``.venv-peers/bin/python benchmarks/env_peers.py --num-envs 4096 --steps 100``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax

NAVIX_ENV = "Navix-Empty-8x8-v0"
XLAND_ENV = "MiniGrid-Empty-8x8"


def timed(run, steps: int, repeats: int) -> dict:
    run()  # compile
    run()  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        rates.append(steps / (time.perf_counter() - start))
    return {"rate": statistics.median(rates), "runs": rates}


def navix_rate(num_envs: int, num_steps: int, repeats: int) -> dict:
    import navix as nx

    env = nx.make(NAVIX_ENV)
    n_actions = env.action_space.n

    @jax.jit
    def rollout(key):
        k_reset, k_run = jax.random.split(key)
        timestep = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))

        def body(timestep, k):
            actions = jax.random.randint(k, (num_envs,), 0, n_actions)
            timestep = jax.vmap(env.step)(timestep, actions)
            return timestep, timestep.reward.sum() + timestep.observation.sum()

        return jax.lax.scan(body, timestep, jax.random.split(k_run, num_steps))[1].sum()

    key = jax.random.key(0)
    out = timed(lambda: rollout(key).block_until_ready(), num_envs * num_steps, repeats)
    return {**out, "env": NAVIX_ENV, "version": getattr(nx, "__version__", "unknown"),
            "observation": "navix default (observations.symbolic)"}


def xland_rate(num_envs: int, num_steps: int, repeats: int) -> dict:
    import xminigrid
    from xminigrid.wrappers import GymAutoResetWrapper

    env, env_params = xminigrid.make(XLAND_ENV)
    env = GymAutoResetWrapper(env)
    n_actions = env.num_actions(env_params)

    @jax.jit
    def rollout(key):
        k_reset, k_run = jax.random.split(key)
        timestep = jax.vmap(env.reset, in_axes=(None, 0))(
            env_params, jax.random.split(k_reset, num_envs)
        )

        def body(timestep, k):
            actions = jax.random.randint(k, (num_envs,), 0, n_actions)
            timestep = jax.vmap(env.step, in_axes=(None, 0, 0))(env_params, timestep, actions)
            return timestep, timestep.reward.sum() + timestep.observation.sum()

        return jax.lax.scan(body, timestep, jax.random.split(k_run, num_steps))[1].sum()

    key = jax.random.key(0)
    out = timed(lambda: rollout(key).block_until_ready(), num_envs * num_steps, repeats)
    return {**out, "env": XLAND_ENV, "version": xminigrid.__version__,
            "observation": "XLand-MiniGrid default (symbolic first-person view)"}


PEERS = {"navix": navix_rate, "xland_minigrid": xland_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-envs", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer", choices=sorted(PEERS), action="append")
    args = parser.parse_args()
    out = {"jax": jax.__version__, "backend": jax.default_backend()}
    for name in args.peer or sorted(PEERS):
        print(f"peer {name} ...", file=sys.stderr, flush=True)
        out[name] = PEERS[name](args.num_envs, args.steps, args.repeats)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
