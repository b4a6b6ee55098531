"""Examples/second training a K=5 reward ensemble: the ensemble path vs a member loop vs torch.

Peers, all training the same architecture (independent ``conv_pool`` members,
Orchard's 7x7x9 observations, Adam, batch 32 per member) on the same data:

* ``jax_ensemble_scan``: the stacked ensemble's step inside ``lax.scan`` (what
  ``fit_rewards`` runs): members applied one after another inside the one program
  (``RewardModel._each_member``, up to ``MAX_UNROLLED_MEMBERS``), convolutions as
  ``conv_same``'s matmul;
* ``jax_ensemble_step``: the same step jitted, one call per step;
* ``jax_vmapped_matmul_scan``: the members ``vmap``ped instead (what ensembles larger than
  ``MAX_UNROLLED_MEMBERS`` run; the default before);
* ``jax_vmapped_native_conv_scan``: the members ``vmap``ped with ``eqx.nn.Conv2d`` itself,
  which becomes a grouped convolution (the code before ``conv_same``);
* ``jax_shared_scan`` and ``jax_shared_matmul_scan``: one *shared* ``conv_pool`` encoder
  with K heads (``RewardModel``'s default form) in the same scan, its convolutions as XLA's
  native convolution (its default) or as ``conv_same``'s matmul;
  ``jax_shared_step``: the native one jitted per step, outside any loop;
* ``jax_member_loop``: K single-member models, one jitted step each, a Python loop over members;
* ``torch_member_loop``: the same model written in PyTorch (CPU), a loop over members.

Compile/warm-up time is excluded. Peers run in turns, ``--rounds`` times (medians).
One run; writes ``benchmarks/results/reward_training.json``.
Usage: ``python benchmarks/reward_training.py [--steps N]``.
"""

from __future__ import annotations

import argparse
import contextlib
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
    """The stacked ensemble and K single-member models."""
    ens = RewardModel(obs_shape, 4, num_members=K, latent_dim=LATENT, width=WIDTH,
                      shared_encoder=False, encoder="conv_pool", key=jax.random.key(0))
    shared = RewardModel(obs_shape, 4, num_members=K, latent_dim=LATENT, width=WIDTH,
                         encoder="conv_pool", key=jax.random.key(0))
    singles = [RewardModel(obs_shape, 4, num_members=1, latent_dim=LATENT, width=WIDTH,
                           encoder="conv_pool", key=jax.random.key(i)) for i in range(K)]
    return ens, shared, singles


@contextlib.contextmanager
def patched(vmapped: bool = False, native_conv: bool = False, matmul_conv: bool = False):
    """While the block runs: independent members vmapped instead of unrolled (``vmapped``),
    every conv as ``eqx.nn.Conv2d`` itself (``native_conv``) or as ``conv_same``
    (``matmul_conv``); jit caches are cleared on entry and exit, so steps traced inside see
    the other path."""
    saved = model_module.MAX_UNROLLED_MEMBERS, model_module.conv_same, model_module.apply_conv
    if vmapped:
        model_module.MAX_UNROLLED_MEMBERS = 0
    if native_conv:
        model_module.conv_same = lambda conv, x: conv(x)
    if matmul_conv:
        model_module.apply_conv = lambda conv, x, lowering: model_module.conv_same(conv, x)
    jax.clear_caches()
    try:
        yield
    finally:
        model_module.MAX_UNROLLED_MEMBERS, model_module.conv_same, model_module.apply_conv = saved
        jax.clear_caches()


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


def bench_ensemble_step(ens, data, steps):
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


def bench_ensemble_scan(ens, data, steps):
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


def patched_run(bench, model, data, steps, **patch):
    """``bench(model, data, steps)`` under ``patched(**patch)``."""
    with patched(**patch):
        return bench(model, data, steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3,
                        help="each peer is measured once per round, in turns; medians reported")
    args = parser.parse_args()
    env, params = envs.make("Orchard-v0")
    data = D.collect_transitions(env, params, D.random_policy(4), jax.random.key(0), 16, 64)
    ens, shared, singles = jax_models(data.obs.shape[1:])
    scan, step, n = bench_ensemble_scan, bench_ensemble_step, args.steps
    peers = {
        "jax_ensemble_scan": lambda: scan(ens, data, n),
        "jax_ensemble_step": lambda: step(ens, data, n),
        "jax_vmapped_matmul_scan": lambda: patched_run(scan, ens, data, n, vmapped=True),
        "jax_vmapped_native_conv_scan": lambda: patched_run(scan, ens, data, n, vmapped=True,
                                                            native_conv=True),
        "jax_shared_scan": lambda: scan(shared, data, n),
        "jax_shared_matmul_scan": lambda: patched_run(scan, shared, data, n, matmul_conv=True),
        "jax_shared_step": lambda: step(shared, data, n),
        "jax_member_loop": lambda: bench_member_loop(singles, data, n),
        "torch_member_loop": lambda: bench_torch(data, n),
    }
    runs = {name: [] for name in peers}
    for _ in range(args.rounds):
        for name, bench in peers.items():
            runs[name].append(bench())
    results = {name: float(np.median(v)) for name, v in runs.items()}
    ratio = lambda a, b: round(results[a] / results[b], 2)  # noqa: E731
    out = {
        "benchmark": "reward_training",
        "unit": "training examples per second (K members x batch per step)",
        "config": {"K": K, "batch_per_member": B, "width": WIDTH, "latent": LATENT,
                   "encoder": "conv_pool: independent members, or one shared encoder",
                   "obs_shape": [7, 7, 9],
                   "steps": args.steps, "rounds": args.rounds},
        "results": {k: round(v, 1) for k, v in results.items()},
        "rounds": {k: [round(x, 1) for x in v] for k, v in runs.items()},
        "speedup_ensemble_scan_vs_member_loop": ratio("jax_ensemble_scan", "jax_member_loop"),
        "speedup_ensemble_step_vs_member_loop": ratio("jax_ensemble_step", "jax_member_loop"),
        "speedup_ensemble_scan_vs_vmapped_matmul": ratio("jax_ensemble_scan",
                                                         "jax_vmapped_matmul_scan"),
        "speedup_ensemble_scan_vs_vmapped_native_conv": ratio("jax_ensemble_scan",
                                                              "jax_vmapped_native_conv_scan"),
        "speedup_ensemble_scan_vs_torch": ratio("jax_ensemble_scan", "torch_member_loop"),
        "speedup_shared_matmul_scan_vs_shared_scan": ratio("jax_shared_matmul_scan",
                                                           "jax_shared_scan"),
        "speedup_shared_step_vs_shared_scan": ratio("jax_shared_step", "jax_shared_scan"),
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
