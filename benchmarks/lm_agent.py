"""LM agent throughput: decisions per second of ``innerlab.lm.lm_policy`` in the one rollout.

Measures, in one run, on one Orchard room, an episode of ``--steps`` steps in
``--envs`` envs (one LM call per step, every env's prompt in one batch):

- **innerlab**: ``lm.lm_rollout`` of the LM agent (prompts built on the host
  inside the jitted rollout, the rules encoded once per batch as a shared,
  cached system message, one forward over the observations);
- **peer**: the same prompts scored by the same model as whole texts (rules
  included in every row, no shared cache): what a direct use of
  ``transformers`` costs per decision. Timed on the first step's prompts and
  scaled to decisions/s.

Compile and model load excluded (a warm-up episode runs first). Writes
``benchmarks/results/lm_agent.json``. Run: ``python benchmarks/lm_agent.py``
(``--quick``: 8 envs, 5 steps).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import time

import jax
import numpy as np

import innerlab.envs as envs
from innerlab import lm

RESULTS = pathlib.Path(__file__).parent / "results" / "lm_agent.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--encoding", default="ascii", choices=lm.ENCODINGS)
    parser.add_argument("--envs", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.quick:
        args.envs, args.steps = 8, 5
    env, params = envs.make("Orchard-v0", height=5, width=5, n_objects=3,
                            max_steps=args.steps)
    start = time.perf_counter()
    model = lm.load_model(args.model)
    load_s = time.perf_counter() - start
    policy = lm.lm_policy(model, env, params, args.encoding)
    lm.lm_rollout(policy, env, params, jax.random.key(0), args.envs, 1)  # compile, warm up
    start = time.perf_counter()
    traj, _ = lm.lm_rollout(policy, env, params, jax.random.key(1), args.envs, args.steps)
    ours_s = time.perf_counter() - start
    decisions = args.envs * args.steps

    agent = lm.agent_of(policy)
    first = jax.tree.map(lambda x: x[0], traj.state)
    prompts = [agent.prompt(lm.numpy_state(first, i), range(4)) for i in range(args.envs)]
    whole = ["".join(model.format(p, agent.context)) for p in prompts]
    ids = [model.tokenizer.encode(w, add_special_tokens=False) for w in agent.action_names]
    start = time.perf_counter()
    model._score("", whole, ids)
    peer_s = time.perf_counter() - start
    result = {
        "model": args.model,
        "encoding": args.encoding,
        "envs": args.envs,
        "steps": args.steps,
        "load_s": load_s,
        "episode_s": ours_s,
        "innerlab_decisions_per_s": decisions / ours_s,
        "peer_decisions_per_s": args.envs / peer_s,
        "speedup": (decisions / ours_s) / (args.envs / peer_s),
        "prompt_tokens": {
            "shared_context": len(model.tokenizer.encode(model.format(prompts[0],
                                                                      agent.context)[0])),
            "per_step": float(np.mean([len(model.tokenizer.encode(model.format(
                p, agent.context)[1])) for p in prompts])),
        },
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))
    if not args.quick:
        pathlib.Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
