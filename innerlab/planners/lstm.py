"""An LSTM recurrence fast enough to re-run over every PPO minibatch on a CPU.

The recurrent PPO baseline spends most of its training time re-running its LSTM
over rollout sequences and differentiating through it. Two facts make that slow
on XLA's CPU backend when written the obvious way: each small elementwise
kernel inside a ``lax.scan`` body costs about a microsecond of overhead, and
reverse-mode through a scan accumulates the recurrent weight's gradient one
step at a time inside the loop. This module keeps the math of
``equinox.nn.LSTMCell`` (gate order ``i, f, g, o``, one bias) but

* evaluates all four gate nonlinearities as one sigmoid (``tanh(x) = 2 sigmoid(2x) - 1``),
* projects the inputs of all steps at once (``x @ W_ih.T + b``), so only
  ``h @ W_hh.T`` is sequential,
* gives the whole layer a hand-written VJP whose reverse loop does one matmul
  per step, and leaves both weight gradients to one matmul after it.

``lstm_scan(cell, carry, x, reset)`` and ``lstm_step`` take an
``equinox.nn.LSTMCell`` and return what stepping that cell would return.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float


def _gate_scale(hidden: int, dtype) -> Array:
    """Pre-activation scale per gate: 2 for the cell candidate ``g`` (tanh via sigmoid), else 1."""
    return jnp.concatenate(
        [jnp.ones(2 * hidden, dtype), jnp.full(hidden, 2.0, dtype), jnp.ones(hidden, dtype)]
    )


def _activations(z: Float[Array, "... 4H"]) -> Array:
    """Gate values ``[i, f, g, o]`` side by side: sigmoid gates, tanh cell candidate ``g``."""
    scale = _gate_scale(z.shape[-1] // 4, z.dtype)
    return jax.nn.sigmoid(z * scale) * scale - (scale - 1)  # g = 2 sigmoid(2z) - 1 = tanh(z)


def _cell(w_hh, carry, gates_in, reset):
    """One step from the projected input, also returning the gate values the VJP reuses."""
    keep = (~reset)[..., None].astype(gates_in.dtype)
    h, c = carry[0] * keep, carry[1] * keep
    gates = _activations(gates_in + h @ w_hh)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = f * c + i * g
    return o * jnp.tanh(c), c, gates


def _bias(cell: eqx.nn.LSTMCell) -> Array:
    return cell.bias if cell.use_bias else jnp.zeros(4 * cell.hidden_size, cell.weight_hh.dtype)


def lstm_step(
    cell: eqx.nn.LSTMCell,
    carry: tuple[Array, Array],
    x: Float[Array, "*B I"],
    reset: Bool[Array, "*B"],
) -> tuple[Array, Array]:
    """One LSTM step (any leading batch shape): ``(h, c)``, memory cleared first where ``reset``."""
    gates_in = x @ cell.weight_ih.T + _bias(cell)
    h, c, _ = _cell(cell.weight_hh.T, carry, gates_in, reset)
    return h, c


def _scan_forward(w_hh, carry, gates_in, reset):
    """The recurrence: final carry and per-step cell states and gate values ``[T, B, .]``."""

    def step(hc, inp):
        h, c, gates = _cell(w_hh, hc, *inp)
        return (h, c), jnp.concatenate([gates, c], axis=-1)  # one stacked output, not two

    out, saved = jax.lax.scan(step, carry, (gates_in, reset))
    hidden = carry[0].shape[-1]
    return out, (saved[..., 4 * hidden :], saved[..., : 4 * hidden])


def lstm_scan(
    cell: eqx.nn.LSTMCell,
    carry: tuple[Array, Array],
    x: Float[Array, "T B I"],
    reset: Bool[Array, "T B"],
) -> tuple[tuple[Array, Array], Float[Array, "T B H"]]:
    """``lstm_step`` over ``T`` steps: ``(final carry, hidden states [T, B, H])``.

    Differentiable in the cell's weights, ``carry`` and ``x`` (not ``reset``).
    """
    x, reset = jnp.asarray(x), jnp.asarray(reset)
    if x.ndim != 3 or x.shape[-1] != cell.input_size or reset.shape != x.shape[:2]:
        raise ValueError(
            f"lstm_scan needs x of shape [T, B, {cell.input_size}] and reset of shape [T, B]; "
            f"got x {x.shape} and reset {reset.shape}"
        )
    return _lstm_layer(cell.weight_ih, cell.weight_hh, _bias(cell), carry, x, reset)


@jax.custom_vjp
def _lstm_layer(w_ih, w_hh, bias, carry, x, reset):
    gates_in = x @ w_ih.T + bias

    def step(hc, inp):
        h, c, _ = _cell(w_hh.T, hc, *inp)
        return (h, c), h

    return jax.lax.scan(step, carry, (gates_in, reset))


def _lstm_layer_fwd(w_ih, w_hh, bias, carry, x, reset):
    out, (cs, gates) = _scan_forward(w_hh.T, carry, x @ w_ih.T + bias, reset)
    hs = gates[..., -cs.shape[-1] :] * jnp.tanh(cs)  # h = o * tanh(c), for all steps at once
    return (out, hs), (w_ih, w_hh, carry, x, reset, hs, cs, gates)


def _local_derivatives(carry, reset, hs, cs, gates):
    """Every per-step factor of the backward pass that does not depend on the cotangents.

    Computed for all steps at once, outside the loop, so that the reverse loop only
    chains cotangents: ``dc += dh * m``, ``dz = [dc, dc, dc, dh] * q``, ``dc_prev = dc * f``.
    """
    keep = (~reset)[..., None].astype(hs.dtype)
    h_prev = jnp.concatenate([carry[0][None], hs[:-1]]) * keep
    c_prev = jnp.concatenate([carry[1][None], cs[:-1]]) * keep
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    tanh_c = jnp.tanh(cs)
    q = jnp.concatenate(
        [g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)], axis=-1
    )
    return h_prev, q, o * (1 - tanh_c * tanh_c), f * keep, keep


def _lstm_layer_bwd(res, cotangents):
    w_ih, w_hh, carry, x, reset, hs, cs, gates = res
    h_prev, q, m, f_keep, keep = _local_derivatives(carry, reset, hs, cs, gates)
    (dh_last, dc_last), dhs = cotangents

    def step(dhc, inp):
        dh_out, q_t, m_t, f_t, keep_t = inp
        dh = dhc[0] + dh_out
        dc = dhc[1] + dh * m_t
        dz = jnp.concatenate([dc, dc, dc, dh], axis=-1) * q_t
        return ((dz @ w_hh) * keep_t, dc * f_t), dz

    (dh0, dc0), dz = jax.lax.scan(step, (dh_last, dc_last), (dhs, q, m, f_keep, keep), reverse=True)
    n = dz.shape[0] * dz.shape[1]
    dz_flat = dz.reshape(n, -1)
    # both weight gradients in one product: dz^T [x, h_prev]
    dw = dz_flat.T @ jnp.concatenate([x.reshape(n, -1), h_prev.reshape(n, -1)], axis=-1)
    dw_ih, dw_hh = jnp.split(dw, [x.shape[-1]], axis=-1)
    return dw_ih, dw_hh, dz_flat.sum(0), (dh0, dc0), dz @ w_ih, None


_lstm_layer.defvjp(_lstm_layer_fwd, _lstm_layer_bwd)

__all__ = ["lstm_scan", "lstm_step"]
