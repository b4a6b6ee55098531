"""Training reward-model ensembles from rewards (regression) or from preferences (Bradley-Terry).

Both trainers share one loop:

* every member gets its own bootstrap resample of the training rows, so
  members see different data and their disagreement means something;
* all K members are trained together in one jitted step (``per_member``
  evaluates member k on its own batch, with a shared or independent encoder);
  ``eval_every`` steps run inside one ``lax.scan``;
* a held-out split (never in any member's resample) is scored after every
  chunk; training stops when the mean held-out loss has not improved for
  ``patience`` evaluations and the best parameters are returned.

``fit_rewards(model, data, key, config) -> (model, history)`` and
``fit_preferences(model, prefs, key, config) -> (model, history)``; ``history``
is a dict of plain Python numbers and lists (JSON-ready).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from innerlab.protocols import TrainableEnsemble, require
from innerlab.reward_models.data import Preferences, Transitions, check_transitions
from innerlab.reward_models.model import RewardModel


@dataclasses.dataclass(frozen=True)
class RegressionConfig:
    """Settings of ``fit_rewards`` (all plain values; hashable).

    Args:
        learning_rate: Adam(W) step size.
        batch_size: rows per member per step.
        max_steps: upper bound on optimiser steps.
        eval_every: steps between held-out evaluations (one jitted scan each).
        patience: evaluations without held-out improvement before stopping.
        holdout_fraction: share of rows held out for early stopping (0 disables it).
        bootstrap: resample the training rows per member (with replacement).
        weight_decay: AdamW decoupled weight decay.
        progress: show a rich progress bar.
    """

    learning_rate: float = 3e-3
    batch_size: int = 64
    max_steps: int = 2000
    eval_every: int = 100
    patience: int = 5
    holdout_fraction: float = 0.1
    bootstrap: bool = True
    weight_decay: float = 0.0
    progress: bool = False

    def __post_init__(self):
        for name in ("batch_size", "max_steps", "eval_every", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"config field '{name}' must be an int >= 1, got {value!r}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(
                f"config field 'holdout_fraction' must be in [0, 1), got {self.holdout_fraction}"
            )
        if not self.learning_rate > 0:
            raise ValueError(f"config field 'learning_rate' must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"config field 'weight_decay' must be >= 0, got {self.weight_decay}")


@dataclasses.dataclass(frozen=True)
class PreferenceConfig(RegressionConfig):
    """Settings of ``fit_preferences``; same fields as ``RegressionConfig`` (rows are pairs)."""

    batch_size: int = 32


# --------------------------------------------------------------------------- losses


def _member_rewards(model: RewardModel, obs, action):
    """Predictions ``[K, *batch]`` of member k on ``obs[k]``, ``action[k]`` (leading K)."""
    k = model.num_members
    batch = action.shape[1:]
    obs_f = obs.reshape((k, -1) + obs.shape[1 + len(batch) :])
    act_f = action.reshape((k, -1))
    preds = jax.vmap(model.per_member, in_axes=(1, 1), out_axes=1)(obs_f, act_f)
    return preds.reshape((k,) + batch)


def regression_loss(model: RewardModel, batch: Transitions) -> jax.Array:
    """Per-member mean squared error ``[K]``; ``batch`` fields have leading ``[K, B]``."""
    preds = _member_rewards(model, batch.obs, batch.action)
    return jnp.mean((preds - batch.reward) ** 2, axis=1)


def preference_loss(model: RewardModel, batch: Preferences) -> jax.Array:
    """Per-member Bradley-Terry cross-entropy ``[K]``; ``batch`` fields have leading ``[K, B]``.

    ``P(first preferred) = sigmoid(sum_t r(first_t) - sum_t r(second_t))``.
    """
    ret_a = _member_rewards(model, batch.first.obs, batch.first.action).sum(-1)
    ret_b = _member_rewards(model, batch.second.obs, batch.second.action).sum(-1)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(ret_a - ret_b, batch.label), axis=1)


LossFn = Callable[[RewardModel, Any], jax.Array]


# --------------------------------------------------------------------------- the shared loop


def _optimizer(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    if weight_decay > 0:
        return optax.adamw(learning_rate, weight_decay=weight_decay)
    return optax.adam(learning_rate)


def _take(tree, idx):
    return jax.tree.map(lambda x: x[idx], tree)


@eqx.filter_jit
def _train_chunk(model, opt_state, data, boot_idx, key, loss_fn, opt_args, batch_size, steps):
    """``steps`` optimiser steps; returns the new model, state and the mean loss per step."""
    optim = _optimizer(*opt_args)
    k, n_boot = boot_idx.shape

    def objective(model, batch):
        return jnp.mean(loss_fn(model, batch))

    params, static = eqx.partition(model, eqx.is_array)

    def step(carry, key):
        params, opt_state = carry
        model = eqx.combine(params, static)
        pos = jax.random.randint(key, (k, batch_size), 0, n_boot)
        rows = jnp.take_along_axis(boot_idx, pos, axis=1)  # [K, B]
        loss, grads = eqx.filter_value_and_grad(objective)(model, _take(data, rows))
        updates, opt_state = optim.update(grads, opt_state, eqx.filter(model, eqx.is_inexact_array))
        params = eqx.apply_updates(params, eqx.filter(updates, eqx.is_array))
        return (params, opt_state), loss

    (params, opt_state), losses = jax.lax.scan(
        step, (params, opt_state), jax.random.split(key, steps)
    )
    return eqx.combine(params, static), opt_state, losses


@eqx.filter_jit
def _holdout_loss(model, data, loss_fn):
    """Every member's loss on the whole held-out set ``[K]``."""
    k = model.num_members
    n = jax.tree.leaves(data)[0].shape[0]
    rows = jnp.broadcast_to(jnp.arange(n), (k, n))
    return loss_fn(model, _take(data, rows))


