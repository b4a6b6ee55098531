"""``RewardModel``: an encoder and an ensemble of K reward heads.

The split into ``encode(obs) -> latent`` and ``heads(latent, action) -> [K]``
is public so that latent pseudo-inputs are first-class: the adversary can
search the latent space directly and the planners' world model can reuse the
encoder. ``model(obs, action)`` is ``heads(encode(obs), action)``.

All methods take a single example; batch with ``jax.vmap`` (Equinox style).
With ``shared_encoder=True`` one encoder feeds all K heads and the latent is
``[D]``; with ``False`` each member has its own encoder (built and applied
with ``vmap``, not a loop) and the latent is ``[K, D]``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from einops import rearrange
from jaxtyping import Array, Float, Int

ENCODERS = ("conv", "conv_pool", "mlp")
CONV_LOWERINGS = ("native", "matmul")
# Independent members up to this many are applied one after another inside the one
# program; larger ensembles are vmapped. Both use the matmul lowering (``conv_same``).
# Measured on a 2-core CPU (benchmarks/reward_training.py): inside ``fit_rewards``'
# ``lax.scan`` the K unrolled matmul-lowered members train faster than the vmapped
# ones and than a Python loop of K jitted members (XLA's native convolution runs
# several times slower inside a loop body, and under vmap becomes a grouped
# convolution), at the cost of K copies of the encoder to compile.
MAX_UNROLLED_MEMBERS = 16
LATENT_ACTIVATIONS = ("relu", "none", "tanh", "minmax")


def latent_activation_fn(kind: str, latent: Float[Array, "*latent"]) -> Float[Array, "*latent"]:
    """Apply a ``RewardModel`` latent activation to a latent (last axis = features).

    ``"relu"`` (the default; units can die), ``"none"`` (identity), ``"tanh"``
    (bounded in ``[-1, 1]``) or ``"minmax"`` (MuZero's scaling: each latent mapped
    affinely onto ``[0, 1]`` by its own min and max, so it can neither blow up
    nor collapse to a few live units). World models apply the same function to
    their imagined latents so those stay in the space the heads were trained on.
    """
    if kind == "relu":
        return jax.nn.relu(latent)
    if kind == "none":
        return latent
    if kind == "tanh":
        return jnp.tanh(latent)
    if kind == "minmax":
        lo = jnp.min(latent, axis=-1, keepdims=True)
        hi = jnp.max(latent, axis=-1, keepdims=True)
        return (latent - lo) / jnp.maximum(hi - lo, 1e-5)
    raise ValueError(
        f"argument 'latent_activation' must be one of {LATENT_ACTIVATIONS}, got {kind!r}"
    )


def check_obs(obs: Array, obs_shape: tuple[int, ...]) -> Array:
    """``obs`` if it is one float observation of ``obs_shape``; a clear error otherwise.

    Shared by every reward model (``RewardModel``, ``TorchRewardModel``) so a
    wrong input reads the same whichever model it was given to.
    """
    if tuple(obs.shape) != tuple(obs_shape):
        raise ValueError(
            f"argument 'obs' must have shape {tuple(obs_shape)} (one example; vmap for "
            f"batches), got {tuple(obs.shape)}"
        )
    if not jnp.issubdtype(obs.dtype, jnp.floating):
        raise TypeError(f"argument 'obs' must be a float array, got dtype {obs.dtype}")
    return obs


def conv_same(conv: eqx.nn.Conv2d, x: Float[Array, "C H W"]) -> Float[Array, "O H W"]:
    """``conv(x)`` for a stride-1, zero-padded ``eqx.nn.Conv2d``, as one matrix product.

    The patches around every cell are gathered (pad, then one slice per kernel
    offset) and contracted with the kernel in a single ``einsum``. The answer
    is ``conv(x)``'s up to float rounding, and the parameters are the layer's
    own. Why: ``vmap`` over ensemble members (each with its own kernel) turns
    XLA's convolution into a grouped convolution, which its CPU backend runs
    several times slower than a loop over members; a batched matrix product
    has no such cliff, so vmapped ensembles train at least as fast as a loop.
    """
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
        raise ValueError(
            "conv_same supports stride 1, dilation 1 and groups 1 only, got "
            f"stride {conv.stride}, dilation {conv.dilation}, groups {conv.groups}"
        )
    if conv.padding_mode != "ZEROS":
        raise ValueError(f"conv_same supports zero padding only, got {conv.padding_mode!r}")
    _, _, kh, kw = conv.weight.shape
    (top, bottom), (left, right) = conv.padding
    xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right)))
    h = xp.shape[1] - kh + 1
    w = xp.shape[2] - kw + 1
    patches = jnp.stack(
        [xp[:, i : i + h, j : j + w] for i in range(kh) for j in range(kw)], axis=1
    )  # [C, kh*kw, H, W]
    kernel = rearrange(conv.weight, "o c i j -> o c (i j)")
    out = jnp.einsum("ocp,cphw->ohw", kernel, patches)
    return out + conv.bias if conv.use_bias else out


def apply_conv(conv: eqx.nn.Conv2d, x: Float[Array, "C H W"], lowering: str) -> Array:
    """``conv(x)`` lowered as XLA's convolution (``"native"``) or as ``conv_same``'s matmul.

    On XLA's CPU backend ``"matmul"`` (the default of every encoder) is the faster one
    inside a loop body (``lax.scan``: 5-10x) and when the weights themselves are vmapped
    (independent ensemble members, where the native lowering becomes a grouped
    convolution); ``"native"`` is faster (about 2x) for a single jitted call outside loops.
    """
    return conv(x) if lowering == "native" else conv_same(conv, x)


class ConvEncoder(eqx.Module):
    """3x3 convolutions over the channel grid, then a linear map to the latent."""

    convs: tuple[eqx.nn.Conv2d, ...]
    out: eqx.nn.Linear
    latent_activation: str = eqx.field(static=True, default="relu")
    lowering: str = eqx.field(static=True, default="matmul")

    def __init__(
        self, obs_shape, latent_dim: int, width: int, *, key, latent_activation="relu",
        lowering="matmul",
    ):
        self.latent_activation = latent_activation
        self.lowering = lowering
        h, w, c = obs_shape
        k1, k2, k3 = jax.random.split(key, 3)
        self.convs = (
            eqx.nn.Conv2d(c, width, 3, padding=1, key=k1),
            eqx.nn.Conv2d(width, width, 3, padding=1, key=k2),
        )
        self.out = eqx.nn.Linear(width * h * w, latent_dim, key=k3)

    def __call__(self, obs: Float[Array, "H W C"]) -> Float[Array, " D"]:
        x = rearrange(obs, "h w c -> c h w")
        for conv in self.convs:
            x = jax.nn.relu(apply_conv(conv, x, self.lowering))
        out = self.out(rearrange(x, "c h w -> (c h w)"))
        return latent_activation_fn(self.latent_activation, out)


class ConvPoolEncoder(eqx.Module):
    """3x3 convolutions, a sum over grid cells, then a linear map to the latent.

    Summing over cells makes the latent translation-invariant: a local
    pattern ("the agent with a large object to its right") means the same
    wherever it occurs, so far less data is needed than with ``ConvEncoder``'s
    position-specific final layer.
    """

    convs: tuple[eqx.nn.Conv2d, ...]
    out: eqx.nn.Linear
    latent_activation: str = eqx.field(static=True, default="relu")
    lowering: str = eqx.field(static=True, default="matmul")

    def __init__(
        self, obs_shape, latent_dim: int, width: int, *, key, latent_activation="relu",
        lowering="matmul",
    ):
        self.latent_activation = latent_activation
        self.lowering = lowering
        c = obs_shape[2]
        k1, k2, k3 = jax.random.split(key, 3)
        self.convs = (
            eqx.nn.Conv2d(c, width, 3, padding=1, key=k1),
            eqx.nn.Conv2d(width, width, 3, padding=1, key=k2),
        )
        self.out = eqx.nn.Linear(width, latent_dim, key=k3)

    def __call__(self, obs: Float[Array, "H W C"]) -> Float[Array, " D"]:
        x = rearrange(obs, "h w c -> c h w")
        for conv in self.convs:
            x = jax.nn.relu(apply_conv(conv, x, self.lowering))
        out = self.out(jnp.sum(x, axis=(1, 2)))
        return latent_activation_fn(self.latent_activation, out)


class MLPEncoder(eqx.Module):
    """Flatten the grid, then an MLP to the latent."""

    mlp: eqx.nn.MLP
    latent_activation: str = eqx.field(static=True, default="relu")

    def __init__(
        self, obs_shape, latent_dim: int, width: int, *, key, latent_activation="relu",
        lowering="matmul",
    ):
        del lowering  # no convolutions
        self.latent_activation = latent_activation
        size = 1
        for s in obs_shape:
            size *= s
        self.mlp = eqx.nn.MLP(size, latent_dim, width, 2, key=key)

    def __call__(self, obs: Float[Array, "H W C"]) -> Float[Array, " D"]:
        out = self.mlp(rearrange(obs, "h w c -> (h w c)"))
        return latent_activation_fn(self.latent_activation, out)


class RewardHead(eqx.Module):
    """One member's reward: MLP of ``[latent, one_hot(action)]``."""

    mlp: eqx.nn.MLP
    num_actions: int = eqx.field(static=True)

    def __init__(self, latent_dim: int, num_actions: int, width: int, *, key):
        self.num_actions = num_actions
        self.mlp = eqx.nn.MLP(latent_dim + num_actions, "scalar", width, 2, key=key)

    def __call__(self, latent: Float[Array, " D"], action: Int[Array, ""]) -> Float[Array, ""]:
        onehot = jax.nn.one_hot(action, self.num_actions)
        return self.mlp(jnp.concatenate([latent, onehot]))


