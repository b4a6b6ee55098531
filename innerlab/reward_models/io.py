"""Saving and loading reward models: Equinox leaf serialisation plus a JSON header. No pickle.

A file is one JSON line (architecture, env name and params, training-data
summary, anything the caller adds under ``metadata``) followed by the
parameters written by ``eqx.tree_serialise_leaves``. ``load`` rebuilds the
architecture from the header (or checks it against ``like``) and refuses a
file whose architecture or env does not match what the caller expects,
naming the differing fields, instead of failing deep inside Equinox.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import equinox as eqx
import jax

from innerlab.reward_models.model import RewardModel

FORMAT = "innerlab.reward_model/1"
ARCH_FIELDS = (
    "obs_shape",
    "num_actions",
    "num_members",
    "latent_dim",
    "shared_encoder",
    "encoder",
    "width",
)


def architecture(model: RewardModel) -> dict[str, Any]:
    """The constructor arguments that rebuild ``model``'s structure (JSON-ready)."""
    if not isinstance(model, RewardModel):
        raise TypeError(f"argument 'model' must be a RewardModel, got {type(model).__name__}")
    return {
        "obs_shape": list(model.obs_shape),
        "num_actions": model.num_actions,
        "num_members": model.num_members,
        "latent_dim": model.latent_dim,
        "shared_encoder": model.shared_encoder,
        "encoder": model.encoder_kind,
        "width": model.width,
    }


def env_metadata(env, params) -> dict[str, Any]:
    """``{"name": ..., "params": {...}}`` for the header (env params as plain values)."""
    values = {}
    for f in dataclasses.fields(params):
        v = getattr(params, f.name)
        values[f.name] = v if isinstance(v, bool | int | float | str | None) else repr(v)
    return {"name": getattr(env, "name", type(env).__name__), "params": values}


def data_summary(data) -> dict[str, Any]:
    """Size and reward statistics of a ``Transitions`` batch (for the header)."""
    reward = jax.device_get(data.reward)
    return {
        "n": int(reward.shape[0]),
        "reward_mean": float(reward.mean()),
        "reward_std": float(reward.std()),
        "reward_min": float(reward.min()),
        "reward_max": float(reward.max()),
    }


def save(
    path: str | os.PathLike,
    model: RewardModel,
    metadata: dict[str, Any] | None = None,
    *,
    env=None,
    params=None,
    data=None,
) -> None:
    """Write ``model`` to ``path``.

    Args:
        metadata: extra JSON-serialisable information (e.g. the training history).
        env, params: recorded as ``env`` (name and params), checked again by ``load``.
        data: the training ``Transitions``; a summary is recorded.
    """
    header = {
        "format": FORMAT,
        "architecture": architecture(model),
        "env": env_metadata(env, params) if env is not None and params is not None else None,
        "data": data_summary(data) if data is not None else None,
        "metadata": metadata or {},
    }
    try:
        line = json.dumps(header)
    except TypeError as err:
        raise TypeError(f"argument 'metadata' must be JSON-serialisable: {err}") from None
    with open(path, "wb") as f:
        f.write((line + "\n").encode())
        eqx.tree_serialise_leaves(f, model)


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON header of a saved model."""
    with open(path, "rb") as f:
        first = f.readline()
    try:
        header = json.loads(first)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ValueError(f"{os.fspath(path)!r} is not an innerlab reward-model file") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(
            f"{os.fspath(path)!r} is not an innerlab reward-model file of format {FORMAT!r}"
        )
    return header


def _differences(saved: dict, wanted: dict) -> list[str]:
    keys = sorted(set(saved) | set(wanted))
    return [
        f"{k}: file has {saved.get(k)!r}, expected {wanted.get(k)!r}"
        for k in keys
        if saved.get(k) != wanted.get(k)
    ]


def load(
    path: str | os.PathLike, like: RewardModel | None = None, *, env=None, params=None
) -> RewardModel:
    """Read a model saved by ``save`` (its header: ``read_header``).

    Args:
        like: a model of the expected architecture; a file made for another
            architecture raises ``ValueError`` listing the differing fields.
            Without it the architecture is rebuilt from the header.
        env, params: if given, the file's recorded env must match (name and params).
    """
    header = read_header(path)
    arch = header["architecture"]
    if like is not None:
        diff = _differences(arch, architecture(like))
        if diff:
            raise ValueError(
                f"argument 'like': {os.fspath(path)!r} holds a different architecture: "
                + "; ".join(diff)
            )
    if env is not None and params is not None:
        recorded = header.get("env")
        expected = env_metadata(env, params)
        if recorded is None:
            raise ValueError(f"{os.fspath(path)!r} records no env, expected {expected['name']}")
        diff = _differences(
            {"name": recorded["name"], **recorded["params"]},
            {"name": expected["name"], **expected["params"]},
        )
        if diff:
            raise ValueError(
                f"arguments 'env'/'params': {os.fspath(path)!r} was made for another env: "
                + "; ".join(diff)
            )
    skeleton = like
    if skeleton is None:
        kwargs = dict(arch)
        kwargs["obs_shape"] = tuple(kwargs["obs_shape"])
        skeleton = RewardModel(**kwargs, key=jax.random.key(0))
    with open(path, "rb") as f:
        f.readline()
        return eqx.tree_deserialise_leaves(f, skeleton)
