"""The pytest plugin in a real pytest run: fixtures, markers, decorators, and the docs example."""

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOCS = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


def docs_example() -> str:
    """The python block that follows the 'run by tests/test_testing_plugin.py' marker."""
    text = DOCS.read_text()
    marker = text.index("<!-- the block below is run by tests/")
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, marker)
    assert match is not None, "docs/testing.md lost its worked example"
    return match.group(1)


def test_docs_example_runs_and_its_tests_pass(pytester):
    pytester.makepyfile(test_orchard_reward=docs_example())
    result = pytester.runpytest_inprocess("-q", "-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=8)
    # the printed report of the off-distribution failure: shrunk grid and both rewards
    out = result.stdout.str()
    assert "matches_true_reward(tol=0.0001, how='mean') failed on Orchard-v0" in out
    assert "true reward: -2" in out and "model:       members [2, 2]" in out


def test_fixtures_markers_and_decorators(pytester):
    pytester.makepyfile(
        """
        import pytest
        from innerlab.testing import OracleRewardModel, invariant, planted

        @pytest.mark.innerlab_env("Orchard-v0", n_objects=3, split="test")
        def test_marker_picks_the_env(innerlab_env, oracle_model):
            env, params = innerlab_env
            assert env.name == "Orchard-v0" and params.n_objects == 3
            assert params.split == "test"
            assert isinstance(oracle_model, OracleRewardModel)

        @pytest.mark.parametrize("innerlab_env", ["ProxyMaze-v0"], indirect=True)
        def test_indirect(innerlab_env, make_env):
            env, params = innerlab_env
            assert env.name == "ProxyMaze-v0"
            assert make_env("ProxyMaze-v0") is make_env("ProxyMaze-v0")

        @invariant.test("Orchard-v0", feature="shape", max_examples=5)
        def test_oracle_ignores_shape(oracle_model):
            return oracle_model

        @invariant.test("Orchard-v0", feature="shape", max_examples=5, seed=0)
        def test_shape_biased_model_is_caught(innerlab_env):
            return planted.ShapeBiasedModel(*innerlab_env)
        """
    )
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, failed=1)
    out = result.stdout.str()
    assert "test_shape_biased_model_is_caught" in out
    assert "invariant(feature='shape') failed on Orchard-v0" in out
    assert "Minimal failing example" in out


def test_bad_marker_is_a_usage_error(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.innerlab_env()
        def test_no_name(innerlab_env):
            pass
        """
    )
    result = pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider")
    assert result.ret != 0
    assert "takes one env name" in result.stdout.str()


@pytest.mark.slow
def test_random_reward_model_fixture(pytester):
    """An innerlab RewardModel through the properties. Slow only because RewardModel's
    first construction in a process compiles its initialisation (about 25 s on the
    shared 2-core machine)."""
    pytester.makepyfile(
        """
        import pytest
        from innerlab.testing import PropertyViolation, finite, members_agree

        def test_an_untrained_ensemble_is_finite_but_disagrees(random_reward_model, innerlab_env):
            env, params = innerlab_env
            assert random_reward_model.obs_shape == env.observation_space(params).shape
            assert random_reward_model.num_members == 3
            finite(random_reward_model, env, params, max_examples=10)
            with pytest.raises(PropertyViolation, match="members disagree"):
                members_agree(random_reward_model, env, params, tol=1e-4, max_examples=10)
        """
    )
    pytester.runpytest_inprocess("-q", "-p", "no:cacheprovider").assert_outcomes(passed=1)