INT_OBS_EMBED = 16  # embedding width of each integer observation slot value


class EmbeddedEncoder(eqx.Module):
    """An encoder for integer observations ``[H, W, S]`` (``envs.IntegerObs``).

    Every slot value (0..255) has a learned vector of ``INT_OBS_EMBED``; a
    cell's vectors are summed over its slots, and the float grid
    ``[H, W, INT_OBS_EMBED]`` goes to an ordinary encoder. Summed embeddings of
    the slots are a linear map of the cell's one-hot channels, so this sees
    what an encoder of the one-hot grid sees, without the env building it.
    """

    embedding: eqx.nn.Embedding
    inner: eqx.Module

    def __call__(self, obs: Int[Array, "H W S"]) -> Float[Array, " D"]:
        if not jnp.issubdtype(obs.dtype, jnp.integer):
            raise TypeError(f"EmbeddedEncoder reads integer observations, got dtype {obs.dtype}")
        return self.inner(jnp.sum(self.embedding.weight[obs.astype(jnp.int32)], axis=-2))


def build_encoder(
    kind, obs_shape, latent_dim, width, key, latent_activation="relu", lowering="matmul",
    int_input=False,
):
    """The encoder ``obs [H, W, C] -> latent [latent_dim]`` of kind ``kind`` (one of ``ENCODERS``).

    Shared by ``RewardModel`` and any other model (e.g. the planners' policies)
    that wants the same grid encoders. ``width`` is the conv channels / MLP
    hidden width; ``latent_activation`` is applied to the output (see
    ``latent_activation_fn``). Unknown kinds fall back to ``"mlp"``; callers
    validate ``kind`` against ``ENCODERS``. ``lowering`` (one of ``CONV_LOWERINGS``,
    see ``apply_conv``) defaults to ``"matmul"``: almost every encoder runs inside a
    ``lax.scan`` (training chunks, rollouts, ``fit_rewards``), where XLA's native
    convolution measured 5-10x slower on CPU (benchmarks/reward_training.py);
    ``"native"`` is faster only for a single call outside any loop.
    ``int_input=True`` reads integer observations ``[H, W, S]`` through an
    ``EmbeddedEncoder`` (``obs_shape`` is then the integer observation's shape).
    """
    if int_input:
        k_embed, key = jax.random.split(key)
        h, w, _ = obs_shape
        inner = build_encoder(
            kind, (h, w, INT_OBS_EMBED), latent_dim, width, key, latent_activation, lowering
        )
        # small vectors, and 0 ("nothing here") starts as the zero vector, so an empty cell
        # reads as it does in the one-hot grid (eqx's N(0, 1) rows swamp the encoder's input)
        table = 0.5 * jax.random.normal(k_embed, (256, INT_OBS_EMBED))
        table = table.at[0].set(0.0)
        return EmbeddedEncoder(eqx.nn.Embedding(weight=table), inner)
    if kind == "conv":
        cls = ConvEncoder
    elif kind == "conv_pool":
        cls = ConvPoolEncoder
    else:
        cls = MLPEncoder
    return cls(
        obs_shape, latent_dim, width, key=key, latent_activation=latent_activation,
        lowering=lowering,
    )