def _fit(model, data, n: int, key, config: RegressionConfig, loss_fn: LossFn, what: str):
    k_split, k_boot, k_train = jax.random.split(key, 3)
    n_hold = int(round(config.holdout_fraction * n)) if config.holdout_fraction > 0 else 0
    if config.holdout_fraction > 0:
        n_hold = max(n_hold, 1)
    n_train = n - n_hold
    if n_train < 1:
        raise ValueError(
            f"argument '{what}' has {n} rows: too few to hold out {n_hold} and train on the rest"
        )
    perm = jax.random.permutation(k_split, n)
    train_data = _take(data, perm[n_hold:])
    hold_data = _take(data, perm[:n_hold]) if n_hold else None
    k = model.num_members
    if config.bootstrap:
        boot_idx = jax.random.randint(k_boot, (k, n_train), 0, n_train)
    else:
        boot_idx = jnp.broadcast_to(jnp.arange(n_train), (k, n_train))

    opt_args = (float(config.learning_rate), float(config.weight_decay))
    opt_state = _optimizer(*opt_args).init(eqx.filter(model, eqx.is_inexact_array))
    history: dict[str, Any] = {
        "step": [],
        "train_loss": [],
        "holdout_loss": [],
        "holdout_loss_per_member": [],
        "n_train": n_train,
        "n_holdout": n_hold,
        "num_members": k,
    }
    best_model, best_loss, best_step, bad_evals = model, float("inf"), 0, 0
    stopped_early = False
    n_chunks = -(-config.max_steps // config.eval_every)
    progress = _progress(config.progress, n_chunks, what)
    step = 0
    for chunk_key in jax.random.split(k_train, n_chunks):
        steps = min(config.eval_every, config.max_steps - step)
        model, opt_state, losses = _train_chunk(
            model, opt_state, train_data, boot_idx, chunk_key, loss_fn, opt_args,
            config.batch_size, steps,
        )
        step += steps
        history["step"].append(step)
        history["train_loss"].append(float(jnp.mean(losses)))
        if progress is not None:
            progress.advance()
        if hold_data is None:
            best_model, best_step = model, step
            continue
        per_member = np.asarray(_holdout_loss(model, hold_data, loss_fn))
        mean = float(per_member.mean())
        history["holdout_loss"].append(mean)
        history["holdout_loss_per_member"].append(per_member.tolist())
        if not np.isfinite(mean):
            raise FloatingPointError(
                f"held-out loss became {mean} at step {step}; lower config 'learning_rate' "
                f"(now {config.learning_rate})"
            )
        if mean < best_loss:
            best_model, best_loss, best_step, bad_evals = model, mean, step, 0
        else:
            bad_evals += 1
            if bad_evals >= config.patience:
                stopped_early = True
                break
    if progress is not None:
        progress.close()
    history.update(
        best_step=best_step,
        best_holdout_loss=best_loss if hold_data is not None else None,
        stopped_early=stopped_early,
        steps=step,
    )
    return best_model, history


class _Bar:
    """A rich progress bar over training chunks."""

    def __init__(self, total: int, what: str):
        from rich.progress import Progress

        self._bar = Progress(transient=True)
        self._bar.start()
        self._task = self._bar.add_task(f"fitting on {what}", total=total)

    def advance(self):
        self._bar.advance(self._task)

    def close(self):
        self._bar.stop()


def _progress(enabled: bool, total: int, what: str) -> _Bar | None:
    return _Bar(total, what) if enabled else None


# --------------------------------------------------------------------------- public API


def _check_model(model, consumer: str) -> None:
    """A TypeError naming ``consumer`` unless ``model`` is a ``TrainableEnsemble``."""
    require(model, TrainableEnsemble, consumer=consumer, argument="model")


def _check_actions(action, num_actions: int, what: str) -> None:
    a = np.asarray(action)
    if a.size and (a.min() < 0 or a.max() >= num_actions):
        raise ValueError(
            f"argument '{what}': actions must be in [0, {num_actions}), got range "
            f"[{a.min()}, {a.max()}]"
        )


def fit_rewards(
    model: RewardModel, data: Transitions, key: jax.Array, config: RegressionConfig | None = None
) -> tuple[RewardModel, dict[str, Any]]:
    """Regress every member on ``(obs, action) -> reward`` with bootstrap and early stopping.

    Args:
        model: the ensemble to train (its K members are trained jointly): a
            ``RewardModel`` or any ``innerlab.protocols.TrainableEnsemble``.
        data: a flat ``Transitions`` batch ``[N]``; rewards must be finite.
        key: PRNG key (split, bootstrap and batches).
        config: ``RegressionConfig`` (defaults if None).

    Returns:
        ``(model, history)``: the parameters with the best mean held-out loss, and a
        JSON-ready dict (``step``, ``train_loss``, ``holdout_loss``, ``best_step``, ...).
    """
    config = RegressionConfig() if config is None else config
    _check_model(model, "reward_models.fit_rewards")
    check_transitions(data, model.obs_shape, "data")
    _check_actions(data.action, model.num_actions, "data")
    data = Transitions(
        data.obs.astype(jnp.float32),
        data.action.astype(jnp.int32),
        data.reward.astype(jnp.float32),
        data.next_obs.astype(jnp.float32),
        data.done,
    )
    return _fit(model, data, len(data), key, config, regression_loss, "data")


def _check_preferences(prefs: Preferences, model: RewardModel) -> None:
    if not isinstance(prefs, Preferences):
        raise TypeError(f"argument 'prefs' must be a Preferences, got {type(prefs).__name__}")
    if len(prefs) == 0:
        raise ValueError("argument 'prefs' is an empty dataset (0 pairs)")
    for which in ("first", "second"):
        seg = getattr(prefs, which)
        if tuple(seg.obs.shape[2:]) != model.obs_shape:
            raise ValueError(
                f"argument 'prefs': '{which}.obs' must have shape [P, L, *{model.obs_shape}], "
                f"got {tuple(seg.obs.shape)}"
            )
        if not jnp.issubdtype(seg.obs.dtype, jnp.floating):
            raise TypeError(
                f"argument 'prefs': '{which}.obs' must be float, got dtype {seg.obs.dtype}"
            )
        _check_actions(seg.action, model.num_actions, f"prefs.{which}")
    label = np.asarray(prefs.label)
    if not np.all(np.isfinite(label)) or label.min() < 0 or label.max() > 1:
        raise ValueError(
            "argument 'prefs': field 'label' must be finite probabilities in [0, 1], got range "
            f"[{np.nanmin(label)}, {np.nanmax(label)}] with {int((~np.isfinite(label)).sum())} "
            "NaN/inf"
        )


def fit_preferences(
    model: RewardModel,
    prefs: Preferences,
    key: jax.Array,
    config: PreferenceConfig | None = None,
) -> tuple[RewardModel, dict[str, Any]]:
    """Fit every member with the Bradley-Terry model on labelled segment pairs.

    The reward is learnt only up to an additive constant per step (preferences
    compare sums), so compare it with the true reward by Pearson or EPIC, not MAE.

    Args:
        model: the ensemble to train.
        prefs: ``Preferences`` from ``data.label_preferences`` (labels in ``[0, 1]``).
        key: PRNG key.
        config: ``PreferenceConfig`` (defaults if None).

    Returns:
        ``(model, history)`` as for ``fit_rewards``.
    """
    config = PreferenceConfig() if config is None else config
    _check_model(model, "reward_models.fit_preferences")
    _check_preferences(prefs, model)
    return _fit(model, prefs, len(prefs), key, config, preference_loss, "prefs")
