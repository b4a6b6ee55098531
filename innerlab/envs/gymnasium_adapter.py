"""innerlab envs as gymnasium environments: ``gymnasium.make`` and ``gymnasium.make_vec``.

``import innerlab`` registers every env of :func:`innerlab.envs.list_envs` as
``innerlab/<Name>-v0``; env params pass as keyword arguments::

    import gymnasium, innerlab
    env = gymnasium.make("innerlab/Orchard-v0", split="test", render_mode="rgb_array")
    envs = gymnasium.make_vec("innerlab/Orchard-v0", num_envs=512)

:class:`GymnasiumEnv` is a NumPy ``gymnasium.Env`` with gymnasium's
semantics: seeding through ``reset(seed=...)``, and no auto-reset (stepping a
finished episode is an error; call ``reset``). It passes
``gymnasium.utils.env_checker.check_env``. It exists for interoperability
(stable-baselines3, gymnasium wrappers, human inspection); it runs one
jitted step per call, so it is as slow as any Python env.

:class:`GymnasiumVectorEnv` steps all its sub-envs with one ``jit``+``vmap``
compiled call and auto-resets in the same step (gymnasium's ``SAME_STEP``
mode, which is also the functional API's): when sub-env ``i`` finishes,
``obs[i]`` is the first observation of its next episode and
``info["final_obs"][i]`` / ``info["final_info"]`` describe the step that ended
the old one (masked by ``info["_final_obs"]``). Unlike gymnasium's own vector
envs, ``info["final_obs"]`` is one dense array ``[num_envs, *obs_shape]`` (rows
of unfinished envs hold their ordinary next observation) rather than an
object array, so it stays cheap with thousands of envs.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from innerlab.envs.batched import reset_where
from innerlab.envs.core import Box, Discrete, Environment, EnvParams, replace_params
from innerlab.envs.registry import list_envs, make

__all__ = [
    "GymnasiumEnv",
    "GymnasiumVectorEnv",
    "gymnasium_id",
    "register_gymnasium_envs",
    "split_key",
    "to_gymnasium_space",
]

NAMESPACE = "innerlab"
RENDER_MODES = ["rgb_array", "ansi"]
RENDER_FPS = 4


def gymnasium_id(name: str) -> str:
    """The gymnasium id of innerlab env ``name``: ``"Orchard-v0"`` -> ``"innerlab/Orchard-v0"``."""
    return name if name.startswith(f"{NAMESPACE}/") else f"{NAMESPACE}/{name}"


def to_gymnasium_space(space: Box | Discrete) -> spaces.Space:
    """The gymnasium space equivalent to a functional env's ``Box`` or ``Discrete``."""
    if isinstance(space, Discrete):
        return spaces.Discrete(int(space.n))
    if isinstance(space, Box):
        dtype = np.dtype(space.dtype)
        shape = tuple(space.shape)
        return spaces.Box(
            low=np.broadcast_to(np.asarray(space.low, dtype), shape),
            high=np.broadcast_to(np.asarray(space.high, dtype), shape),
            shape=shape,
            dtype=dtype,
        )
    raise TypeError(f"argument 'space' must be an innerlab Box or Discrete, got {space!r}")


def _resolve(
    env: str | Environment, params: EnvParams | None, overrides: dict[str, Any]
) -> tuple[Environment, EnvParams]:
    """An ``(env, params)`` pair from a name or an env instance plus param overrides."""
    if isinstance(env, str):
        base_env, base_params = make(env)
    elif isinstance(env, Environment):
        base_env, base_params = env, env.default_params
    else:
        raise TypeError(
            f"argument 'env' must be an innerlab env name (one of {list_envs()}) or an "
            f"innerlab Environment, got {env!r}"
        )
    if params is not None:
        if not isinstance(params, EnvParams):
            raise TypeError(f"argument 'params' must be EnvParams, got {type(params).__name__}")
        base_params = params
    return base_env, replace_params(base_params, **overrides)


