"""Saving and loading reward models: round trip, metadata, clear mismatch errors, no pickle."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import innerlab.envs as envs
from innerlab.reward_models import RewardModel
from innerlab.reward_models import io as rio
from innerlab.reward_models.data import Transitions


@pytest.fixture(scope="module")
def setup():
    env, params = envs.make("Orchard-v0")
    obs = jax.random.uniform(jax.random.key(0), env.observation_space(params).shape)
    model = RewardModel(obs.shape, 4, num_members=2, latent_dim=8, width=8,
                        shared_encoder=False, key=jax.random.key(1))
    return env, params, obs, model


def test_round_trip_with_metadata(tmp_path, setup):
    env, params, obs, model = setup
    data = Transitions(obs[None], jnp.zeros(1, jnp.int32), jnp.ones(1), obs[None],
                       jnp.zeros(1, bool))
    path = tmp_path / "rm.eqx"
    rio.save(path, model, {"note": "hello"}, env=env, params=params, data=data)
    # header is plain JSON on the first line: no pickle anywhere
    header = json.loads(path.read_bytes().split(b"\n", 1)[0])
    assert header["architecture"]["num_members"] == 2
    assert header["env"]["name"] == "Orchard-v0"
    assert header["data"]["n"] == 1 and header["metadata"] == {"note": "hello"}
    for loaded in (rio.load(path), rio.load(path, like=model, env=env, params=params)):
        np.testing.assert_array_equal(loaded(obs, 1), model(obs, 1))
    assert rio.read_header(path) == header


def test_mismatches_are_named(tmp_path, setup):
    env, params, obs, model = setup
    path = tmp_path / "rm.eqx"
    rio.save(path, model, env=env, params=params)
    other = RewardModel(obs.shape, 4, num_members=3, latent_dim=8, width=8,
                        shared_encoder=False, key=jax.random.key(1))
    with pytest.raises(ValueError, match="num_members: file has 2, expected 3"):
        rio.load(path, like=other)
    _, test_params = envs.make("Orchard-v0", split="test")
    with pytest.raises(ValueError, match="split: file has 'train', expected 'test'"):
        rio.load(path, env=env, params=test_params)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x80\x04not a model")
    with pytest.raises(ValueError, match="not an innerlab reward-model file"):
        rio.load(junk)
    with pytest.raises(TypeError, match="'metadata' must be JSON-serialisable"):
        rio.save(tmp_path / "x.eqx", model, {"bad": object()})