class RewardModel(eqx.Module):
    """An ensemble reward model ``(obs [H, W, C], action []) -> [K]``.

    Args:
        obs_shape: observation shape ``(H, W, C)``.
        num_actions: number of discrete actions.
        num_members: ensemble size K (>= 1; disagreement needs >= 2).
        latent_dim: size D of the encoder's output.
        shared_encoder: one encoder for all members (latent ``[D]``) or one per member
            (latent ``[K, D]``).
        encoder: ``"conv"`` (position-specific), ``"conv_pool"`` (translation-invariant, sums
            over cells; learns grid rewards from far less data) or ``"mlp"``.
        width: hidden width of encoder and heads.
        key: PRNG key.
        latent_activation: the encoder's output activation, one of ``LATENT_ACTIVATIONS``
            (see ``latent_activation_fn``); default ``"relu"``. ``"minmax"`` keeps a
            latent trained through long model unrolls (MuZero) from collapsing.
    """

    encoder: eqx.Module
    head: RewardHead  # K stacked heads (leading axis K on every array leaf)
    obs_shape: tuple[int, ...] = eqx.field(static=True)
    num_actions: int = eqx.field(static=True)
    num_members: int = eqx.field(static=True)
    latent_dim: int = eqx.field(static=True)
    shared_encoder: bool = eqx.field(static=True)
    encoder_kind: str = eqx.field(static=True)
    width: int = eqx.field(static=True)
    latent_activation: str = eqx.field(static=True)

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        num_actions: int,
        num_members: int = 5,
        latent_dim: int = 64,
        shared_encoder: bool = True,
        encoder: str = "conv",
        width: int = 64,
        *,
        key: Array,
        latent_activation: str = "relu",
    ):
        obs_shape = tuple(int(s) for s in obs_shape)
        if len(obs_shape) != 3:
            raise ValueError(f"argument 'obs_shape' must be (H, W, C), got {obs_shape}")
        if num_members < 1:
            raise ValueError(f"argument 'num_members' must be >= 1, got {num_members}")
        if num_actions < 1:
            raise ValueError(f"argument 'num_actions' must be >= 1, got {num_actions}")
        if encoder not in ENCODERS:
            raise ValueError(f"argument 'encoder' must be one of {ENCODERS}, got {encoder!r}")
        if latent_activation not in LATENT_ACTIVATIONS:
            raise ValueError(
                f"argument 'latent_activation' must be one of {LATENT_ACTIVATIONS}, "
                f"got {latent_activation!r}"
            )
        self.latent_activation = latent_activation
        self.obs_shape = obs_shape
        self.num_actions = num_actions
        self.num_members = num_members
        self.latent_dim = latent_dim
        self.shared_encoder = shared_encoder
        self.encoder_kind = encoder
        self.width = width
        k_enc, k_head = jax.random.split(key)
        if shared_encoder:
            # the matmul lowering (see apply_conv), like every other encoder: nearly every
            # call runs inside a loop body (fit_rewards' scan, MuZero's and the IBP's
            # training chunks), where XLA's native convolution is 4-12x slower on CPU, and
            # more so when seeds are vmapped (each seed's kernel makes it a grouped one)
            self.encoder = build_encoder(
                encoder, obs_shape, latent_dim, width, k_enc, latent_activation, "matmul"
            )
        else:
            # stacked members, applied by _each_member; the matmul lowering (see apply_conv)
            self.encoder = eqx.filter_vmap(
                lambda k: build_encoder(
                    encoder, obs_shape, latent_dim, width, k, latent_activation, "matmul"
                )
            )(jax.random.split(k_enc, num_members))
        self.head = eqx.filter_vmap(lambda k: RewardHead(latent_dim, num_actions, width, key=k))(
            jax.random.split(k_head, num_members)
        )

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """``(D,)`` with a shared encoder, ``(K, D)`` with independent members."""
        if self.shared_encoder:
            return (self.latent_dim,)
        return (self.num_members, self.latent_dim)

    def check_obs(self, obs: Array) -> Array:
        """Reject observations of the wrong shape or a non-float dtype (at trace time)."""
        return check_obs(obs, self.obs_shape)

    def _each_member(self, fn, *per_member: Array) -> Array:
        """``stack([fn(encoder_k, *(a[k] for a in per_member)) for k])`` over the
        independent members' stacked encoders.

        Up to ``MAX_UNROLLED_MEMBERS`` members the loop is unrolled in the traced
        program (K ordinary matrix products instead of one batched one, faster on
        CPU, see the constant); beyond it the members are vmapped.
        """
        if self.num_members > MAX_UNROLLED_MEMBERS:
            return eqx.filter_vmap(fn)(self.encoder, *per_member)
        arrays, static = eqx.partition(self.encoder, eqx.is_array)
        return jnp.stack([
            fn(eqx.combine(jax.tree.map(lambda x, k=k: x[k], arrays), static),
               *(a[k] for a in per_member))
            for k in range(self.num_members)
        ])

    def encode(self, obs: Float[Array, "H W C"]) -> Float[Array, "*latent"]:
        """The latent that all heads read: ``[D]`` (shared) or ``[K, D]`` (independent)."""
        obs = self.check_obs(jnp.asarray(obs))
        if self.shared_encoder:
            return self.encoder(obs)
        return self._each_member(lambda enc: enc(obs))

    def heads(self, latent: Float[Array, "*latent"], action: Int[Array, ""]) -> Float[Array, " K"]:
        """Each member's reward for ``action`` given a latent (real or pseudo-input)."""
        if tuple(latent.shape) != self.latent_shape:
            raise ValueError(
                f"argument 'latent' must have shape {self.latent_shape}, got {tuple(latent.shape)}"
            )
        in_axis = None if self.shared_encoder else 0
        return eqx.filter_vmap(lambda h, z: h(z, action), in_axes=(eqx.if_array(0), in_axis))(
            self.head, latent
        )

    def __call__(self, obs: Float[Array, "H W C"], action: Int[Array, ""]) -> Float[Array, " K"]:
        """Every member's predicted reward for ``(obs, action)``."""
        return self.heads(self.encode(obs), action)

    def per_member(
        self, obs: Float[Array, "K H W C"], action: Int[Array, " K"]
    ) -> Float[Array, " K"]:
        """Member k's prediction on its own input ``(obs[k], action[k])``.

        Used for training with per-member (bootstrap) batches: each member
        sees its own data while costing one encoding per member, with a shared
        or an independent encoder alike.
        """
        k = self.num_members
        if obs.shape[:1] != (k,) or jnp.shape(action) != (k,):
            raise ValueError(
                f"arguments 'obs'/'action' must have a leading member axis of size {k}, "
                f"got obs {tuple(obs.shape)} and action {tuple(jnp.shape(action))}"
            )
        self.check_obs(obs[0])  # shape and dtype, at trace time
        if self.shared_encoder:
            latent = jax.vmap(self.encode)(obs)  # [K, D]
            return eqx.filter_vmap(lambda h, z, a: h(z, a))(self.head, latent, action)
        latent = self._each_member(lambda enc, o: enc(o), obs)  # [K, D]
        return eqx.filter_vmap(lambda h, z, a: h(z, a))(self.head, latent, action)

    def all_actions(self, obs: Float[Array, "H W C"]) -> Float[Array, "A K"]:
        """Predictions for every action from one encoding."""
        latent = self.encode(obs)
        return jax.vmap(lambda a: self.heads(latent, a))(jnp.arange(self.num_actions))