def _check_action(
    space: spaces.Space, action: Any, env_name: str, batch: int | None = None
) -> np.ndarray:
    """``action`` (or ``batch`` actions) as an array if in ``space``, else a clear error.

    Discrete actions must be integers in ``[0, n)``; Box actions floats of the
    space's shape within its bounds. Nothing is clipped or cast silently.
    """
    arg = "action" if batch is None else "actions"
    arr = np.asarray(action)
    lead = () if batch is None else (batch,)
    if isinstance(space, spaces.Discrete):
        n = int(space.n)
        expected = "an integer" if batch is None else f"an integer array of shape {lead}"
        expected += f" in [0, {n}) (Discrete({n}))"
        ok_type = np.issubdtype(arr.dtype, np.integer)
    else:
        expected = (
            f"a float array of shape {lead + space.shape} in [{space.low.min()}, "
            f"{space.high.max()}] ({space})"
        )
        ok_type = np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    if arr.shape != lead + space.shape or not ok_type:
        raise ValueError(
            f"{env_name}: argument '{arg}' must be {expected}, got {arr.dtype} array of shape "
            f"{arr.shape}: {action!r}"[:400]
        )
    if isinstance(space, spaces.Discrete):
        bad = (arr < 0) | (arr >= space.n)
    else:
        bad = ~np.isfinite(arr) | (arr < space.low) | (arr > space.high)
        bad = bad.reshape(lead + (-1,)).any(axis=-1) if arr.ndim else bad
    if np.any(bad):
        where = "" if batch is None else f" for sub-env {int(np.argmax(bad))}"
        value = arr if batch is None else arr[int(np.argmax(bad))]
        raise ValueError(
            f"{env_name}: argument '{arg}' must be {expected}, got {value.tolist()!r}{where}"
        )
    return np.asarray(arr, _jax_dtype(space))  # NumPy: jit takes it without an extra dispatch


def _jax_dtype(space: spaces.Space) -> Any:
    """The dtype the functional env takes for actions from ``space``."""
    return jnp.int32 if isinstance(space, spaces.Discrete) else space.dtype


def _to_numpy(tree: Any) -> Any:
    """A pytree of device arrays as NumPy arrays (one device-to-host transfer)."""
    return jax.tree.map(np.asarray, jax.device_get(tree))


# --------------------------------------------------------------------------- compiled kernels
# Jitted once per (env, params) and shared by every adapter instance: env and
# params are hashable static arguments (their fields are static by contract).
# The single-env kernels run one small step per Python call, so their speed is
# set by dispatch and host copies, not by the compiled code: they are compiled
# at XLA's cheapest backend optimisation level, which halves compile time with
# no measurable cost per step. The vector kernel, whose work grows with the
# batch, keeps the default level.
_single_env_jit = partial(
    jax.jit, static_argnums=(0, 1), compiler_options={"xla_backend_optimization_level": 0}
)


def split_key(key: jax.Array, num_envs: int | None = None):
    """How the adapters draw randomness: ``key -> (next_key, step_key, reset_key)``.

    Each reset or step consumes the adapter's running key this way; with
    ``num_envs`` the step and reset keys are ``[num_envs]`` batches (one per
    sub-env). Documented so that a functional rollout can reproduce an
    adapter's episode exactly.
    """
    key, k_step, k_reset = jax.random.split(key, 3)
    if num_envs is None:
        return key, k_step, k_reset
    return key, jax.random.split(k_step, num_envs), jax.random.split(k_reset, num_envs)


@_single_env_jit
def _reset_one(env: Environment, params: EnvParams, key: jax.Array):
    """Advance the running ``key`` and reset with the reset key: ``(key, obs, state)``."""
    key, _, key_reset = split_key(key)
    return (key, *env.reset(key_reset, params))


