"""Adversarial retraining: search, label, add to the data, retrain the ensemble; repeat.

One round of ``adversarial_retraining``:

1. *search* with the current ensemble for inputs where its members disagree
   (``method`` in ``PROPOSERS``);
2. *label* what was found with ``env.true_reward``, at most ``label_budget``
   (state, action) pairs per round;
3. *add* the labels to the training data and *retrain* (fine-tune) the
   ensemble on all of it;
4. *evaluate* (a callback: the recipe re-plans with the new reward there).

``method="random"`` is the control every adversarial run is compared with:
the same label budget spent on ``env.sample_state`` states with uniform
actions. ``"latent-conservative"`` spends no labels: it keeps the pseudo-inputs
found in latent space and adds ``conservative_loss`` on them to the training
loss.

The data live in a fixed-capacity buffer (``LabelledData``) so the training
step compiles once for every round. Each finished round is checkpointed
(Equinox serialisation for the model, ``.npz`` without pickle for the data,
JSON for the history), so a run killed mid-way resumes at the first
unfinished round.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int

from innerlab.adversary.latent import (
    conservative_loss,
    decode_nearest,
    latent_search,
    pessimistic_targets,
)
from innerlab.adversary.search import check_positive, search
from innerlab.protocols import GroundTruthEnv, LatentEnsemble, TrainableEnsemble, require, satisfies
from innerlab.reward_models.data import Transitions

PROPOSERS = ("random", "evolution", "gradient", "latent-decode", "latent-conservative")


# --------------------------------------------------------------------------- data


class LabelledData(eqx.Module):
    """Training data in a fixed-capacity buffer: rows ``[0, count)`` of ``data`` are real.

    Pseudo-inputs (latent activations, no labels) for the conservative loss are
    kept alongside: rows ``[0, pseudo_count)`` of ``pseudo`` / ``pseudo_action`` /
    ``pseudo_target`` (the frozen pessimistic value each is pulled towards).
    """

    data: Transitions
    count: Int[Array, ""]
    pseudo: Float[Array, "P ..."]
    pseudo_action: Int[Array, " P"]
    pseudo_target: Float[Array, " P"]
    pseudo_count: Int[Array, ""]

    @property
    def capacity(self) -> int:
        return int(self.data.action.shape[0])

    def rows(self) -> Transitions:
        """The real rows as a ``Transitions`` (host-side slice)."""
        n = int(self.count)
        return jax.tree.map(lambda x: x[:n], self.data)


def labelled_data(data: Transitions, capacity: int, pseudo_shape: tuple[int, ...],
                  pseudo_capacity: int) -> LabelledData:
    """A buffer: ``data`` plus room for ``capacity`` rows, ``pseudo_capacity`` pseudo-inputs."""
    n = len(data)
    if capacity < n:
        raise ValueError(f"argument 'capacity' must be >= len(data) = {n}, got {capacity}")
    pad = lambda x: jnp.concatenate([x, jnp.zeros((capacity - n,) + x.shape[1:], x.dtype)])
    return LabelledData(
        jax.tree.map(pad, data),
        jnp.int32(n),
        jnp.zeros((max(pseudo_capacity, 1),) + tuple(pseudo_shape), jnp.float32),
        jnp.zeros((max(pseudo_capacity, 1),), jnp.int32),
        jnp.zeros((max(pseudo_capacity, 1),), jnp.float32),
        jnp.int32(0),
    )


def add_rows(buf: LabelledData, new: Transitions) -> LabelledData:
    """``buf`` with ``new`` appended; an error if it would overflow the capacity."""
    m = len(new)
    if int(buf.count) + m > buf.capacity:
        raise ValueError(
            f"labelled data would overflow: {int(buf.count)} + {m} rows > capacity {buf.capacity}"
        )
    data = jax.tree.map(
        lambda x, y: jax.lax.dynamic_update_slice_in_dim(x, y.astype(x.dtype), buf.count, 0),
        buf.data, new,
    )
    return dataclasses.replace(buf, data=data, count=buf.count + m)


def add_pseudo(
    buf: LabelledData, latents: Array, actions: Array, targets: Array
) -> LabelledData:
    """``buf`` with pseudo-inputs appended (for ``conservative_loss``)."""
    m = latents.shape[0]
    if int(buf.pseudo_count) + m > buf.pseudo.shape[0]:
        raise ValueError(
            f"pseudo-inputs would overflow: {int(buf.pseudo_count)} + {m} > capacity "
            f"{buf.pseudo.shape[0]}"
        )
    pseudo = jax.lax.dynamic_update_slice_in_dim(buf.pseudo, latents, buf.pseudo_count, 0)
    acts = jax.lax.dynamic_update_slice_in_dim(buf.pseudo_action, actions, buf.pseudo_count, 0)
    tgts = jax.lax.dynamic_update_slice_in_dim(buf.pseudo_target, targets, buf.pseudo_count, 0)
    return dataclasses.replace(buf, pseudo=pseudo, pseudo_action=acts, pseudo_target=tgts,
                               pseudo_count=buf.pseudo_count + m)


def label_states(env: Any, params: Any, states: Any, actions: Int[Array, " n"]) -> Transitions:
    """Label ``(states[i], actions[i])`` with the true reward and true next observation."""
    require(env, GroundTruthEnv, consumer="adversary.label_states", argument="env")
    return _label_states(env, params, states, jnp.asarray(actions, jnp.int32))


@eqx.filter_jit
def _label_states(env, params, states, actions):
    obs = jax.vmap(lambda s: env.observe(s, params))(states)
    next_obs, _, _, term, trunc, _ = jax.vmap(
        lambda s, a: env.step_env(jax.random.key(0), s, a, params)
    )(states, actions)
    reward = jax.vmap(lambda s, a: env.true_reward(s, a, params))(states, actions)
    return Transitions(obs, actions, reward.astype(jnp.float32), next_obs, term | trunc)


# --------------------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Fixed-length ensemble training (fine-tuning) for the retraining loop.

    Each member draws its own minibatches (with replacement) from the data, so
    members see different samples, as with a bootstrap.
    """

    steps: int = 500
    learning_rate: float = 3e-3
    batch_size: int = 64
    conservative_weight: float = 1.0
    conservative_k: float = 1.0
    layer: str = "latent"

    def __post_init__(self):
        check_positive("steps", self.steps)
        check_positive("batch_size", self.batch_size)
        if not self.learning_rate > 0:
            raise ValueError(f"TrainConfig 'learning_rate' must be > 0, got {self.learning_rate}")
        if not self.conservative_weight >= 0 or not self.conservative_k >= 0:
            raise ValueError("TrainConfig 'conservative_weight' and 'conservative_k' must be >= 0")


