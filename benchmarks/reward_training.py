"""Examples/second training a K=5 reward-model ensemble: vmapped vs a member loop vs torch.

Peers, all training the same architecture (independent ``conv_pool`` members,
Orchard's 7x7x9 observations, Adam, batch 32 per member) on the same data:

* ``jax_vmap_step``: one jitted step updates all K members (vmap), one call per step;
* ``jax_vmap_scan``: the same step inside ``lax.scan`` (what ``fit_rewards`` runs);
* ``jax_vmap_scan_native_conv``: the same, with ``eqx.nn.Conv2d`` itself as the conv lowering
  (the code before ``conv_same``: a grouped convolution under vmap);
* ``jax_member_loop``: K single-member models, one jitted step each, a Python loop over members;
* ``torch_member_loop``: the same model written in PyTorch (CPU), a loop over members.

Compile/warm-up time is excluded. Peers run in turns, ``--rounds`` times (medians).
One run; writes ``benchmarks/results/reward_training.json``.
Usage: ``python benchmarks/reward_training.py [--steps N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import innerlab.envs as envs
from innerlab.reward_models import RewardModel
from innerlab.reward_models import data as D
from innerlab.reward_models import model as model_module
from innerlab.reward_models.train import _train_chunk, regression_loss

K, B, WIDTH, LATENT, LR = 5, 32, 16, 16, 3e-3


def jax_models(obs_shape):
    ens = RewardModel(obs_shape, 4, num_members=K, latent_dim=LATENT, width=WIDTH,
                      shared_encoder=False, encoder="conv_pool", key=jax.random.key(0))
    singles = [RewardModel(obs_shape, 4, num_members=1, latent_dim=LATENT, width=WIDTH,
                           encoder="conv_pool", key=jax.random.key(i)) for i in range(K)]
    return ens, singles


def make_step(optim):
    @eqx.filter_jit
    def step(model, opt_state, batch):
        loss, grads = eqx.filter_value_and_grad(lambda m: jnp.mean(regression_loss(m, batch)))(
            model
        )
        updates, opt_state = optim.update(grads, opt_state)
        return eqx.apply_updates(model, updates), opt_state, loss

    return step


def batches(data, steps, k, seed):
    rng = np.random.default_rng(seed)
    n = len(data)
    return [data.take(jnp.asarray(rng.integers(0, n, (k, B)))) for _ in range(steps)]


def bench_vmap_step(ens, data, steps):
    optim = optax.adam(LR)
    step = make_step(optim)
    opt_state = optim.init(eqx.filter(ens, eqx.is_inexact_array))
    warm = batches(data, 2, K, 0)
    for b in warm:
        ens, opt_state, loss = step(ens, opt_state, b)
    jax.block_until_ready(loss)
    todo = batches(data, steps, K, 1)
    t = time.perf_counter()
    for b in todo:
        ens, opt_state, loss = step(ens, opt_state, b)
    jax.block_until_ready(loss)
    return steps * K * B / (time.perf_counter() - t)


def bench_vmap_scan(ens, data, steps):
    opt_args = (LR, 0.0)
    opt_state = optax.adam(LR).init(eqx.filter(ens, eqx.is_inexact_array))
    boot = jnp.broadcast_to(jnp.arange(len(data)), (K, len(data)))
    args = (data, boot)
    out = _train_chunk(ens, opt_state, *args, jax.random.key(0), regression_loss, opt_args, B,
                       steps)
    jax.block_until_ready(out[2])
    t = time.perf_counter()
    out = _train_chunk(out[0], out[1], *args, jax.random.key(1), regression_loss, opt_args, B,
                       steps)
    jax.block_until_ready(out[2])
    return steps * K * B / (time.perf_counter() - t)


def bench_member_loop(singles, data, steps):
    optim = optax.adam(LR)
    step = make_step(optim)
    states = [optim.init(eqx.filter(m, eqx.is_inexact_array)) for m in singles]
    warm = batches(data, 2, 1, 0)
    for b in warm:
        for i in range(K):
            singles[i], states[i], loss = step(singles[i], states[i], b)
    jax.block_until_ready(loss)
    todo = [batches(data, steps, 1, 10 + i) for i in range(K)]
    t = time.perf_counter()
    for s in range(steps):
        for i in range(K):
            singles[i], states[i], loss = step(singles[i], states[i], todo[i][s])
    jax.block_until_ready(loss)
    return steps * K * B / (time.perf_counter() - t)


class TorchMember(torch.nn.Module):
    """The ``conv_pool`` encoder and a reward head, as in ``innerlab.reward_models.model``."""

    def __init__(self, channels: int, num_actions: int = 4):
        super().__init__()
        self.num_actions = num_actions
        self.conv = torch.nn.Sequential(
            torch.nn.Conv2d(channels, WIDTH, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(WIDTH, WIDTH, 3, padding=1), torch.nn.ReLU(),
        )
        self.out = torch.nn.Linear(WIDTH, LATENT)
        self.head = torch.nn.Sequential(
            torch.nn.Linear(LATENT + num_actions, WIDTH), torch.nn.ReLU(),
            torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU(), torch.nn.Linear(WIDTH, 1),
        )

    def forward(self, obs, action):
        x = self.conv(obs.permute(0, 3, 1, 2)).sum(dim=(2, 3))
        z = torch.relu(self.out(x))
        onehot = torch.nn.functional.one_hot(action, self.num_actions).float()
        return self.head(torch.cat([z, onehot], dim=1))[:, 0]


def bench_torch(data, steps):
    torch.manual_seed(0)
    members = [TorchMember(data.obs.shape[-1]) for _ in range(K)]
    optims = [torch.optim.Adam(m.parameters(), lr=LR) for m in members]
    obs = torch.tensor(np.asarray(data.obs))
    act = torch.tensor(np.asarray(data.action), dtype=torch.int64)
    rew = torch.tensor(np.asarray(data.reward))
    rng = np.random.default_rng(0)

    def run(n):
        for _ in range(n):
            for m, opt in zip(members, optims, strict=True):
                idx = torch.as_tensor(rng.integers(0, len(rew), B))
                loss = torch.mean((m(obs[idx], act[idx]) - rew[idx]) ** 2)
                opt.zero_grad()
                loss.backward()
                opt.step()

    run(2)
    t = time.perf_counter()
    run(steps)
    return steps * K * B / (time.perf_counter() - t)


def native_conv(conv, x):
    """The previous lowering: ``eqx.nn.Conv2d`` itself (a grouped convolution under vmap)."""
    return conv(x)


def vmap_scan_native_conv(ens, data, steps):
    """``jax_vmap_scan`` with the encoders' convolutions lowered as ``eqx.nn.Conv2d`` (before)."""
    saved = model_module.conv_same
    model_module.conv_same = native_conv
    jax.clear_caches()  # the jitted step must be traced again with the other lowering
    try:
        return bench_vmap_scan(ens, data, steps)
    finally:
        model_module.conv_same = saved
        jax.clear_caches()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3,
                        help="each peer is measured once per round, in turns; medians reported")
    args = parser.parse_args()
    env, params = envs.make("Orchard-v0")
    data = D.collect_transitions(env, params, D.random_policy(4), jax.random.key(0), 16, 64)
    ens, singles = jax_models(data.obs.shape[1:])
    peers = {
        "jax_vmap_scan": lambda: bench_vmap_scan(ens, data, args.steps),
        "jax_vmap_scan_native_conv": lambda: vmap_scan_native_conv(ens, data, args.steps),
        "jax_vmap_step": lambda: bench_vmap_step(ens, data, args.steps),
        "jax_member_loop": lambda: bench_member_loop(singles, data, args.steps),
        "torch_member_loop": lambda: bench_torch(data, args.steps),
    }
    runs = {name: [] for name in peers}
    for _ in range(args.rounds):
        for name, bench in peers.items():
            runs[name].append(bench())
    results = {name: float(np.median(v)) for name, v in runs.items()}
    out = {
        "benchmark": "reward_training",
        "unit": "training examples per second (K members x batch per step)",
        "config": {"K": K, "batch_per_member": B, "width": WIDTH, "latent": LATENT,
                   "encoder": "conv_pool, independent members", "obs_shape": [7, 7, 9],
                   "steps": args.steps, "rounds": args.rounds},
        "results": {k: round(v, 1) for k, v in results.items()},
        "rounds": {k: [round(x, 1) for x in v] for k, v in runs.items()},
        "speedup_vmap_scan_vs_member_loop": round(results["jax_vmap_scan"]
                                                  / results["jax_member_loop"], 2),
        "speedup_vmap_scan_vs_native_conv": round(results["jax_vmap_scan"]
                                                  / results["jax_vmap_scan_native_conv"], 2),
        "speedup_vmap_scan_vs_torch": round(results["jax_vmap_scan"]
                                            / results["torch_member_loop"], 2),
        "speedup_vmap_step_vs_member_loop": round(results["jax_vmap_step"]
                                                  / results["jax_member_loop"], 2),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(),
                    "load_average_at_start": os.getloadavg()[0]},
    }
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    path = os.path.join(os.path.dirname(__file__), "results", "reward_training.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
