"""A gated Transformer-XL actor-critic (GTrXL) with the interface of ``RecurrentActorCritic``.

Parisotto et al. 2020, "Stabilizing Transformers for Reinforcement Learning":
each layer is a pre-LayerNorm Transformer-XL layer whose two residual adds are
replaced by GRU-type gates,

    y  = relu(MHA(LN([memory ++ x])))      x1 = gate(x, y)
    e  = relu(MLP(LN(x1)))                 out = gate(x1, e)

    gate(x, y): r = sigmoid(W_r y + U_r x)
                z = sigmoid(W_z y + U_z x - b_g)
                h = tanh(W_g y + U_g (r * x))
                    (1 - z) * x + z * h

with ``b_g = 2`` at initialisation so that ``z`` starts near ``sigmoid(-2) ~ 0.12``
and every layer starts close to the identity map (the paper's reason RL
training of transformers becomes stable).

Memory and masking. The carry holds, for every layer, the *inputs* of that layer
at the last ``memory - 1`` steps (Transformer-XL's memory; the carried memory is
wrapped in ``stop_gradient``) and a validity flag per slot (the slot holds a
step of the current episode). A query at step ``t`` attends to keys at steps
``t - memory + 1 .. t`` that belong to its own episode: the mask is causal,
limited to the window, and cut at every ``reset``. Because layer ``l + 1``'s
memory holds layer ``l``'s outputs, the receptive field of the whole stack is
``num_layers * (memory - 1) + 1`` steps, as in Transformer-XL; one layer sees
exactly ``memory`` steps.

Positions. A learned relative-position bias per layer, head and distance
``d = 0 .. memory - 1`` (zero at initialisation) is added to the attention
logits; the content vectors carry no position. Distances are what a policy with
a sliding window needs (absolute positions would shift every step), and a head
can attend to "the step ``k`` ago" by a large bias at ``d = k``.

``unroll`` computes all ``T`` steps of ``B`` envs at once, layer by layer, with
attention over ``[carried memory ++ T steps]`` under that mask; ``__call__`` is
the same computation with ``T = 1``, so stepping ``__call__`` gives the values
of ``unroll``. Gradients differ by design: ``unroll`` back-propagates through
every step inside the sequence, stepping only through the current one.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from innerlab.reward_models.model import build_encoder

POLICY_ENCODERS = ("mlp", "conv")
GATE_BIAS = 2.0  # the paper's b_g: each gate starts near the identity map


class TransformerCarry(NamedTuple):
    """The memory of one env (PPO stacks a leading env axis ``B`` on both fields).

    Attributes:
        memory: ``[L, memory - 1, D]`` float32; ``memory[l, j]`` is layer ``l``'s input
            at the step ``memory - 1 - j`` steps before the next one (oldest first).
        valid: ``[memory - 1]`` bool; slot ``j`` holds a step of the current episode
            (False for never-filled slots and for steps before the last reset).
    """

    memory: Float[Array, "L M1 D"]
    valid: Bool[Array, " M1"]


def _dense(linear: eqx.nn.Linear, x: Float[Array, "... I"]) -> Float[Array, "... O"]:
    """``linear`` applied to the last axis of ``x`` with any leading shape (one matmul)."""
    out = x @ linear.weight.T
    return out if linear.bias is None else out + linear.bias


def _layer_norm(norm: eqx.nn.LayerNorm, x: Float[Array, "... D"]) -> Float[Array, "... D"]:
    """``norm`` over the last axis of ``x`` with any leading shape."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + norm.eps) * norm.weight + norm.bias


def window_distances(memory: int, t_len: int) -> np.ndarray:
    """``[T, memory - 1 + T]`` int: how many steps key ``s`` lies before query ``t``.

    Keys are ``[memory slots ++ T steps]``, queries the ``T`` steps; negative
    distances are future keys. Static (numpy), so the mask costs nothing to build.
    """
    query = np.arange(t_len)[:, None] + memory - 1
    return query - np.arange(memory - 1 + t_len)[None, :]


