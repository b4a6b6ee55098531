"""Adversary benchmark: model evaluations to find a planted disagreement, and search throughput.

Peer: random search over ``env.sample_state`` (the baseline every search is
compared with at equal numbers of model evaluations).

1. Evaluations to first hit: on Orchard-v0, a ``PlantedPair`` (two members that
   agree everywhere except a region holding about 1% of sampled states) is
   searched by each method with its **default settings** and a budget of 2048
   evaluations, over many seeds. Every search records the states it scored, in
   order, with the evaluations spent when each was scored
   (``SearchResult.found_states`` / ``found_evals``), so evaluations to the
   first state inside the region are counted directly (not at the resolution
   of a batch). Goal: the best search needs >= 10x fewer than random.
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
SEEDS = {"random": 200, "evolution": 50, "gradient": 50}
SETTINGS = {"random": {}, "evolution": {}, "gradient": {}}  # the searches' own defaults
GOAL = 10.0


def evals_to_first_hit(method: str, pair, env, params, seed: int) -> float:
    """Evaluations spent when the search first scored a state inside the planted region
    (NaN if it never did within the budget)."""
    res = search(method, pair, env, params, jax.random.key(seed), budget=BUDGET, top_n=4,
                 **SETTINGS[method])
    hit = np.asarray(in_planted_region(pair, env, params, res.found_states))
    return float(np.asarray(res.found_evals)[np.argmax(hit)]) if hit.any() else float("nan")


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
        evals = np.asarray([evals_to_first_hit(method, pair, env, params, s)
                            for s in range(SEEDS[method])])
        ok = np.isfinite(evals)
        find[method] = {
            "settings": SETTINGS[method] or "defaults",
            "seeds": SEEDS[method],
            "evals_to_first_hit_per_seed": [None if not np.isfinite(e) else e for e in evals],
            "mean_evals_to_first_hit": float(evals[ok].mean()) if ok.any() else None,
            "median_evals_to_first_hit": float(np.median(evals[ok])) if ok.any() else None,
            "found_within_budget": f"{int(ok.sum())}/{SEEDS[method]}",
        }
    base = find["random"]["mean_evals_to_first_hit"]
    for method in SETTINGS:
        m = find[method]["mean_evals_to_first_hit"]
        find[method]["speedup_vs_random_mean"] = None if not (m and base) else base / m
        find[method]["speedup_vs_expected_random"] = None if not m else 1.0 / region_rate / m
    best = max(SETTINGS, key=lambda k: find[k]["speedup_vs_random_mean"] or 0.0)

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
        "expected_random_evals_to_first_hit": 1.0 / region_rate,
        "evals_to_first_hit_planted_region": find,
        "best": best,
        "goal": f">= {GOAL:g}x fewer evaluations than random (mean over seeds)",
        "goal_met": bool((find[best]["speedup_vs_random_mean"] or 0.0) >= GOAL),
        "throughput_reward_model_5_members_mlp": speed,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "jax": jax.__version__, "backend": jax.default_backend()},
        "note": "One model evaluation = one observation scored for all actions; a gradient "
                "step counts 2 per point, then 1 to score its projection. The CPU was shared "
                "with other jobs while this ran (throughput is indicative only).",
    }
    out = pathlib.Path(__file__).parent / "results" / "adversary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
