"""A torch reward model used through the innerlab reward-model protocol (vmap, jit, evaluation)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from innerlab.reward_models import aggregate, ensemble_std
from innerlab.reward_models.torch_adapter import TorchRewardModel

K, A = 3, 4


class TorchEnsemble(torch.nn.Module):
    """K linear members on (flattened obs, one-hot action)."""

    def __init__(self, obs_size: int):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(obs_size + A, K)

    def forward(self, obs, action):
        onehot = torch.nn.functional.one_hot(action, A).float()
        return self.lin(torch.cat([obs.flatten(1), onehot], dim=1))


@pytest.fixture(scope="module")
def setup():
    obs = jax.random.uniform(jax.random.key(0), (6, 7, 7, 9))  # Orchard's observation shape
    module = TorchEnsemble(int(np.prod(obs.shape[1:])))
    return obs, module, TorchRewardModel(module, obs.shape[1:], A, K)


def torch_reference(module, obs, action):
    with torch.no_grad():
        return module(torch.tensor(np.asarray(obs)), torch.tensor(np.asarray(action))).numpy()


def test_single_vmap_jit_match_torch(setup):
    obs, module, model = setup
    action = jnp.arange(6, dtype=jnp.int32) % A
    ref = torch_reference(module, obs, np.asarray(action, np.int64))
    np.testing.assert_allclose(model(obs[0], action[0]), ref[0], rtol=1e-5, atol=1e-6)
    batched = jax.jit(jax.vmap(model))(obs, action)
    assert batched.shape == (6, K)
    np.testing.assert_allclose(batched, ref, rtol=1e-5, atol=1e-6)
    # nested vmap (obs x actions) and the library's aggregations work on it
    table = jax.vmap(model.all_actions)(obs)
    assert table.shape == (6, A, K)
    np.testing.assert_allclose(table[jnp.arange(6), action], ref, rtol=1e-5, atol=1e-6)
    assert aggregate(table, "pessimistic").shape == (6, A)
    assert float(ensemble_std(batched).min()) > 0


def test_vmapped_call_is_one_torch_batch(setup):
    obs, module, model = setup
    sizes = []
    hook = module.register_forward_hook(lambda m, inp, out: sizes.append(inp[0].shape[0]))
    try:
        jax.block_until_ready(jax.vmap(model)(obs, jnp.zeros(6, jnp.int32)))
    finally:
        hook.remove()
    assert sizes == [6]


def test_bad_input(setup):
    obs, module, model = setup
    with pytest.raises(ValueError, match="'obs' must have shape"):
        model(obs[0, :-1], 0)
    with pytest.raises(TypeError, match="'obs' must be a float"):
        model(obs[0].astype(jnp.int32), 0)
    with pytest.raises(TypeError, match="'module' must be a torch.nn.Module"):
        TorchRewardModel(lambda o, a: o, obs.shape[1:], A, K)
    wrong_k = TorchRewardModel(module, obs.shape[1:], A, K + 1)
    with pytest.raises(Exception, match="expected"):
        jax.block_until_ready(wrong_k(obs[0], 0))


# --------------------------------------------------------------------------- the adversary's steps


@pytest.fixture(scope="module")
def orchard():
    import innerlab.envs as envs

    return envs.make("Orchard-v0")


def test_supported_steps_are_protocols_it_satisfies(setup):
    from innerlab.protocols import ActionTableEnsemble, RewardEnsemble, satisfies

    _, _, model = setup
    assert satisfies(model, RewardEnsemble) and satisfies(model, ActionTableEnsemble)


def test_gradient_free_search_runs_on_a_torch_model(setup, orchard):
    from innerlab.adversary import label_states, random_search

    _, _, model = setup
    env, params = orchard
    res = random_search(model, env, params, jax.random.key(0), budget=8, top_n=2, batch_size=4)
    assert res.scores.shape == (2,) and bool(jnp.all(jnp.isfinite(res.scores)))
    labels = label_states(env, params, res.states, res.actions)
    assert labels.reward.shape == (2,)


def test_differentiating_it_names_the_steps_that_need_gradients(setup, orchard):
    from innerlab.adversary import gradient_search

    obs, _, model = setup
    with pytest.raises(TypeError, match="cannot be differentiated by JAX.*gradient_search"):
        jax.grad(lambda o: model(o, 0).sum())(obs[0])
    env, params = orchard
    with pytest.raises(TypeError, match="cannot be differentiated.*use evolutionary_search"):
        gradient_search(model, env, params, jax.random.key(0), budget=8, population=2)


def test_latent_search_and_training_say_why_not(setup, orchard):
    from innerlab.adversary import (
        RetrainConfig,
        TrainConfig,
        adversarial_retraining,
        latent_search,
        train_ensemble,
    )
    from innerlab.reward_models import fit_rewards

    obs, _, model = setup
    env, params = orchard
    with pytest.raises(TypeError, match="adversary.latent_search needs argument 'model' to be a "
                                        "LatentEnsemble.*TorchRewardModel cannot provide "
                                        "'encode': a wrapped torch module is one forward pass"):
        latent_search(model, obs, jax.random.key(0), epsilon=1.0)
    why = "TorchRewardModel cannot provide 'per_member': its parameters live in torch"
    with pytest.raises(TypeError, match=f"adversary.train_ensemble needs .*{why}.*label_states"):
        train_ensemble(model, None, jax.random.key(0), TrainConfig(steps=1))
    with pytest.raises(TypeError, match=f"adversary.adversarial_retraining needs .*{why}"):
        adversarial_retraining(model, None, env, params, jax.random.key(0),
                               RetrainConfig(method="evolution"))
    with pytest.raises(TypeError, match=f"reward_models.fit_rewards needs .*{why}"):
        fit_rewards(model, None, jax.random.key(0))