def attention_mask(
    valid: Bool[Array, " M1"], reset: Bool[Array, " T"], memory: int
) -> Bool[Array, "T S"]:
    """Which keys ``[memory slots ++ T steps]`` each of ``T`` queries may attend to.

    Causal, within the last ``memory`` steps (the query included), and only in
    the query's own episode: every step gets an episode number (``cumsum(reset)``
    over the sequence, 0 for valid memory slots, -1 for invalid ones) and a key
    counts only if its number equals the query's. Always true on the diagonal.
    """
    seq_episode = jnp.cumsum(reset.astype(jnp.int32))
    key_episode = jnp.concatenate([jnp.where(valid, 0, -1), seq_episode])
    dist = window_distances(memory, reset.shape[0])
    in_window = jnp.asarray((dist >= 0) & (dist < memory))
    return in_window & (key_episode[None, :] == seq_episode[:, None])


class GRUGate(eqx.Module):
    """GTrXL's GRU-type gate ``g(x, y)`` replacing the residual ``x + y`` (module docstring)."""

    w_y: eqx.nn.Linear  # [W_r; W_z; W_g] of the sublayer output y, bias [0; -b_g; 0]
    u_x: eqx.nn.Linear  # [U_r; U_z] of the stream x, no bias
    u_g: eqx.nn.Linear  # U_g of r * x, no bias

    def __init__(self, width: int, *, key: Array, gate_bias: float = GATE_BIAS):
        k1, k2, k3 = jax.random.split(key, 3)
        w_y = eqx.nn.Linear(width, 3 * width, key=k1)
        bias = jnp.zeros(3 * width).at[width : 2 * width].set(-gate_bias)
        self.w_y = eqx.tree_at(lambda lin: lin.bias, w_y, bias)
        self.u_x = eqx.nn.Linear(width, 2 * width, use_bias=False, key=k2)
        self.u_g = eqx.nn.Linear(width, width, use_bias=False, key=k3)

    def __call__(self, x: Float[Array, "... D"], y: Float[Array, "... D"]) -> Float[Array, "... D"]:
        wr, wz, wg = jnp.split(_dense(self.w_y, y), 3, axis=-1)
        ur, uz = jnp.split(_dense(self.u_x, x), 2, axis=-1)
        r = jax.nn.sigmoid(wr + ur)
        z = jax.nn.sigmoid(wz + uz)
        h = jnp.tanh(wg + _dense(self.u_g, r * x))
        return x + z * (h - x)


