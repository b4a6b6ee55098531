"""Training the Imagination-based Planner as in Pascanu, Li et al. (2017).

Every iteration each of ``num_envs`` parallel envs takes one real step chosen
by the IBP (after its imagination loop), and one loss is minimised with one
gradient step; its terms touch disjoint parameters:

- **model**: supervised on the real transitions just collected
  (``model.loss``: next state/latent and reward);
- **controller and memory**: backpropagation through the unrolled
  real-and-imagined loop of the *task loss* of the proposed real action. The
  environment is not differentiable, so the task loss is scored by the
  (frozen) model and critic: ``-(r_hat + gamma * V(next_hat))``; on
  Spaceship (one thrust per episode) that is the model's predicted
  ``fuel + miss^2``. Discrete actions use the straight-through Gumbel-softmax
  estimator (see ``innerlab.planners.ibp``);
  A small entropy bonus (``controller_entropy``) on the discrete controller's
  policy keeps it from collapsing while the model is still poor;
- **manager**: REINFORCE with a batch-mean baseline and an entropy bonus on
  ``-(task loss + tau * imagination steps)``, the task loss being the *real*
  one: ``-(r + gamma * V(next))``;
- **critic** ``V``: TD(0) on real transitions (only matters for episodes
  longer than one step).

Continuous actions are explored with Gaussian noise (``action_noise``) added
to the executed thrust (then clipped to the action box), so the model sees
more than the controller's own actions. Everything runs in one
``jit``-compiled ``lax.scan`` per logging chunk, ``vmap``-ped over seeds.
``train`` adds a progress bar, ``metrics.jsonl`` (one row per seed and chunk),
checkpoints (``eqx.tree_serialise_leaves`` + JSON) and resume.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from innerlab.envs import make
from innerlab.planners.ibp import (
    IBP,
    Transitions,
    check_config,
    make_imagination,
    stop_gradient_tree,
)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class IBPTrainConfig:
    """Everything that defines an IBP training run (JSON-friendly).

    ``imagination``: ``"learned"`` (the env's default learned model) or
    ``"true"`` (the env's own dynamics; ablation). ``tau``: cost per
    imagination step in the manager's objective. ``num_members``,
    ``aggregation``, ``k``: the reward ensemble and how planning aggregates it;
    ``latent_dim``, ``encoder``: the ``WorldModel``'s, for grid envs;
    ``egocentric``: grid envs observed through ``envs.Egocentric`` (a flat MLP
    model learns their reward only from that view).
    """

    env: str = "Spaceship-v0"
    env_overrides: tuple[tuple[str, Any], ...] = ()
    imagination: str = "learned"
    strategy: str = "tree"
    max_imaginations: int = 3
    tau: float = 0.0
    entropy_coef: float = 0.01
    controller_entropy: float = 0.03
    num_envs: int = 64
    iterations: int = 1000
    lr: float = 1e-3
    model_lr: float = 3e-3
    gamma: float = 0.95
    action_noise: float = 0.1
    value_coef: float = 0.5
    hidden: int = 64
    width: int = 64
    num_members: int = 1
    latent_dim: int = 32
    encoder: str = "conv"
    aggregation: str = "mean"
    k: float = 1.0
    temperature: float = 1.0
    log_every: int = 50
    egocentric: bool = False  # grid envs seen through ``envs.Egocentric`` (agent-centred)

    def __post_init__(self):
        check_config(self.strategy, self.max_imaginations)
        if self.imagination not in ("learned", "true"):
            raise ValueError(
                f"config 'imagination' must be 'learned' or 'true', got {self.imagination!r}"
            )
        for name in ("num_envs", "iterations", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"config {name!r} must be >= 1, got {getattr(self, name)}")
        for name in ("tau", "entropy_coef", "controller_entropy", "action_noise", "value_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"config {name!r} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"config 'gamma' must be in [0, 1], got {self.gamma}")
        if self.iterations % self.log_every:
            raise ValueError(
                f"config 'iterations' ({self.iterations}) must be a multiple of 'log_every' "
                f"({self.log_every})"
            )

    def env_and_params(self):
        return make(self.env, egocentric=self.egocentric, **dict(self.env_overrides))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["env_overrides"] = dict(self.env_overrides)
        return d


class TrainState(eqx.Module):
    """One seed's training state (``vmap``-ped over seeds by ``train``)."""

    ibp: IBP
    opt_state: Any
    env_state: Any
    obs: Array
    context: tuple[Array, Array]
    episode_return: Array
    key: Array  # raw key data, so checkpoints serialise plainly


def make_optimizer(config: IBPTrainConfig, ibp: IBP) -> optax.GradientTransformation:
    """Adam for the model and for the agent (manager, controller, memory, critic), each with
    its own learning rate and gradient clipping, so neither starves the other."""

    def labels(params):  # a function: optax would mistake a (callable) IBP for one
        tree = jax.tree.map(lambda _: "agent", params)
        return eqx.tree_at(lambda m: m.model, tree,
                           replace_fn=lambda sub: jax.tree.map(lambda _: "model", sub))

    adam = lambda lr: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))
    return optax.multi_transform({"agent": adam(config.lr), "model": adam(config.model_lr)},
                                 labels)


