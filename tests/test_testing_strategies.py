"""innerlab.testing.strategies: valid, distribution-faithful, shrinkable inputs for every env."""

import jax
import numpy as np
import pytest
from hypothesis import find, given, settings

import innerlab.envs as envs
from innerlab.envs.grid import GridEnvironment
from innerlab.testing import strategies as S

FEW = settings(max_examples=8, deadline=None, database=None)


def _validity(env, params):
    if not hasattr(env, "is_valid"):
        return lambda state: True
    fn = jax.jit(lambda state: env.is_valid(state, params))
    return lambda state: bool(fn(state))


@pytest.mark.parametrize("name", envs.list_envs())
def test_every_env_gives_valid_states_and_actions(name):
    env, params = envs.make(name)
    space = env.action_space(params)
    valid = _validity(env, params)  # the splits differ in distribution, not in validity

    @settings(max_examples=4, deadline=None, database=None)
    @given(S.state_actions(name, None, "any"))
    def check(sa):
        state, action = sa
        assert valid(state)
        assert bool(space.contains(action))

    check()


def _large_harmful(state, params):
    g = GridEnvironment.grid_of(state)
    return np.any(
        np.asarray(g.obj_alive)
        & (np.asarray(g.obj_size) == 1)
        & (np.asarray(g.obj_colour) == params.harmful_colour)
    )


@pytest.fixture(scope="module")
def orchard():
    return envs.make("Orchard-v0")


def test_train_states_stay_on_the_train_distribution(orchard):
    env, params = orchard

    valid = _validity(env, params)

    @FEW
    @given(S.states(env, params, "train"))
    def check(state):
        assert valid(state)
        # Orchard's train split never shows a large object of the harmful colour
        assert not _large_harmful(state, params)

    check()
    # ... which its test split does
    find(S.states(env, params, "test"), lambda s: _large_harmful(s, params),
         settings=settings(database=None, max_examples=100))


def test_shrinking_gives_a_minimal_readable_state(orchard):
    env, params = orchard
    # "any" reaches states no split produces; the shrunk example is the simplest one
    found = find(S.states(env, params, "any"), lambda s: _large_harmful(s, params),
                 settings=settings(database=None, max_examples=100, derandomize=True))
    g = GridEnvironment.grid_of(found)
    alive = np.flatnonzero(np.asarray(g.obj_alive))
    assert alive.size == 1  # every other object died while shrinking
    i = int(alive[0])
    assert int(g.obj_size[i]) == 1 and int(g.obj_colour[i]) == params.harmful_colour
    assert int(g.obj_shape[i]) == 0 and int(g.time) == 0
    assert np.asarray(g.agent).tolist() == [1, 1]  # the first floor cell
    text = env.render_text(found, params, legend=False)
    assert text.splitlines()[1].startswith("##@ ")
    assert text.count("Rs") == 1 and sum(ch.isalpha() for ch in text) == 2  # one object


def test_collect_steps_onto_an_object_and_earns_its_value(orchard):
    env, params = orchard

    @FEW
    @given(S.state_actions(env, params, "any", collect=True))
    def check(sa):
        state, action = sa
        assert S.target_object(state, action) is not None
        assert float(env.true_reward(state, action, params)) != 0.0

    check()


@pytest.mark.parametrize("feature", S.FEATURES)
def test_perturbation_changes_one_feature_of_one_object(orchard, feature):
    env, params = orchard

    @FEW
    @given(S.feature_perturbations(env, params, feature, "any", increase=True))
    def check(p):
        assert p.new > p.old
        assert S.target_object(p.state, p.action) == p.index  # the collected object
        a, b = GridEnvironment.grid_of(p.state), GridEnvironment.grid_of(p.perturbed)
        for name in ("obj_colour", "obj_shape", "obj_size", "obj_pos", "obj_alive", "agent"):
            diff = np.argwhere(np.asarray(getattr(a, name)) != np.asarray(getattr(b, name)))
            if name == S._FIELDS[feature]:
                assert diff.ravel().tolist() == [p.index]
                assert int(getattr(b, name)[p.index]) == p.new
            else:
                assert diff.size == 0

    check()


def test_trajectories_and_pairs_follow_env_step(orchard):
    env, params = orchard
    labels = jax.jit(jax.vmap(lambda s, a: (env.true_reward(s, a, params), env.observe(s, params))))

    @FEW
    @given(S.trajectories(env, params, "train", length=5))
    def check(traj):
        assert traj.obs.shape == (6, *env.observation_space(params).shape)
        first = jax.tree.map(lambda x: x[:-1], traj.states)
        rewards, obs = labels(first, traj.actions)
        np.testing.assert_allclose(rewards, traj.rewards, rtol=1e-6)
        np.testing.assert_array_equal(obs, traj.obs[:-1])

    check()

    @FEW
    @given(S.trajectory_pairs(env, params, "train", length=5))
    def check_pairs(pair):
        a, b = pair
        np.testing.assert_array_equal(a.obs[0], b.obs[0])  # one start state
        assert a.actions.shape == b.actions.shape == (5,)

    check_pairs()


def test_rollouts_stop_before_the_end_and_trajectories_reset_after_it():
    """Drawn-action replays on the one rollout: a state rolled forward never steps into the
    end of its episode; a trajectory's state after a done is a fresh episode."""
    env, params = envs.make("Orchard-v0", height=5, width=5, n_objects=3, max_steps=4)
    actions = np.zeros(10, np.int32)  # more steps than an episode has
    for n in (0, 2, 10):
        state = S._rollout_fn(env, params)(3, actions, n)
        assert int(GridEnvironment.grid_of(state).time) == min(n, params.max_steps - 1)
    start = env.reset(jax.random.key(0), params)[1]
    traj = S._trajectory_fn(env, params)(5, start, actions)
    time = np.asarray(GridEnvironment.grid_of(traj.states).time)
    dones = np.asarray(traj.dones)
    assert dones.any() and time.shape == (11,)
    np.testing.assert_array_equal(time[1:][dones], 0)
    np.testing.assert_array_equal(time[1:][~dones], time[:-1][~dones] + 1)


def test_continuous_actions_lie_in_the_box():
    env, params = envs.make("Spaceship-v0")
    space = env.action_space(params)

    @FEW
    @given(S.actions(env, params))
    def check(action):
        assert action.shape == space.shape and bool(space.contains(action))

    check()


def test_bad_arguments_are_named(orchard):
    env, params = orchard
    with pytest.raises(ValueError, match="'distribution' must be one of"):
        S.states(env, params, "validation")
    with pytest.raises(ValueError, match="'feature' must be one of"):
        S.feature_perturbations(env, params, "weight")
    with pytest.raises(TypeError, match="'env' must be a registered env name"):
        S.states(object())
    with pytest.raises(ValueError, match="'length' must be >= 1"):
        S.trajectories(env, params, length=0)
    with pytest.raises(ValueError, match="needs a grid env"):
        S.feature_perturbations("Spaceship-v0", None, "shape")
