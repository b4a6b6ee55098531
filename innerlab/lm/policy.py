"""The language-model agent: a :class:`~innerlab.envs.rollout.Policy` that asks a model for moves.

Each step, for every env of the batch, the agent writes a prompt (the rules,
the state under an encoding, the moves in an *offered order*), scores each
move's word by its log-probability after the prompt, and takes the best
(``temperature=0``) or samples from ``softmax(logprob / temperature)``.

The offered order is drawn afresh per env and step (``order="shuffled"``),
because small models pick the first option listed; ``order="fixed"`` always
offers the env's own action order (the control). Which move was offered first
is therefore independent of the state, so a model that always takes the
first offer looks like uniform noise to inverse RL, and :func:`position_bias`
measures it directly.

How a torch model runs inside JAX's rollout: the scoring is a host call
(``jax.pure_callback``) inside the policy's ``act``; everything else (the
offered order, the choice, the env) stays in JAX. So ``rollout``,
``episode_returns`` and ``innerlab.agents.evaluate`` take the LM agent like
any other policy, under ``jit`` and ``vmap`` over seeds (the callback is
called once per step with every seed's envs together). The policy reads env
states (``observes="state"``), as the encodings need the layout, not the
one-hot grid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from innerlab.envs import grid
from innerlab.envs.core import Environment, EnvParams
from innerlab.envs.rollout import Policy, Trajectory, rollout
from innerlab.lm.model import DTYPES, Scorer, check_model
from innerlab.lm.text import (
    check_encoding,
    encode,
    legend_text,
    numpy_state,
    prompt_text,
    rules_text,
)

__all__ = [
    "ORDERS", "LMConfig", "LMParams", "TextAgent", "agent_of", "check_order", "check_temperature",
    "choose", "decide", "lm_policy", "lm_rollout", "offer", "position_bias",
]

ORDERS = ("shuffled", "fixed")


def check_order(order: str) -> str:
    """``order`` if it is one of :data:`ORDERS`, else a ``ValueError`` naming them."""
    if order not in ORDERS:
        raise ValueError(f"argument 'order' must be one of {ORDERS}, got {order!r}")
    return order


def check_temperature(temperature: float) -> float:
    """``temperature`` if it is a finite number >= 0, else a ``ValueError``."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not (
            0 <= temperature < float("inf")):
        raise ValueError(f"argument 'temperature' must be a number >= 0, got {temperature!r}")
    return temperature


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Everything that defines an LM agent apart from its env: the options of
    ``innerlab.agents.make("lm", ...)`` (hashable, JSON-friendly, checked here without
    loading anything).

    ``model``: a packaged model name (:data:`~innerlab.lm.PACKAGED`), a local Hugging
    Face model directory or a ``.gguf`` file; ``dtype``, ``chat``: how it is loaded
    (:func:`~innerlab.lm.load_model`); the rest are :func:`lm_policy`'s arguments.
    """

    model: str = "smollm2-135m"
    encoding: str = "ascii"
    temperature: float = 0.0
    order: str = "shuffled"
    rules: str | None = None
    action_names: tuple[str, ...] | None = None
    dtype: str = "bfloat16"
    chat: bool = True

    def __post_init__(self):
        check_model(self.model)
        check_encoding(self.encoding)
        check_temperature(self.temperature)
        check_order(self.order)
        if self.dtype not in DTYPES:
            raise ValueError(f"argument 'dtype' must be one of {DTYPES}, got {self.dtype!r}")
        if not isinstance(self.chat, bool):
            raise ValueError(f"argument 'chat' must be a bool, got {self.chat!r}")
        if self.rules is not None and not isinstance(self.rules, str):
            raise ValueError(f"argument 'rules' must be a str or None, got {self.rules!r}")
        names = self.action_names
        if names is not None:
            if isinstance(names, str) or not all(isinstance(n, str) for n in names):
                raise ValueError(f"argument 'action_names' must be a sequence of words, got "
                                 f"{names!r}")
            object.__setattr__(self, "action_names", tuple(names))

    def policy(self, scorer: Scorer, env: Environment, params: EnvParams) -> Policy:
        """This agent as a :func:`lm_policy` of ``scorer`` (the model) in ``env``."""
        return lm_policy(scorer, env, params, self.encoding, temperature=self.temperature,
                         order=self.order, rules=self.rules, action_names=self.action_names)


@dataclasses.dataclass(eq=False)
class TextAgent:
    """Host side of the LM agent: how a state becomes a prompt, and which model scores it.

    ``action_names[a]`` is
    the word for action ``a`` (default: the grid's ``up, right, down, left``).
    """

    scorer: Scorer
    env: Environment
    params: EnvParams
    encoding: str = "ascii"
    rules: str | None = None
    action_names: tuple[str, ...] = tuple(grid.MOVE_NAMES)
    order: str = "shuffled"
    record: list | None = dataclasses.field(default=None, repr=False)
    """While not None, every host call appends its offered orders (see lm_rollout)."""

    def __post_init__(self):
        check_encoding(self.encoding)
        check_order(self.order)
        if not callable(getattr(self.scorer, "option_logprobs", None)):
            raise TypeError("argument 'scorer' must have option_logprobs(prompts, options) "
                            f"(an innerlab.lm.LanguageModel), got {type(self.scorer).__name__}")
        try:
            n = self.env.num_actions(self.params)
        except TypeError as err:
            raise TypeError(f"the LM agent chooses among named discrete actions; {err}") from err
        self.action_names = tuple(self.action_names)
        if len(self.action_names) != n or len(set(self.action_names)) != n:
            raise ValueError(f"argument 'action_names' must name the {n} actions of "
                             f"{self.env.name} once each, got {self.action_names}")
        if self.rules is None:
            self.rules = rules_text(self.env, self.params)
        try:  # every check that needs a state, now rather than inside a rollout
            sample = numpy_state(self.env.sample_state(jax.random.key(0), self.params))
            self.observation(sample)
        except NotImplementedError as err:
            raise ValueError(f"{self.env.name} has no text rendering (render_text), so the LM "
                             "agent cannot observe it") from err

    @property
    def num_actions(self) -> int:
        return len(self.action_names)

    def observation(self, state: Any) -> str:
        return encode(self.env, self.params, state, self.encoding)

    def prompt(self, state: Any, offered: Sequence[int]) -> str:
        """The prompt for one state (NumPy leaves) with actions offered in order ``offered``."""
        names = [self.action_names[int(a)] for a in offered]
        return prompt_text(self.observation(state), names)

    @property
    def context(self) -> str:
        """What every prompt shares, read first: the rules and the encoding's legend."""
        legend = legend_text(self.env, self.encoding)
        return f"{self.rules}\n{legend}" if legend else self.rules

    def host_logprobs(self, states: Any, offered: np.ndarray) -> np.ndarray:
        """``[..., A]`` log-probability of each action's word (env order) for a batch of
        states; ``offered [..., A]`` is each prompt's order. Called from JAX."""
        batch = offered.shape[:-1]
        flat = jax.tree.map(lambda x: np.asarray(x).reshape((-1,) + x.shape[len(batch):]), states)
        order = np.asarray(offered).reshape(-1, offered.shape[-1])
        prompts = [self.prompt(numpy_state(flat, i), order[i]) for i in range(order.shape[0])]
        lp = self.scorer.option_logprobs(prompts, self.action_names, context=self.context)
        lp = np.asarray(lp, np.float32)
        if lp.shape != (order.shape[0], self.num_actions):
            raise ValueError(f"the scorer returned shape {lp.shape} for {order.shape[0]} prompts "
                             f"and {self.num_actions} answers")
        if self.record is not None:
            self.record.append(np.asarray(offered))
        return lp.reshape(batch + (self.num_actions,))


# Policies hold the id of their TextAgent as a (traced) array, so that every LM policy of
# one env shares one compiled rollout; the host call looks the agent up here.
_AGENTS: dict[int, TextAgent] = {}


class LMParams(eqx.Module):
    """The arrays of an LM policy: its agent's id, temperature and whether to shuffle."""

    agent: jax.Array
    temperature: jax.Array
    shuffle: jax.Array
    num_actions: int = eqx.field(static=True)


def _host_logprobs(agent_id: np.ndarray, states: Any, offered: np.ndarray) -> np.ndarray:
    ids = np.unique(np.asarray(agent_id))
    if ids.size != 1:
        raise ValueError(f"one LM call must serve one agent, got agents {ids.tolist()}")
    return _AGENTS[int(ids[0])].host_logprobs(states, offered)


def offer(key: jax.Array, num_envs: int, num_actions: int, shuffle: jax.Array) -> jax.Array:
    """``[E, A]`` the order actions are offered in: a fresh permutation per env where
    ``shuffle``, else the env's own order."""
    fixed = jnp.tile(jnp.arange(num_actions, dtype=jnp.int32), (num_envs, 1))
    shuffled = jax.vmap(jax.random.permutation)(jax.random.split(key, num_envs), fixed)
    return jnp.where(shuffle, shuffled, fixed)


def choose(logprobs: jax.Array, offered: jax.Array, key: jax.Array,
           temperature: jax.Array | float) -> jax.Array:
    """``[E]`` actions from ``logprobs [E, A]`` (env order): the best (``temperature=0``; an
    exact tie goes to the earlier offer) or a sample of ``softmax(logprobs / temperature)``."""
    in_order = jnp.take_along_axis(logprobs, offered, axis=-1)
    greedy = jnp.argmax(in_order, axis=-1)
    sampled = jax.random.categorical(key, in_order / jnp.maximum(temperature, 1e-6), axis=-1)
    pick = jnp.where(temperature == 0, greedy, sampled)
    return jnp.take_along_axis(offered, pick[:, None], axis=-1)[:, 0]


def decide(params: LMParams, states: Any, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(action [E], offered [E, A])`` for a batch of env states: one LM call."""
    num_envs = jax.tree.leaves(states)[0].shape[0]
    k_offer, k_pick = jax.random.split(key)
    offered = offer(k_offer, num_envs, params.num_actions, params.shuffle)
    shape = jax.ShapeDtypeStruct((num_envs, params.num_actions), jnp.float32)
    logprobs = jax.pure_callback(_host_logprobs, shape, params.agent, states, offered,
                                 vmap_method="broadcast_all")
    return choose(logprobs, offered, k_pick, params.temperature), offered


def _lm_act(params: LMParams, carry, states, key):
    return carry, decide(params, states, key)[0]


def lm_policy(scorer: Scorer, env: Environment, params: EnvParams, encoding: str = "ascii", *,
              temperature: float = 0.0, order: str = "shuffled", rules: str | None = None,
              action_names: Sequence[str] | None = None, name: str = "") -> Policy:
    """A ``Policy`` that acts by asking ``scorer`` (a :class:`~innerlab.lm.LanguageModel`).

    Args:
        scorer: the model (or any object with ``option_logprobs``).
        env, params: the env it will act in (the rules text and encodings read them).
        encoding: ``"ascii"``, ``"language"`` or ``"coords"`` (:mod:`innerlab.lm.text`).
        temperature: ``0`` takes the most probable move, ``> 0`` samples.
        order: ``"shuffled"`` (a fresh offered order per env and step) or ``"fixed"``.
        rules: the game's rules (default: :func:`~innerlab.lm.text.rules_text`).
        action_names: the word for each action (default ``up, right, down, left``).
    """
    check_temperature(temperature)
    kwargs = {} if action_names is None else {"action_names": tuple(action_names)}
    agent = TextAgent(scorer, env, params, encoding, rules, order=order, **kwargs)
    agent_id = len(_AGENTS)
    _AGENTS[agent_id] = agent
    arrays = LMParams(jnp.int32(agent_id), jnp.float32(temperature),
                      jnp.bool_(order == "shuffled"), agent.num_actions)
    label = name or f"lm-{encoding}-{'greedy' if temperature == 0 else f't{temperature:g}'}"
    return Policy(arrays, _lm_act, observes="state", name=label)


def agent_of(policy: Policy) -> TextAgent:
    """The :class:`TextAgent` behind an :func:`lm_policy`."""
    if policy.act is not _lm_act:
        raise TypeError(f"argument 'policy' must come from lm_policy, got {policy.name!r}")
    return _AGENTS[int(policy.params.agent)]


@eqx.filter_jit
def _rollout_jit(env, params, policy, key, num_envs: int, num_steps: int):
    return rollout(env, params, policy, key, num_envs, num_steps)


def lm_rollout(policy: Policy, env: Environment, params: EnvParams, key: jax.Array,
               num_envs: int, num_steps: int) -> tuple[Trajectory, np.ndarray]:
    """``rollout`` of an :func:`lm_policy`, and ``offered [T, E, A]``: the order the moves
    were offered in at every step (recorded by the host call, one per step; an error if
    JAX did not call it exactly once per step)."""
    agent = agent_of(policy)
    agent.record = []
    try:
        traj = _rollout_jit(env, params, policy, key, num_envs, num_steps)
        jax.block_until_ready(traj.action)
        offered = list(agent.record)
    finally:
        agent.record = None
    if len(offered) != num_steps:
        raise RuntimeError(f"the LM was called {len(offered)} times for {num_steps} steps")
    return traj, np.stack(offered)


def position_bias(action: np.ndarray, offered: np.ndarray,
                  mask: np.ndarray | None = None) -> float:
    """Fraction of (unmasked) decisions that took the *first offered* move.

    ``action [...]``, ``offered [..., A]``. Chance is ``1/A`` for a policy that ignores
    the order (the offered order is drawn independently of the state), ``1`` for one
    that always takes the first offer.
    """
    first = np.asarray(action) == np.asarray(offered)[..., 0]
    mask = np.ones_like(first) if mask is None else np.asarray(mask, bool)
    return float(first[mask].mean()) if mask.any() else float("nan")