def init_ibp(config: IBPTrainConfig, key: Array) -> IBP:
    """A fresh IBP (and imagination model) for ``config``'s env."""
    env, params = config.env_and_params()
    k_model, k_ibp = jax.random.split(key)
    model = make_imagination(
        env, params, config.imagination, key=k_model, width=config.width,
        num_members=config.num_members, how=config.aggregation, k=config.k,
        latent_dim=config.latent_dim, encoder=config.encoder,
    )
    return IBP(model, config.strategy, config.max_imaginations, config.hidden, config.width,
               config.temperature, key=k_ibp)


def init_state(config: IBPTrainConfig, key: Array) -> TrainState:
    """A fresh training state for one seed."""
    env, params = config.env_and_params()
    k_ibp, k_env, k_next = jax.random.split(key, 3)
    ibp = init_ibp(config, k_ibp)
    env_keys = jax.random.split(k_env, config.num_envs)
    obs, env_state = jax.vmap(env.reset, (0, None))(env_keys, params)
    opt_state = make_optimizer(config, ibp).init(eqx.filter(ibp, eqx.is_array))
    ctx = jax.vmap(lambda _: ibp.empty_context())(jnp.arange(config.num_envs))
    return TrainState(ibp, opt_state, env_state, obs, ctx, jnp.zeros(config.num_envs),
                      jax.random.key_data(k_next))


def _where(mask, a, b):
    """Per-env select on pytrees with a leading env axis."""
    return jax.tree.map(lambda x, y: jnp.where(mask.reshape(-1, *([1] * (x.ndim - 1))), x, y), a, b)