def train_ensemble(
    model: Any, buf: LabelledData, key: Array, config: TrainConfig
) -> tuple[Any, Array]:
    """``config.steps`` Adam steps of per-member regression (+ conservative loss on pseudo-inputs).

    Pure and ``vmap``-able over (model, buf, key) for several seeds. Returns the
    trained model and the loss per step ``[steps]``. ``model`` must be an
    ``innerlab.protocols.TrainableEnsemble`` with floating-point JAX arrays to train.
    """
    check_trainable(model, "adversary.train_ensemble")
    return _train_ensemble(model, buf, key, config)


def check_trainable(model: Any, consumer: str) -> None:
    """A TypeError naming ``consumer`` unless ``model`` is a ``TrainableEnsemble`` whose
    pytree holds floating-point arrays (else training would silently change nothing)."""
    require(model, TrainableEnsemble, consumer=consumer, argument="model")
    if not jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)):
        raise TypeError(
            f"{consumer}: argument 'model' ({type(model).__name__}) has no floating-point JAX "
            "arrays among its pytree leaves, so there is nothing for the optimiser to train"
        )


@eqx.filter_jit
def _train_ensemble(model, buf, key, config):
    optim = optax.adam(config.learning_rate)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    k = model.num_members

    def loss_fn(params, key):
        m = eqx.combine(params, static)
        k_rows, k_pseudo = jax.random.split(key)
        rows = jax.random.randint(k_rows, (config.batch_size, k), 0, buf.count)
        obs, act, rew = buf.data.obs[rows], buf.data.action[rows], buf.data.reward[rows]
        preds = jax.vmap(m.per_member)(obs, act)  # [B, K], member k on its own rows
        loss = jnp.mean((preds - rew) ** 2)
        if config.conservative_weight > 0:
            n_p = jnp.maximum(buf.pseudo_count, 1)
            pi = jax.random.randint(k_pseudo, (config.batch_size,), 0, n_p)
            cons = conservative_loss(m, buf.pseudo[pi], buf.pseudo_action[pi],
                                     buf.pseudo_target[pi], config.layer)
            loss = loss + config.conservative_weight * jnp.where(buf.pseudo_count > 0, cons, 0.0)
        return loss

    def step(carry, key):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, key)
        updates, opt_state = optim.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    opt_state = optim.init(params)
    keys = jax.random.split(key, config.steps)
    (params, _), losses = jax.lax.scan(step, (params, opt_state), keys)
    return eqx.combine(params, static), losses


