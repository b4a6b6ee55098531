"""The matmul lowering of the encoders' convolutions computes what ``eqx.nn.Conv2d`` does."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from innerlab.reward_models import RewardModel, build_encoder
from innerlab.reward_models.model import apply_conv, conv_same


@pytest.mark.parametrize("padding", [0, 1, 2])
@pytest.mark.parametrize("use_bias", [True, False])
def test_conv_same_matches_the_layer(padding, use_bias):
    conv = eqx.nn.Conv2d(3, 5, 3, padding=padding, use_bias=use_bias, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (3, 6, 4))
    np.testing.assert_allclose(conv_same(conv, x), conv(x), atol=1e-5)
    np.testing.assert_allclose(apply_conv(conv, x, "native"), conv(x), atol=0)


def test_conv_same_rejects_strided_layers():
    conv = eqx.nn.Conv2d(3, 5, 3, stride=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="stride 1"):
        conv_same(conv, jnp.zeros((3, 6, 6)))


@pytest.mark.parametrize("encoder", ["conv_pool"])  # "conv" shares the conv path; 10-25 s more
def test_independent_members_use_the_matmul_lowering_with_the_same_answers(encoder):
    """Member k of an independent ensemble encodes as a native-conv copy of its weights would."""
    model = RewardModel((5, 5, 4), 4, num_members=3, latent_dim=8, width=6, encoder=encoder,
                        shared_encoder=False, key=jax.random.key(2))
    assert model.encoder.lowering == "matmul"
    obs = jax.random.uniform(jax.random.key(3), (5, 5, 4))
    latent = eqx.filter_jit(model.encode)(obs)
    for k in range(3):
        member = jax.tree.map(lambda leaf, k=k: leaf[k], model.encoder)
        fresh = build_encoder(encoder, (5, 5, 4), 8, 6, jax.random.key(9), "relu", "native")
        native = jax.tree.unflatten(jax.tree.structure(fresh), jax.tree.leaves(member))
        assert native.lowering == "native"
        np.testing.assert_allclose(latent[k], eqx.filter_jit(native)(obs), atol=1e-5)
