"""The matmul lowering of the encoders' convolutions computes what ``eqx.nn.Conv2d`` does,
and independent members encode as their own native copies would."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from innerlab.reward_models import RewardModel, build_encoder
from innerlab.reward_models.model import MAX_UNROLLED_MEMBERS, apply_conv, conv_same


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


@pytest.mark.parametrize("members", [2, MAX_UNROLLED_MEMBERS + 1])
def test_independent_members_encode_as_their_own_native_copies(members):
    """Member k of an independent ensemble (matmul lowering; unrolled, or vmapped when
    larger than MAX_UNROLLED_MEMBERS) encodes as a native-conv copy of its weights would,
    and per_member gives member k's prediction on its own input."""
    model = RewardModel((5, 5, 4), 4, num_members=members, latent_dim=8, width=6,
                        encoder="conv_pool", shared_encoder=False, key=jax.random.key(2))
    assert model.encoder.lowering == "matmul"
    obs = jax.random.uniform(jax.random.key(3), (members, 5, 5, 4))
    latent = eqx.filter_jit(model.encode)(obs[0])
    action = jnp.arange(members) % 4
    own = eqx.filter_jit(model.per_member)(obs, action)
    fresh = build_encoder("conv_pool", (5, 5, 4), 8, 6, jax.random.key(9), "relu", "native")
    for k in (0, members - 1):
        member = jax.tree.map(lambda leaf, k=k: leaf[k], model.encoder)
        native = jax.tree.unflatten(jax.tree.structure(fresh), jax.tree.leaves(member))
        assert native.lowering == "native"
        np.testing.assert_allclose(latent[k], native(obs[0]), atol=1e-5)
        head = jax.tree.map(lambda leaf, k=k: leaf[k] if eqx.is_array(leaf) else leaf,
                            model.head)
        np.testing.assert_allclose(own[k], head(native(obs[k]), action[k]), atol=1e-5)


def test_default_lowerings():
    """Every encoder defaults to the matmul lowering (faster inside loop bodies on CPU),
    a RewardModel's shared encoder (MuZero's and the IBP's world model) included, and the
    shared encoder still computes what its native-conv twin does."""
    enc = build_encoder("conv", (5, 5, 4), 8, 6, jax.random.key(0))
    assert enc.lowering == "matmul"
    shared = RewardModel((5, 5, 4), 4, num_members=2, latent_dim=8, width=6, encoder="conv",
                         key=jax.random.key(1))
    assert shared.encoder.lowering == "matmul"
    fresh = build_encoder("conv", (5, 5, 4), 8, 6, jax.random.key(9), "relu", "native")
    twin = jax.tree.unflatten(jax.tree.structure(fresh), jax.tree.leaves(shared.encoder))
    assert twin.lowering == "native"
    obs = jax.random.uniform(jax.random.key(3), (5, 5, 4))
    np.testing.assert_allclose(shared.encoder(obs), twin(obs), atol=1e-5)
