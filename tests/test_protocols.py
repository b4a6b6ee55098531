"""innerlab.protocols: the library's own models and envs satisfy the contracts, objects
missing a member are rejected by name, and every consumer checks its contract at entry."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import innerlab.envs as envs
from innerlab import adversary
from innerlab.protocols import (
    ActionTableEnsemble,
    GridEnv,
    GroundTruthEnv,
    LatentEnsemble,
    RewardEnsemble,
    RewardFunction,
    TrainableEnsemble,
    missing_members,
    protocol_members,
    require,
    satisfies,
)
from innerlab.reward_models import RewardModel
from innerlab.reward_models.evaluate import evaluate_objective
from innerlab.reward_models.train import fit_rewards
from innerlab.testing import OracleRewardModel, epic_equivalent, finite
from innerlab.testing import strategies as S

PROTOCOLS = (RewardFunction, RewardEnsemble, ActionTableEnsemble, LatentEnsemble,
             TrainableEnsemble, GroundTruthEnv, GridEnv)
GRID_ENVS = ("Orchard-v0", "ProxyMaze-v0", "BoostChain-v0")


class LinearEnsemble(eqx.Module):
    """A user's own K linear members: a TrainableEnsemble, not a LatentEnsemble."""

    weight: jax.Array  # [K, A, H*W*C]
    obs_shape: tuple[int, ...] = eqx.field(static=True)
    num_actions: int = eqx.field(static=True)
    num_members: int = eqx.field(static=True)

    def __init__(self, obs_shape, num_actions, num_members, *, key):
        size = 1
        for s in obs_shape:
            size *= s
        self.weight = 0.1 * jax.random.normal(key, (num_members, num_actions, size))
        self.obs_shape, self.num_actions = tuple(obs_shape), num_actions
        self.num_members = num_members

    def __call__(self, obs, action):
        return self.weight[:, action] @ obs.reshape(-1)

    def per_member(self, obs, action):
        return jax.vmap(lambda w, o, a: w[a] @ o.reshape(-1))(self.weight, obs, action)


class Frozen(eqx.Module):
    """Has every TrainableEnsemble member but no floating-point arrays to train."""

    obs_shape: tuple[int, ...] = (7, 7, 9)
    num_actions: int = 4
    num_members: int = 2

    def __call__(self, obs, action):
        return jnp.zeros(2)

    def per_member(self, obs, action):
        return jnp.zeros(2)


class CallOnly:
    """A reward function and nothing else (no num_members)."""

    def __call__(self, obs, action):
        return jnp.sum(obs)


@pytest.fixture(scope="module")
def orchard():
    return envs.make("Orchard-v0")


@pytest.fixture(scope="module")
def spaceship():
    return envs.make("Spaceship-v0")


@pytest.fixture(scope="module")
def models(orchard):
    env, params = orchard
    obs_shape = env.observation_space(params).shape
    key = jax.random.key(0)
    return {
        "reward_model": RewardModel(obs_shape, 4, 2, 8, width=8, encoder="mlp", key=key),
        "oracle": OracleRewardModel(env, params),
        "planted_pair": adversary.planted_pair(env, params, key),
        "linear": LinearEnsemble(obs_shape, 4, 2, key=key),
    }


# --------------------------------------------------------------------------- the library's own


@pytest.mark.parametrize("protocol", PROTOCOLS[:5])
def test_reward_model_satisfies_every_model_protocol(models, protocol):
    assert satisfies(models["reward_model"], protocol)
    assert isinstance(models["reward_model"], protocol)
    require(models["reward_model"], protocol, consumer="test")


@pytest.mark.parametrize("name", ["oracle", "planted_pair", "linear"])
def test_other_models_are_reward_ensembles(models, name):
    assert require(models[name], RewardEnsemble, consumer="test") is models[name]
    assert not satisfies(models[name], LatentEnsemble)


def test_user_ensemble_is_trainable(models):
    require(models["linear"], TrainableEnsemble, consumer="test")


@pytest.mark.parametrize("name", envs.list_envs())
def test_every_env_has_ground_truth(name):
    env, _ = envs.make(name)
    require(env, GroundTruthEnv, consumer="test")


@pytest.mark.parametrize("name", GRID_ENVS)
def test_grid_envs_are_grid_envs(name):
    env, params = envs.make(name)
    require(env, GridEnv, consumer="test")
    counts = env.feature_counts(params)
    assert len(counts) == 3 and all(isinstance(c, int) and c >= 1 for c in counts)


def test_spaceship_is_not_a_grid_env(spaceship):
    env, _ = spaceship
    assert {name for name, _ in missing_members(env, GridEnv)} >= {"feature_counts", "grid_of"}


