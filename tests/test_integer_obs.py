"""Integer observations (`make(..., observation="int")`): exactly the one-hot grid's information."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import innerlab.envs as envs
from innerlab.envs import grid

CASES = [("Orchard-v0", True), ("ProxyMaze-v0", False)]  # both wrappers, both grid envs


@pytest.mark.parametrize("name,egocentric", CASES)
def test_int_obs_maps_to_the_onehot_obs_exactly_on_any_state(name, egocentric):
    env, params = envs.make(name, egocentric=egocentric, observation="int")
    ref, _ = envs.make(name, egocentric=egocentric)

    @jax.jit
    def both(keys):
        states = jax.vmap(lambda k: env.sample_state(k, params))(keys)
        return (jax.vmap(lambda s: env.observe(s, params))(states),
                jax.vmap(lambda s: ref.observe(s, params))(states))

    obs_int, obs_hot = both(jax.random.split(jax.random.key(0), 128))
    assert obs_int.dtype == jnp.uint8
    assert obs_int.shape[-1] == len(grid.INT_OBS_SLOTS)
    np.testing.assert_array_equal(env.onehot(obs_int, params), obs_hot)
    # the channel count the slots stand for is the one-hot observation's
    assert env.num_channels(params) == obs_hot.shape[-1]


def test_int_obs_env_has_the_same_dynamics_and_rewards():
    env, params = envs.make("Orchard-v0", observation="int")
    ref, _ = envs.make("Orchard-v0")
    keys = jax.random.split(jax.random.key(1), 40)
    actions = jax.random.randint(jax.random.key(2), (40,), 0, env.num_actions(params))

    def run(e):
        def body(carry, ka):
            _, state = carry
            k, a = ka
            obs, state, reward, term, trunc, _ = e.step(k, state, a, params)
            return (obs, state), (obs, reward, term | trunc)

        start = e.reset(jax.random.key(3), params)
        return jax.lax.scan(body, start, (keys, actions))[1]

    obs_i, rew_i, done_i = jax.jit(lambda: run(env))()
    obs_h, rew_h, done_h = jax.jit(lambda: run(ref))()
    np.testing.assert_array_equal(rew_i, rew_h)
    np.testing.assert_array_equal(done_i, done_h)
    np.testing.assert_array_equal(env.onehot(obs_i, params), obs_h)
    assert bool(jnp.any(done_i)), "the rollout should cross an episode boundary (auto-reset)"


def test_a_dead_object_under_an_alive_one_does_not_hide_it():
    env, params = envs.make("Orchard-v0", observation="int")
    state = jax.jit(lambda k: env.sample_state(k, params))(jax.random.key(4))
    # object 0 dead on object 1's cell, listed last so a plain scatter-set would overwrite
    pos = state.obj_pos.at[-1].set(state.obj_pos[0])
    alive = state.obj_alive.at[0].set(True).at[-1].set(False)
    state = state.__class__(**{**vars(state), "obj_pos": pos, "obj_alive": alive})
    ref, _ = envs.make("Orchard-v0")
    obs_int, obs_hot = jax.jit(lambda s: (env.observe(s, params), ref.observe(s, params)))(state)
    assert int(obs_int[tuple(state.obj_pos[0])][1]) > 0  # the alive object's colour is seen
    np.testing.assert_array_equal(env.onehot(obs_int, params), obs_hot)


def test_observation_space_is_uint8_and_contains_observations():
    env, params = envs.make("Orchard-v0", observation="int")
    space = env.observation_space(params)
    obs, _ = jax.jit(lambda k: env.reset(k, params))(jax.random.key(0))
    assert space.dtype == jnp.uint8 and space.shape == obs.shape
    assert bool(jax.jit(space.contains)(obs))
    assert space.sample(jax.random.key(1)).dtype == jnp.uint8


def test_envs_without_an_integer_observation_are_refused_by_name():
    with pytest.raises(TypeError, match="BoostChain-v0"):
        envs.make("BoostChain-v0", observation="int")
    with pytest.raises(TypeError, match="OrchardSideChannel-v0"):
        envs.make("OrchardSideChannel-v0", observation="int")
    with pytest.raises(ValueError, match="'observation' must be one of"):
        envs.make("Orchard-v0", observation="ints")


def test_embedded_encoder_sees_what_a_linear_map_of_the_onehot_grid_sees():
    """Summed slot embeddings = one-hot channels @ table rows 1..C, plus row 0 per empty slot."""
    from innerlab.reward_models.model import INT_OBS_EMBED, build_encoder

    env, params = envs.make("Orchard-v0", observation="int")
    state = jax.jit(lambda k: env.sample_state(k, params))(jax.random.key(5))
    obs = env.observe(state, params)
    enc = build_encoder("conv", obs.shape, 8, 8, jax.random.key(6), "tanh", int_input=True)
    table = enc.embedding.weight
    summed = jnp.sum(table[obs.astype(jnp.int32)], axis=-2)
    onehot = env.onehot(obs, params)
    empty = jnp.sum(obs == 0, axis=-1, keepdims=True)
    linear = onehot @ table[1 : onehot.shape[-1] + 1] + empty * table[0]
    assert summed.shape == (*obs.shape[:2], INT_OBS_EMBED)
    np.testing.assert_allclose(summed, linear, atol=1e-5)
    assert enc(obs).shape == (8,)
    with pytest.raises(TypeError, match="integer observations"):
        enc(obs.astype(jnp.float32))


def test_agents_take_integer_observations_only_where_their_networks_embed_them():
    import innerlab.agents as agents

    config = agents.make("ppo-lstm", observation="int", env_overrides={"height": 5, "width": 5})
    env, params = config.make_env()
    assert env.observation_space(params).dtype == jnp.uint8
    assert agents.AgentConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="observation='int' is for kinds"):
        agents.make("muzero", observation="int")
    with pytest.raises(ValueError, match="'observation' must be one of"):
        agents.make("ppo-lstm", observation="ints")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ppo-lstm", "ppo-transformer"])
def test_ppo_kinds_learn_from_integer_observations(tmp_path, kind):
    """The agent contract's budget (tests/test_agents.py) on integer observations beats random."""
    import innerlab.agents as agents

    extra = dict(memory=4, num_heads=2, num_layers=1) if kind == "ppo-transformer" else {}
    config = agents.make(kind, observation="int", egocentric=True, width=32, num_envs=16,
                         env_overrides={"height": 5, "width": 5, "n_objects": 3, "max_steps": 10},
                         total_steps=16 * 32 * 24, log_every=4, learning_rate=3e-3, **extra)
    result = agents.train(config, (0,), tmp_path / kind, progress=False)
    env, params = config.make_env()
    trained = agents.evaluate(result, episodes=128, greedy=True, seed=7).per_seed()
    control = agents.evaluate(agents.random_policy(4), env, params, 128, seeds=(0,),
                              seed=7).per_seed()
    assert np.all(trained > control + 0.3), (kind, trained, control)
