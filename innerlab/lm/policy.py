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
from innerlab.envs.rollout import Policy, bind
from innerlab.lm.model import Scorer
from innerlab.lm.text import (
    check_encoding,
    encode,
    legend_text,
    numpy_state,
    prompt_text,
    rules_text,
)

__all__ = ["ORDERS", "TextAgent", "agent_of", "choose", "decide", "lm_policy", "position_bias"]

ORDERS = ("shuffled", "fixed")


@dataclasses.dataclass(eq=False)
class TextAgent:
    """Host side of the LM agent: how a state becomes a prompt, and which model scores it.

    Hashable by identity (a static part of the jitted policy). ``action_names[a]`` is
    the word for action ``a`` (default: the grid's ``up, right, down, left``).
    """

    scorer: Scorer
    env: Environment
    params: EnvParams
    encoding: str = "ascii"
    rules: str | None = None
    action_names: tuple[str, ...] = tuple(grid.MOVE_NAMES)
    order: str = "shuffled"

    def __post_init__(self):
        check_encoding(self.encoding)
        if self.order not in ORDERS:
            raise ValueError(f"argument 'order' must be one of {ORDERS}, got {self.order!r}")
        if not callable(getattr(self.scorer, "option_logprobs", None)):
            raise TypeError("argument 'scorer' must have option_logprobs(prompts, options) "
                            f"(an innerlab.lm.LanguageModel), got {type(self.scorer).__name__}")
        n = self.env.num_actions(self.params)
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
        return lp.reshape(batch + (self.num_actions,))

    def offer(self, key: jax.Array, num_envs: int) -> jax.Array:
        """``[E, A]`` the order actions are offered in (a permutation per env, or the fixed one)."""
        fixed = jnp.tile(jnp.arange(self.num_actions, dtype=jnp.int32), (num_envs, 1))
        if self.order == "fixed":
            return fixed
        keys = jax.random.split(key, num_envs)
        return jax.vmap(jax.random.permutation)(keys, fixed)


def choose(logprobs: jax.Array, offered: jax.Array, key: jax.Array,
           temperature: float) -> jax.Array:
    """``[E]`` actions from ``logprobs [E, A]`` (env order): the best (``temperature=0``; an
    exact tie goes to the earlier offer) or a sample of ``softmax(logprobs / temperature)``."""
    in_order = jnp.take_along_axis(logprobs, offered, axis=-1)
    if temperature == 0:
        pick = jnp.argmax(in_order, axis=-1)
    else:
        pick = jax.random.categorical(key, in_order / temperature, axis=-1)
    return jnp.take_along_axis(offered, pick[:, None], axis=-1)[:, 0]


def decide(agent: TextAgent, temperature: float, states: Any,
           key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(action [E], offered [E, A])`` for a batch of env states: one LM call."""
    num_envs = jax.tree.leaves(states)[0].shape[0]
    k_offer, k_pick = jax.random.split(key)
    offered = agent.offer(k_offer, num_envs)
    shape = jax.ShapeDtypeStruct((num_envs, agent.num_actions), jnp.float32)
    logprobs = jax.pure_callback(agent.host_logprobs, shape, states, offered,
                                 vmap_method="broadcast_all")
    return choose(logprobs, offered, k_pick, temperature), offered


def _lm_act(agent: TextAgent, temperature: float, params, carry, states, key):
    return carry, decide(agent, temperature, states, key)[0]


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
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not (
            0 <= temperature < float("inf")):
        raise ValueError(f"argument 'temperature' must be a number >= 0, got {temperature!r}")
    kwargs = {} if action_names is None else {"action_names": tuple(action_names)}
    agent = TextAgent(scorer, env, params, encoding, rules, order=order, **kwargs)
    label = name or f"lm-{encoding}-{'greedy' if temperature == 0 else f't{temperature:g}'}"
    return Policy(None, bind(_lm_act, agent, float(temperature)), observes="state", name=label)


def agent_of(policy: Policy) -> tuple[TextAgent, float]:
    """The ``(TextAgent, temperature)`` behind an :func:`lm_policy`."""
    act = policy.act
    if not (isinstance(act, bind) and act.fn is _lm_act):
        raise TypeError(f"argument 'policy' must come from lm_policy, got {policy.name!r}")
    return act.args


@eqx.filter_jit
def _decide_jit(agent, temperature, states, key):
    return decide(agent, temperature, states, key)


def position_bias(policy: Policy, states: Any, key: jax.Array) -> dict[str, np.ndarray]:
    """How often the LM agent picks the *first offered* move, on a batch of states.

    The offered order is independent of the state, so deciding again on the states an
    episode visited measures the same rate as during the episode. Returns per state
    ``first`` (bool: the choice was the first offer) and ``action``; chance is ``1/A``
    for a policy that ignores the order, ``1`` for one that always takes the first offer.
    """
    agent, temperature = agent_of(policy)
    action, offered = _decide_jit(agent, temperature, states, key)
    return {"first": np.asarray(action == offered[:, 0]), "action": np.asarray(action)}
