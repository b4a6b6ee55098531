"""EPIC, Pearson and MAE: invariances and pseudometric properties (hypothesis), exact vs sampled."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from innerlab.reward_models.epic import (
    EpicSamples,
    canonicalize_tabular,
    epic_distance,
    epic_distance_tabular,
    mae,
    make_samples,
    pearson,
)

S, A = 6, 3


def table_fn(table):
    """A tabular reward as a batched reward function on integer states."""
    return lambda s, a, s2: table[s, a, s2]


def random_problem(seed):
    """Reward table, potential, state/action distributions and a coverage distribution."""
    rng = np.random.default_rng(seed)
    reward = rng.normal(size=(S, A, S)).astype(np.float32)
    phi = rng.normal(size=S).astype(np.float32) * 3
    ds = rng.dirichlet(np.ones(S)).astype(np.float32)
    da = rng.dirichlet(np.ones(A)).astype(np.float32)
    cov = rng.dirichlet(np.ones(S * A * S)).reshape(S, A, S).astype(np.float32)
    return jnp.asarray(reward), jnp.asarray(phi), jnp.asarray(ds), jnp.asarray(da), jnp.asarray(cov)


@functools.partial(jax.jit, static_argnames=("b", "m"))
def draw_samples(key, ds, da, cov, b, m) -> EpicSamples:
    """Coverage transitions from ``cov``; canonical states from ``ds``, actions from ``da``."""
    k1, k2, k3 = jax.random.split(key, 3)
    flat = jax.random.choice(k1, S * A * S, (b,), p=cov.ravel())
    s, a, s2 = flat // (A * S), (flat // S) % A, flat % S
    can_s = jax.random.choice(k2, S, (m,), p=ds)
    can_a = jax.random.choice(k3, A, (m,), p=da).astype(jnp.int32)
    return EpicSamples(s, a.astype(jnp.int32), s2, can_s, can_a)


@functools.partial(jax.jit, static_argnames="gamma")
def sampled(ra, rb, samples, gamma):
    return epic_distance(table_fn(ra), table_fn(rb), samples, gamma)


@functools.partial(jax.jit, static_argnames="gamma")
def exact(ra, rb, ds, da, cov, gamma):
    return epic_distance_tabular(ra, rb, ds, da, cov, gamma)


def shaped(reward, phi, gamma, scale, offset):
    return scale * reward + offset + gamma * phi[None, None, :] - phi[:, None, None]


seeds = st.integers(0, 2**31 - 1)
gammas = st.sampled_from([0.0, 0.9])


@settings(max_examples=15)
@given(seed=seeds, gamma=gammas, scale=st.floats(0.05, 20.0), offset=st.floats(-10.0, 10.0))
def test_shaping_and_affine_invariance(seed, gamma, scale, offset):
    reward, phi, ds, da, cov = random_problem(seed)
    other = shaped(reward, phi, gamma, scale, offset)
    samples = draw_samples(jax.random.key(seed), ds, da, cov, 64, 16)
    assert float(sampled(reward, other, samples, gamma)) < 2e-3
    assert float(exact(reward, other, ds, da, cov, gamma)) < 2e-3
    # and shaping really changed the raw reward: plain Pearson on raw tables is not 1
    if scale < 1.0 or gamma > 0:
        assert float(mae(reward, other)) > 1e-3


@settings(max_examples=10)
@given(seed=seeds, gamma=gammas)
def test_negation_is_distance_one_and_symmetry(seed, gamma):
    reward, phi, ds, da, cov = random_problem(seed)
    samples = draw_samples(jax.random.key(seed), ds, da, cov, 64, 16)
    np.testing.assert_allclose(sampled(reward, -reward, samples, gamma), 1.0, atol=1e-3)
    np.testing.assert_allclose(exact(reward, -reward, ds, da, cov, gamma), 1.0, atol=1e-3)
    other = random_problem(seed + 1)[0]
    np.testing.assert_allclose(
        sampled(reward, other, samples, gamma), sampled(other, reward, samples, gamma), atol=1e-6
    )


@settings(max_examples=15)
@given(seed=seeds, gamma=gammas)
def test_triangle_inequality(seed, gamma):
    ra, _, ds, da, cov = random_problem(seed)
    rb, rc = random_problem(seed + 1)[0], random_problem(seed + 2)[0]
    # make the rewards related so distances are not all ~0.7
    rb = ra + 0.5 * rb
    samples = draw_samples(jax.random.key(seed), ds, da, cov, 64, 16)
    for d in (
        lambda x, y: sampled(x, y, samples, gamma),
        lambda x, y: exact(x, y, ds, da, cov, gamma),
    ):
        dab, dbc, dac = float(d(ra, rb)), float(d(rb, rc)), float(d(ra, rc))
        assert 0.0 <= dab <= 1.0 and 0.0 <= dac <= 1.0
        assert dac <= dab + dbc + 1e-5


@settings(max_examples=3)
@given(seed=seeds)
def test_sampled_estimate_converges_to_exact(seed):
    gamma = 0.9
    ra, _, ds, da, cov = random_problem(seed)
    rb = ra + random_problem(seed + 1)[0]  # partially correlated
    truth = float(exact(ra, rb, ds, da, cov, gamma))
    small = sampled(ra, rb, draw_samples(jax.random.key(seed), ds, da, cov, 64, 16), gamma)
    big = sampled(ra, rb, draw_samples(jax.random.key(seed), ds, da, cov, 20_000, 400), gamma)
    assert abs(float(big) - truth) < 0.02
    # the estimate with many samples is not worse than one with few (beyond noise)
    assert abs(float(big) - truth) <= abs(float(small) - truth) + 0.015


def test_canonical_table_removes_potential_exactly():
    reward, phi, ds, da, _ = random_problem(0)
    potential_only = 0.9 * phi[None, None, :] - phi[:, None, None] + jnp.zeros((S, A, S))
    np.testing.assert_allclose(canonicalize_tabular(potential_only, ds, da, 0.9), 0.0, atol=1e-5)
    np.testing.assert_allclose(
        canonicalize_tabular(reward + potential_only, ds, da, 0.9),
        canonicalize_tabular(reward, ds, da, 0.9),
        atol=1e-5,
    )


def test_pearson_and_mae():
    x = jnp.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(pearson(x, 2 * x + 1), 1.0, atol=1e-6)
    np.testing.assert_allclose(pearson(x, -x), -1.0, atol=1e-6)
    np.testing.assert_allclose(mae(x, x + 0.5), 0.5)
    # weights: zero weight removes a point
    y = jnp.array([1.0, 2.0, 3.0, -40.0])
    np.testing.assert_allclose(pearson(x, y, jnp.array([1.0, 1.0, 1.0, 0.0])), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        pearson(x, x[:3])
    with pytest.raises(Exception, match="'y' is constant"):
        pearson(x, jnp.ones(4))


def test_make_samples_and_bad_input():
    s = jnp.arange(10) % S
    a = jnp.zeros(10, jnp.int32)
    samples = make_samples(jax.random.key(0), s, a, s, A, num_canonical=7)
    assert samples.num_coverage == 10 and samples.num_canonical == 7
    assert int(samples.can_action.max()) < A
    with pytest.raises(ValueError, match="at least 2 transitions"):
        make_samples(jax.random.key(0), s[:1], a[:1], s[:1], A)
    bad = lambda s, a, s2: jnp.zeros((3,))
    with pytest.raises(ValueError, match="'reward_b' must return shape"):
        epic_distance(lambda s, a, s2: s.astype(jnp.float32), bad, samples)
    with pytest.raises(ValueError, match="'gamma' must be in"):
        epic_distance(lambda s, a, s2: s.astype(jnp.float32), bad, samples, gamma=1.5)
