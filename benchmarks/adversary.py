"""Adversary benchmark: model evaluations to find a planted disagreement, and search throughput.

Peer: random search over ``env.sample_state`` (the baseline every search is
compared with at equal numbers of model evaluations).

1. Evaluations to find: on Orchard-v0, a ``PlantedPair`` (two members that
   agree everywhere except a region holding about 1 in 90 sampled states)
   is searched by each method with a budget of 2048 evaluations, over 10
   seeds; we record the first number of evaluations at which the best state
   found lies in the region.
2. Throughput: model evaluations per second of each search against a
   5-member ``RewardModel`` (MLP encoder), timed after compilation.

Writes ``benchmarks/results/adversary.json``. Run: ``python benchmarks/adversary.py``.
"""

from __future__ import annotations

import json
import pathlib
import platform
import time

import jax
import numpy as np

import innerlab.envs as envs
from innerlab.adversary import in_planted_region, planted_pair, search
from innerlab.reward_models import RewardModel

BUDGET = 2048
SEEDS = 10
SETTINGS = {
    "random": {"batch_size": 32},
    "evolution": {"population": 32},
    "gradient": {"population": 8},
}


def evals_to_find(method: str, pair, env, params, seed: int) -> tuple[float, bool]:
    res = search(method, pair, env, params, jax.random.key(seed), budget=BUDGET, top_n=4,
                 **SETTINGS[method])
    best = np.asarray(res.trace_best)
    evals = np.asarray(res.trace_evals)
    found = best >= 0.5 - 1e-4
    in_region = bool(np.asarray(in_planted_region(pair, env, params, res.states))[0])
    return (float(evals[np.argmax(found)]) if found.any() else float("nan")), in_region


def throughput(method: str, model, env, params) -> float:
    kwargs = dict(budget=BUDGET, top_n=16, **SETTINGS[method])
    jax.block_until_ready(search(method, model, env, params, jax.random.key(0), **kwargs).scores)
    t = time.perf_counter()
    res = search(method, model, env, params, jax.random.key(1), **kwargs)
    jax.block_until_ready(res.scores)
    return res.num_evals / (time.perf_counter() - t)


def main() -> dict:
    env, params = envs.make("Orchard-v0")
    pair = planted_pair(env, params, jax.random.key(0))
    states = jax.vmap(lambda k: env.sample_state(k, params))(
        jax.random.split(jax.random.key(99), 20000)
    )
    region_rate = float(np.asarray(in_planted_region(pair, env, params, states)).mean())
    find = {}
    for method in SETTINGS:
        runs = [evals_to_find(method, pair, env, params, s) for s in range(SEEDS)]
        evals = np.asarray([r[0] for r in runs])
        ok = np.isfinite(evals)
        find[method] = {
            "evals_to_find_per_seed": [None if not np.isfinite(e) else e for e in evals],
            "median_evals_to_find": float(np.median(evals[ok])) if ok.any() else None,
            "mean_evals_to_find": float(evals[ok].mean()) if ok.any() else None,
            "found_within_budget": f"{int(ok.sum())}/{SEEDS}",
            "top_state_in_region": f"{sum(r[1] for r in runs)}/{SEEDS}",
        }
    base = find["random"]["median_evals_to_find"]
    for method in SETTINGS:
        m = find[method]["median_evals_to_find"]
        find[method]["speedup_vs_random_median"] = None if (m is None or base is None) else base / m

    model = RewardModel(env.observation_space(params).shape, 4, num_members=5, latent_dim=32,
                        width=64, encoder="mlp", key=jax.random.key(0))
    speed = {m: {"evals_per_s": throughput(m, model, env, params)} for m in SETTINGS}
    for m in SETTINGS:
        speed[m]["relative_to_random"] = speed[m]["evals_per_s"] / speed["random"]["evals_per_s"]
    result = {
        "benchmark": "adversary",
        "peer": "random search over env.sample_state",
        "env": "Orchard-v0",
        "budget": BUDGET,
        "seeds": SEEDS,
        "planted_region_rate_under_sample_state": region_rate,
        "expected_random_evals_to_find": 1.0 / region_rate,
        "evals_to_find_planted_region": find,
        "throughput_reward_model_5_members_mlp": speed,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "jax": jax.__version__, "backend": jax.default_backend()},
        "note": "One model evaluation = one observation scored for all actions; a gradient "
                "step counts 2 per point. The CPU was shared with other jobs while this ran.",
    }
    out = pathlib.Path(__file__).parent / "results" / "adversary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
