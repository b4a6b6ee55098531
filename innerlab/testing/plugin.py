"""pytest plugin (entry point ``innerlab``): fixtures for property-testing reward models.

Installed with innerlab, so any project's tests can use these fixtures without
a ``conftest.py``:

- ``make_env(name, **overrides) -> (env, params)``: session-cached ``innerlab.envs.make``
  (one env object per configuration, so jitted functions compile once).
- ``innerlab_env -> (env, params)``: the env named by the test's
  ``@pytest.mark.innerlab_env("ProxyMaze-v0", split="test")`` marker, or by
  indirect parametrisation (``@pytest.mark.parametrize("innerlab_env",
  ["Orchard-v0"], indirect=True)``); ``Orchard-v0`` with default params otherwise.
- ``oracle_model``: ``OracleRewardModel`` of ``innerlab_env`` (3 members, the true reward;
  the model every property should pass on).
- ``random_reward_model``: a small untrained ``RewardModel`` (3 members) for
  ``innerlab_env``: a control, finite but far from agreeing with itself.

Heavy imports (JAX) happen inside the fixtures, so loading the plugin costs
nothing for test runs that do not use them.
"""

from __future__ import annotations

import functools

import pytest

DEFAULT_ENV = "Orchard-v0"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "innerlab_env(name, **overrides): the env the innerlab_env fixture makes for this test",
    )


@pytest.fixture(scope="session")
def make_env():
    """``make_env(name, **overrides) -> (env, params)``, cached for the session."""
    import innerlab.envs as envs

    @functools.cache
    def make(name: str, **overrides):
        return envs.make(name, **overrides)

    return make


@pytest.fixture
def innerlab_env(request: pytest.FixtureRequest, make_env):
    """``(env, params)`` from the ``innerlab_env`` marker or indirect parameter (or Orchard-v0)."""
    if hasattr(request, "param"):
        spec = request.param
        name, overrides = (spec, {}) if isinstance(spec, str) else (spec[0], dict(spec[1]))
    else:
        marker = request.node.get_closest_marker("innerlab_env")
        if marker is None:
            name, overrides = DEFAULT_ENV, {}
        else:
            if len(marker.args) != 1 or not isinstance(marker.args[0], str):
                raise pytest.UsageError(
                    "@pytest.mark.innerlab_env takes one env name and keyword param overrides, "
                    f"got args {marker.args!r}"
                )
            name, overrides = marker.args[0], dict(marker.kwargs)
    return make_env(name, **overrides)


@pytest.fixture
def oracle_model(innerlab_env):
    """The exact reward model of ``innerlab_env`` (3 identical members)."""
    from innerlab.testing.oracle import OracleRewardModel

    env, params = innerlab_env
    return OracleRewardModel(env, params, num_members=3)


@pytest.fixture
def random_reward_model(innerlab_env):
    """An untrained 3-member ``RewardModel`` shaped for ``innerlab_env`` (seed 0)."""
    import equinox as eqx
    import jax

    from innerlab.reward_models import RewardModel

    env, params = innerlab_env
    build = functools.partial(
        RewardModel, env.observation_space(params).shape, env.num_actions(params),
        num_members=3, latent_dim=16, width=16,
    )
    # one compiled initialisation instead of hundreds of eager dispatches
    return eqx.filter_jit(lambda key: build(key=key))(jax.random.key(0))
