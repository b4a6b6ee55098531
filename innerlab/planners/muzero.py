"""A MuZero / Gumbel-MuZero learner for the ``MCTSLayer`` agent.

Each iteration acts for ``rollout_len`` steps in ``num_envs`` envs with the
search (``MCTSLayer`` over the current ``WorldModel``), stores the trajectory,
then trains the model by unrolling it ``unroll`` steps from every stored
position with three losses: reward (every ensemble member against the env's
reward, with a Bernoulli bootstrap mask per member so the members stay
distinct), value (against n-step targets bootstrapped from the search's root
values) and policy (cross-entropy against the search's action weights).

The whole iteration is one pure function of a ``TrainState``; ``chunk``
iterations are ``lax.scan``-ned into one jitted call, and ``jax.vmap``
runs independent seeds side by side. Between chunks ``train`` draws a
progress bar, appends per-seed metrics to ``metrics.jsonl`` and writes a
checkpoint (Equinox serialisation + JSON metadata). Because the train state
holds every PRNG key, a run killed and resumed from its last checkpoint ends
with exactly the parameters of an uninterrupted run with the same seeds.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

import innerlab.envs as envs
from innerlab.envs.core import Environment, EnvParams
from innerlab.planners.mcts import MCTSLayer
from innerlab.planners.world_model import WorldModel


@dataclasses.dataclass(frozen=True)
class MuZeroConfig:
    """Everything that defines a MuZero run (JSON-serialisable)."""

    env: str = "Orchard-v0"
    num_envs: int = 16
    rollout_len: int = 16
    num_iterations: int = 200
    chunk: int = 10
    num_simulations: int = 16
    policy: str = "gumbel"
    unroll: int = 5
    n_step: int = 5
    discount: float = 0.97
    learning_rate: float = 3e-3
    max_grad_norm: float = 5.0
    num_epochs: int = 2
    num_minibatches: int = 4
    value_coef: float = 0.25
    reward_coef: float = 1.0
    entropy_coef: float = 0.0
    replay_rollouts: int = 1
    detach_policy_value: bool = False  # policy/value losses do not train the latent
    bootstrap_prob: float = 0.8
    num_members: int = 3
    latent_dim: int = 64
    width: int = 128
    encoder: str = "mlp"
    latent_activation: str = "minmax"
    egocentric: bool = False  # observe gridworlds through ``envs.Egocentric`` (agent-centred)

    @classmethod
    def orchard(cls, **overrides: Any) -> MuZeroConfig:
        """The configuration that learns Orchard-v0 (7x7, 5 objects) on a laptop CPU.

        Tested in ``tests/test_muzero.py`` (slow) and reported in docs/planners.md:
        300 iterations of 64 envs x 16 steps (307k env steps, about 3 minutes on 2
        cores). What it needs beyond the defaults: the egocentric view (a flat
        encoder cannot learn the reward from the global grid), discount 0.9 (Q-values
        that prefer collecting sooner, so the greedy search does not wander), MuZero's
        visit-count targets with a prior entropy bonus, and 32 Adam steps per rollout.
        """
        preset = dict(
            num_envs=64,
            num_iterations=300,
            chunk=20,
            num_epochs=4,
            num_minibatches=8,
            policy="muzero",
            entropy_coef=0.05,
            discount=0.9,
            egocentric=True,
        )
        preset.update(overrides)
        return cls(**preset)

    def __post_init__(self):
        for name in (
            "num_envs",
            "rollout_len",
            "num_iterations",
            "chunk",
            "num_simulations",
            "unroll",
            "n_step",
            "num_epochs",
            "num_minibatches",
            "num_members",
            "replay_rollouts",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"MuZeroConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_iterations % self.chunk:
            raise ValueError(
                f"MuZeroConfig.num_iterations ({self.num_iterations}) must be a multiple of "
                f"chunk ({self.chunk}) so checkpoints fall on chunk boundaries"
            )
        if (self.num_envs * self.rollout_len) % self.num_minibatches:
            raise ValueError(
                f"num_envs*rollout_len ({self.num_envs * self.rollout_len}) must be divisible "
                f"by num_minibatches ({self.num_minibatches})"
            )


class TrainState(eqx.Module):
    """Everything a run carries between iterations (one seed; ``vmap`` adds a seed axis)."""

    model: WorldModel
    opt_state: Any
    env_state: Any
    obs: Array  # [E, H, W, C]
    ep_return: Array  # [E] return so far of each env's current episode
    key: Array  # raw uint32 key data, so checkpoints are plain arrays
    iteration: Array  # []
    replay: dict  # the last ``replay_rollouts`` unrolled rollouts, each leaf [R, N, ...]


class Trajectory(eqx.Module):
    """One rollout, time-major: ``[T, E, ...]``."""

    obs: Array
    action: Array
    reward: Array
    done: Array
    weights: Array  # search action weights [T, E, A]
    value: Array  # search root value [T, E]


def scan_modules(f, carry, xs=None, length=None):
    """``lax.scan`` whose carry may hold Equinox modules (non-array leaves stay static)."""
    dynamic, static = eqx.partition(carry, eqx.is_array)

    def body(dyn, x):
        new, y = f(eqx.combine(dyn, static), x)
        return eqx.filter(new, eqx.is_array), y

    dynamic, ys = jax.lax.scan(body, dynamic, xs, length=length)
    return eqx.combine(dynamic, static), ys


def make_env(config: MuZeroConfig, **env_overrides: Any) -> tuple[Environment, EnvParams]:
    """The env a run acts in: ``config.env`` with overrides, seen egocentrically if asked."""
    return envs.make(config.env, egocentric=config.egocentric, **env_overrides)


def make_optimizer(config: MuZeroConfig) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.learning_rate)
    )


def make_layer(model: WorldModel, config: MuZeroConfig, **overrides: Any) -> MCTSLayer:
    """The acting search of a run (``overrides`` e.g. ``gumbel_scale=0`` for evaluation)."""
    kwargs = dict(policy=config.policy, discount=config.discount)
    kwargs.update(overrides)
    return MCTSLayer(model, config.num_simulations, **kwargs)


def init_state(seed_key: Array, config: MuZeroConfig, env: Environment, params: EnvParams):
    """A fresh ``TrainState`` for one seed."""
    k_model, k_env, k_run = jax.random.split(seed_key, 3)
    obs, env_state = jax.vmap(lambda k: env.reset(k, params))(
        jax.random.split(k_env, config.num_envs)
    )
    model = WorldModel.create(
        obs.shape[1:],
        env.num_actions(params),
        key=k_model,
        num_members=config.num_members,
        latent_dim=config.latent_dim,
        encoder=config.encoder,
        width=config.width,
        latent_activation=config.latent_activation,
    )
    opt_state = make_optimizer(config).init(eqx.filter(model, eqx.is_inexact_array))
    n, k, a = config.num_envs * config.rollout_len, config.unroll, env.num_actions(params)
    r = config.replay_rollouts
    replay = {  # empty slots are fully masked, so they add nothing to the losses
        "obs": jnp.zeros((r, n) + obs.shape[1:], obs.dtype),
        "action": jnp.zeros((r, n, k), jnp.int32),
        "reward": jnp.zeros((r, n, k)),
        "value": jnp.zeros((r, n, k + 1)),
        "weights": jnp.full((r, n, k + 1, a), 1.0 / a),
        "mask": jnp.zeros((r, n, k + 1), bool),
    }
    return TrainState(
        model=model,
        opt_state=opt_state,
        env_state=env_state,
        obs=obs,
        ep_return=jnp.zeros(config.num_envs),
        key=jax.random.key_data(k_run),
        iteration=jnp.int32(0),
        replay=replay,
    )


# ---------------------------------------------------------------------- acting


def rollout(state: TrainState, key: Array, config, env, params):
    """Act ``rollout_len`` steps with the search; returns the new state pieces and a Trajectory."""

    def one_step(carry, k):
        env_state, obs, ep_return, finished_sum, finished_n = carry
        k_plan, k_step = jax.random.split(k)
        out = make_layer(state.model, config)(obs, k_plan)
        keys = jax.random.split(k_step, config.num_envs)
        nxt_obs, env_state, reward, term, trunc, _ = jax.vmap(
            lambda kk, s, a: env.step(kk, s, a, params)
        )(keys, env_state, out.action)
        done = term | trunc
        ep_return = ep_return + reward
        finished_sum = finished_sum + jnp.sum(jnp.where(done, ep_return, 0.0))
        finished_n = finished_n + jnp.sum(done)
        ep_return = jnp.where(done, 0.0, ep_return)
        step = (obs, out.action, reward, done, out.action_weights, out.value)
        return (env_state, nxt_obs, ep_return, finished_sum, finished_n), step

    init = (state.env_state, state.obs, state.ep_return, jnp.float32(0), jnp.int32(0))
    carry, steps = jax.lax.scan(one_step, init, jax.random.split(key, config.rollout_len))
    return carry, Trajectory(*steps)


# ---------------------------------------------------------------------- targets


def n_step_targets(reward, done, value, bootstrap, n: int, discount: float):
    """n-step value targets ``[T, E]``, cut at episode ends, bootstrapped from search values.

    ``value[t]`` is the search value at ``obs[t]``; ``bootstrap`` ``[E]`` the value after
    the last step. Past the rollout's end the return is bootstrapped from ``bootstrap``.
    """
    t_len = reward.shape[0]
    disc = discount * (1.0 - done.astype(jnp.float32))
    pad = lambda x, fill: jnp.concatenate([x, jnp.broadcast_to(fill, (n,) + x.shape[1:])])
    r_pad = pad(reward, 0.0)
    d_pad = pad(disc, 1.0)
    v_pad = pad(jnp.concatenate([value[1:], bootstrap[None]]), bootstrap)
    target = jnp.zeros_like(reward)
    scale = jnp.ones_like(reward)
    for i in range(n):
        target = target + scale * r_pad[i : i + t_len]
        scale = scale * d_pad[i : i + t_len]
    # value after n steps: v_pad[t + n - 1] is the value at obs[t + n]
    return target + scale * v_pad[n - 1 : n - 1 + t_len]


def unroll_batch(traj: Trajectory, targets: Array, k: int):
    """Per start position ``(t, e)``: the next ``k`` actions/rewards and ``k+1`` targets, masked.

    Returns a dict of arrays with a flat leading axis ``N = T*E``.
    """
    t_len, e = traj.reward.shape
    num_actions = traj.weights.shape[-1]
    pad = lambda x, fill: jnp.concatenate([x, jnp.full((k,) + x.shape[1:], fill, x.dtype)])
    action = pad(traj.action, 0)
    reward = pad(traj.reward, 0.0)
    done = pad(traj.done, True)
    value = pad(targets, 0.0)
    weights = pad(traj.weights, 1.0 / num_actions)
    valid = pad(jnp.ones((t_len, e), bool), False)
    idx = jnp.arange(t_len)[:, None] + jnp.arange(k + 1)[None]  # [T, k+1]
    take = lambda x: jnp.swapaxes(x[idx], 1, 2)  # [T, E, k+1, ...]
    not_done = (~done[idx][:, :-1]).astype(jnp.int32)  # [T, k, E]
    alive = jnp.concatenate([jnp.ones((t_len, 1, e), jnp.int32), jnp.cumprod(not_done, axis=1)], 1)
    alive = alive.astype(bool)  # alive[t, i, e]: no episode end in t .. t+i-1
    mask = take(valid) & jnp.swapaxes(alive, 1, 2)  # [T, E, k+1]
    flat = lambda x: x.reshape((t_len * e,) + x.shape[2:])
    return {
        "obs": flat(traj.obs),
        "action": flat(take(action)[:, :, :k]),
        "reward": flat(take(reward)[:, :, :k]),
        "value": flat(take(value)),
        "weights": flat(take(weights)),
        "mask": flat(mask),
    }


# ---------------------------------------------------------------------- learning


def sample_loss(model: WorldModel, sample: dict, member_mask: Array, config: MuZeroConfig):
    """Reward, value and policy losses of one unrolled sample (masked means over steps)."""
    k = config.unroll
    latent = model.represent(sample["obs"])
    loss_r = loss_v = loss_p = entropy = 0.0
    for i in range(k + 1):
        m = sample["mask"][i]
        head_in = jax.lax.stop_gradient(latent) if config.detach_policy_value else latent
        v = model.value(head_in)
        logp = jax.nn.log_softmax(model.policy_logits(head_in))
        loss_v += m * (v - sample["value"][i]) ** 2
        loss_p += m * -jnp.sum(sample["weights"][i] * logp)
        entropy += m * -jnp.sum(jnp.exp(logp) * logp)
        if i < k:
            preds = model.reward_preds(latent, sample["action"][i])
            err = (preds - sample["reward"][i]) ** 2
            loss_r += m * jnp.sum(member_mask * err) / jnp.maximum(member_mask.sum(), 1.0)
            latent = model.dynamics(latent, sample["action"][i])
            # MuZero halves the gradient entering each dynamics step
            latent = 0.5 * latent + 0.5 * jax.lax.stop_gradient(latent)
    return loss_r / k, loss_v / (k + 1), loss_p / (k + 1), entropy / (k + 1)


def batch_loss(model, batch, member_masks, config):
    """reward_coef * reward + value_coef * value + policy - entropy_coef * prior entropy.

    The entropy bonus keeps the prior's logits finite: Gumbel search targets
    are a softmax of prior logits plus Q-terms, so without it a prior that
    grows confident reproduces its own argmax as target and stops exploring.
    """
    lr, lv, lp, ent = jax.vmap(lambda s, mm: sample_loss(model, s, mm, config))(batch, member_masks)
    lr, lv, lp, ent = lr.mean(), lv.mean(), lp.mean(), ent.mean()
    total = config.reward_coef * lr + config.value_coef * lv + lp - config.entropy_coef * ent
    return total, {
        "loss_reward": lr,
        "loss_value": lv,
        "loss_policy": lp,
        "policy_entropy": ent,
    }


def learn(model, opt_state, data: dict, key: Array, config: MuZeroConfig):
    """``num_epochs`` x ``num_minibatches`` Adam steps on ``data`` (``[M, ...]`` leaves).

    Each epoch draws one rollout's worth (``num_envs * rollout_len``) of samples
    from ``data`` without replacement: with ``M`` equal to one rollout that is a
    shuffled pass, with a replay of several rollouts a random subset of it.
    """
    optimizer = make_optimizer(config)
    n = config.num_envs * config.rollout_len
    total = data["obs"].shape[0]
    grad_fn = eqx.filter_value_and_grad(batch_loss, has_aux=True)

    def minibatch(carry, mb):
        model, opt_state = carry
        batch, member_masks = mb
        (_, aux), grads = grad_fn(model, batch, member_masks, config)
        updates, opt_state = optimizer.update(
            grads, opt_state, eqx.filter(model, eqx.is_inexact_array)
        )
        model = eqx.apply_updates(model, updates)
        return (model, opt_state), aux

    def epoch(carry, k):
        k_perm, k_boot = jax.random.split(k)
        perm = jax.random.permutation(k_perm, total)[:n]
        shaped = lambda x: x[perm].reshape((config.num_minibatches, -1) + x.shape[1:])
        batches = jax.tree.map(shaped, data)
        masks = jax.random.bernoulli(k_boot, config.bootstrap_prob, (n, config.num_members))
        return scan_modules(minibatch, carry, (batches, shaped(masks.astype(jnp.float32))))

    (model, opt_state), aux = scan_modules(
        epoch, (model, opt_state), jax.random.split(key, config.num_epochs)
    )
    return model, opt_state, jax.tree.map(jnp.mean, aux)


def train_iteration(state: TrainState, config: MuZeroConfig, env, params):
    """One act-then-learn iteration (pure; jit/vmap-able)."""
    key = jax.random.wrap_key_data(state.key)
    key, k_act, k_boot, k_learn = jax.random.split(key, 4)
    (env_state, obs, ep_return, fin_sum, fin_n), traj = rollout(state, k_act, config, env, params)
    bootstrap = jax.vmap(state.model.value)(jax.vmap(state.model.represent)(obs))
    targets = n_step_targets(
        traj.reward, traj.done, traj.value, bootstrap, config.n_step, config.discount
    )
    data = unroll_batch(traj, targets, config.unroll)
    slot = state.iteration % config.replay_rollouts
    replay = jax.tree.map(lambda buf, x: buf.at[slot].set(x), state.replay, data)
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), replay)
    model, opt_state, aux = learn(state.model, state.opt_state, flat, k_learn, config)
    metrics = dict(aux)
    metrics["episode_return"] = fin_sum / jnp.maximum(fin_n, 1)
    metrics["episodes"] = fin_n
    metrics["reward_per_step"] = traj.reward.mean()
    new = TrainState(
        model=model,
        opt_state=opt_state,
        env_state=env_state,
        obs=obs,
        ep_return=ep_return,
        key=jax.random.key_data(key),
        iteration=state.iteration + 1,
        replay=replay,
    )
    return new, metrics


@functools.lru_cache(maxsize=8)
def make_init_fn(config: MuZeroConfig, env, params):
    """A jitted function making the initial ``TrainState`` of each seed in a ``[S]`` array."""
    return eqx.filter_jit(
        eqx.filter_vmap(lambda seed: init_state(jax.random.key(seed), config, env, params))
    )


@functools.lru_cache(maxsize=8)
def make_chunk_fn(config: MuZeroConfig, env, params):
    """A jitted function running ``config.chunk`` iterations for a batch of seeds."""

    def chunk(state):
        return scan_modules(
            lambda s, _: train_iteration(s, config, env, params), state, None, length=config.chunk
        )

    return eqx.filter_jit(eqx.filter_vmap(chunk))


# ---------------------------------------------------------------------- evaluation


def episode_returns(env, params, act, key: Array, num_episodes: int) -> dict[str, Array]:
    """True undiscounted return of ``act`` over ``num_episodes`` fresh episodes (jittable).

    ``act(obs [E, ...], key) -> actions [E]`` acts in all episodes at once. Returns
    the mean ``return`` and, when the env provides ``optimal_return_upper_bound``
    (no policy earns more; Orchard: the sum of positive object values), the mean
    ``optimal_bound`` and ``fraction_of_optimal`` (ratio of the two means).
    """
    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(lambda k: env.reset(k, params))(jax.random.split(k_reset, num_episodes))
    bound = None
    if hasattr(env, "optimal_return_upper_bound"):
        bound = jax.vmap(lambda s: env.optimal_return_upper_bound(s, params))(state)

    def step(carry, k):
        obs, state, ret, alive = carry
        k_act, k_step = jax.random.split(k)
        action = act(obs, k_act)
        obs, state, reward, term, trunc, _ = jax.vmap(lambda kk, s, a: env.step(kk, s, a, params))(
            jax.random.split(k_step, num_episodes), state, action
        )
        ret = ret + jnp.where(alive, reward, 0.0)
        alive = alive & ~(term | trunc)
        return (obs, state, ret, alive), None

    init = (obs, state, jnp.zeros(num_episodes), jnp.ones(num_episodes, bool))
    (_, _, ret, _), _ = jax.lax.scan(step, init, jax.random.split(k_run, params.max_steps))
    out = {"return": ret.mean()}
    if bound is not None:
        out["optimal_bound"] = bound.mean()
        out["fraction_of_optimal"] = ret.mean() / bound.mean()
    return out


def random_actions(num_actions: int):
    """``act`` for ``episode_returns``: uniformly random actions (the control)."""
    return lambda obs, key: jax.random.randint(key, obs.shape[:1], 0, num_actions)


def evaluate(
    model: WorldModel,
    config: MuZeroConfig,
    key: Array,
    split: str = "train",
    num_episodes: int = 64,
    greedy: bool = True,
    **env_overrides: Any,
) -> dict[str, Array]:
    """True undiscounted return of the search agent over ``num_episodes`` fresh episodes.

    ``greedy=True`` makes the search deterministic (no Gumbel or Dirichlet noise at
    the root, the most-visited action); ``greedy=False`` evaluates the policy the
    learner acts with in its rollouts (``make_layer(model, config)``: root noise, and
    the action sampled from the search's visit counts). Returns what
    ``episode_returns`` returns (``return``, and ``optimal_bound`` and
    ``fraction_of_optimal`` where the env has an optimal-return bound).
    """
    env, params = make_env(config, split=split, **env_overrides)
    if greedy:
        layer = make_layer(
            model, config, gumbel_scale=0.0, dirichlet_fraction=0.0, temperature=0.01
        )
    else:
        layer = make_layer(model, config)
    return episode_returns(env, params, lambda obs, k: layer(obs, k).action, key, num_episodes)


# ---------------------------------------------------------------------- driver


def _save(path: Path, state: TrainState, meta: dict) -> None:
    tmp = path.with_suffix(".tmp")
    eqx.tree_serialise_leaves(tmp, state)
    tmp.replace(path.with_suffix(".eqx"))
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))


def train(
    config: MuZeroConfig,
    seeds: list[int],
    out_dir: str | Path,
    *,
    resume: bool = True,
    max_chunks: int | None = None,
    progress: bool = True,
    **env_overrides: Any,
):
    """Train one agent per seed (vmapped); log to ``out_dir/metrics.jsonl``; checkpoint per chunk.

    With ``resume=True`` a checkpoint in ``out_dir`` is continued. ``max_chunks`` stops
    early after that many chunks in this call (used to simulate a killed run).
    Returns the final ``TrainState`` (leading seed axis).
    """
    from rich.progress import Progress

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env, params = make_env(config, **env_overrides)
    meta = {
        "config": dataclasses.asdict(config),
        "seeds": list(seeds),
        "env_overrides": env_overrides,
    }
    init = make_init_fn(config, env, params)(jnp.asarray(seeds, jnp.uint32))
    ckpt = out / "checkpoint"
    state, done_chunks = init, 0
    if resume and ckpt.with_suffix(".json").exists():
        saved = json.loads(ckpt.with_suffix(".json").read_text())
        if saved["config"] != meta["config"] or saved["seeds"] != meta["seeds"]:
            raise ValueError(
                f"checkpoint in {out} was written with a different config or seeds; "
                "use another out_dir or resume=False"
            )
        state = eqx.tree_deserialise_leaves(ckpt.with_suffix(".eqx"), init)
        done_chunks = saved["chunks_done"]
    else:
        (out / "config.json").write_text(json.dumps(meta, indent=2))
        (out / "metrics.jsonl").write_text("")
    total = config.num_iterations // config.chunk
    run_chunk = make_chunk_fn(config, env, params)
    todo = total - done_chunks if max_chunks is None else min(max_chunks, total - done_chunks)
    with Progress(disable=not progress) as bar:
        task = bar.add_task("MuZero", total=total, completed=done_chunks)
        for _ in range(todo):
            state, metrics = run_chunk(state)
            done_chunks += 1
            host = jax.tree.map(np.asarray, metrics)  # [S, chunk]
            with open(out / "metrics.jsonl", "a") as f:
                for i in range(config.chunk):
                    row = {
                        "iteration": (done_chunks - 1) * config.chunk + i + 1,
                        "env_steps": ((done_chunks - 1) * config.chunk + i + 1)
                        * config.num_envs
                        * config.rollout_len,
                    }
                    row.update({k: v[:, i].tolist() for k, v in host.items()})
                    f.write(json.dumps(row) + "\n")
            _save(ckpt, state, {**meta, "chunks_done": done_chunks})
            bar.update(
                task,
                completed=done_chunks,
                description=f"MuZero return {host['episode_return'][:, -1].mean():.2f}",
            )
    return state