class GatedLayer(eqx.Module):
    """One GTrXL layer: gated multi-head attention over the window, then a gated MLP."""

    attn_norm: eqx.nn.LayerNorm
    query: eqx.nn.Linear
    key_value: eqx.nn.Linear
    out: eqx.nn.Linear
    rel_bias: Float[Array, "H M"]  # learned bias per head and distance 0 .. memory-1
    attn_gate: GRUGate
    mlp_norm: eqx.nn.LayerNorm
    mlp_in: eqx.nn.Linear
    mlp_out: eqx.nn.Linear
    mlp_gate: GRUGate
    num_heads: int = eqx.field(static=True)

    def __init__(self, width: int, num_heads: int, memory: int, mlp_width: int, *, key: Array):
        keys = jax.random.split(key, 7)
        self.num_heads = num_heads
        self.attn_norm = eqx.nn.LayerNorm(width)
        self.query = eqx.nn.Linear(width, width, use_bias=False, key=keys[0])
        self.key_value = eqx.nn.Linear(width, 2 * width, use_bias=False, key=keys[1])
        self.out = eqx.nn.Linear(width, width, key=keys[2])
        self.rel_bias = jnp.zeros((num_heads, memory))
        self.attn_gate = GRUGate(width, key=keys[3])
        self.mlp_norm = eqx.nn.LayerNorm(width)
        self.mlp_in = eqx.nn.Linear(width, mlp_width, key=keys[4])
        self.mlp_out = eqx.nn.Linear(mlp_width, width, key=keys[5])
        self.mlp_gate = GRUGate(width, key=keys[6])

    def attend(
        self, mem: Float[Array, "M1 D"], x: Float[Array, "T D"], mask: Bool[Array, "T S"]
    ) -> Float[Array, "T D"]:
        """Multi-head attention of the ``T`` steps over ``[mem ++ x]`` (``S = M1 + T`` keys)."""
        t_len, width = x.shape
        memory = self.rel_bias.shape[1]
        heads, head_dim = self.num_heads, width // self.num_heads
        normed = _layer_norm(self.attn_norm, jnp.concatenate([mem, x]))
        q = _dense(self.query, normed[mem.shape[0] :]).reshape(t_len, heads, head_dim)
        k, v = jnp.split(_dense(self.key_value, normed), 2, axis=-1)
        k = k.reshape(-1, heads, head_dim)
        v = v.reshape(-1, heads, head_dim)
        dist = np.clip(window_distances(memory, t_len), 0, memory - 1)  # masked where clipped
        logits = jnp.einsum("thd,shd->hts", q, k) / np.sqrt(head_dim) + self.rel_bias[:, dist]
        logits = jnp.where(mask[None], logits, -jnp.inf)
        weights = jax.nn.softmax(logits, axis=-1)  # the diagonal is never masked: no NaN
        mixed = jnp.einsum("hts,shd->thd", weights, v).reshape(t_len, width)
        return _dense(self.out, mixed)

    def __call__(
        self, mem: Float[Array, "M1 D"], x: Float[Array, "T D"], mask: Bool[Array, "T S"]
    ) -> Float[Array, "T D"]:
        """The layer's output at the ``T`` steps (its input ``x`` there, memory ``mem``)."""
        x = self.attn_gate(x, jax.nn.relu(self.attend(mem, x, mask)))
        hidden = jax.nn.relu(_dense(self.mlp_in, _layer_norm(self.mlp_norm, x)))
        return self.mlp_gate(x, jax.nn.relu(_dense(self.mlp_out, hidden)))


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"argument '{name}' must be an integer >= 1, got {value!r}")


