"""Does ``hypothesis.target`` help a reward-model property test find a planted failure?

One run compares, at equal example budgets and over several seeds, how often a
property finds a planted failure with targeted generation (``target="auto"``:
``hypothesis.target`` on the property's score, the adversary's disagreement or
error objective) and without (``target=None``: plain generation, the peer).

Planted failures (Orchard-v0, states from ``distribution="any"``):

- ``disagreement``: ``DivergentModel`` (3 members whose gap grows by 0.5 per
  alive large object of the harmful colour) under ``members_agree(tol=1.2)``;
  the failure needs at least 3 such objects, which plain generation rarely
  draws, while the disagreement score rises one object at a time.
- ``blow-up``: ``LastObjectBlowUpModel`` under ``finite``: infinite only when the
  last alive object is collected; the auto target ``max |prediction|`` grows
  as fewer objects are left.
- ``needle``: ``LargeIsGoodModel`` under ``matches_true_reward`` on the test split:
  its error is 0 or 4, with nothing in between, so targeting has no gradient to
  climb (a control: targeting should not help here).

Shrinking is off (only finding counts). Writes
``benchmarks/results/testing_targeted.json``.

    python benchmarks/testing_targeted.py [--seeds 8] [--budgets 40 160]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Phase, settings

import innerlab.envs as envs
from innerlab.testing import planted
from innerlab.testing.properties import (
    PropertyViolation,
    finite,
    matches_true_reward,
    members_agree,
)

RESULTS = Path(__file__).parent / "results" / "testing_targeted.json"


def cases(env, params):
    """``name -> (description, check(target, budget, seed))``; a check returns the number of
    examples it took to find the failure, or None."""
    divergent = planted.DivergentModel(env, params, num_members=3, spread=0.25)
    blow_up = planted.LastObjectBlowUpModel(env, params)
    proxy = planted.LargeIsGoodModel(env, params)

    def run(prop, model, target, budget, seed, **kw):
        config = settings(
            max_examples=budget,
            deadline=None,
            database=None,
            phases=(Phase.generate, Phase.target),
            suppress_health_check=list(HealthCheck),
        )
        try:
            prop(model, env, params, target=target, settings=config, seed=seed, **kw)
        except PropertyViolation as err:
            return err.first_failure_at
        return None

    return {
        "disagreement>=3": (
            "DivergentModel, members_agree(tol=1.2, gap): needs >= 3 large harmful objects alive",
            lambda t, b, s: run(members_agree, divergent, t, b, s, tol=1.2, distribution="any"),
        ),
        "blow-up": (
            "LastObjectBlowUpModel, finite: needs the last alive object to be collected",
            lambda t, b, s: run(finite, blow_up, t, b, s, distribution="any", collect=False),
        ),
        "needle": (
            "LargeIsGoodModel, matches_true_reward(tol=0.5) on test states: error is 0 or 4",
            lambda t, b, s: run(
                matches_true_reward, proxy, t, b, s, tol=0.5, distribution="test", collect=False
            ),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--budgets", type=int, nargs="+", default=[40, 160])
    args = parser.parse_args()

    env, params = envs.make("Orchard-v0")
    start = time.perf_counter()
    results = []
    for name, (description, check) in cases(env, params).items():
        check("auto", 5, 0)  # compile before timing-insensitive counting
        for budget in args.budgets:
            row = {"case": name, "description": description, "budget": budget}
            for mode, target in (("targeted", "auto"), ("untargeted", None)):
                found_at = [check(target, budget, seed) for seed in range(args.seeds)]
                hits = [f for f in found_at if f is not None]
                row[mode] = {
                    "found": len(hits),
                    "seeds": args.seeds,
                    "rate": len(hits) / args.seeds,
                    "median_examples_to_find": float(np.median(hits)) if hits else None,
                    "found_at": found_at,
                }
            results.append(row)
            print(
                f"{name:18s} budget {budget:4d}: targeted {row['targeted']['found']}/{args.seeds}"
                f"  untargeted {row['untargeted']['found']}/{args.seeds}",
                flush=True,
            )
    out = {
        "benchmark": "testing_targeted",
        "question": "how often does a property test find a planted failure, targeted vs not",
        "env": "Orchard-v0",
        "seeds": list(range(args.seeds)),
        "budgets": args.budgets,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