@_single_env_jit
def _step_one(env: Environment, params: EnvParams, key: jax.Array, state: Any, action: jax.Array):
    """Advance the running ``key`` and take one ``env.step_env`` with the step key.

    One compiled call per step: the dispatch overhead, not the env, bounds a
    Python-loop env's speed.
    """
    key, key_step, _ = split_key(key)
    return key, env.step_env(key_step, state, action, params)


@_single_env_jit
def _render_one(env: Environment, params: EnvParams, state: Any):
    return env.render_rgb(state, params)


def _reset_batch(env: Environment, params: EnvParams, keys: jax.Array):
    return jax.vmap(lambda k: env.reset(k, params))(keys)


def _zeros_like_reset(env: Environment, params: EnvParams, num_envs: int):
    """Zero ``(obs, state)`` batches shaped like a reset's (placeholders before the first reset)."""
    keys = jax.random.split(jax.random.key(0), num_envs)
    shapes = jax.eval_shape(lambda k: _reset_batch(env, params, k), keys)
    return jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)


@partial(jax.jit, static_argnums=(0, 1))
def _vector_kernel(env, params, key, obs, state, action, reset_mask, reset_only):
    """The vector env's one compiled program: a step with same-step auto-reset, or a reset.

    With ``reset_only`` false: step every sub-env and reset those that finished.
    With it true: skip the step (a real ``lax.cond``, so placeholder states are
    never stepped) and reset the sub-envs in ``reset_mask``. One program for
    both means the env's reset is compiled once. Shapes: leading axis
    ``num_envs`` on ``obs``, ``state``'s leaves, ``action`` and ``reset_mask``.
    """
    key, step_keys, reset_keys = split_key(key, reset_mask.shape[0])

    def do_step(_):
        return jax.vmap(lambda k, s, a: env.step_env(k, s, a, params))(step_keys, state, action)

    def skip_step(_):
        shapes = jax.eval_shape(do_step, None)
        kept = jax.tree.map(lambda x, like: x.astype(like.dtype), (obs, state), shapes[:2])
        zeros = jax.tree.map(lambda like: jnp.zeros(like.shape, like.dtype), shapes[2:])
        return (*kept, *zeros)

    obs_end, state_end, reward, terminated, truncated, info = jax.lax.cond(
        reset_only, skip_step, do_step, None
    )
    replace = jnp.where(reset_only, reset_mask, terminated | truncated)

    def reset_one(key, ended):
        # a reset requested by the caller starts afresh; an auto-reset may carry
        # state across episodes (BoostChain's chains), as the functional step does
        return jax.lax.cond(
            reset_only,
            lambda: env.reset_env(key, params),
            lambda: env.reset_after(key, ended, params),
        )

    obs, state = reset_where(reset_one, replace, reset_keys, obs_end, state_end)
    return key, obs, state, reward, terminated, truncated, info, obs_end


@_single_env_jit
def _render_batch(env: Environment, params: EnvParams, state: Any):
    return jax.vmap(lambda s: env.render_rgb(s, params))(state)


def _seed_to_key(rng: np.random.Generator) -> jax.Array:
    """A JAX key drawn from gymnasium's seeded NumPy generator (so ``reset(seed=)`` fixes it)."""
    return jax.random.key(int(rng.integers(0, 2**31 - 1)))


# --------------------------------------------------------------------------- single env


