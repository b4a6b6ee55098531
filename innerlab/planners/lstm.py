"""An LSTM recurrence fast enough to re-run over every PPO minibatch on a CPU.

The recurrent PPO baseline spends most of its training time re-running its LSTM
over rollout sequences and differentiating through it. Two facts make that slow
on XLA's CPU backend when written the obvious way: each small elementwise
kernel inside a ``lax.scan`` body costs about a microsecond of overhead, and
reverse-mode through a scan accumulates the recurrent weight's gradient one
step at a time inside the loop. This module keeps the math of
``equinox.nn.LSTMCell`` (gate order ``i, f, g, o``, one bias) but

* evaluates all four gate nonlinearities as one sigmoid (``tanh(x) = 2 sigmoid(2x) - 1``),
* gives the whole recurrence a hand-written VJP whose reverse loop does one
  matmul per step and leaves the weight gradient to a single matmul after it.

Inputs are projected outside (``x @ W_ih.T + b`` for all steps at once), so only
``h @ W_hh.T`` is sequential.
"""

from __future__ import annotations

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
    hidden = z.shape[-1] // 4
    a = jax.nn.sigmoid(z * _gate_scale(hidden, z.dtype))
    return a * _gate_scale(hidden, z.dtype) - jnp.concatenate(
        [jnp.zeros(2 * hidden, z.dtype), jnp.ones(hidden, z.dtype), jnp.zeros(hidden, z.dtype)]
    )


def _cell(w_hh, carry, gates_in, reset):
    """One step, also returning the gate values and ``tanh(c)`` the VJP reuses."""
    keep = (~reset)[..., None].astype(gates_in.dtype)
    h, c = carry[0] * keep, carry[1] * keep
    gates = _activations(gates_in + h @ w_hh)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = f * c + i * g
    tanh_c = jnp.tanh(c)
    return o * tanh_c, c, gates, tanh_c


def lstm_step(
    w_hh: Float[Array, "H 4H"],
    carry: tuple[Array, Array],
    gates_in: Float[Array, "*B 4H"],
    reset: Bool[Array, "*B"],
) -> tuple[Array, Array]:
    """One LSTM step (any leading batch shape): ``(h, c)``, memory cleared first where ``reset``.

    ``gates_in`` is the input projection ``x @ W_ih.T + bias``; ``w_hh`` is ``W_hh.T``.
    """
    h, c, _, _ = _cell(w_hh, carry, gates_in, reset)
    return h, c


def _scan_forward(w_hh, carry, gates_in, reset):
    """The recurrence: final carry and per-step ``(h, c, gates, tanh(c))``, each ``[T, B, .]``."""

    def step(hc, inp):
        h, c, gates, tanh_c = _cell(w_hh, hc, *inp)
        return (h, c), (h, c, gates, tanh_c)

    return jax.lax.scan(step, carry, (gates_in, reset))


@jax.custom_vjp
def lstm_scan(
    w_hh: Float[Array, "H 4H"],
    carry: tuple[Array, Array],
    gates_in: Float[Array, "T B 4H"],
    reset: Bool[Array, "T B"],
) -> tuple[tuple[Array, Array], Float[Array, "T B H"]]:
    """``lstm_step`` over ``T`` steps: ``(final carry, hidden states [T, B, H])``.

    Differentiable in ``w_hh``, ``carry`` and ``gates_in`` (not ``reset``).
    """

    def step(hc, inp):
        hc = lstm_step(w_hh, hc, *inp)
        return hc, hc[0]

    return jax.lax.scan(step, carry, (gates_in, reset))


def _lstm_scan_fwd(w_hh, carry, gates_in, reset):
    out, (hs, cs, gates, tanh_c) = _scan_forward(w_hh, carry, gates_in, reset)
    return (out, hs), (w_hh, carry, reset, hs, cs, gates, tanh_c)


def _local_derivatives(carry, reset, hs, cs, gates, tanh_c):
    """Every per-step factor of the backward pass that does not depend on the cotangents.

    Computed for all steps at once, outside the loop, so that the reverse loop only
    chains cotangents: ``dc += dh * m``, ``dz = [dc, dc, dc, dh] * q``, ``dc_prev = dc * f``.
    """
    keep = (~reset)[..., None].astype(hs.dtype)
    h_prev = jnp.concatenate([carry[0][None], hs[:-1]]) * keep
    c_prev = jnp.concatenate([carry[1][None], cs[:-1]]) * keep
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    q = jnp.concatenate(
        [g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g), tanh_c * o * (1 - o)], axis=-1
    )
    return h_prev, q, o * (1 - tanh_c * tanh_c), f * keep, keep


def _lstm_scan_bwd(res, cotangents):
    w_hh, carry, reset, hs, cs, gates, tanh_c = res
    h_prev, q, m, f_keep, keep = _local_derivatives(carry, reset, hs, cs, gates, tanh_c)
    (dh_last, dc_last), dhs = cotangents
    w_t = w_hh.T

    def step(dhc, x):
        dh_out, q_t, m_t, f_t, keep_t = x
        dh = dhc[0] + dh_out
        dc = dhc[1] + dh * m_t
        dz = jnp.concatenate([dc, dc, dc, dh], axis=-1) * q_t
        return ((dz @ w_t) * keep_t, dc * f_t), dz

    (dh0, dc0), dz = jax.lax.scan(step, (dh_last, dc_last), (dhs, q, m, f_keep, keep), reverse=True)
    t_len, batch, hidden = h_prev.shape
    dw = h_prev.reshape(t_len * batch, hidden).T @ dz.reshape(t_len * batch, -1)
    return dw, (dh0, dc0), dz, None


lstm_scan.defvjp(_lstm_scan_fwd, _lstm_scan_bwd)

__all__ = ["lstm_scan", "lstm_step"]
