"""Latent (pseudo-input) search: where in activation space do the reward heads disagree most?

The input-space searches are confined to valid states. The relaxed adversary
instead searches a layer's activations directly ("pseudo-inputs"): starting
from the activations of real observations, projected gradient ascent on the
ensemble's disagreement, staying within an epsilon ball (L2) around each
starting activation and non-negative (every named layer follows a ReLU).

Named layers of a ``RewardModel``: ``"latent"`` (the encoder output that all
heads read, shared or independent encoders) and, for a shared conv encoder,
``"conv0"`` / ``"conv1"`` (after each convolution and its ReLU). An unknown
name raises an error listing the valid ones.

A pseudo-input has no ground-truth label. Two ways to train on them:

1. ``decode_nearest``: map each pseudo-input back to a valid state, the state
   of a candidate pool (e.g. ``sample_state`` draws) whose activation at the
   layer is nearest (L2), and label that state with ``true_reward``. A
   nearest-real-state decoder, not a learned one: it can only return states
   in the pool, and it is exact when a pseudo-input is a real activation.
2. ``conservative_loss``: with no label at all, pull every member's prediction
   at the pseudo-input towards the ensemble's pessimistic value there
   (mean - k*std, computed once when the pseudo-input is found, by
   ``pessimistic_targets``), so the agent cannot profit from a region where
   the members disagree.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange
from jaxtyping import Array, Float, Int

from innerlab.adversary.objectives import measure_fn
from innerlab.adversary.search import check_positive, smooth_measure
from innerlab.protocols import LatentEnsemble, require
from innerlab.reward_models.aggregate import aggregate
from innerlab.reward_models.model import ConvEncoder, RewardModel, apply_conv, latent_activation_fn


class LatentSearchResult(NamedTuple):
    """Pseudo-inputs found by ``latent_search`` (best first).

    Attributes:
        latents: ``[n, *layer_shape]`` the pseudo-inputs (activations at ``layer``).
        start: ``[n, *layer_shape]`` the real activations they started from.
        source: ``[n]`` index of the real observation each started from.
        actions: ``[n]`` the most contested action at each pseudo-input.
        scores: ``[n]`` disagreement there, descending.
        start_scores: ``[n]`` disagreement at the starting activation.
        distance: ``[n]`` L2 distance from the start (<= epsilon).
        trace_evals: ``[T]`` cumulative model evaluations (3 per point per step: gradient
            and scoring).
        trace_best: ``[T]`` best disagreement so far.
        num_evals: total model evaluations.
        layer: the layer searched.
    """

    latents: Array
    start: Array
    source: Int[Array, " n"]
    actions: Int[Array, " n"]
    scores: Float[Array, " n"]
    start_scores: Float[Array, " n"]
    distance: Float[Array, " n"]
    trace_evals: Int[Array, " T"]
    trace_best: Float[Array, " T"]
    num_evals: int
    layer: str


# --------------------------------------------------------------------------- layers


def layer_names(model: RewardModel) -> tuple[str, ...]:
    """The layers of ``model`` whose activations can be searched."""
    if model.shared_encoder and isinstance(model.encoder, ConvEncoder):
        return ("conv0", "conv1", "latent")
    return ("latent",)


def check_layer(model: Any, layer: str, consumer: str = "adversary.latent") -> None:
    """Check ``model`` is a ``LatentEnsemble`` (a TypeError naming ``consumer`` otherwise) and
    ``layer`` one of its layers (a ValueError naming the valid ones otherwise)."""
    require(model, LatentEnsemble, consumer=consumer, argument="model")
    if not isinstance(model, RewardModel):
        if layer != "latent":
            raise ValueError(
                f"argument 'layer': only 'latent' is defined for a {type(model).__name__}, "
                f"got {layer!r}"
            )
        return
    names = layer_names(model)
    if layer not in names:
        raise ValueError(f"argument 'layer' must be one of {names} for this model, got {layer!r}")


def _conv_from(enc: ConvEncoder, x: Array, start: int) -> Array:
    """The rest of the encoder from conv layer ``start``, ending in its own latent activation."""
    for conv in enc.convs[start:]:
        x = jax.nn.relu(apply_conv(conv, x, enc.lowering))
    return latent_activation_fn(enc.latent_activation, enc.out(rearrange(x, "c h w -> (c h w)")))


def activation(model: Any, obs: Float[Array, "H W C"], layer: str = "latent") -> Array:
    """The activation of one observation at ``layer``."""
    check_layer(model, layer, "adversary.activation")
    if layer == "latent":
        return model.encode(obs)
    enc = model.encoder
    x = rearrange(model.check_obs(obs), "h w c -> c h w")
    for conv in enc.convs[: int(layer[-1]) + 1]:
        x = jax.nn.relu(apply_conv(conv, x, enc.lowering))
    return x


def from_layer(
    model: Any, act: Array, action: Int[Array, ""], layer: str = "latent"
) -> Float[Array, " K"]:
    """Every member's prediction from an activation (real or pseudo) at ``layer``."""
    check_layer(model, layer, "adversary.from_layer")
    if layer == "latent":
        return model.heads(act, action)
    return model.heads(_conv_from(model.encoder, act, int(layer[-1]) + 1), action)


