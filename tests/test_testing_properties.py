"""Each property passes on the exact model and catches its planted bug, with a readable report."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import Phase, given, settings

import innerlab.envs as envs
from innerlab.adversary import disagreement, true_gap
from innerlab.testing import OracleRewardModel, planted
from innerlab.testing import properties as P
from innerlab.testing import strategies as S

N = 30  # examples per property run


@pytest.fixture(scope="module")
def orchard():
    return envs.make("Orchard-v0")


@pytest.fixture(scope="module")
def oracle(orchard):
    return OracleRewardModel(*orchard, num_members=3)


def harmless(params):
    """Orchard is monotonic in size only for objects not of the harmful colour."""
    return lambda p: int(S.GridEnvironment.grid_of(p.state).obj_colour[p.index]) != (
        params.harmful_colour
    )


CASES = {
    "finite": (P.finite, planted.LastObjectBlowUpModel, {}),
    "bounded": (P.bounded, planted.ColourCountModel, {"low": -2.0, "high": 2.0}),
    "invariant": (P.invariant, planted.ShapeBiasedModel, {"feature": "shape"}),
    "monotonic": (P.monotonic, planted.SizeInvertedModel, {"feature": "size"}),
    "members_agree": (
        P.members_agree, planted.DivergentModel, {"tol": 0.1, "distribution": "test"}
    ),
    "matches_true_reward": (
        P.matches_true_reward, planted.LargeIsGoodModel, {"tol": 0.1, "distribution": "test"}
    ),
}


def _options(name, params):
    prop, faulty, kw = CASES[name]
    kw = dict(kw)
    if name == "monotonic":
        kw["where"] = harmless(params)
    return prop, faulty, kw


@pytest.mark.parametrize("name", list(CASES))
def test_property_passes_on_the_exact_model(orchard, oracle, name):
    env, params = orchard
    prop, _, kw = _options(name, params)
    result = prop(oracle, env, params, max_examples=N, **kw)
    assert result.examples >= N


@pytest.mark.parametrize("name", list(CASES))
def test_property_catches_its_planted_bug(orchard, name):
    env, params = orchard
    prop, faulty, kw = _options(name, params)
    with pytest.raises(P.PropertyViolation) as info:
        prop(faulty(env, params), env, params, max_examples=N, seed=0, **kw)
    err = info.value
    assert err.first_failure_at is not None and err.first_failure_at <= err.examples
    message = str(err)
    # the shrunk state as a text grid, the model's and the true reward
    assert "Minimal failing example" in message and "##@" not in message or "@" in message
    assert "Legend:" in message
    assert "model:       members [" in message and "true reward:" in message


def test_failure_report_shows_the_shrunk_state(orchard):
    env, params = orchard
    with pytest.raises(P.PropertyViolation) as info:
        P.invariant(planted.ShapeBiasedModel(env, params), env, params, feature="shape",
                    max_examples=N, seed=1)
    message = str(info.value)
    assert "invariant(feature='shape') failed on Orchard-v0" in message
    # shrunk: the agent in the top-left corner, collecting the object to its right,
    # which changes from a square to a circle (the biased shape); nothing else alive
    lines = message.splitlines()
    grid = [ln for ln in lines if ln.startswith("##")]
    assert grid[1].startswith("##@ rs") and grid[8].startswith("##@ rc")
    assert all(set(row[2:-2]) <= {".", " "} for row in grid[2:6])
    assert "action:      1 (right)" in message
    assert "shape 0 -> 1" in message


def test_members_diverging_off_the_train_split_pass_on_train(orchard):
    env, params = orchard
    model = planted.DivergentModel(env, params)
    P.members_agree(model, env, params, tol=0.1, distribution="train", max_examples=N)
    with pytest.raises(P.PropertyViolation, match="members disagree by"):
        P.members_agree(model, env, params, tol=0.1, distribution="any", max_examples=N, seed=0)


def test_proxy_reward_is_right_on_train_and_wrong_on_test(orchard):
    env, params = orchard
    proxy = planted.LargeIsGoodModel(env, params)
    P.matches_true_reward(proxy, env, params, tol=1e-5, distribution="train", max_examples=N)
    with pytest.raises(P.PropertyViolation, match="from the true reward"):
        P.matches_true_reward(proxy, env, params, tol=1e-5, distribution="test",
                              max_examples=N, seed=0)


def test_rescaled_model_is_not_the_true_reward(orchard, oracle):
    env, params = orchard
    with pytest.raises(P.PropertyViolation):
        P.matches_true_reward(planted.AffineModel(oracle, 2.0, 0.5), env, params, tol=0.1,
                              distribution="any", max_examples=N, seed=0)


def test_scores_are_the_adversary_objectives(orchard):
    env, params = orchard
    model = planted.DivergentModel(env, params)
    ev_fn = P.Evaluator(model, env, params, measure="gap", how="mean")

    @jax.jit
    def adversary(state, action):
        batch = jax.tree.map(lambda x: x[None], state)
        obs = env.observe(state, params)[None]
        return (disagreement(model, obs, action[None], "gap")[0],
                true_gap(model, env, params, batch, action[None])[0])

    @settings(max_examples=10, deadline=None, database=None)
    @given(S.state_actions(env, params, "any"))
    def check(sa):
        ev = ev_fn(*sa)
        dis, gap = adversary(*sa)
        np.testing.assert_allclose(ev.disagreement, dis, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ev.error, gap, rtol=1e-5, atol=1e-6)

    check()


def test_decorator_form_checks_the_returned_model(orchard, oracle):
    env, params = orchard

    @P.invariant.test("Orchard-v0", feature="shape", max_examples=10)
    def test_model(model):
        return model

    test_model(oracle)  # passes
    with pytest.raises(P.PropertyViolation):
        test_model(planted.ShapeBiasedModel(env, params))
    assert test_model.__name__ == "test_model"


def test_scalar_models_and_plain_functions_work(orchard):
    env, params = orchard
    oracle = OracleRewardModel(env, params, num_members=1)

    def scalar(obs, action):
        return oracle.true_reward(obs, action)

    P.finite(scalar, env, params, max_examples=10)
    with pytest.raises(ValueError, match="at least 2 members"):
        P.members_agree(scalar, env, params, tol=0.1, max_examples=5)


def test_bad_arguments_are_named(orchard, oracle):
    env, params = orchard
    with pytest.raises(ValueError, match="'target' must be one of"):
        P.finite(oracle, env, params, target="loss")
    with pytest.raises(ValueError, match="'how' must be one of"):
        P.finite(oracle, env, params, how="median")
    with pytest.raises(ValueError, match="'measure' must be one of"):
        P.members_agree(oracle, env, params, tol=0.1, measure="var")
    with pytest.raises(ValueError, match="'tol' must be >= 0"):
        P.matches_true_reward(oracle, env, params, tol=-1.0)
    with pytest.raises(ValueError, match="'low' <= 'high'"):
        P.bounded(oracle, env, params, low=1.0, high=0.0)
    with pytest.raises(TypeError, match="'model' must be callable"):
        P.finite(jnp.zeros(3), env, params)


def test_epic_accepts_a_rescaled_model_and_rejects_the_proxy_on_test(orchard, oracle):
    env, params = orchard
    # positive rescaling + shift: not the true reward, but EPIC-equivalent to it
    P.epic_equivalent(planted.AffineModel(oracle, 3.0, -1.0), env, params, tol=0.02,
                      batch_size=8, distribution="test", max_examples=6)
    proxy = planted.LargeIsGoodModel(env, params)
    no_shrink = settings(max_examples=10, deadline=None, database=None,
                         phases=[Phase.generate, Phase.target])
    with pytest.raises(P.PropertyViolation, match="EPIC distance") as info:
        P.epic_equivalent(proxy, env, params, tol=0.02, batch_size=8, distribution="test",
                          settings=no_shrink, seed=0)
    assert "standardised canonical rewards of the batch" in str(info.value)


def test_untraceable_models_run_eagerly(orchard):
    env, params = orchard

    def host_model(obs, action):  # Python control flow on values: jit cannot trace it
        return np.full(2, 3.0 if int(action) == 3 and float(obs.sum()) > 0 else 0.0)

    assert P.finite(host_model, env, params, max_examples=5, jit=False).examples >= 5
    with pytest.raises(P.PropertyViolation, match=r"outside \[-2.0, 2.0\]"):
        P.bounded(host_model, env, params, low=-2.0, high=2.0, max_examples=20, jit=False)
    with pytest.raises(jax.errors.ConcretizationTypeError):
        P.finite(host_model, env, params, max_examples=5)  # jit=True: a clear JAX error
