"""Properties every registered innerlab env must have (parametrized over ``list_envs()``).

A new env joins these tests by being registered; it must then also declare
``SPLIT_STATE_FIELDS`` and get entries in ``OFF_TRAIN`` and ``INCONSISTENT`` below.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from doc_examples import run_python_blocks
from hypothesis import given, settings
from hypothesis import strategies as st

from innerlab.envs import Box, Discrete, EnvParams, list_envs, make, params_to_dict

# tests need correct programs, not fast ones: XLA's cheapest optimisation level
# roughly halves compile time, which dominates these tests
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


ENV_NAMES = list_envs()
LENGTH = 12  # steps per rollout (fixed, so each env compiles once)


# --------------------------------------------------------------------------- per-env declarations


def _orchard_off_train(state, params):
    """A large object of the harmful colour: the train split never draws one."""
    return jnp.any(
        state.obj_alive & (state.obj_size == 1) & (state.obj_colour == params.harmful_colour)
    )


def _proxy_off_train(state, params):
    """An object of the goal colour away from the corner: train puts it only on the corner."""
    g = state.grid
    at_corner = jnp.all(g.obj_pos == jnp.array(params.corner), axis=-1)
    return jnp.any(g.obj_alive & (g.obj_colour == params.goal_colour) & ~at_corner)


def _boost_off_train(state, params):
    """A boosted first episode: a boost can only be bought for a later episode of the chain."""
    return (state.chain.episode == 0) & state.chain.boosted


def _spaceship_off_train(state, params):
    """Ship outside the start region or faster than any start (max_steps=1: every step resets)."""
    return jnp.any(jnp.abs(state.pos) > 0.8 * params.arena) | jnp.any(
        jnp.abs(state.vel) > params.start_speed
    )


# predicate(state, params) -> bool: true only for states training never produces
OFF_TRAIN = {
    "Orchard-v0": _orchard_off_train,
    "OrchardSideChannel-v0": lambda s, p: _orchard_off_train(s.inner, p.inner),
    "ProxyMaze-v0": _proxy_off_train,
    "BoostChain-v0": _boost_off_train,
    "Spaceship-v0": _spaceship_off_train,
}

# overrides that make an inconsistent param set, and the param name the error must mention
INCONSISTENT = {
    "Orchard-v0": ({"harmful_colour": 5}, "harmful_colour"),
    "OrchardSideChannel-v0": ({"mode": "none", "modification": "noise"}, "modification"),
    "ProxyMaze-v0": ({"true_objective": "treasure"}, "true_objective"),
    "BoostChain-v0": ({"chain_length": 0}, "chain_length"),
    "Spaceship-v0": ({"mass_range": (2.0, 1.0)}, "mass_range"),
}


# --------------------------------------------------------------------------- fixtures


@dataclasses.dataclass
class Kit:
    """One env, its train/test params and the two jitted programs its tests share.

    ``probe`` (the PureJaxRL rollout, sample_state draws and test-split resets)
    and ``run`` (one env stepped through given keys and actions): JAX compile
    time dominates these tests, so everything is read off these two.
    """

    name: str
    env: Any
    train: Any
    test: Any
    probe: Any  # key -> dict, see _make_probe
    run: Any  # (start_state, keys [LENGTH], actions [LENGTH]) -> per-step outputs


NUM_ENVS, NUM_SAMPLES = 4, 64


def purejaxrl_rollout(env, params, rng, num_envs=NUM_ENVS, num_steps=LENGTH):
    """The scan-over-vmapped-step loop PureJaxRL uses, written once for every env.

    Returns the reset keys and batch, and per step the step keys, actions and
    the step outputs (so tests can replay any env alone).
    """
    rng, k_reset = jax.random.split(rng)
    reset_keys = jax.random.split(k_reset, num_envs)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, params)

    def env_step(runner, _):
        env_state, obs, rng = runner
        rng, k_act, k_step = jax.random.split(rng, 3)
        action = jax.vmap(env.action_space(params).sample)(jax.random.split(k_act, num_envs))
        step_keys = jax.random.split(k_step, num_envs)
        obs, env_state, reward, term, trunc, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            step_keys, env_state, action, params
        )
        out = (obs, env_state, reward, term, trunc, info)
        return (env_state, obs, rng), (step_keys, action, out)

    _, traj = jax.lax.scan(env_step, (env_state, obs, rng), None, num_steps)
    return (reset_keys, obs, env_state), traj


def _off_train(name, state, params):
    predicate = OFF_TRAIN.get(name)
    return jnp.bool_(False) if predicate is None else predicate(state, params)


def _make_probe(name, env, train, test):
    def probe(key):
        k_roll, k_sample = jax.random.split(key)
        (reset_keys, obs0, state0), traj = purejaxrl_rollout(env, train, k_roll)
        states = traj[2][1]
        samples = jax.vmap(env.sample_state, in_axes=(0, None))(
            jax.random.split(k_sample, NUM_SAMPLES), train
        )
        test_state0 = jax.vmap(env.reset, in_axes=(0, None))(reset_keys, test)[1]
        over_steps = lambda fn: jax.vmap(jax.vmap(fn))(states)  # noqa: E731
        return {
            "reset_keys": reset_keys,
            "obs0": obs0,
            "state0": state0,
            "traj": traj,
            "off_train_in_rollout": over_steps(lambda s: _off_train(name, s, train)),
            "valid_in_rollout": over_steps(lambda s: env.is_valid(s, train)),
            "samples": samples,
            "sample_valid": jax.vmap(lambda s: env.is_valid(s, train))(samples),
            "sample_off_train": jax.vmap(lambda s: _off_train(name, s, train))(samples),
            "valid0": jax.vmap(lambda s: env.is_valid(s, train))(state0),
            "test_state0": test_state0,
            "test_valid": jax.vmap(lambda s: env.is_valid(s, test))(test_state0),
        }

    return jit(probe)


def _make_run(env, params):
    def run(state, keys, actions):
        def body(state, xs):
            k, a = xs
            obs, state, reward, term, trunc, info = env.step(k, state, a, params)
            return state, (obs, state, reward, term, trunc, info, env.is_valid(state, params))

        return jax.lax.scan(body, state, (keys, actions))[1]

    return jit(run)


@pytest.fixture(scope="module", params=ENV_NAMES)
def kit(request) -> Kit:
    name = request.param
    env, train = make(name)
    _, test = make(name, split="test")
    return Kit(name, env, train, test, _make_probe(name, env, train, test), _make_run(env, train))


@pytest.fixture(scope="module")
def probed(kit):
    return kit.probe(jax.random.key(0))


def _np(x) -> np.ndarray:
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def _tree_equal(a, b) -> bool:
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    return ta == tb and all(
        np.array_equal(_np(x), _np(y)) for x, y in zip(la, lb, strict=True)
    )


def _assert_tree_close(a, b, msg):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb, msg
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6, err_msg=msg)


def _pick(tree, *index):
    return jax.tree.map(lambda x: x[index], tree)


def _actions_from(data, env, params):
    """A hypothesis-drawn action sequence of length ``LENGTH`` for the env's action space."""
    space = env.action_space(params)
    if isinstance(space, Discrete):
        ints = st.integers(0, space.n - 1)
        return jnp.asarray(data.draw(st.lists(ints, min_size=LENGTH, max_size=LENGTH)), jnp.int32)
    assert isinstance(space, Box)
    size = int(np.prod(space.shape))
    floats = st.floats(space.low, space.high, width=32)
    flat = data.draw(st.lists(floats, min_size=LENGTH * size, max_size=LENGTH * size))
    return jnp.asarray(flat, jnp.float32).reshape((LENGTH, *space.shape))