def train_step(config: IBPTrainConfig, ts: TrainState) -> tuple[TrainState, dict[str, Array]]:
    """One real step in every env and one gradient step (single seed)."""
    env, params = config.env_and_params()
    optimizer = make_optimizer(config, ts.ibp)
    n = config.num_envs
    key = jax.random.wrap_key_data(ts.key)
    key, k_plan, k_env, k_reset, k_noise, k_model = jax.random.split(key, 6)
    sg = jax.lax.stop_gradient

    def loss_fn(ibp: IBP):
        frozen = eqx.tree_at(lambda m: (m.model, m.critic), ibp,
                             (stop_gradient_tree(ibp.model), stop_gradient_tree(ibp.critic)))
        trace = jax.vmap(frozen.plan)(ts.obs, jax.random.split(k_plan, n), ts.env_state, ts.context)
        if ibp.discrete:
            exec_vec = sg(trace.action_vec)
        else:
            noise = config.action_noise * jax.random.normal(k_noise, trace.action_vec.shape)
            exec_vec = jnp.clip(sg(trace.action_vec) + noise, -1.0, 1.0)
        action = ibp.env_action(exec_vec)
        next_obs, next_state, reward, term, trunc, _ = jax.vmap(
            env.step_env, (0, 0, 0, None)
        )(jax.random.split(k_env, n), ts.env_state, action, params)
        live = 1.0 - term.astype(jnp.float32)
        # controller + memory: task loss of the proposed action, scored by the frozen model
        nxt_hat, r_hat = jax.vmap(frozen.model.step)(
            trace.carry, trace.action_vec, jax.random.split(k_model, n)
        )
        v_hat = jax.vmap(lambda c: frozen.critic(frozen.model.features(c)))(nxt_hat)
        loss_controller = -jnp.mean(r_hat + config.gamma * live * v_hat)
        if ibp.discrete:  # keep the discrete policy from collapsing before the model is good
            logp_a = jax.nn.log_softmax(trace.logits)
            policy_entropy = -jnp.mean(jnp.sum(jnp.exp(logp_a) * logp_a, axis=-1))
            loss_controller = loss_controller - config.controller_entropy * policy_entropy
        # manager: REINFORCE on the real outcome minus the imagination cost
        next_feat = jax.vmap(lambda o, s: ibp.model.features(ibp.model.initial(o, s)))(
            next_obs, next_state
        )
        v_next = sg(jax.vmap(ibp.critic)(sg(next_feat)))
        target = reward + config.gamma * live * v_next
        ret = target - config.tau * trace.imaginations
        advantage = sg(ret - jnp.mean(ret))
        loss_manager = -jnp.mean(advantage * trace.logp) - config.entropy_coef * jnp.mean(
            trace.entropy
        )
        # critic: TD(0)
        value = jax.vmap(ibp.critic)(sg(trace.real_features))
        loss_value = jnp.mean((value - sg(target)) ** 2)
        # model: supervised on the real transitions
        batch = Transitions(ts.obs, exec_vec, reward, next_obs, term)
        loss_model = ibp.model.loss(batch)
        total = loss_controller + loss_manager + config.value_coef * loss_value + loss_model
        # memory folds in the real step (no gradient across real steps)
        ctx = jax.vmap(frozen.remember)(trace.context, trace.real_features, exec_vec,
                                        next_feat, reward, jnp.ones(n))
        aux = dict(next_obs=next_obs, next_state=next_state, reward=reward, term=term,
                   trunc=trunc, context=sg(ctx), imaginations=trace.imaginations,
                   entropy=trace.entropy, loss_model=loss_model, loss_controller=loss_controller,
                   loss_value=loss_value, routes=trace.routes)
        return total, aux

    (_, aux), grads = eqx.filter_value_and_grad(loss_fn, has_aux=True)(ts.ibp)
    updates, opt_state = optimizer.update(grads, ts.opt_state, eqx.filter(ts.ibp, eqx.is_array))
    ibp = eqx.apply_updates(ts.ibp, updates)

    done = aux["term"] | aux["trunc"]
    reset_keys = jax.random.split(k_reset, n)
    reset_obs, reset_state = jax.vmap(env.reset_env, (0, None))(reset_keys, params)
    ep_ret = ts.episode_return + aux["reward"]
    finished = jnp.sum(done)
    routes = aux["routes"]
    metrics = {
        "reward": jnp.mean(aux["reward"]),
        "episode_return": jnp.sum(jnp.where(done, ep_ret, 0.0)) / jnp.maximum(finished, 1),
        "episodes": finished.astype(jnp.float32),
        "imaginations": jnp.mean(aux["imaginations"].astype(jnp.float32)),
        "manager_entropy": jnp.mean(aux["entropy"]),
        "imagine_from_real": jnp.mean(jnp.sum(routes == 1, -1).astype(jnp.float32)),
        "loss_model": aux["loss_model"],
        "loss_controller": aux["loss_controller"],
        "loss_value": aux["loss_value"],
    }
    empty = jax.vmap(lambda _: ibp.empty_context())(jnp.arange(n))
    new = TrainState(
        ibp=ibp,
        opt_state=opt_state,
        env_state=_where(done, reset_state, aux["next_state"]),
        obs=_where(done, reset_obs, aux["next_obs"]),
        context=_where(done, empty, aux["context"]),
        episode_return=jnp.where(done, 0.0, ep_ret),
        key=jax.random.key_data(key),
    )
    return new, metrics


