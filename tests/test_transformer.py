"""The GTrXL actor-critic: unroll == stepping, masking by reset and window, gates, encoders."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from innerlab.planners import TransformerActorCritic
from innerlab.planners.transformer import TransformerCarry, attention_mask

OBS, A, D, HEADS, LAYERS, M = (5,), 3, 16, 2, 2, 4
T, B = 10, 3


def batch_carry(model, batch):
    return jax.vmap(lambda _: model.initial_carry())(jnp.arange(batch))


@eqx.filter_jit
def _stepped(model, carry, obs, reset):
    """Reference: ``vmap(__call__)`` stepped over the sequence with a scan."""

    def step(c, inp):
        c, logits, value = jax.vmap(model)(c, *inp)
        return c, (logits, value)

    carry, (logits, value) = jax.lax.scan(step, carry, (obs, reset))
    return carry, logits, value


_unroll = eqx.filter_jit(lambda model, carry, obs, reset: model.unroll(carry, obs, reset))


@pytest.fixture(scope="module")
def model():
    return TransformerActorCritic(
        OBS, A, D, key=jax.random.key(0), num_layers=LAYERS, num_heads=HEADS, memory=M
    )


@pytest.fixture(scope="module")
def warm_carry(model):
    """A carry after 2 steps (< memory - 1): some slots valid, some never filled."""
    obs = jax.random.normal(jax.random.key(1), (2, B, *OBS))
    reset = jnp.ones((2, B), bool).at[1].set(False)
    carry, _, _ = _unroll(model, batch_carry(model, B), obs, reset)
    assert np.asarray(carry.valid).sum(-1).tolist() == [2] * B
    return carry


@pytest.fixture(scope="module")
def sequence():
    obs = jax.random.normal(jax.random.key(2), (T, B, *OBS))
    reset = jnp.zeros((T, B), bool)
    reset = reset.at[5, 0].set(True).at[0, 1].set(True).at[3, 1].set(True)  # env 2: none
    return obs, reset


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x, float), np.asarray(y, float), atol=2e-6)


def test_unroll_matches_stepping_call(model, warm_carry, sequence):
    obs, reset = sequence
    ours = _unroll(model, warm_carry, obs, reset)
    ref = _stepped(model, warm_carry, obs, reset)
    assert ours[1].shape == (T, B, A) and ours[2].shape == (T, B)
    assert isinstance(ours[0], TransformerCarry)
    _assert_same(ours, ref)  # logits, value and the returned carry (memory and valid)


def test_unroll_continues_across_calls(model, warm_carry, sequence):
    """Two unrolls of halves, passing the carry on, give the unroll of the whole."""
    obs, reset = sequence
    carry, logits_a, value_a = _unroll(model, warm_carry, obs[:4], reset[:4])
    carry, logits_b, value_b = _unroll(model, carry, obs[4:], reset[4:])
    whole = _unroll(model, warm_carry, obs, reset)
    _assert_same(
        (carry, jnp.concatenate([logits_a, logits_b]), jnp.concatenate([value_a, value_b])),
        whole,
    )


@eqx.filter_jit
def _outputs(model, carry, obs, reset):
    _, logits, value = model.unroll(carry, obs, reset)
    return jnp.concatenate([logits, value[..., None]], axis=-1)  # [T, B, A + 1]


def test_reset_cuts_attention_to_earlier_steps(model, warm_carry, sequence):
    obs, reset = sequence  # env 0 resets at step 5, env 1 at steps 0 and 3
    noise = jax.random.normal(jax.random.key(3), obs.shape)
    before = (jnp.arange(T)[:, None] < jnp.array([5, 3, 0])[None, :])[..., None]
    changed = obs + jnp.where(before, noise, 0.0)
    base, other = (
        _outputs(model, warm_carry, obs, reset),
        _outputs(model, warm_carry, changed, reset),
    )
    np.testing.assert_allclose(other[5:, 0], base[5:, 0], atol=1e-6)
    np.testing.assert_allclose(other[3:, 1], base[3:, 1], atol=1e-6)
    assert np.abs(np.asarray(other[:5, 0] - base[:5, 0])).max() > 1e-3  # it did change before

    # a different carried memory is invisible to an env that resets at step 0
    junk = jax.tree.map(
        lambda a: a + 1.0, warm_carry._replace(valid=jnp.ones_like(warm_carry.valid))
    )
    np.testing.assert_allclose(_outputs(model, junk, obs, reset)[:, 1], base[:, 1], atol=1e-6)


def test_no_gradient_across_a_reset(model, warm_carry, sequence):
    obs, reset = sequence

    def after_reset(o):  # env 0, steps after its reset at step 5
        return jnp.sum(jnp.sin(_outputs(model, warm_carry, o, reset)[5:, 0]))

    grad = jax.jit(jax.grad(after_reset))(obs)
    assert np.all(np.asarray(grad[:5, 0]) == 0.0)
    assert np.all(np.asarray(grad[:, 1:]) == 0.0)  # other envs are independent
    assert np.abs(np.asarray(grad[5:, 0])).min() > 0.0


@eqx.filter_jit
def _influence(model, obs):
    """``[T, T]``: norm of d output[t] / d obs[s] for one env without resets."""
    reset = jnp.zeros(obs.shape[:2], bool).at[0].set(True)
    carry = batch_carry(model, obs.shape[1])
    jac = jax.jacrev(lambda o: _outputs(model, carry, o, reset)[:, 0].sum(-1))(obs)
    return jnp.sqrt((jac[:, :, 0] ** 2).sum(-1))


def test_outputs_forget_steps_older_than_the_window():
    """One layer sees exactly ``memory`` steps; L layers see ``L * (memory - 1) + 1``."""
    t_len = 12
    obs = jax.random.normal(jax.random.key(4), (t_len, 1, *OBS))
    lag = np.arange(t_len)[:, None] - np.arange(t_len)[None, :]  # t - s
    for layers in (1, 2):
        model = TransformerActorCritic(
            OBS, A, D, key=jax.random.key(5), num_layers=layers, num_heads=HEADS, memory=M
        )
        influence = np.asarray(_influence(model, obs))
        reach = layers * (M - 1)
        assert np.all(influence[(lag < 0) | (lag > reach)] == 0.0), layers  # causal, windowed
        assert influence[(lag >= 0) & (lag <= reach)].min() > 0.0, layers


def test_memory_one_is_memoryless():
    model = TransformerActorCritic(OBS, A, 8, key=jax.random.key(6), num_layers=1, memory=1)
    carry = model.initial_carry()
    assert carry.memory.shape == (1, 0, 8) and carry.valid.shape == (0,)
    obs = jax.random.normal(jax.random.key(7), (4, 2, *OBS))
    reset = jnp.zeros((4, 2), bool)
    influence = np.asarray(_influence(model, obs))
    assert np.all(influence[~np.eye(4, dtype=bool)] == 0.0) and np.all(np.diag(influence) > 0)
    _assert_same(
        _unroll(model, batch_carry(model, 2), obs, reset),
        _stepped(model, batch_carry(model, 2), obs, reset),
    )


def test_attention_mask_semantics():
    valid = jnp.array([False, True, True])  # memory 4: slots for steps -3, -2, -1
    reset = jnp.array([False, False, True, False])
    mask = np.asarray(attention_mask(valid, reset, 4))
    expected = np.array(
        [  # keys: slots -3 -2 -1, then steps 0 1 2 3
            [0, 1, 1, 1, 0, 0, 0],
            [0, 1, 1, 1, 1, 0, 0],  # step 1: window -2 .. 1
            [0, 0, 0, 0, 0, 1, 0],  # step 2 resets: only itself
            [0, 0, 0, 0, 0, 1, 1],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(mask, expected)


def test_gates_start_near_identity():
    """At init each layer moves its input little; with b_g = 0 it would move it a lot."""
    model = TransformerActorCritic((6,), A, 64, key=jax.random.key(8), memory=8)
    obs = jax.random.normal(jax.random.key(9), (12, 8, 6))
    reset = jnp.zeros((12, 8), bool).at[0].set(True)

    def relative_moves(m):
        _, stream = eqx.filter_jit(m.residual_stream)(batch_carry(m, 8), obs, reset)
        delta = jnp.linalg.norm(stream[1:] - stream[:-1], axis=-1)
        cos = jnp.sum(stream[1:] * stream[:-1], -1) / (
            jnp.linalg.norm(stream[1:], axis=-1) * jnp.linalg.norm(stream[:-1], axis=-1)
        )
        return np.asarray(delta / jnp.linalg.norm(stream[:-1], axis=-1)), np.asarray(cos)

    moves, cos = relative_moves(model)
    assert moves.shape == (2, 12, 8)
    assert moves.max() < 0.45 and moves.mean() < 0.35, moves.mean()
    assert cos.min() > 0.9, cos.min()

    def without_gate_bias(m):
        for i in range(m.num_layers):
            for gate in ("attn_gate", "mlp_gate"):
                m = eqx.tree_at(
                    lambda mm, i=i, gate=gate: getattr(mm.layers[i], gate).w_y.bias,
                    m,
                    jnp.zeros(3 * 64),
                )
        return m

    ungated, _ = relative_moves(without_gate_bias(model))
    assert ungated.mean() > 2.5 * moves.mean()


def test_conv_encoder_on_grid_observations():
    shape = (7, 7, 9)
    model = TransformerActorCritic(shape, 5, 16, key=jax.random.key(10), encoder="conv", memory=3)
    obs = jax.random.uniform(jax.random.key(11), (3, 2, *shape))
    reset = jnp.zeros((3, 2), bool).at[0].set(True)
    ours = _unroll(model, batch_carry(model, 2), obs, reset)
    assert ours[1].shape == (3, 2, 5) and np.all(np.isfinite(np.asarray(ours[1])))
    _assert_same(ours, _stepped(model, batch_carry(model, 2), obs, reset))


def test_bad_inputs_raise_value_errors(model):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="'memory' must be an integer >= 1, got 0"):
        TransformerActorCritic(OBS, A, D, key=key, memory=0)
    with pytest.raises(ValueError, match=r"'width' \(10\) must be divisible by 'num_heads' \(4\)"):
        TransformerActorCritic(OBS, A, 10, key=key)
    with pytest.raises(ValueError, match="'encoder' must be one of"):
        TransformerActorCritic(OBS, A, D, key=key, encoder="transformer")
    with pytest.raises(ValueError, match=r"'obs_shape' must be \(H, W, C\) for encoder='conv'"):
        TransformerActorCritic(OBS, A, D, key=key, encoder="conv")
    with pytest.raises(ValueError, match="'num_actions' must be an integer >= 1"):
        TransformerActorCritic(OBS, 0, D, key=key)

    carry = model.initial_carry()
    with pytest.raises(ValueError, match=r"must have shapes \(5,\) and \(\).*got obs \(6,\)"):
        model(carry, jnp.zeros(6), jnp.array(False))
    with pytest.raises(ValueError, match=r"got obs \(4, 2, 6\) and reset \(4, 2\)"):
        model.unroll(batch_carry(model, 2), jnp.zeros((4, 2, 6)), jnp.zeros((4, 2), bool))
    with pytest.raises(ValueError, match=r"got obs \(4, 2, 5\) and reset \(4, 3\)"):
        model.unroll(batch_carry(model, 2), jnp.zeros((4, 2, 5)), jnp.zeros((4, 3), bool))
    with pytest.raises(ValueError, match=r"argument 'carry' must be a TransformerCarry"):
        model.unroll(carry, jnp.zeros((4, 2, 5)), jnp.zeros((4, 2), bool))  # no batch axis


def test_learns_to_recall_the_observation_k_steps_ago():
    """Output the symbol seen ``k`` steps ago (``k < memory``): impossible without memory."""
    symbols, k, t_len, batch = 4, 3, 12, 32
    model = TransformerActorCritic(
        (symbols,), symbols, 32, key=jax.random.key(12), num_layers=1, num_heads=2, memory=6
    )
    optimizer = optax.adam(3e-3)
    params, static = eqx.partition(model, eqx.is_array)

    def loss_fn(params, sym):
        m = eqx.combine(params, static)
        reset = jnp.zeros(sym.shape, bool).at[0].set(True)
        _, logits, _ = m.unroll(batch_carry(m, batch), jax.nn.one_hot(sym, symbols), reset)
        logp = jax.nn.log_softmax(logits[k:])
        return -jnp.take_along_axis(logp, sym[:-k, :, None], -1).mean()

    @jax.jit
    def train(params, key):
        def step(carry, key):
            params, opt_state = carry
            sym = jax.random.randint(key, (t_len, batch), 0, symbols)
            loss, grads = jax.value_and_grad(loss_fn)(params, sym)
            updates, opt_state = optimizer.update(grads, opt_state)
            return (optax.apply_updates(params, updates), opt_state), loss

        _, losses = jax.lax.scan(step, (params, optimizer.init(params)), jax.random.split(key, 300))
        return losses

    losses = np.asarray(train(params, jax.random.key(13)))
    chance = np.log(symbols)
    assert losses[:5].mean() > 0.8 * chance
    assert losses[-20:].mean() < 0.15 * chance, losses[-20:].mean()
