"""Sensors: wrappers that change only what an env's agent observes.

``ObservationWrapper`` keeps the wrapped env's dynamics, rewards, params,
states, splits and ground truth, and replaces ``observe`` (and so the
observations ``reset``/``step`` return). ``Egocentric`` (agent-centred view)
and ``IntegerObs`` (``uint8`` slots instead of a float one-hot grid) are
the two in innerlab; they compose: ``IntegerObs(Egocentric(env))``.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jaxtyping import Array

from innerlab.envs.core import Box, Environment, EnvParams
from innerlab.envs.grid import GridEnvironment, onehot_from_int


class ObservationWrapper(Environment):
    """Base of the sensors: everything but ``observe`` is the wrapped env's.

    Subclasses define ``observe(state, params)``. The wrapped env's own
    observation is never used, so under ``jit`` XLA drops its computation.
    """

    def __init__(self, env: Environment, name: str):
        self.inner = env
        self.name = name
        self.experiment = env.experiment
        self.SPLIT_STATE_FIELDS = env.SPLIT_STATE_FIELDS

    @property
    def default_params(self) -> EnvParams:
        return self.inner.default_params

    def reset_env(self, key: Array, params: EnvParams):
        _, state = self.inner.reset_env(key, params)
        return self.observe(state, params), state

    def reset_after(self, key: Array, ended_state: Any, params: EnvParams):
        _, state = self.inner.reset_after(key, ended_state, params)
        return self.observe(state, params), state

    def step_env(self, key: Array, state: Any, action: Array, params: EnvParams):
        _, state, reward, terminated, truncated, info = self.inner.step_env(
            key, state, action, params
        )
        return self.observe(state, params), state, reward, terminated, truncated, info

    def __getattr__(self, name: str) -> Any:
        # everything that does not involve the observation is the wrapped env's
        # (sample_state, true_reward, is_valid, renderers, optimal_return_upper_bound, ...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def sample_state(self, key: Array, params: EnvParams | None = None) -> Any:
        return self.inner.sample_state(key, params)

    def num_actions(self, params: EnvParams | None = None) -> int:
        return self.inner.num_actions(params)

    def check_action(self, action: Array, params: EnvParams) -> Array:
        return self.inner.check_action(action, params)

    def is_valid(self, state: Any, params: EnvParams | None = None):
        return self.inner.is_valid(state, params)

    def render_rgb(self, state: Any, params: EnvParams | None = None, **kwargs: Any) -> Array:
        return self.inner.render_rgb(state, params, **kwargs)

    def render_text(self, state: Any, params: EnvParams | None = None, **kwargs: Any) -> str:
        return self.inner.render_text(state, params, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


def _has_int_observation(env: Environment) -> bool:
    """Whether ``env.observe_int`` carries everything ``env.observe`` does."""
    if isinstance(env, ObservationWrapper):
        return hasattr(type(env), "observe_int") and _has_int_observation(env.inner)
    if not isinstance(env, GridEnvironment):
        return False
    cls = type(env)
    overrides_observe = cls.observe is not GridEnvironment.observe
    overrides_int = cls.observe_int is not GridEnvironment.observe_int
    return overrides_int or not overrides_observe


class IntegerObs(ObservationWrapper):
    """Observe a gridworld as ``uint8 [H, W, S]`` slots instead of a float one-hot grid.

    Same information (``grid.onehot_from_int(obs, len(env.channel_names(params)))``
    is exactly the wrapped env's observation), a fraction of the work and of
    the memory. Works on gridworlds whose ``observe_int`` matches their
    ``observe`` (every ``GridEnvironment`` that adds no channels of its own)
    and on ``Egocentric`` views of them.
    """

    def __init__(self, env: Environment):
        if not _has_int_observation(env):
            raise TypeError(
                f"IntegerObs needs a gridworld whose observe_int carries its observation; "
                f"{env.name} ({type(env).__name__}) has none (its observe adds channels that "
                f"observe_int does not, or it is not a GridEnvironment)"
            )
        super().__init__(env, f"IntegerObs({env.name})")

    def observe(self, state: Any, params: EnvParams | None = None) -> Array:
        return self.inner.observe_int(state, self.resolve_params(params))

    def onehot(self, obs: Array, params: EnvParams | None = None) -> Array:
        """The wrapped env's one-hot observation for integer observation(s) ``obs``."""
        return onehot_from_int(obs, self.num_channels(params))

    def num_channels(self, params: EnvParams | None = None) -> int:
        """Channels of the one-hot observation these slots stand for."""
        return len(self.inner.channel_names(self.resolve_params(params)))

    def observation_space(self, params: EnvParams | None = None) -> Box:
        params = self.resolve_params(params)
        return Box(0, self.num_channels(params), self.observation_shape(params), jnp.uint8)