def train_chunk(config: IBPTrainConfig, states: TrainState) -> tuple[TrainState, dict]:
    """``log_every`` iterations for every seed; metrics averaged over the chunk, ``[S]`` each."""

    def one_seed(ts):
        arrays, static = eqx.partition(ts, eqx.is_array)

        def body(arr, _):
            new, metrics = train_step(config, eqx.combine(arr, static))
            return eqx.filter(new, eqx.is_array), metrics

        arrays, metrics = jax.lax.scan(body, arrays, None, length=config.log_every)
        weights = metrics.pop("episodes")
        ep = jnp.sum(metrics.pop("episode_return") * weights) / jnp.maximum(jnp.sum(weights), 1)
        summary = {k: jnp.mean(v) for k, v in metrics.items()}
        summary["episode_return"] = ep
        summary["task_loss"] = -ep
        return eqx.combine(arrays, static), summary

    return eqx.filter_vmap(one_seed)(states)


_CHUNK_CACHE: dict[IBPTrainConfig, Any] = {}


def _jitted_chunk(config: IBPTrainConfig):
    key = dataclasses.replace(config, iterations=config.log_every)  # length is not compiled in
    if key not in _CHUNK_CACHE:
        _CHUNK_CACHE[key] = eqx.filter_jit(lambda s: train_chunk(key, s))
    return _CHUNK_CACHE[key]


def init_states(config: IBPTrainConfig, seeds: list[int] | tuple[int, ...]) -> TrainState:
    """Training states for several seeds, stacked on a leading axis."""
    if len(seeds) < 1:
        raise ValueError("argument 'seeds' must name at least one seed")
    keys = jnp.stack([jax.random.key(int(s)) for s in seeds])
    return eqx.filter_vmap(lambda k: init_state(config, k))(keys)


