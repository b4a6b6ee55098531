"""Population-based training throughput: the in-graph population against Ray Tune trials.

The same work both ways: ``ppo-lstm`` members on a small ``BoostChain-v0`` room, PBT every
``interval`` PPO iterations for ``generations`` generations, the same :class:`PBTConfig`.

- **in-graph** (``innerlab.agents.pbt.train_population``): every member ``vmap``-ped in one
  jitted program; timed on a second call (compiled), at 16 and 64 members;
- **Ray Tune** (``train_population_ray``): each member a trial under
  ``PopulationBasedTraining`` on this machine (``ray.init(num_cpus=...)``), 16 members;
  its wall time is the whole ``tuner.fit()`` (a user's cost: worker start-up, each
  worker's compilation, checkpoints through ``tune.report``, restarts on exploit). The
  trials also report how long their own training calls took, so the JSON also gives Ray's
  throughput counting only those seconds (the median compiled call, for every call, spread
  over the CPUs), its most favourable reading.

Agent-steps are env steps summed over members (``members x generations x interval x
num_envs x num_steps``). Writes ``benchmarks/results/pbt.json``. Run:
``python benchmarks/pbt.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import tempfile
import time

RESULTS = pathlib.Path(__file__).parent / "results" / "pbt.json"


def _agent(num_envs: int, num_steps: int, width: int):
    import innerlab.agents as agents

    return agents.make("ppo-lstm", env="BoostChain-v0",
                       env_overrides={"height": 5, "width": 5, "max_steps": 10,
                                      "chain_episodes": True},
                       width=width, num_envs=num_envs, num_steps=num_steps, discount=0.99,
                       learning_rate=3e-3, total_steps=num_envs * num_steps)


def _in_graph(agent, population: int, interval: int, generations: int) -> dict:
    from innerlab.agents import pbt

    config = pbt.PBTConfig(population=population, interval=interval, window=1,
                           hypers={"learning_rate": 3e-3})
    start = time.perf_counter()
    pbt.train_population(agent, config, generations, chunk=generations)
    first = time.perf_counter() - start
    start = time.perf_counter()
    res = pbt.train_population(agent, config, generations, chunk=generations)
    seconds = time.perf_counter() - start
    steps = population * res.env_steps
    return {"members": population, "agent_steps": steps, "seconds": seconds,
            "first_call_seconds": first, "agent_steps_per_s": steps / seconds}


def _ray(agent, population: int, interval: int, generations: int, num_cpus: int) -> dict:
    import ray

    from innerlab.agents import pbt

    config = pbt.PBTConfig(population=population, interval=interval, window=1,
                           hypers={"learning_rate": 3e-3})
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        hist = pbt.train_population_ray(agent, config, generations, out=out,
                                        num_cpus=num_cpus).history
        seconds = time.perf_counter() - start
    ray.shutdown()
    steps = population * generations * interval * agent.steps_per_iteration
    import numpy as np

    # the trials' compiled training calls: their median, for every call, spread over the CPUs
    calls = hist.metrics["train_s"]
    train_s = float(np.nanmedian(calls)) * calls.size / num_cpus if np.isfinite(
        calls).any() else 0.0
    return {"members": population, "agent_steps": steps, "seconds": seconds,
            "agent_steps_per_s": steps / seconds, "num_cpus": num_cpus,
            "training_call_seconds_per_cpu": train_s,
            "agent_steps_per_s_training_calls_only": steps / train_s if train_s else None,
            "copies": len(hist.copies())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if args.quick:
        num_envs, num_steps, width, interval, generations = 4, 8, 8, 2, 2
        sizes, ray_members = (4,), 2
    else:
        num_envs, num_steps, width, interval, generations = 8, 16, 16, 5, 3
        sizes, ray_members = (16, 64), 16
    agent = _agent(num_envs, num_steps, width)
    results = {"in_graph": [], "ray": None}
    for p in sizes:
        results["in_graph"].append(_in_graph(agent, p, interval, generations))
        print("in-graph", results["in_graph"][-1], flush=True)
    results["ray"] = _ray(agent, ray_members, interval, generations, args.num_cpus)
    print("ray", results["ray"], flush=True)
    same = next(r for r in results["in_graph"] if r["members"] == ray_members) if any(
        r["members"] == ray_members for r in results["in_graph"]) else results["in_graph"][0]
    results["speedup_in_graph_vs_ray"] = same["agent_steps_per_s"] / results["ray"][
        "agent_steps_per_s"]
    results["workload"] = {"agent": agent.to_dict(), "interval": interval,
                           "generations": generations, "agent_steps_per_iteration":
                           agent.steps_per_iteration}
    results["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "python": platform.python_version()}
    results["goal"] = "in-graph >= 10x Ray Tune trials per agent-step on one machine"
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({"speedup": results["speedup_in_graph_vs_ray"]}))


if __name__ == "__main__":
    main()