# --------------------------------------------------------------------------- search


def project_ball(z: Array, center: Array, epsilon: float, nonnegative: bool = True) -> Array:
    """The point nearest ``z`` in the L2 ball of radius ``epsilon`` around ``center``.

    With ``nonnegative`` the result is then clipped at 0, which keeps it in the
    ball whenever ``center`` is non-negative (as post-ReLU activations are).
    """
    delta = z - center
    norm = jnp.sqrt(jnp.sum(delta**2))
    scale = jnp.minimum(1.0, epsilon / jnp.maximum(norm, 1e-12))
    z = center + delta * scale
    return jnp.maximum(z, 0.0) if nonnegative else z


def latent_search(
    model: Any,
    obs: Float[Array, "B H W C"],
    key: Array,
    *,
    epsilon: float,
    steps: int = 20,
    step_size: float | None = None,
    layer: str = "latent",
    measure: str = "std",
    top_n: int | None = None,
    nonnegative: bool = True,
) -> LatentSearchResult:
    """Projected gradient ascent on disagreement from each real observation's activation.

    Args:
        model: a ``RewardModel``, or any ``innerlab.protocols.LatentEnsemble`` for
            ``layer="latent"``.
        obs: ``[B, H, W, C]`` real observations whose activations are the ball centres.
        key: PRNG key (random start inside each ball).
        epsilon: L2 radius of the ball (>= 0; 0 returns the real activations).
        steps: ascent steps (>= 1).
        step_size: L2 length of each (normalised-gradient) step; default ``epsilon / 4``.
        layer: which activations to search (``layer_names(model)``).
        measure: ``"std"`` or ``"gap"``.
        top_n: how many pseudo-inputs to return (default all B).
        nonnegative: keep activations >= 0 (they follow a ReLU).
    """
    epsilon = float(epsilon)
    if not epsilon >= 0:
        raise ValueError(f"argument 'epsilon' must be >= 0, got {epsilon}")
    steps = check_positive("steps", steps)
    measure_fn(measure)
    check_layer(model, layer, "adversary.latent_search")
    obs = jnp.asarray(obs)
    if obs.ndim != 4:
        raise ValueError(f"argument 'obs' must be a batch [B, H, W, C], got shape {obs.shape}")
    top_n = obs.shape[0] if top_n is None else check_positive("top_n", top_n)
    if top_n > obs.shape[0]:
        raise ValueError(f"argument 'top_n' must be <= the batch size {obs.shape[0]}, got {top_n}")
    step_size = epsilon / 4 if step_size is None else float(step_size)
    if not step_size >= 0:
        raise ValueError(f"argument 'step_size' must be >= 0, got {step_size}")
    evals = obs.shape[0] * (1 + 3 * np.arange(steps + 1))
    *found, trace = _latent_search(model, obs, key, epsilon, steps, step_size, layer, measure,
                                   top_n, nonnegative)
    return LatentSearchResult(*found, jnp.asarray(evals), trace, int(evals[-1]), layer)


def _scores(model, z, layer, num_actions, reduce):
    preds = jax.vmap(lambda a: from_layer(model, z, a, layer))(jnp.arange(num_actions))
    return reduce(preds)  # [A]