def save_checkpoint(directory: Path, states: TrainState, meta: dict[str, Any]) -> None:
    """``checkpoint.eqx`` (Equinox leaves) and ``checkpoint.json`` (metadata) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "checkpoint.eqx.tmp"
    eqx.tree_serialise_leaves(tmp, states)
    tmp.replace(directory / "checkpoint.eqx")
    (directory / "checkpoint.json").write_text(json.dumps(meta, indent=2))


def load_checkpoint(directory: Path, like: TrainState) -> tuple[TrainState, dict[str, Any]]:
    """Inverse of ``save_checkpoint``; ``like`` fixes structure and shapes."""
    meta = json.loads((Path(directory) / "checkpoint.json").read_text())
    return eqx.tree_deserialise_leaves(Path(directory) / "checkpoint.eqx", like), meta


@dataclasses.dataclass
class TrainResult:
    """Trained states (stacked over seeds) and the per-chunk metrics, each ``[S]``."""

    states: TrainState
    history: list[dict[str, Any]]
    seeds: tuple[int, ...]

    def ibp(self, seed_index: int) -> IBP:
        return jax.tree.map(lambda x: x[seed_index] if eqx.is_array(x) else x, self.states.ibp)


def train(
    config: IBPTrainConfig,
    seeds: tuple[int, ...] = (0,),
    out_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    checkpoint_every: int = 0,
) -> TrainResult:
    """Train one IBP per seed (vmapped); log to ``out_dir/metrics.jsonl`` and checkpoint.

    With ``resume=True`` and a checkpoint in ``out_dir`` (same config and
    seeds, except that ``iterations`` may grow), training continues from it; the
    result equals an uninterrupted run.
    ``checkpoint_every``: chunks between checkpoints (0: only at the end).
    """
    seeds = tuple(int(s) for s in seeds)
    states = init_states(config, seeds)
    start, history = 0, []
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and resume and (out / "checkpoint.json").exists():
        states, meta = load_checkpoint(out, states)
        same = {**meta["config"], "iterations": config.iterations} == config.to_dict()
        if not same or tuple(meta["seeds"]) != seeds or meta["iteration"] > config.iterations:
            raise ValueError(
                f"cannot resume from {out}: its config/seeds differ from the requested ones "
                f"(only 'iterations' may grow; checkpoint at iteration {meta['iteration']})"
            )
        start, history = meta["iteration"], meta["history"]
    chunk = _jitted_chunk(config)
    n_chunks = config.iterations // config.log_every
    done_chunks = start // config.log_every

    def run_chunks(advance):
        nonlocal states
        for c in range(done_chunks, n_chunks):
            t0 = time.perf_counter()
            states, summary = chunk(states)
            summary = jax.device_get(summary)
            iteration = (c + 1) * config.log_every
            row = {"iteration": iteration, "seconds": time.perf_counter() - t0,
                   **{k: np.asarray(v).tolist() for k, v in summary.items()}}
            history.append(row)
            if out is not None:
                with open(out / "metrics.jsonl", "a") as f:
                    for i, s in enumerate(seeds):
                        f.write(json.dumps({"iteration": iteration, "seed": s,
                                            **{k: float(np.asarray(v)[i])
                                               for k, v in summary.items()}}) + "\n")
                last = c + 1 == n_chunks
                if last or (checkpoint_every and (c + 1) % checkpoint_every == 0):
                    save_checkpoint(out, states, {"iteration": iteration, "seeds": list(seeds),
                                                  "config": config.to_dict(), "history": history})
            advance(row)

    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    if progress:
        from rich.progress import Progress

        with Progress(transient=True) as bar:
            task = bar.add_task(f"IBP {config.strategy} n={config.max_imaginations}",
                                total=n_chunks, completed=done_chunks)
            run_chunks(lambda row: bar.update(
                task, advance=1,
                description=f"IBP it {row['iteration']} task loss "
                            f"{np.mean(row['task_loss']):.3f}"))
    else:
        run_chunks(lambda row: None)
    return TrainResult(states, history, seeds)


# --------------------------------------------------------------------------- evaluation


def evaluate(ibp: IBP, env, params, key: Array, num_episodes: int = 256,
             policy: str = "ibp") -> dict[str, Array]:
    """Mean return, task loss and imaginations per real step over fresh episodes (jittable).

    ``policy="ibp"`` plans with ``ibp`` (no exploration noise; discrete
    actions are the controller's sample); ``policy="random"`` acts uniformly
    at random (the control). Returns arrays ``return``/``task_loss``
    (``[]`` means and ``returns [num_episodes]``) and ``imaginations``.
    """
    if policy not in ("ibp", "random"):
        raise ValueError(f"argument 'policy' must be 'ibp' or 'random', got {policy!r}")
    space = env.action_space(params)

    def episode(k):
        k_reset, k_run = jax.random.split(k)
        obs, state = env.reset_env(k_reset, params)

        def body(carry, k_t):
            obs, state, ctx, done, ret, imag = carry
            k_plan, k_env = jax.random.split(k_t)
            if policy == "ibp":
                trace = ibp.plan(obs, k_plan, state, ctx)
                action = ibp.env_action(trace.action_vec)
                n_imag = trace.imaginations
            else:
                action, trace, n_imag = space.sample(k_plan), None, jnp.zeros((), jnp.int32)
            nobs, nstate, r, term, trunc, _ = env.step_env(k_env, state, action, params)
            if trace is not None:
                avec = jax.nn.one_hot(action, ibp.action_size) if ibp.discrete else action
                feat = ibp.model.features(ibp.model.initial(nobs, nstate))
                ctx = ibp.remember(trace.context, trace.real_features, avec, feat, r, 1.0)
            live = ~done
            ret = ret + jnp.where(live, r, 0.0)
            imag = imag + jnp.where(live, n_imag, 0)
            return (nobs, nstate, ctx, done | term | trunc, ret, imag), live

        ctx0 = ibp.empty_context()
        init = (obs, state, ctx0, jnp.bool_(False), jnp.zeros(()), jnp.zeros((), jnp.int32))
        (_, _, _, _, ret, imag), live = jax.lax.scan(
            body, init, jax.random.split(k_run, params.max_steps)
        )
        return ret, imag / jnp.maximum(jnp.sum(live), 1)

    returns, imag = jax.vmap(episode)(jax.random.split(key, num_episodes))
    return {"return": jnp.mean(returns), "task_loss": -jnp.mean(returns), "returns": returns,
            "imaginations": jnp.mean(imag)}
