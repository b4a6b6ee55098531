"""Planner throughput: MCTSLayer vs calling mctx directly; recurrent PPO vs Stable-Baselines3 PPO.

Measures, in one run:

(a) search simulations per second of ``MCTSLayer`` (Gumbel MuZero, learned
    ``WorldModel``) and of ``mctx.gumbel_muzero_policy`` called directly with
    root and recurrent functions written by hand over the *same* model, same
    batch, same number of simulations (both jitted; compile and a warm-up call
    excluded; median of repeats). The ratio is the layer's overhead.
(b) training throughput (environment steps per second, learning included) of
    innerlab's recurrent PPO (``make_train``, jit end to end, one seed) and of
    Stable-Baselines3's ``PPO("MlpPolicy")`` on the same env through
    ``gymnasium.make("innerlab/Orchard-v0")``. SB3's PPO has no LSTM (that is
    sb3-contrib's RecurrentPPO, not installed); ours does, so the comparison
    favours the peer. Compile time of ours is reported separately.

Writes ``benchmarks/results/planners.json``. Run: ``python benchmarks/planners.py``.
Each measurement is kept short because the development CPU is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import equinox as eqx
import gymnasium
import jax
import jax.numpy as jnp
import mctx
from timing import median_seconds

import innerlab  # noqa: F401  (registers innerlab/<Name>-v0 with gymnasium)
from innerlab.envs import make
from innerlab.planners import MCTSLayer, WorldModel
from innerlab.planners.ppo import PPOConfig, make_train

RESULTS = pathlib.Path(__file__).parent / "results" / "planners.json"


def bench_search(batch: int, sims: int, repeats: int) -> dict:
    env, params = make("Orchard-v0")
    obs, _ = jax.vmap(lambda k: env.reset(k, params))(jax.random.split(jax.random.key(0), batch))
    wm = WorldModel.create(obs.shape[1:], 4, key=jax.random.key(1), encoder="mlp")
    layer = MCTSLayer(wm, sims, discount=0.97)

    @eqx.filter_jit
    def via_layer(lay, obs, key):
        out = lay(obs, key)
        return out.action, out.action_weights

    def root_fn(model, obs):
        latent = jax.vmap(model.represent)(obs)
        return mctx.RootFnOutput(
            prior_logits=jax.vmap(model.policy_logits)(latent),
            value=jax.vmap(model.value)(latent),
            embedding=latent,
        )

    def recurrent_fn(model, key, action, latent):
        reward = jax.vmap(lambda z, a: jnp.mean(model.reward_preds(z, a)))(latent, action)
        nxt = jax.vmap(model.dynamics)(latent, action)
        out = mctx.RecurrentFnOutput(
            reward=reward,
            discount=jnp.full_like(reward, 0.97),
            prior_logits=jax.vmap(model.policy_logits)(nxt),
            value=jax.vmap(model.value)(nxt),
        )
        return out, nxt

    @eqx.filter_jit
    def direct(model, obs, key):
        out = mctx.gumbel_muzero_policy(
            params=model,
            rng_key=key,
            root=root_fn(model, obs),
            recurrent_fn=recurrent_fn,
            num_simulations=sims,
        )
        return out.action, out.action_weights

    key = jax.random.key(2)
    a1, w1 = via_layer(layer, obs, key)
    a2, w2 = direct(wm, obs, key)
    same = bool(jnp.all(a1 == a2)) and bool(jnp.allclose(w1, w2, atol=1e-5))
    t_layer = median_seconds(lambda: via_layer(layer, obs, key), repeats)
    t_direct = median_seconds(lambda: direct(wm, obs, key), repeats)
    return {
        "batch": batch,
        "num_simulations": sims,
        "layer_sims_per_s": batch * sims / t_layer,
        "mctx_direct_sims_per_s": batch * sims / t_direct,
        "overhead_x": t_layer / t_direct,
        "same_actions_and_weights": same,
    }


def bench_ppo(num_envs: int, num_steps: int, updates: int, sb3_steps: int) -> dict:
    config = PPOConfig(
        num_envs=num_envs, num_steps=num_steps, total_timesteps=num_envs * num_steps * updates
    )
    train = eqx.filter_jit(make_train(config))
    t = time.perf_counter()
    jax.block_until_ready(train(jax.random.key(0)))
    first = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(train(jax.random.key(1)))
    ours = config.num_updates * num_envs * num_steps / (time.perf_counter() - t)

    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    vec = make_vec_env(lambda: gymnasium.make("innerlab/Orchard-v0"), n_envs=8)
    model = PPO(
        "MlpPolicy", vec, n_steps=128, batch_size=256, n_epochs=4, verbose=0, device="cpu", seed=0
    )
    model.learn(256)  # warm-up (allocations, first rollout)
    t = time.perf_counter()
    model.learn(sb3_steps, reset_num_timesteps=False)
    peer = sb3_steps / (time.perf_counter() - t)
    return {
        "ours": {
            "num_envs": num_envs,
            "num_steps": num_steps,
            "updates": config.num_updates,
            "update_epochs": config.update_epochs,
            "env_steps_per_s": ours,
            "compile_and_first_run_s": first,
            "policy": "MLP + LSTM(64)",
        },
        "peer": {
            "name": "stable-baselines3 PPO MlpPolicy",
            "n_envs": 8,
            "n_steps": 128,
            "n_epochs": 4,
            "env_steps": sb3_steps,
            "env_steps_per_s": peer,
        },
        "speedup_x": ours / peer,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--sims", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--ppo-envs", type=int, default=64)
    p.add_argument("--ppo-steps", type=int, default=32)
    p.add_argument("--ppo-updates", type=int, default=10)
    p.add_argument("--sb3-steps", type=int, default=2048)
    args = p.parse_args()
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "jax_backend": jax.default_backend(),
            "load_avg_1m_start": os.getloadavg()[0],
        },
        "search": bench_search(args.batch, args.sims, args.repeats),
        "ppo": bench_ppo(args.ppo_envs, args.ppo_steps, args.ppo_updates, args.sb3_steps),
    }
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