# --------------------------------------------------------------------------- proposing inputs


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
    """The adversarial retraining loop.

    Attributes:
        method: how inputs are proposed (``PROPOSERS``); ``"random"`` is the control.
        rounds: search-label-retrain rounds (>= 1).
        label_budget: true-reward labels per round (>= 1).
        search_budget: model evaluations per search (>= 1).
        measure: disagreement measure (``"std"``/``"gap"``).
        epsilon: L2 radius of the latent ball (latent methods).
        latent_steps: ascent steps of the latent search.
        layer: layer searched by the latent methods.
        pool_size: candidate states for nearest-real-state decoding.
        train: the retraining settings.
    """

    method: str = "evolution"
    rounds: int = 3
    label_budget: int = 32
    search_budget: int = 1024
    measure: str = "std"
    epsilon: float = 1.0
    latent_steps: int = 10
    layer: str = "latent"
    pool_size: int = 1024
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def __post_init__(self):
        if self.method not in PROPOSERS:
            raise ValueError(
                f"RetrainConfig 'method' must be one of {PROPOSERS}, got {self.method!r}"
            )
        for name in ("rounds", "label_budget", "search_budget", "latent_steps", "pool_size"):
            check_positive(name, getattr(self, name))
        if not self.epsilon >= 0:
            raise ValueError(f"RetrainConfig 'epsilon' must be >= 0, got {self.epsilon}")


