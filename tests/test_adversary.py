"""The adversary: objectives, input-space and latent search, pseudo-input losses, retraining."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import innerlab.envs as envs
from innerlab.adversary import (
    RetrainConfig,
    TrainConfig,
    action_disagreement,
    activation,
    adversarial_retraining,
    conservative_loss,
    decode_nearest,
    disagreement,
    evolutionary_search,
    from_layer,
    gradient_search,
    in_planted_region,
    label_states,
    labelled_data,
    latent_search,
    layer_names,
    mutate_state,
    pessimistic_targets,
    planted_pair,
    project,
    random_search,
    search,
    true_gap,
)
from innerlab.adversary.retrain import add_rows
from innerlab.reward_models import RewardModel
from innerlab.reward_models.data import sample_state_transitions

SEARCHES = {
    "random": (random_search, {"batch_size": 32}),
    "evolution": (evolutionary_search, {"population": 32}),
    "gradient": (gradient_search, {"population": 8}),
}


@pytest.fixture(scope="module")
def orchard():
    return envs.make("Orchard-v0")


@pytest.fixture(scope="module")
def pair(orchard):
    env, params = orchard
    return planted_pair(env, params, jax.random.key(0))


@pytest.fixture(scope="module")
def states(orchard):
    env, params = orchard
    return jax.vmap(lambda k: env.sample_state(k, params))(jax.random.split(jax.random.key(3), 64))


@pytest.fixture(scope="module")
def model(orchard):
    env, params = orchard
    shape = env.observation_space(params).shape
    return RewardModel(shape, 4, num_members=3, latent_dim=8, width=16, encoder="mlp",
                       key=jax.random.key(1))


def _valid(env, params, states):
    return np.asarray(jax.vmap(lambda s: env.is_valid(s, params))(states))


# --------------------------------------------------------------------------- objectives


def test_disagreement_measures_on_planted_pair(orchard, pair, states):
    env, params = orchard
    obs = jax.vmap(lambda s: env.observe(s, params))(states)
    region = np.asarray(jax.vmap(pair.region)(obs))
    # on the planted action the members differ by strength * region, elsewhere not at all
    a0 = jnp.zeros(len(region), jnp.int32)
    np.testing.assert_allclose(disagreement(pair, obs, a0, "gap"), region, atol=1e-6)
    np.testing.assert_allclose(disagreement(pair, obs, a0, "std"), region / 2, atol=1e-6)
    np.testing.assert_allclose(disagreement(pair, obs, a0 + 2, "gap"), 0.0, atol=1e-6)
    per_action = action_disagreement(pair, obs, 4, "gap")
    assert per_action.shape == (len(region), 4)


def test_true_gap_is_error_of_aggregate(orchard, model, states):
    env, params = orchard
    actions = jnp.arange(64, dtype=jnp.int32) % 4
    got = eqx.filter_jit(lambda m, s, a: true_gap(m, env, params, s, a))(model, states, actions)
    obs = jax.vmap(lambda s: env.observe(s, params))(states)
    mean = jax.vmap(model)(obs, actions).mean(-1)
    truth = jax.vmap(lambda s, a: env.true_reward(s, a, params))(states, actions)
    np.testing.assert_allclose(got, jnp.abs(mean - truth), rtol=1e-5, atol=1e-6)


def test_objective_bad_input(pair, states, orchard):
    env, params = orchard
    obs = jax.vmap(lambda s: env.observe(s, params))(states)
    with pytest.raises(ValueError, match="'measure' must be one of"):
        disagreement(pair, obs, jnp.zeros(64, jnp.int32), "variance")
    with pytest.raises(ValueError, match="share the batch size"):
        disagreement(pair, obs, jnp.zeros(3, jnp.int32))


# --------------------------------------------------------------------------- input-space search


# gradient (the default search) in the default suite; the others (13-27 s each) in make test-slow
@pytest.mark.parametrize(
    "method",
    [m if m == "gradient" else pytest.param(m, marks=pytest.mark.slow) for m in sorted(SEARCHES)],
)
def test_each_search_finds_the_planted_region(orchard, pair, method):
    env, params = orchard
    fn, kwargs = SEARCHES[method]
    res = fn(pair, env, params, jax.random.key(7), budget=512, top_n=4, **kwargs)
    assert res.num_evals <= 512
    assert res.num_evals == int(res.trace_evals[-1])
    hit = np.asarray(in_planted_region(pair, env, params, res.states))
    assert hit[0], f"{method} did not find the planted region (best score {res.scores[0]})"
    np.testing.assert_allclose(res.scores[0], 0.5, atol=1e-5)  # std of [b, b + 1]
    assert int(res.actions[0]) == pair.action
    assert _valid(env, params, res.states).all()
    assert np.all(np.diff(np.asarray(res.trace_best)) >= 0)
    assert np.all(np.diff(np.asarray(res.scores)) <= 0)
    flat = np.asarray(res.obs).reshape(4, -1)
    assert len({row.tobytes() for row in flat}) == 4  # distinct states


@given(seed=st.integers(0, 2**31 - 1))
def test_mutations_keep_states_valid(orchard, states, seed):
    env, params = orchard
    keys = jax.random.split(jax.random.key(seed), 64)
    out = _mutate(env, params, keys, states)
    assert _valid(env, params, out).all()
    alive_under_agent = jax.vmap(
        lambda s: jnp.any(s.obj_alive & jnp.all(s.obj_pos == s.agent, -1))
    )(out)
    assert not np.asarray(alive_under_agent).any()


@eqx.filter_jit
def _mutate(env, params, keys, states):
    return jax.vmap(lambda k, s: mutate_state(env, params, k, s, 3))(keys, states)


@given(seed=st.integers(0, 2**31 - 1))
def test_projection_of_any_relaxation_is_valid(orchard, states, seed):
    env, params = orchard
    g = jax.tree.map(lambda x: x[0], states)
    out = _project_random(jax.random.key(seed), g)
    assert _valid(env, params, out).all()


@eqx.filter_jit
def _project_random(key, g):
    from innerlab.adversary.search import Relaxation

    h, w = g.walls.shape

    def one(k):
        ks = jax.random.split(k, 5)
        r = Relaxation(
            jax.random.normal(ks[0], (h, w)) * 3, jax.random.normal(ks[1], (h, w)) * 3,
            jax.random.normal(ks[2], (h, w, 3)), jax.random.normal(ks[3], (h, w, 2)),
            jax.random.normal(ks[4], (h, w, 2)),
        )
        return project(r, g)

    return jax.vmap(one)(jax.random.split(key, 16))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"budget": 0}, "'budget' must be an int >= 1"),
        ({"budget": -5}, "'budget' must be an int >= 1"),
        ({"budget": 64, "top_n": 0}, "'top_n' must be an int >= 1"),
        ({"budget": 64, "measure": "var"}, "'measure' must be one of"),
    ],
)
def test_search_bad_input(orchard, pair, kwargs, match):
    env, params = orchard
    for method in ("random", "evolution", "gradient"):
        with pytest.raises(ValueError, match=match):
            search(method, pair, env, params, jax.random.key(0), **kwargs)
    with pytest.raises(ValueError, match="'method' must be one of"):
        search("annealing", pair, env, params, jax.random.key(0), budget=8)


# --------------------------------------------------------------------------- latent search


def test_latent_search_stays_in_ball_and_raises_disagreement(orchard, model, states):
    env, params = orchard
    obs = jax.vmap(lambda s: env.observe(s, params))(states)[:16]
    res = latent_search(model, obs, jax.random.key(0), epsilon=0.5, steps=8, top_n=4)
    assert res.latents.shape == (4, 8)
    assert np.all(np.asarray(res.distance) <= 0.5 + 1e-4)
    assert np.all(np.asarray(res.latents) >= 0)
    assert float(res.scores[0]) > float(jnp.max(res.start_scores))
    assert np.all(np.diff(np.asarray(res.trace_best)) >= 0)
    zero = latent_search(model, obs, jax.random.key(0), epsilon=0.0, steps=2)
    np.testing.assert_allclose(zero.latents, zero.start, atol=1e-6)


def test_named_conv_layer_splits_the_model(orchard, states):
    env, params = orchard
    obs = jax.vmap(lambda s: env.observe(s, params))(states)[:2]
    for latent_act in ("relu", "minmax"):  # the split must end in the encoder's own activation
        conv = RewardModel(obs.shape[1:], 4, num_members=2, latent_dim=4, width=4,
                           key=jax.random.key(2), latent_activation=latent_act)
        assert layer_names(conv) == ("conv0", "conv1", "latent")
        for layer in ("conv0", "conv1", "latent"):
            act = activation(conv, obs[0], layer)
            np.testing.assert_allclose(
                from_layer(conv, act, 3, layer), conv(obs[0], 3), rtol=1e-5, atol=1e-6
            )
    assert activation(conv, obs[0], "conv1").shape == (4, 7, 7)


def test_latent_bad_input(orchard, model, states):
    env, params = orchard
    obs = jax.vmap(lambda s: env.observe(s, params))(states)[:4]
    with pytest.raises(ValueError, match="'epsilon' must be >= 0"):
        latent_search(model, obs, jax.random.key(0), epsilon=-0.1)
    with pytest.raises(ValueError, match="'layer' must be one of"):
        latent_search(model, obs, jax.random.key(0), epsilon=0.1, layer="fc7")
    with pytest.raises(ValueError, match="'steps' must be an int >= 1"):
        latent_search(model, obs, jax.random.key(0), epsilon=0.1, steps=0)


def test_nearest_decoding_is_exact_on_real_activations(orchard, model, states):
    env, params = orchard
    obs = jax.vmap(lambda s: env.observe(s, params))(states)
    idx = jnp.array([5, 17, 0, 40])
    latents = jax.vmap(model.encode)(obs[idx])
    got = np.asarray(decode_nearest(model, latents, obs))
    # equal activations are an equally good answer, so compare activations, not indices
    np.testing.assert_allclose(jax.vmap(model.encode)(obs[got]), latents, atol=1e-5)


def test_conservative_loss_pulls_members_down_to_pessimistic_value(orchard, model, states):
    env, params = orchard
    obs = jax.vmap(lambda s: env.observe(s, params))(states)[:8]
    z = jax.vmap(model.encode)(obs)
    a = jnp.zeros(8, jnp.int32)
    targets = pessimistic_targets(model, z, a, k=1.0)
    loss0 = conservative_loss(model, z, a, targets)
    assert float(loss0) > 0
    grads = eqx.filter_grad(lambda m: conservative_loss(m, z, a, targets))(model)
    stepped = eqx.apply_updates(model, jax.tree.map(lambda g: -0.05 * g, grads))
    assert float(conservative_loss(stepped, z, a, targets)) < float(loss0)
    before = jax.vmap(model.heads)(z, a).mean(-1)
    after = jax.vmap(stepped.heads)(z, a).mean(-1)
    assert np.all(np.asarray(after) < np.asarray(before))


# --------------------------------------------------------------------------- retraining


def test_labels_are_the_true_reward(orchard, states):
    env, params = orchard
    actions = jnp.arange(64, dtype=jnp.int32) % 4
    data = label_states(env, params, states, actions)
    truth = jax.vmap(lambda s, a: env.true_reward(s, a, params))(states, actions)
    np.testing.assert_array_equal(data.reward, truth)
    assert data.obs.shape[0] == 64


def test_buffer_overflow_is_an_error(orchard, model):
    env, params = orchard
    data = sample_state_transitions(env, params, jax.random.key(0), 32)
    buf = labelled_data(data.take(jnp.arange(8)), 10, (8,), 1)
    buf = add_rows(buf, data.take(jnp.arange(2)))
    assert int(buf.count) == 10
    np.testing.assert_array_equal(buf.data.reward[8:], data.reward[:2])
    with pytest.raises(ValueError, match="overflow"):
        add_rows(buf, data.take(jnp.arange(1)))


TINY = dict(rounds=2, label_budget=4, search_budget=32, latent_steps=1, pool_size=32,
            train=TrainConfig(steps=5, batch_size=8))


@pytest.mark.parametrize("method", ["random", "latent-decode", "latent-conservative"])
def test_retraining_rounds_add_labels(orchard, model, method):
    env, params = orchard
    data = sample_state_transitions(env, params, jax.random.key(0), 32)
    cfg = RetrainConfig(method=method, **TINY)
    _, hist = adversarial_retraining(model, data, env, params, jax.random.key(1), cfg)
    assert [h["round"] for h in hist] == [1, 2]
    if method == "latent-conservative":
        assert [h["labels"] for h in hist] == [0, 0]
        assert [h["pseudo_inputs"] for h in hist] == [4, 8]
    else:
        assert [h["labels"] for h in hist] == [4, 8]


class _Killed(Exception):
    pass


def test_killed_run_resumes_without_losing_rounds(orchard, model, tmp_path):
    env, params = orchard
    data = sample_state_transitions(env, params, jax.random.key(0), 32)
    cfg = RetrainConfig(method="evolution", **TINY)
    key = jax.random.key(4)
    full_model, full_hist = adversarial_retraining(model, data, env, params, key, cfg)

    calls = []

    def dies_in_round_2(m, r):
        calls.append(r)
        if r == 2:
            raise _Killed
        return {}

    with pytest.raises(_Killed):
        adversarial_retraining(model, data, env, params, key, cfg, dies_in_round_2, tmp_path)
    assert (tmp_path / "round_0001").is_dir() and not (tmp_path / "round_0002").exists()

    resumed_calls = []
    resumed, hist = adversarial_retraining(
        model, data, env, params, key, cfg, lambda m, r: resumed_calls.append(r) or {}, tmp_path
    )
    assert resumed_calls == [2]  # round 1 was not redone
    assert [h["labels"] for h in hist] == [h["labels"] for h in full_hist]
    for a, b in zip(jax.tree.leaves(eqx.filter(resumed, eqx.is_array)),
                    jax.tree.leaves(eqx.filter(full_model, eqx.is_array)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_retrain_config_bad_input():
    with pytest.raises(ValueError, match="'label_budget' must be an int >= 1"):
        RetrainConfig(label_budget=0)
    with pytest.raises(ValueError, match="'epsilon' must be >= 0"):
        RetrainConfig(epsilon=-1.0)
    with pytest.raises(ValueError, match="'method' must be one of"):
        RetrainConfig(method="bayes")
    with pytest.raises(ValueError, match="'steps' must be an int >= 1"):
        TrainConfig(steps=0)


@pytest.mark.slow  # runs docs/adversary.md's example (about 14 s of compiling)
def test_docs_example_runs(capsys):
    import pathlib
    import re

    text = (pathlib.Path(__file__).parent.parent / "docs" / "adversary.md").read_text()
    code = re.search(r"## Example\n\n```python\n(.*?)```", text, re.S).group(1)
    exec(compile(code, "docs/adversary.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.count("found=True") == 3
