"""Planner throughput: MCTSLayer vs calling mctx directly; recurrent PPO vs Stable-Baselines3 PPO.

Measures, in one run:

(a) search simulations per second of ``MCTSLayer`` (Gumbel MuZero, learned
    ``WorldModel``) and of ``mctx.gumbel_muzero_policy`` called directly with
    root and recurrent functions written by hand over the *same* model, same
    batch, same number of simulations (both jitted, compiled before timing,
    timed in turns; medians). The ratio is the layer's overhead.
(b) training throughput (environment steps per second, learning included) of
    innerlab's recurrent PPO (``make_train``, jit end to end, one seed) and of
    two peers on the same env through ``gymnasium.make("innerlab/Orchard-v0")``
    with the same hyper-parameters (envs, steps per rollout, epochs, minibatch
    size, losses, learning rate): Stable-Baselines3's ``PPO("MlpPolicy")``
    (no memory, so a smaller job than ours) and sb3-contrib's
    ``RecurrentPPO("MlpLstmPolicy")`` with the same LSTM width (the
    like-for-like peer). For 16, 64 and 256 envs; the three are timed in turns
    so that the machine's drifting load hits them alike. Compile time of ours
    is reported separately.

Writes ``benchmarks/results/planners.json``. Run: ``python benchmarks/planners.py``.
Each measurement is kept short because the development CPU is shared.
"""

from __future__ import annotations

import argparse
import itertools
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
from timing import interleaved_median_seconds

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
    t = interleaved_median_seconds(
        {"layer": lambda: via_layer(layer, obs, key), "direct": lambda: direct(wm, obs, key)},
        repeats,
    )
    t_layer, t_direct = t["layer"], t["direct"]
    return {
        "batch": batch,
        "num_simulations": sims,
        "layer_sims_per_s": batch * sims / t_layer,
        "mctx_direct_sims_per_s": batch * sims / t_direct,
        "overhead_x": t_layer / t_direct,
        "same_actions_and_weights": same,
    }


def _sb3_learner(cls, policy: str, config: PPOConfig, **policy_kwargs):
    """An SB3 learner with ``config``'s hyper-parameters on the gymnasium Orchard, warmed up."""
    from stable_baselines3.common.env_util import make_vec_env

    vec = make_vec_env(lambda: gymnasium.make("innerlab/Orchard-v0"), n_envs=config.num_envs)
    model = cls(
        policy,
        vec,
        n_steps=config.num_steps,
        batch_size=config.num_envs * config.num_steps // config.num_minibatches,
        n_epochs=config.update_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_eps,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        learning_rate=config.learning_rate,
        policy_kwargs=policy_kwargs or None,
        verbose=0,
        device="cpu",
        seed=0,
    )
    model.learn(config.num_envs * config.num_steps)  # warm-up: allocations, first rollout
    return model


def bench_ppo(num_envs: int, num_steps: int, updates: int, peer_updates: int, repeats: int) -> dict:
    """Env steps/s of ours and of two SB3 peers with the same PPO hyper-parameters, in turns."""
    from sb3_contrib import RecurrentPPO
    from stable_baselines3 import PPO

    config = PPOConfig(
        num_envs=num_envs, num_steps=num_steps, total_timesteps=num_envs * num_steps * updates
    )
    train = eqx.filter_jit(make_train(config))
    t = time.perf_counter()
    jax.block_until_ready(train(jax.random.key(0)))
    first = time.perf_counter() - t
    peers = {
        "sb3_ppo": _sb3_learner(PPO, "MlpPolicy", config),
        "sb3_contrib_recurrent_ppo": _sb3_learner(
            RecurrentPPO, "MlpLstmPolicy", config, lstm_hidden_size=config.hidden
        ),
    }
    ours_steps = config.num_updates * num_envs * num_steps
    peer_steps = peer_updates * num_envs * num_steps
    seeds = itertools.count(1)
    fns = {"ours": lambda: train(jax.random.key(next(seeds)))}
    for name, model in peers.items():
        fns[name] = lambda m=model: m.learn(peer_steps, reset_num_timesteps=False)
    t = interleaved_median_seconds(fns, repeats)
    rate = {name: (ours_steps if name == "ours" else peer_steps) / t[name] for name in fns}
    return {
        "config": {
            "num_envs": num_envs,
            "num_steps": num_steps,
            "update_epochs": config.update_epochs,
            "num_minibatches": config.num_minibatches,
            "hidden": config.hidden,
        },
        "ours": {
            "policy": f"MLP + LSTM({config.hidden}), jitted end to end",
            "env_steps_per_call": ours_steps,
            "env_steps_per_s": rate["ours"],
            "compile_and_first_run_s": first,
        },
        "peers": {
            "sb3_ppo": {
                "name": "stable-baselines3 PPO MlpPolicy (no memory)",
                "env_steps_per_call": peer_steps,
                "env_steps_per_s": rate["sb3_ppo"],
            },
            "sb3_contrib_recurrent_ppo": {
                "name": f"sb3-contrib RecurrentPPO MlpLstmPolicy, LSTM({config.hidden})",
                "env_steps_per_call": peer_steps,
                "env_steps_per_s": rate["sb3_contrib_recurrent_ppo"],
            },
        },
        "speedup_x": {name: rate["ours"] / rate[name] for name in peers},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--sims", type=int, default=32)
    p.add_argument("--repeats", type=int, default=31, help="search timings per contender")
    p.add_argument("--ppo-envs", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--ppo-steps", type=int, default=32)
    p.add_argument("--ppo-updates", type=int, default=10, help="updates per timed call of ours")
    p.add_argument("--peer-updates", type=int, default=2, help="updates per timed SB3 call")
    p.add_argument("--ppo-repeats", type=int, default=3, help="timed calls per contender")
    args = p.parse_args()
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "jax_backend": jax.default_backend(),
            "load_avg_1m_start": os.getloadavg()[0],
        },
        "search": bench_search(args.batch, args.sims, args.repeats),
        "ppo": [
            bench_ppo(e, args.ppo_steps, args.ppo_updates, args.peer_updates, args.ppo_repeats)
            for e in args.ppo_envs
        ],
    }
    result["machine"]["load_avg_1m_end"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