def propose(
    model: Any, env: Any, params: Any, key: Array, config: RetrainConfig, real_obs: Array
) -> tuple[Transitions | None, tuple[Array, Array] | None, dict[str, float]]:
    """One round's new training signal: ``(labelled transitions, pseudo-inputs, info)``.

    ``real_obs`` ``[N, H, W, C]`` are the observations whose latents anchor the
    latent search. ``info`` reports the mean disagreement of what was found.
    """
    require(env, GroundTruthEnv, consumer="adversary.propose", argument="env")
    L = config.label_budget
    k_search, k_pick = jax.random.split(key)
    if config.method == "random":
        k_s, k_a = jax.random.split(k_search)
        states = jax.vmap(lambda k: env.sample_state(k, params))(jax.random.split(k_s, L))
        actions = jax.random.randint(k_a, (L,), 0, env.num_actions(params), dtype=jnp.int32)
        return label_states(env, params, states, actions), None, {"found_score": float("nan")}
    if config.method in ("evolution", "gradient"):
        res = search(config.method, model, env, params, k_search, budget=config.search_budget,
                     top_n=L, measure=config.measure)
        info = {"found_score": float(jnp.mean(res.scores)), "search_evals": res.num_evals}
        return label_states(env, params, res.states, res.actions), None, info
    # latent methods: anchor at up to search_budget // (1 + 3 * steps) real observations
    n_start = max(L, config.search_budget // (1 + 3 * config.latent_steps))
    n_start = min(n_start, real_obs.shape[0])
    idx = jax.random.choice(k_pick, real_obs.shape[0], (n_start,), replace=False)
    res = latent_search(model, real_obs[idx], k_search, epsilon=config.epsilon,
                        steps=config.latent_steps, layer=config.layer, measure=config.measure,
                        top_n=min(L, n_start))
    info = {"found_score": float(jnp.mean(res.scores)), "search_evals": res.num_evals,
            "start_score": float(jnp.mean(res.start_scores))}
    if config.method == "latent-conservative":
        targets = pessimistic_targets(model, res.latents, res.actions, config.layer,
                                      config.train.conservative_k)
        return None, (res.latents, res.actions, targets), info
    k_pool = jax.random.fold_in(k_search, 1)
    pool_keys = jax.random.split(k_pool, config.pool_size)
    pool = jax.vmap(lambda k: env.sample_state(k, params))(pool_keys)
    pool_obs = jax.vmap(lambda s: env.observe(s, params))(pool)
    pick = decode_nearest(model, res.latents, pool_obs, config.layer)
    states = jax.tree.map(lambda x: x[pick], pool)
    return label_states(env, params, states, res.actions), None, info


# --------------------------------------------------------------------------- the loop


Evaluate = Callable[[Any, int], dict[str, float]]


def adversarial_retraining(
    model: Any,
    data: Transitions,
    env: Any,
    params: Any,
    key: Array,
    config: RetrainConfig,
    evaluate: Evaluate | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
) -> tuple[Any, list[dict[str, Any]]]:
    """Run ``config.rounds`` rounds of search -> label -> add -> retrain -> evaluate.

    Args:
        model: the trained ensemble to start from (round 0).
        data: its training data (flat ``Transitions``).
        env, params: the environment (train split) that labels come from.
        key: PRNG key; round r uses ``fold_in(key, r)``, so a resumed run
            continues exactly as an uninterrupted one.
        config: ``RetrainConfig``.
        evaluate: ``evaluate(model, round) -> dict`` of metrics, called after each round.
        checkpoint_dir: if given, each finished round is saved there and a
            restarted call resumes after the last finished round.

    Returns:
        ``(model, history)``: the final ensemble and one dict per round
        (``round``, ``labels`` used so far, search info, ``train_loss``, metrics).
    """
    consumer = "adversary.adversarial_retraining"
    check_trainable(model, consumer)
    require(env, GroundTruthEnv, consumer=consumer, argument="env")
    if config.method.startswith("latent"):
        require(model, LatentEnsemble, consumer=f"{consumer} (method={config.method!r})",
                argument="model")
    act_shape = _pseudo_shape(model, config.layer)
    capacity = len(data) + config.rounds * config.label_budget
    buf = labelled_data(data, capacity, act_shape, config.rounds * config.label_budget)
    real_obs = data.obs
    history: list[dict[str, Any]] = []
    start = 0
    ckpt = None if checkpoint_dir is None else pathlib.Path(checkpoint_dir)
    if ckpt is not None:
        restored = load_checkpoint(ckpt, model, buf)
        if restored is not None:
            model, buf, history = restored
            start = len(history)
    for r in range(start, config.rounds):
        k_round = jax.random.fold_in(key, r)
        k_prop, k_train = jax.random.split(k_round)
        new, pseudo, info = propose(model, env, params, k_prop, config, real_obs)
        if new is not None:
            buf = add_rows(buf, new)
        if pseudo is not None:
            buf = add_pseudo(buf, *pseudo)
        train_cfg = config.train
        if config.method != "latent-conservative":
            train_cfg = dataclasses.replace(train_cfg, conservative_weight=0.0)
        model, losses = train_ensemble(model, buf, k_train, train_cfg)
        row = {
            "round": r + 1,
            "method": config.method,
            "labels": int(buf.count) - len(data),
            "pseudo_inputs": int(buf.pseudo_count),
            "new_harmful_fraction": _harmful_fraction(new),
            "train_loss": float(jnp.mean(losses[-max(1, len(losses) // 10):])),
            **info,
        }
        if evaluate is not None:
            row.update(evaluate(model, r + 1))
        history.append(row)
        if ckpt is not None:
            save_checkpoint(ckpt, model, buf, history)
    return model, history


def _harmful_fraction(new: Transitions | None) -> float:
    """Fraction of new labels with a negative reward (Orchard: a harmful object collected)."""
    if new is None:
        return float("nan")
    return float(jnp.mean(new.reward < 0))


def _layer_shape(model, obs, layer):
    from innerlab.adversary.latent import activation

    return activation(model, obs, layer)


def _pseudo_shape(model: Any, layer: str) -> tuple[int, ...]:
    """Shape of one pseudo-input: the activation at ``layer`` for a ``LatentEnsemble``, else
    ``(1,)`` (a model without latents has no pseudo-inputs; the buffer keeps a placeholder)."""
    if not satisfies(model, LatentEnsemble):
        return (1,)
    return eqx.filter_eval_shape(
        lambda m, o: _layer_shape(m, o, layer), model, jnp.zeros(tuple(model.obs_shape))
    ).shape


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | os.PathLike, model: Any, buf: LabelledData,
                    history: list[dict[str, Any]]) -> pathlib.Path:
    """Save a finished round as ``path/round_<r>/`` (``model.eqx``, ``data.npz``, ``history.json``).

    Written to a temporary folder and renamed, so a kill mid-save leaves the
    previous round as the latest complete one.
    """
    path = pathlib.Path(path)
    path.mkdir(parents=True, exist_ok=True)
    final = path / f"round_{len(history):04d}"
    tmp = path / f".tmp_round_{len(history):04d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    eqx.tree_serialise_leaves(tmp / "model.eqx", model)
    arrays = {f"leaf{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(buf))}
    with open(tmp / "data.npz", "wb") as f:
        np.savez(f, **arrays)
    (tmp / "history.json").write_text(json.dumps(history, indent=1, default=float))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def load_checkpoint(path: str | os.PathLike, like_model: Any, like_buf: LabelledData):
    """``(model, buf, history)`` of the last finished round saved in ``path``, or None."""
    path = pathlib.Path(path)
    rounds = sorted(path.glob("round_*")) if path.is_dir() else []
    if not rounds:
        return None
    latest = rounds[-1]
    history = json.loads((latest / "history.json").read_text())
    model = eqx.tree_deserialise_leaves(latest / "model.eqx", like_model)
    with np.load(latest / "data.npz", allow_pickle=False) as z:
        leaves = [jnp.asarray(z[f"leaf{i}"]) for i in range(len(z.files))]
    treedef = jax.tree.structure(like_buf)
    if treedef.num_leaves != len(leaves):
        raise ValueError(f"checkpoint {str(latest)!r} does not match this run's data layout")
    return model, jax.tree.unflatten(treedef, leaves), history