@eqx.filter_jit
def _latent_search(model, obs, key, epsilon, steps, step_size, layer, measure, top_n,
                   nonnegative):
    num_actions = model.num_actions
    reduce, smooth = measure_fn(measure), smooth_measure(measure)
    center = jax.vmap(lambda o: activation(model, o, layer))(obs)
    noise = jax.random.normal(key, center.shape)
    noise = noise / jnp.sqrt(jnp.sum(noise**2, axis=tuple(range(1, noise.ndim)), keepdims=True))
    z = jax.vmap(lambda c, n: project_ball(c + 0.5 * epsilon * n, c, epsilon, nonnegative))(
        center, noise
    )

    def objective(z):
        return jnp.max(_scores(model, z, layer, num_actions, smooth))

    def best_so_far(z):
        per_point = jax.vmap(lambda x: jnp.max(_scores(model, x, layer, num_actions, reduce)))
        return jnp.max(per_point(z))

    def body(z, _):
        g = jax.vmap(jax.grad(objective))(z)
        gnorm = jnp.sqrt(jnp.sum(g**2, axis=tuple(range(1, g.ndim)), keepdims=True))
        z = z + step_size * g / jnp.maximum(gnorm, 1e-12)
        z = jax.vmap(lambda x, c: project_ball(x, c, epsilon, nonnegative))(z, center)
        return z, best_so_far(z)

    start_best = best_so_far(center)
    z, trace = jax.lax.scan(body, z, None, length=steps)
    per_action = jax.vmap(lambda x: _scores(model, x, layer, num_actions, reduce))(z)  # [B, A]
    scores, actions = jnp.max(per_action, -1), jnp.argmax(per_action, -1).astype(jnp.int32)
    start_scores = jax.vmap(
        lambda c, a: _scores(model, c, layer, num_actions, reduce)[a]
    )(center, actions)
    order = jnp.argsort(-scores)[:top_n]
    dist = jnp.sqrt(jnp.sum((z - center) ** 2, axis=tuple(range(1, z.ndim))))
    trace = jnp.maximum.accumulate(jnp.concatenate([start_best[None], trace]))
    return (z[order], center[order], order.astype(jnp.int32), actions[order], scores[order],
            start_scores[order], dist[order], trace)


# --------------------------------------------------------------------------- using pseudo-inputs


def decode_nearest(
    model: Any,
    latents: Array,
    pool_obs: Float[Array, "P H W C"],
    layer: str = "latent",
) -> Int[Array, " n"]:
    """Index into ``pool_obs`` of the observation whose activation is nearest each pseudo-input.

    The nearest-real-state decoder: label ``pool_states[idx]`` with ``true_reward``.
    """
    check_layer(model, layer, "adversary.decode_nearest")
    return _decode_nearest(model, latents, pool_obs, layer)


@eqx.filter_jit
def _decode_nearest(model, latents, pool_obs, layer):
    pool = jax.vmap(lambda o: activation(model, o, layer))(pool_obs)
    flat_pool = pool.reshape(pool.shape[0], -1)
    flat = latents.reshape(latents.shape[0], -1)
    d2 = (
        jnp.sum(flat**2, 1)[:, None] - 2 * flat @ flat_pool.T + jnp.sum(flat_pool**2, 1)[None, :]
    )
    return jnp.argmin(d2, axis=1).astype(jnp.int32)


def pessimistic_targets(
    model: Any, latents: Array, actions: Int[Array, " n"], layer: str = "latent", k: float = 1.0
) -> Float[Array, " n"]:
    """The ensemble's pessimistic value (mean - k*std) at each pseudo-input (a frozen target)."""
    if not k >= 0:
        raise ValueError(f"argument 'k' must be >= 0, got {k}")
    preds = jax.vmap(lambda z, a: from_layer(model, z, a, layer))(latents, actions)  # [n, K]
    return aggregate(preds, "pessimistic", k)


def conservative_loss(
    model: Any,
    latents: Array,
    actions: Int[Array, " n"],
    targets: Float[Array, " n"],
    layer: str = "latent",
) -> Float[Array, ""]:
    """Mean squared pull of every member towards a fixed pessimistic target at pseudo-inputs.

    ``mean_i mean_k (r_k(z_i, a_i) - targets_i)^2``, with ``targets`` from
    ``pessimistic_targets`` computed once, when the pseudo-inputs were found.
    A fixed target matters: re-computing mean - k*std at every step would
    chase a target that keeps moving down, and the heads would drift without
    bound.
    """
    preds = jax.vmap(lambda z, a: from_layer(model, z, a, layer))(latents, actions)  # [n, K]
    return jnp.mean((preds - jax.lax.stop_gradient(targets)[:, None]) ** 2)