class GymnasiumEnv(gymnasium.Env):
    """A NumPy ``gymnasium.Env`` running an innerlab functional env.

    Args:
        env: an innerlab env name (``"Orchard-v0"``) or ``Environment`` instance.
        params: the env's params (default: its ``default_params``).
        render_mode: ``None``, ``"rgb_array"`` (``render_rgb``) or ``"ansi"`` (``render_text``).
        **overrides: params fields to change, e.g. ``split="test"``.

    ``reset(seed=s)`` seeds a JAX key from which every later reset and step
    draws; the same seed and actions give the same episode. ``info`` holds the
    functional env's step info as NumPy arrays.
    """

    metadata = {"render_modes": RENDER_MODES, "render_fps": RENDER_FPS}

    def __init__(
        self,
        env: str | Environment,
        params: EnvParams | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ):
        self.func_env, self.params = _resolve(env, params, overrides)
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(
                f"argument 'render_mode' must be None or one of {RENDER_MODES}, got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.observation_space = to_gymnasium_space(self.func_env.observation_space(self.params))
        self.action_space = to_gymnasium_space(self.func_env.action_space(self.params))
        self._key: jax.Array | None = None
        self._state: Any = None
        self._done = False

    @property
    def state(self) -> Any:
        """The functional env's current state (a pytree of JAX arrays), or ``None`` before reset."""
        return self._state

    @property
    def key(self) -> jax.Array | None:
        """The running JAX key the next step draws from (see :func:`split_key`)."""
        return self._key

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None or self._key is None:
            self._key = _seed_to_key(self.np_random)
        self._key, obs, self._state = _reset_one(self.func_env, self.params, self._key)
        self._done = False
        return np.asarray(obs), {}

    def step(self, action: Any):
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        if self._done:
            raise gymnasium.error.ResetNeeded(
                "the episode has ended (terminated or truncated); call reset() before step()"
            )
        action = _check_action(self.action_space, action, self.func_env.name)
        self._key, (obs, self._state, reward, terminated, truncated, info) = _step_one(
            self.func_env, self.params, self._key, self._state, action
        )
        obs, reward, terminated, truncated, info = _to_numpy(
            (obs, reward, terminated, truncated, info)
        )
        terminated, truncated = bool(terminated), bool(truncated)
        self._done = terminated or truncated
        return obs, float(reward), terminated, truncated, info

    def render(self):
        if self.render_mode is None:
            gymnasium.logger.warn(
                "render() called without a render_mode; pass render_mode='rgb_array' or 'ansi'"
            )
            return None
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before render()")
        if self.render_mode == "rgb_array":
            return np.asarray(_render_one(self.func_env, self.params, self._state))
        return self.func_env.render_text(jax.device_get(self._state), self.params)

    def __repr__(self) -> str:
        return f"GymnasiumEnv({self.func_env.name}, split={self.params.split!r})"


# --------------------------------------------------------------------------- vector env


class GymnasiumVectorEnv(VectorEnv):
    """``num_envs`` copies of an innerlab env stepped by one ``jit``+``vmap``ped call.

    Same arguments as :class:`GymnasiumEnv` plus ``num_envs``. Auto-resets in
    the same step (``metadata["autoreset_mode"] == AutoresetMode.SAME_STEP``);
    see the module docstring for ``final_obs``/``final_info``. Info arrays have
    a leading ``[num_envs]`` axis and gymnasium's ``_<key>`` masks.
    """

    metadata = {
        "render_modes": RENDER_MODES,
        "render_fps": RENDER_FPS,
        "autoreset_mode": AutoresetMode.SAME_STEP,
    }

    def __init__(
        self,
        env: str | Environment,
        num_envs: int = 1,
        params: EnvParams | None = None,
        render_mode: str | None = None,
        **overrides: Any,
    ):
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"argument 'num_envs' must be an int >= 1, got {num_envs!r}")
        overrides.pop("max_episode_steps", None)  # episodes end through params.max_steps
        self.func_env, self.params = _resolve(env, params, overrides)
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(
                f"argument 'render_mode' must be None or one of {RENDER_MODES}, got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.num_envs = int(num_envs)
        self.single_observation_space = to_gymnasium_space(
            self.func_env.observation_space(self.params)
        )
        self.single_action_space = to_gymnasium_space(self.func_env.action_space(self.params))
        self.observation_space = gymnasium.vector.utils.batch_space(
            self.single_observation_space, self.num_envs
        )
        self.action_space = gymnasium.vector.utils.batch_space(
            self.single_action_space, self.num_envs
        )
        self._key: jax.Array | None = None
        self._state: Any = None
        self._obs: jax.Array | None = None
        space = self.single_action_space
        self._no_action = jnp.zeros((self.num_envs, *space.shape), _jax_dtype(space))
        self._no_reset = jnp.zeros(self.num_envs, bool)

    @property
    def state(self) -> Any:
        """The batched functional state (leading axis ``num_envs``), or ``None`` before reset."""
        return self._state

    @property
    def key(self) -> jax.Array | None:
        """The running JAX key the next step draws from (see :func:`split_key`)."""
        return self._key

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset every sub-env, or those set in ``options["reset_mask"]`` (bool ``[num_envs]``)."""
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise TypeError(
                f"argument 'seed' must be an int (one seed for the whole batch), got {seed!r}"
            )
        super().reset(seed=seed)
        if seed is not None or self._key is None:
            self._key = _seed_to_key(self.np_random)
        mask = np.ones(self.num_envs, bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({self.num_envs},), "
                    f"got {mask.dtype} {mask.shape}"
                )
            if self._state is None:
                raise gymnasium.error.ResetNeeded(
                    "options['reset_mask'] needs a previous full reset()"
                )
        if self._state is None:
            self._obs, self._state = _zeros_like_reset(self.func_env, self.params, self.num_envs)
        self._key, self._obs, self._state, *_ = _vector_kernel(
            self.func_env, self.params, self._key, self._obs, self._state,
            self._no_action, jnp.asarray(mask), jnp.bool_(True),
        )
        return np.asarray(self._obs), {}

    def step(self, actions: Any):
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        actions = _check_action(
            self.single_action_space, actions, self.func_env.name, self.num_envs
        )
        key, obs, state, reward, terminated, truncated, info, obs_end = _vector_kernel(
            self.func_env, self.params, self._key, self._obs, self._state,
            actions, self._no_reset, jnp.bool_(False),
        )
        self._key, self._obs, self._state = key, obs, state
        obs, reward, terminated, truncated, info, obs_end = _to_numpy(
            (obs, reward, terminated, truncated, info, obs_end)
        )
        done = terminated | truncated
        infos = self._with_masks(info, np.ones(self.num_envs, bool))
        if done.any():
            infos["final_obs"] = obs_end
            infos["_final_obs"] = done
            infos["final_info"] = self._with_masks(info, done)
            infos["_final_info"] = done
        return obs, reward, terminated, truncated, infos

    @staticmethod
    def _with_masks(info: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name, value in info.items():
            out[name] = value
            out[f"_{name}"] = mask
        return out

    def render(self):
        """A tuple with one frame (``rgb_array``) or text (``ansi``) per sub-env."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode")
            return None
        if self._state is None:
            raise gymnasium.error.ResetNeeded("call reset() before render()")
        if self.render_mode == "rgb_array":
            return tuple(np.asarray(_render_batch(self.func_env, self.params, self._state)))
        batch = jax.device_get(self._state)
        states = [jax.tree.map(lambda x, i=i: x[i], batch) for i in range(self.num_envs)]
        return tuple(self.func_env.render_text(s, self.params) for s in states)

    def __repr__(self) -> str:
        return (
            f"GymnasiumVectorEnv({self.func_env.name}, num_envs={self.num_envs}, "
            f"split={self.params.split!r})"
        )


# --------------------------------------------------------------------------- registration


def register_gymnasium_envs() -> list[str]:
    """Register ``innerlab/<Name>`` with gymnasium for every innerlab env not yet registered.

    Idempotent; call it again after registering new innerlab envs. Returns
    the gymnasium ids registered by this call.
    """
    added = []
    for name in list_envs():
        env_id = gymnasium_id(name)
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point=f"{__name__}:GymnasiumEnv",
            vector_entry_point=f"{__name__}:GymnasiumVectorEnv",
            kwargs={"env": name},
            disable_env_checker=False,
        )
        added.append(env_id)
    return added
