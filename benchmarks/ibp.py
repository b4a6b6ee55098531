"""IBP throughput vs the MCTS agent, same env and same world-model size.

Measures, in one run, on Orchard-v0 with one ``WorldModel`` shape (MLP
encoder, latent 32, width 64, 3 reward members) for both agents:

(a) model steps per second while planning a batch: the IBP layer
    (``IBP`` over ``LatentImagination``, tree strategy, budget ``N``) vs
    ``MCTSLayer`` (Gumbel MuZero, ``N`` simulations). One imagination step and
    one simulation each cost one model step; the IBP's loop always runs its
    ``N`` slots (masked after the manager acts), so both do ``B * N`` model
    steps per call. We report those "slots" per second and, for the IBP,
    also the imagination steps the (untrained) manager actually chose.
(b) training env steps per second, learning included: the ``innerlab.agents``
    driver's jitted chunk for kind ``"ibp"`` vs kind ``"muzero"``, same number
    of envs, one seed.

Compile and one warm-up call are excluded; medians of repeats. Writes
``benchmarks/results/ibp.json``. Run: ``python benchmarks/ibp.py``.
"""

from __future__ import annotations

import json
import pathlib
import platform
import time

import equinox as eqx
import jax
import jax.numpy as jnp
from timing import median_seconds

import innerlab.agents as agents
from innerlab.agents import driver
from innerlab.envs import make
from innerlab.planners import IBP, LatentImagination, MCTSLayer, WorldModel

RESULTS = pathlib.Path(__file__).parent / "results" / "ibp.json"
MODEL = dict(latent_dim=32, width=64, num_members=3, encoder="mlp")


def bench_planning(batch: int, budget: int, repeats: int) -> dict:
    env, params = make("Orchard-v0")
    obs, _ = jax.vmap(lambda k: env.reset(k, params))(jax.random.split(jax.random.key(0), batch))
    wm = WorldModel.create(obs.shape[1:], 4, key=jax.random.key(1), **MODEL)
    ibp = IBP(LatentImagination(wm), "tree", budget, hidden=64, width=64, key=jax.random.key(2))
    mcts = MCTSLayer(wm, budget)
    ibp_fn = eqx.filter_jit(lambda m, o, k: m(o, k))
    mcts_fn = eqx.filter_jit(lambda m, o, k: m(o, k))
    key = jax.random.key(3)
    t_ibp = median_seconds(lambda: ibp_fn(ibp, obs, key), repeats, warmup=True)
    t_mcts = median_seconds(lambda: mcts_fn(mcts, obs, key), repeats, warmup=True)
    chosen = float(jnp.sum(ibp_fn(ibp, obs, key).stats["imaginations"]))
    return {
        "batch": batch,
        "budget": budget,
        "ibp_seconds_per_call": t_ibp,
        "mcts_seconds_per_call": t_mcts,
        "ibp_imagination_slots_per_s": batch * budget / t_ibp,
        "ibp_imagination_steps_chosen_per_s": chosen / t_ibp,
        "mcts_simulations_per_s": batch * budget / t_mcts,
        "ibp_over_mcts": t_mcts / t_ibp,
    }


def _driver_chunk(config: agents.AgentConfig):
    """The agents driver's jitted chunk (``log_every`` iterations) and one seed's state."""
    log_every = config.schedule()[1]
    key = driver.compile_key(config, log_every)
    state = driver._init_fn(key)(jnp.asarray([0], jnp.uint32))
    return driver._chunk_fn(key, log_every), state


def bench_training(num_envs: int, budget: int, repeats: int) -> dict:
    model = dict(env="Orchard-v0", num_envs=num_envs, width=MODEL["width"],
                 encoder=MODEL["encoder"], num_members=MODEL["num_members"],
                 latent_dim=MODEL["latent_dim"])
    ibp_config = agents.make("ibp", **model, strategy="tree", max_imaginations=budget,
                             hidden=64, total_steps=num_envs * 32, log_every=32)
    chunk, states = _driver_chunk(ibp_config)
    t_ibp = median_seconds(lambda: chunk(states)[1]["episode_return"], repeats, warmup=True)
    ibp_steps = ibp_config.steps_per_iteration * ibp_config.log_every

    mz_config = agents.make("muzero", **model, rollout_len=16, num_simulations=budget,
                            total_steps=num_envs * 16 * 2, log_every=2)
    mz_chunk, mz_states = _driver_chunk(mz_config)
    t_mz = median_seconds(
        lambda: jax.tree.leaves(eqx.filter(mz_chunk(mz_states), eqx.is_array)), repeats, warmup=True
    )
    mz_steps = mz_config.steps_per_iteration * mz_config.log_every
    return {
        "num_envs": num_envs,
        "budget": budget,
        "ibp_env_steps_per_chunk": ibp_steps,
        "ibp_env_steps_per_s": ibp_steps / t_ibp,
        "muzero_env_steps_per_chunk": mz_steps,
        "muzero_env_steps_per_s": mz_steps / t_mz,
        "ibp_over_muzero": (ibp_steps / t_ibp) / (mz_steps / t_mz),
        "note": "MuZero trains num_epochs x num_minibatches gradient steps per rollout of "
                "rollout_len steps; the IBP one gradient step per env step.",
    }


def main() -> None:
    t0 = time.perf_counter()
    result = {
        "benchmark": "ibp",
        "peer": "MCTSLayer (Gumbel MuZero search) and its MuZero learner, same WorldModel size",
        "machine": {"platform": platform.platform(), "jax": jax.__version__,
                    "device": str(jax.devices()[0])},
        "model": MODEL,
        "planning": bench_planning(batch=64, budget=8, repeats=5),
        "training": bench_training(num_envs=16, budget=4, repeats=3),
    }
    result["wall_seconds"] = time.perf_counter() - t0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