# --------------------------------------------------------------------------- properties


@settings(max_examples=6)
@given(
    data=st.data(),
    seed=st.integers(0, 2**31 - 1),
    start=st.integers(0, NUM_SAMPLES - 1),
    from_sample=st.booleans(),
)
def test_any_action_sequence_keeps_the_state_valid(kit, probed, data, seed, start, from_sample):
    """From a reset or from any ``sample_state`` draw, under any actions."""
    params = kit.train
    state = _pick(probed["samples"] if from_sample else probed["state0"], start % (
        NUM_SAMPLES if from_sample else NUM_ENVS))
    actions = _actions_from(data, kit.env, params)
    keys = jax.random.split(jax.random.key(seed), LENGTH)
    obs, _, reward, term, trunc, _, valid = kit.run(state, keys, actions)
    assert np.all(np.asarray(valid)), f"invalid state after steps {np.flatnonzero(~valid)}"
    space = kit.env.observation_space(params)
    assert obs.shape == (LENGTH, *space.shape) and obs.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(obs))) and np.all(np.isfinite(np.asarray(reward)))
    assert reward.dtype == jnp.float32
    assert term.dtype == jnp.bool_ and trunc.dtype == jnp.bool_
    assert not np.any(np.asarray(term) & np.asarray(trunc))


