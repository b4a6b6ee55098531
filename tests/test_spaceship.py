"""Spaceship-v0: API, physics, action checking, splits and rendering."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import innerlab.envs as envs
from innerlab.envs.spaceship import SpaceshipState, gravity_acceleration


@pytest.fixture(scope="module")
def env_params():
    return envs.make("Spaceship-v0")


@pytest.fixture(scope="module")
def jit_step(env_params):
    env, params = env_params
    return jax.jit(lambda k, s, a: env.step(k, s, a, params))


def test_registered_and_spaces(env_params):
    env, params = env_params
    assert "Spaceship-v0" in envs.list_envs()
    obs, state = env.reset(jax.random.key(0), params)
    assert obs.shape == env.observation_space(params).shape == (7 + 3 * params.n_planets,)
    assert obs.dtype == jnp.float32
    assert env.action_space(params).shape == (2,)
    with pytest.raises(TypeError, match="continuous action space"):
        env.num_actions(params)


def test_episode_is_one_thrust_and_auto_resets(env_params, jit_step):
    env, params = env_params
    obs, state = env.reset(jax.random.key(1), params)
    obs2, state2, reward, term, trunc, info = jit_step(
        jax.random.key(2), state, jnp.array([0.5, -0.2])
    )
    assert bool(term) and not bool(trunc)
    assert int(state2.time) == 0  # auto-reset to a fresh episode
    assert float(info["discount"]) == 0.0
    assert float(reward) < 0.0


@pytest.mark.parametrize(
    "action, error, match",
    [
        (jnp.zeros(3), ValueError, "shape"),
        (jnp.zeros((), jnp.float32), ValueError, "shape"),
        (jnp.zeros(2, jnp.int32), TypeError, "float"),
    ],
)
def test_bad_action_shapes_and_dtypes(env_params, action, error, match):
    env, params = env_params
    _, state = env.reset(jax.random.key(0), params)
    with pytest.raises(error, match=match):
        env.step(jax.random.key(0), state, action, params)


@pytest.mark.parametrize("bad", [jnp.array([jnp.nan, 0.0]), jnp.array([0.0, jnp.inf]),
                                 jnp.array([1.5, 0.0])])
def test_non_finite_and_out_of_range_actions_rejected(env_params, bad):
    env, params = env_params
    _, state = env.reset(jax.random.key(0), params)
    with pytest.raises(Exception, match="action"):
        jax.block_until_ready(env.step(jax.random.key(0), state, bad, params))


def test_true_reward_is_noiseless_step_reward():
    env, params = envs.make("Spaceship-v0", control_noise=0.0)
    state = env.sample_state(jax.random.key(3), params)
    action = jnp.array([0.3, 0.7])
    step_reward = env.step_env(jax.random.key(9), state, action, params)[2]
    np.testing.assert_allclose(env.true_reward(state, action, params), step_reward, rtol=1e-6)


def test_reward_is_fuel_plus_squared_miss():
    env, params = envs.make("Spaceship-v0", n_planets=0, control_noise=0.0, fuel_cost=0.1)
    state = SpaceshipState(pos=jnp.zeros(2), vel=jnp.zeros(2), target=jnp.array([1.0, 0.0]),
                           planets=jnp.zeros((0, 2)), masses=jnp.zeros(0), time=jnp.int32(0))
    action = jnp.array([0.5, 0.0])
    # no planets: straight flight of duration flight_steps * dt at speed thrust_scale * 0.5
    x = params.thrust_scale * 0.5 * params.flight_steps * params.dt
    expected = -(0.1 * 0.25 + (x - 1.0) ** 2)
    np.testing.assert_allclose(env.true_reward(state, action, params), expected, rtol=1e-5)


def test_gravity_pulls_towards_planet():
    env, params = envs.make("Spaceship-v0", n_planets=1, control_noise=0.0)
    planet = jnp.array([[0.5, 0.0]])
    state = SpaceshipState(pos=jnp.zeros(2), vel=jnp.zeros(2), target=jnp.zeros(2),
                           planets=planet, masses=jnp.ones(1), time=jnp.int32(0))
    acc = gravity_acceleration(state.pos, planet, jnp.ones(1), params)
    assert float(acc[0]) > 0 and abs(float(acc[1])) < 1e-7
    nxt = env.apply_thrust(state, jnp.zeros(2), params)
    assert float(nxt.pos[0]) > 0.0


def test_control_noise_makes_steps_stochastic(env_params):
    env, params = env_params
    _, state = env.reset(jax.random.key(0), params)
    a = jnp.array([0.8, 0.8])
    r1 = env.step_env(jax.random.key(1), state, a, params)[2]
    r2 = env.step_env(jax.random.key(2), state, a, params)[2]
    assert float(r1) != float(r2)


def test_jit_equals_eager_and_vmap_equals_loop(env_params, jit_step):
    env, params = env_params
    keys = jax.random.split(jax.random.key(4), 3)
    states = jax.vmap(env.sample_state, (0, None))(keys, params)
    actions = jax.random.uniform(jax.random.key(5), (3, 2), minval=-1, maxval=1)
    batched = jax.vmap(lambda k, s, a: env.step(k, s, a, params))(keys, states, actions)
    for i in range(3):
        s_i = jax.tree.map(lambda x, i=i: x[i], states)
        eager = env.step(keys[i], s_i, actions[i], params)
        jitted = jit_step(keys[i], s_i, actions[i])
        for a, b, c in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted),
                           jax.tree.leaves(jax.tree.map(lambda x, i=i: x[i], batched)),
                           strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)


@given(seed=st.integers(0, 2**31 - 1))
def test_sample_state_valid_and_observation_invertible(env_params, seed):
    env, params = env_params
    state = env.sample_state(jax.random.key(seed), params)
    assert bool(env.is_valid(state, params))
    back = env.state_from_obs(env.observe(state, params), params)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(back), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_is_valid_rejects_broken_states(env_params):
    env, params = env_params
    state = env.sample_state(jax.random.key(0), params)
    assert not bool(env.is_valid(eqx.tree_at(lambda s: s.pos, state, jnp.array([jnp.nan, 0.0]))))
    assert not bool(env.is_valid(eqx.tree_at(lambda s: s.masses, state, -state.masses)))
    assert not bool(env.is_valid(eqx.tree_at(lambda s: s.time, state, jnp.int32(-1))))


def test_test_split_has_heavier_planets():
    env, train = envs.make("Spaceship-v0")
    _, test = envs.make("Spaceship-v0", split="test")
    keys = jax.random.split(jax.random.key(0), 64)
    m_train = jax.vmap(lambda k: env.reset(k, train)[1].masses)(keys)
    m_test = jax.vmap(lambda k: env.reset(k, test)[1].masses)(keys)
    assert float(m_train.max()) <= train.mass_range[1] <= float(m_test.min())
    # other state leaves are drawn identically from the same key
    s_train, s_test = env.reset(keys[0], train)[1], env.reset(keys[0], test)[1]
    np.testing.assert_array_equal(s_train.pos, s_test.pos)


@pytest.mark.parametrize("bad", [{"n_planets": -1}, {"dt": 0.0}, {"mass_range": (1.0, 0.5)},
                                 {"flight_steps": 0}])
def test_bad_params_rejected(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        envs.make("Spaceship-v0", **bad)


def test_renderers(env_params):
    env, params = env_params
    state = env.sample_state(jax.random.key(0), params)
    img = jax.jit(lambda s: env.render_rgb(s, params))(state)
    assert img.shape == (64, 64, 3) and img.dtype == jnp.uint8
    assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) >= 3  # space, planet, ship...
    text = env.render_text(state, params)
    assert "S" in text and "T" in text and "planet" in text