def test_protocol_members():
    assert protocol_members(RewardFunction) == ("__call__",)
    assert protocol_members(RewardEnsemble) == ("__call__", "num_members")
    assert protocol_members(LatentEnsemble) == (
        "__call__", "encode", "heads", "num_actions", "num_members",
    )
    assert set(protocol_members(GroundTruthEnv)) == {
        "num_actions", "sample_state", "observe", "true_reward", "step_env",
    }
    assert set(protocol_members(GridEnv)) - set(protocol_members(GroundTruthEnv)) == {
        "feature_counts", "grid_of", "is_valid",
    }


# --------------------------------------------------------------------------- planted objects


def _planted(protocol, without: str):
    """An object with every member of ``protocol`` except ``without``."""
    body = {}
    for name in protocol_members(protocol):
        if name != without:
            body[name] = 3 if name in ("num_members", "num_actions") else (lambda self, *a: 0)
    return type("Planted", (), body)()


CASES = [(p, m) for p in PROTOCOLS for m in protocol_members(p)]


@pytest.mark.parametrize(("protocol", "member"), CASES,
                         ids=[f"{p.__name__}-{m}" for p, m in CASES])
def test_require_names_the_missing_member_and_the_consumer(protocol, member):
    obj = _planted(protocol, member)
    assert not satisfies(obj, protocol)
    assert [name for name, _ in missing_members(obj, protocol)] == [member]
    with pytest.raises(TypeError) as err:
        require(obj, protocol, consumer="my.consumer", argument="thing")
    msg = str(err.value)
    assert msg.startswith(f"my.consumer needs argument 'thing' to be a {protocol.__name__} (")
    assert f"got Planted, which is missing: {member}" in msg
    assert require(_planted(protocol, "none"), protocol, consumer="x") is not None


def test_unsupported_members_are_missing_with_the_reason():
    class Half(CallOnly):
        num_members = 2
        unsupported = {"num_members": "it has only one member really"}

    assert not satisfies(Half(), RewardEnsemble)
    assert satisfies(Half(), RewardFunction)
    with pytest.raises(TypeError, match="Half cannot provide 'num_members': it has only one"):
        require(Half(), RewardEnsemble, consumer="c")


# --------------------------------------------------------------------------- consumers


def test_latent_search_needs_encode_and_heads(orchard, models):
    env, params = orchard
    obs = jnp.zeros((2, 7, 7, 9))
    pair = models["planted_pair"]
    with pytest.raises(TypeError, match=r"adversary.latent_search needs argument 'model' to be "
                                        r"a LatentEnsemble.*missing: encode\(obs\), heads"):
        adversary.latent_search(pair, obs, jax.random.key(0), epsilon=1.0)
    with pytest.raises(TypeError, match="adversary.decode_nearest .*missing: encode"):
        adversary.decode_nearest(pair, jnp.zeros((1, 8)), obs)
    with pytest.raises(TypeError, match="adversary.activation .*missing: encode"):
        adversary.activation(pair, obs[0])


@pytest.mark.parametrize("method", adversary.METHODS)
def test_searches_need_an_ensemble(orchard, method):
    env, params = orchard
    consumer = {"random": "random_search", "evolution": "evolutionary_search",
                "gradient": "gradient_search"}[method]
    with pytest.raises(TypeError, match=f"adversary.{consumer} needs argument 'model' to be a "
                                        "RewardEnsemble.*missing: num_members"):
        adversary.search(method, CallOnly(), env, params, jax.random.key(0), budget=8)


@pytest.mark.parametrize("method", ["evolution", "gradient"])
def test_state_searches_need_a_grid_env(spaceship, models, method):
    env, params = spaceship
    with pytest.raises(TypeError, match="needs argument 'env' to be a GridEnv.*missing: "
                                        "feature_counts"):
        adversary.search(method, models["planted_pair"], env, params, jax.random.key(0),
                         budget=8)


def test_gradient_search_rejects_an_observation_it_cannot_relax(models):
    env, params = envs.make("BoostChain-v0")  # every GridEnv member, extra planes
    with pytest.raises(ValueError, match="relaxes the grid observation.*observes shape "
                                         r"\(6, 6, 15\)"):
        adversary.gradient_search(models["planted_pair"], env, params, jax.random.key(0),
                                  budget=8)


def test_grid_helpers_need_a_grid_env(spaceship, orchard):
    env, params = spaceship
    state = env.sample_state(jax.random.key(0), params)
    with pytest.raises(TypeError, match="adversary.mutate_state .*GridEnv"):
        adversary.mutate_state(env, params, jax.random.key(0), state)
    with pytest.raises(TypeError, match="adversary.planted_pair .*GridEnv"):
        adversary.planted_pair(env, params, jax.random.key(0))
    with pytest.raises(TypeError, match=r"testing.strategies \(object features\) .*GridEnv"):
        S.feature_counts(env, params)