def test_resets_and_random_training_rollouts_are_valid(kit, probed):
    assert np.all(np.asarray(probed["valid0"]))
    assert np.all(np.asarray(probed["valid_in_rollout"]))
    assert np.all(np.asarray(probed["test_valid"])), "a test-split reset is invalid"


def test_same_key_same_trajectory(kit, probed):
    assert _tree_equal(probed, kit.probe(jax.random.key(0)))
    other = kit.probe(jax.random.key(1))
    assert not _tree_equal(probed["traj"][2], other["traj"][2]), "the trajectory ignores the key"


def test_jit_equals_eager(kit, probed):
    """Eager ``reset`` and one eager ``step`` (which runs step_env and reset_env)
    against the jitted programs."""
    obs, state = kit.env.reset(probed["reset_keys"][0], kit.train)
    _assert_tree_close((obs, state), _pick((probed["obs0"], probed["state0"]), 0), "reset")
    step_keys, actions, _ = probed["traj"]
    eager = kit.env.step(step_keys[0, 0], state, actions[0, 0], kit.train)
    jitted = _pick(kit.run(state, step_keys[:, 0], actions[:, 0]), 0)
    _assert_tree_close(eager, jitted[:6], "eager and jitted step differ")


def test_vmap_equals_a_loop(kit, probed):
    """The vmapped PureJaxRL rollout equals stepping each env alone with the same keys."""
    step_keys, actions, outputs = probed["traj"]
    for i in range(NUM_ENVS):
        state = _pick(probed["state0"], i)
        alone = kit.run(state, step_keys[:, i], actions[:, i])[:6]
        _assert_tree_close(alone, _pick(outputs, slice(None), i), f"env {i} differs")


def _leaf_paths(tree) -> list[str]:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return [jax.tree_util.keystr(p).lstrip(".") for p, _ in leaves]