class TransformerActorCritic(eqx.Module):
    """Encoder -> ``num_layers`` GTrXL layers -> LayerNorm -> policy logits and value.

    Same interface as ``innerlab.planners.ppo.RecurrentActorCritic``:
    ``initial_carry()``, ``__call__(carry, obs, reset)`` for one step of one env,
    ``unroll(carry, obs [T, B, ...], reset [T, B])`` for a batch of sequences.
    See the module docstring for the layer, the memory and the positions.

    Args:
        obs_shape: shape of one observation; ``[H, W, C]`` for ``encoder="conv"``,
            anything for ``"mlp"`` (flattened).
        num_actions: number of discrete actions (policy logits ``[A]``).
        width: model width ``D`` (encoder output, attention, gates).
        key: PRNG key.
        num_layers: number of gated layers ``L``.
        num_heads: attention heads; must divide ``width``.
        memory: attention window in steps, the current one included (>= 1; the
            carry keeps ``memory - 1`` past steps per layer).
        encoder: ``"mlp"`` or ``"conv"``, built by ``innerlab.reward_models.build_encoder``
            with a tanh output (as ``RecurrentActorCritic``'s encoder).
        mlp_width: hidden width of each layer's position-wise MLP (default ``2 * width``).
        int_obs: observations are integer slots ``[H, W, S]`` (``envs.IntegerObs``), embedded
            at the input (``reward_models.model.EmbeddedEncoder``).
    """

    encoder: eqx.Module
    layers: tuple[GatedLayer, ...]
    final_norm: eqx.nn.LayerNorm
    actor: eqx.nn.Linear
    critic: eqx.nn.Linear
    obs_shape: tuple[int, ...] = eqx.field(static=True)
    width: int = eqx.field(static=True)
    memory: int = eqx.field(static=True)
    encoder_kind: str = eqx.field(static=True)

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        num_actions: int,
        width: int = 64,
        *,
        key: Array,
        num_layers: int = 2,
        num_heads: int = 4,
        memory: int = 16,
        encoder: str = "mlp",
        mlp_width: int | None = None,
        int_obs: bool = False,
    ):
        obs_shape = tuple(int(s) for s in np.atleast_1d(obs_shape))
        if not obs_shape or min(obs_shape) < 1:
            raise ValueError(
                f"argument 'obs_shape' must be non-empty and positive, got {obs_shape}"
            )
        mlp_width = 2 * width if mlp_width is None else mlp_width
        for name, value in [
            ("num_actions", num_actions),
            ("width", width),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
            ("memory", memory),
            ("mlp_width", mlp_width),
        ]:
            _check_positive(name, value)
        if width % num_heads:
            raise ValueError(
                f"argument 'width' ({width}) must be divisible by 'num_heads' ({num_heads})"
            )
        if encoder not in POLICY_ENCODERS:
            raise ValueError(
                f"argument 'encoder' must be one of {POLICY_ENCODERS}, got {encoder!r}"
            )
        if (encoder == "conv" or int_obs) and len(obs_shape) != 3:
            raise ValueError(
                f"argument 'obs_shape' must be (H, W, C) for encoder='conv' or int_obs, "
                f"got {obs_shape}"
            )
        self.obs_shape, self.width, self.memory, self.encoder_kind = (
            obs_shape,
            width,
            memory,
            encoder,
        )
        k_enc, k_layers, k_actor, k_critic = jax.random.split(key, 4)
        self.encoder = build_encoder(
            encoder, self._grid_shape, width, width, k_enc, "tanh", int_input=int_obs
        )
        self.layers = tuple(
            GatedLayer(width, num_heads, memory, mlp_width, key=k)
            for k in jax.random.split(k_layers, num_layers)
        )
        self.final_norm = eqx.nn.LayerNorm(width)
        self.actor = eqx.nn.Linear(width, num_actions, key=k_actor)
        self.critic = eqx.nn.Linear(width, 1, key=k_critic)

    @property
    def _grid_shape(self) -> tuple[int, int, int]:
        """The ``[H, W, C]`` shape the encoder reads (flat observations become ``[1, 1, N]``)."""
        if len(self.obs_shape) == 3:
            return self.obs_shape
        return (1, 1, int(np.prod(self.obs_shape)))

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def initial_carry(self) -> TransformerCarry:
        """The memory of one env at an episode start: zeros, every slot invalid."""
        m1 = self.memory - 1
        return TransformerCarry(
            jnp.zeros((self.num_layers, m1, self.width), jnp.float32), jnp.zeros(m1, bool)
        )

    def _check_carry(self, carry: TransformerCarry, batch: tuple[int, ...]) -> TransformerCarry:
        expected = (
            (*batch, self.num_layers, self.memory - 1, self.width),
            (*batch, self.memory - 1),
        )
        try:
            memory, valid = carry
            got = (tuple(jnp.shape(memory)), tuple(jnp.shape(valid)))
        except (TypeError, ValueError):
            got = None
        if got != expected:
            raise ValueError(
                f"argument 'carry' must be a TransformerCarry with memory {expected[0]} and "
                f"valid {expected[1]} (see initial_carry), got {got}"
            )
        return TransformerCarry(jax.lax.stop_gradient(memory), jnp.asarray(valid, bool))

    def _encode(self, obs: Float[Array, "N ..."]) -> Float[Array, "N D"]:
        obs = jnp.asarray(obs)
        if not jnp.issubdtype(obs.dtype, jnp.integer):  # integer slots go to the embedding
            obs = obs.astype(jnp.float32)
        grid = obs.reshape(-1, *self._grid_shape)
        return jax.vmap(self.encoder)(grid)

    def _trunk(
        self, carry: TransformerCarry, x: Float[Array, "T D"], reset: Bool[Array, " T"]
    ) -> tuple[TransformerCarry, Float[Array, "L1 T D"]]:
        """One env's sequence: the next carry and the stream ``[embedding, layer outputs]``."""
        t_len = x.shape[0]
        mask = attention_mask(carry.valid, reset, self.memory)
        streams, memories = [x], []
        for layer, mem in zip(self.layers, carry.memory, strict=True):
            memories.append(jnp.concatenate([mem, x])[t_len:])
            x = layer(mem, x, mask)
            streams.append(x)
        seq_episode = jnp.cumsum(reset.astype(jnp.int32))
        key_episode = jnp.concatenate([jnp.where(carry.valid, 0, -1), seq_episode])
        valid = key_episode[t_len:] == seq_episode[-1]
        return TransformerCarry(jnp.stack(memories), valid), jnp.stack(streams)

    def _heads(self, h: Float[Array, "... D"]) -> tuple[Array, Array]:
        h = _layer_norm(self.final_norm, h)
        return _dense(self.actor, h), _dense(self.critic, h)[..., 0]

    def residual_stream(
        self,
        carry: TransformerCarry,
        obs: Float[Array, "T B *obs"],
        reset: Bool[Array, "T B"],
    ) -> tuple[TransformerCarry, Float[Array, "L1 T B D"]]:
        """``(next carry, stream [L + 1, T, B, D])``: the embedding, then each layer's output.

        What ``unroll``'s heads read is ``stream[-1]``; the earlier entries are
        there for diagnostics (e.g. how far each layer moves its input).
        """
        obs, reset = jnp.asarray(obs), jnp.asarray(reset)
        if reset.ndim != 2 or tuple(obs.shape) != (*reset.shape, *self.obs_shape):
            raise ValueError(
                f"arguments 'obs'/'reset' must have shapes [T, B, *{self.obs_shape}] and [T, B], "
                f"got obs {tuple(obs.shape)} and reset {tuple(reset.shape)}"
            )
        t_len, batch = reset.shape
        carry = self._check_carry(carry, (batch,))
        x = self._encode(obs).reshape(t_len, batch, self.width)
        carry, stream = jax.vmap(self._trunk, in_axes=(0, 1, 1), out_axes=(0, 2))(
            carry, x, reset.astype(bool)
        )
        return carry, stream

    def __call__(
        self, carry: TransformerCarry, obs: Float[Array, "*obs"], reset: Bool[Array, ""]
    ) -> tuple[TransformerCarry, Float[Array, " A"], Float[Array, ""]]:
        """One step of one env: ``(carry, logits [A], value [])``.

        ``reset`` (episode start) invalidates the whole memory before this step.
        """
        obs, reset = jnp.asarray(obs), jnp.asarray(reset)
        if tuple(obs.shape) != self.obs_shape or reset.shape != ():
            raise ValueError(
                f"arguments 'obs'/'reset' must have shapes {self.obs_shape} and () (one env; "
                f"vmap for batches), got obs {tuple(obs.shape)} and reset {tuple(reset.shape)}"
            )
        carry = self._check_carry(carry, ())
        carry, stream = self._trunk(carry, self._encode(obs), reset.astype(bool)[None])
        logits, value = self._heads(stream[-1, 0])
        return carry, logits, value

    def unroll(
        self,
        carry: TransformerCarry,
        obs: Float[Array, "T B *obs"],
        reset: Bool[Array, "T B"],
    ) -> tuple[TransformerCarry, Float[Array, "T B A"], Float[Array, "T B"]]:
        """``__call__`` stepped over ``T`` steps of ``B`` envs, computed all at once.

        ``carry`` has a leading ``B`` axis. Returns ``(carry for the step after the
        sequence, logits [T, B, A], value [T, B])``. Every layer attends over
        ``[carried memory ++ T steps]`` under ``attention_mask``; nothing is sequential.
        """
        carry, stream = self.residual_stream(carry, obs, reset)
        logits, value = self._heads(stream[-1])
        return carry, logits, value


__all__ = [
    "GRUGate",
    "GatedLayer",
    "TransformerActorCritic",
    "TransformerCarry",
    "attention_mask",
    "window_distances",
]