def test_labelling_needs_ground_truth():
    class NoTruth:
        def observe(self, state, params=None):
            return state

    with pytest.raises(TypeError, match="adversary.label_states needs argument 'env' to be a "
                                        "GroundTruthEnv.*missing: num_actions"):
        adversary.label_states(NoTruth(), None, jnp.zeros((1, 2)), jnp.zeros(1, jnp.int32))
    with pytest.raises(TypeError, match="adversary.propose .*sample_state"):
        adversary.propose(None, NoTruth(), None, jax.random.key(0), adversary.RetrainConfig(),
                          jnp.zeros((1, 2)))
    with pytest.raises(TypeError, match="testing.OracleRewardModel .*true_reward"):
        OracleRewardModel(NoTruth())


def test_training_needs_a_trainable_ensemble(orchard, models):
    pair = models["planted_pair"]
    cfg = adversary.TrainConfig(steps=1)
    with pytest.raises(TypeError, match="adversary.train_ensemble needs argument 'model' to be "
                                        "a TrainableEnsemble.*missing: obs_shape.*per_member"):
        adversary.train_ensemble(pair, None, jax.random.key(0), cfg)
    with pytest.raises(TypeError, match="no floating-point JAX arrays"):
        adversary.train_ensemble(Frozen(), None, jax.random.key(0), cfg)
    with pytest.raises(TypeError, match="reward_models.fit_rewards .*per_member"):
        fit_rewards(pair, None, jax.random.key(0))


def test_retraining_checks_model_env_and_the_latent_methods(orchard, models):
    env, params = orchard
    cfg = adversary.RetrainConfig(method="latent-decode")
    with pytest.raises(TypeError, match="adversary.adversarial_retraining needs argument "
                                        "'model' to be a TrainableEnsemble"):
        adversary.adversarial_retraining(models["planted_pair"], None, env, params,
                                         jax.random.key(0), cfg)
    with pytest.raises(TypeError, match=r"adversarial_retraining \(method='latent-decode'\) "
                                        "needs argument 'model' to be a LatentEnsemble.*encode"):
        adversary.adversarial_retraining(models["linear"], None, env, params,
                                         jax.random.key(0), cfg)


def test_a_trainable_ensemble_without_latents_retrains(orchard, models):
    """Retraining without a latent method needs no encode: the pseudo-input buffer is a
    placeholder. (``"random"`` spends the labels at random: the cheapest proposer to compile.)"""
    env, params = orchard
    sample = jax.jit(jax.vmap(lambda k: env.sample_state(k, params)))
    states = sample(jax.random.split(jax.random.key(1), 16))
    data = adversary.label_states(env, params, states, jnp.arange(16, dtype=jnp.int32) % 4)
    cfg = adversary.RetrainConfig(
        method="random", rounds=1, label_budget=4, search_budget=16,
        train=adversary.TrainConfig(steps=2, batch_size=4),
    )
    model, history = adversary.adversarial_retraining(models["linear"], data, env, params,
                                                      jax.random.key(2), cfg)
    assert history[0]["labels"] == 4
    assert not jnp.allclose(model.weight, models["linear"].weight)


def test_evaluation_and_properties_check_their_models(orchard):
    env, params = orchard
    with pytest.raises(TypeError, match="reward_models.evaluate_objective needs argument "
                                        "'model' to be a RewardEnsemble.*num_members"):
        evaluate_objective(CallOnly(), env, params, jax.random.key(0))
    with pytest.raises(TypeError, match=r"testing.finite needs argument 'model' to be a "
                                        r"RewardFunction.*__call__\(obs, action\)"):
        finite(jnp.zeros(3), env, params)
    with pytest.raises(TypeError, match="testing.epic_equivalent needs argument 'reference'"):
        epic_equivalent(CallOnly(), env, params, tol=0.1, reference=object())


def test_capability_protocols_of_envs_and_imagination_models():
    """The optional capabilities consumers ask about are protocols, not hasattr checks."""
    import jax

    import innerlab.envs as envs
    from innerlab.planners.ibp import IBP, make_imagination
    from innerlab.protocols import ImaginationModel, ReturnBound, StateFromObs, ValidatesStates

    orchard, params = envs.make("Orchard-v0")
    assert isinstance(orchard, ReturnBound) and isinstance(orchard, ValidatesStates)
    ship, ship_params = envs.make("Spaceship-v0")
    assert not isinstance(ship, ReturnBound)
    model = make_imagination(ship, ship_params, key=jax.random.key(0), width=8)
    assert isinstance(model, ImaginationModel)
    assert isinstance(model, ImaginationModel) and not isinstance(object(), StateFromObs)
    with pytest.raises(TypeError, match=r"planners.IBP needs argument 'model'.*missing: .*loss"):
        IBP(object(), "tree", 1, key=jax.random.key(0))