def _flat_params(params, prefix="") -> dict[str, Any]:
    """Params as a flat dict, nested params (a wrapper's ``inner``) under ``name.``."""
    out = {}
    for k, v in params_to_dict(params).items():
        if isinstance(v, EnvParams):
            out.update(_flat_params(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def test_train_and_test_differ_only_where_declared(kit, probed):
    # params: only `split` differs, and the declared split params exist
    train, test = _flat_params(kit.train), _flat_params(kit.test)
    assert {k.split(".")[-1] for k in train if train[k] != test[k]} == {"split"}
    assert set(type(kit.train).SPLIT_FIELDS) <= set(params_to_dict(kit.train)), (
        "SPLIT_FIELDS names unknown params"
    )
    # states: from the same keys, reset draws differ only in the declared leaves
    declared = kit.env.SPLIT_STATE_FIELDS
    assert declared is not None, f"{kit.name} must declare SPLIT_STATE_FIELDS"
    s_train, s_test = probed["state0"], probed["test_state0"]
    paths = _leaf_paths(s_train)
    assert set(declared) <= set(paths), f"declared {declared} not among state leaves {paths}"
    differ = {
        p
        for p, a, b in zip(paths, jax.tree.leaves(s_train), jax.tree.leaves(s_test), strict=True)
        if not np.array_equal(np.asarray(a), np.asarray(b))
    }
    assert differ <= set(declared), f"undeclared split differences: {differ - set(declared)}"
    if declared:
        assert differ, "train and test reset states never differ"


def test_sample_state_covers_states_training_never_produces(kit, probed):
    assert kit.name in OFF_TRAIN, f"add an OFF_TRAIN predicate for {kit.name}"
    assert not np.any(np.asarray(probed["off_train_in_rollout"])), "training left its distribution"
    assert np.all(np.asarray(probed["sample_valid"])), "sample_state produced an invalid state"
    assert np.asarray(probed["sample_off_train"]).any(), "sample_state never leaves training"


def test_purejaxrl_style_rollout_runs(kit, probed):
    step_keys, actions, (obs, _, reward, term, trunc, info) = probed["traj"]
    shape = kit.env.observation_space(kit.train).shape
    assert probed["obs0"].shape == (NUM_ENVS, *shape)
    assert obs.shape == (LENGTH, NUM_ENVS, *shape)
    assert reward.shape == term.shape == info["discount"].shape == (LENGTH, NUM_ENVS)
    assert np.all(np.isfinite(np.asarray(reward)))
    np.testing.assert_array_equal(np.asarray(info["discount"]) == 0, np.asarray(term))


# --------------------------------------------------------------------------- bad input


def test_bad_actions_raise_clear_errors(kit, probed):
    env, params = kit.env, kit.train
    state = _pick(probed["state0"], 0)
    keys, actions, _ = probed["traj"]
    keys, actions = keys[:, 0], actions[:, 0]
    space = env.action_space(params)
    if isinstance(space, Discrete):
        for bad in (space.n, -1):
            with pytest.raises((RuntimeError, ValueError), match="action.*out of range"):
                jax.block_until_ready(kit.run(state, keys, actions.at[3].set(bad)))
        with pytest.raises(TypeError, match="'action'.*integer.*float32"):
            kit.run(state, keys, actions.astype(jnp.float32))
        with pytest.raises(ValueError, match=r"'action'.*scalar.*\(2,\)"):
            kit.run(state, keys, jnp.stack([actions, actions], axis=-1))
    else:
        with pytest.raises((RuntimeError, ValueError), match="action.*out of range"):
            jax.block_until_ready(kit.run(state, keys, actions.at[3].set(space.high + 1.0)))
        with pytest.raises(TypeError, match="'action'"):
            kit.run(state, keys, actions.astype(jnp.int32))
        with pytest.raises(ValueError, match="'action'.*shape"):
            kit.run(state, keys, jnp.stack([actions, actions], axis=-1))


def test_unknown_env_name_is_named():
    with pytest.raises(KeyError, match="'NoSuchEnv-v0'.*registered"):
        make("NoSuchEnv-v0")


@pytest.mark.parametrize("name", ENV_NAMES)
def test_unknown_param_is_named(name):
    with pytest.raises(TypeError, match=r"unknown param\(s\) \['no_such_param'\]"):
        make(name, no_such_param=1)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_inconsistent_params_are_named(name):
    assert name in INCONSISTENT, f"add an INCONSISTENT example for {name}"
    overrides, named = INCONSISTENT[name]
    with pytest.raises((ValueError, TypeError), match=named):
        make(name, **overrides)
    with pytest.raises(ValueError, match="split"):
        make(name, split="validation")


# --------------------------------------------------------------------------- docs/envs.md

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs" / "envs.md"


@pytest.mark.slow  # runs every example in docs/envs.md (about 20 s of compiling)
def test_docs_examples_run(capsys):
    run_python_blocks(DOCS, min_blocks=2)
    out = capsys.readouterr().out
    assert "Legend" in out and "true reward" in out


@pytest.mark.parametrize("name", ENV_NAMES)
def test_docs_describe_every_env_and_param(name):
    text = DOCS.read_text()
    assert f"`{name}`" in text, f"docs/envs.md does not list {name}"
    if name == "Spaceship-v0":  # documented in its own module docstring
        return
    for field in params_to_dict(make(name)[1]):
        assert f"`{field}`" in text, f"docs/envs.md does not document param {field!r} of {name}"
