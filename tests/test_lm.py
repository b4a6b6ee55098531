"""innerlab.lm without a model: encodings, prompts, the policy in the one rollout, position
bias, and clear errors. Small fake scorers stand in for the model (tests/test_lm_model.py
loads the real one)."""

import math

import jax
import numpy as np
import pytest

import innerlab.agents as agents
import innerlab.envs as envs
from innerlab import lm
from innerlab.envs.orchard import Orchard

OVERRIDES = {"height": 5, "width": 5, "n_objects": 2, "max_steps": 6}
E, T = 8, 6


def offered_moves(prompt: str) -> list[str]:
    line = next(x for x in prompt.splitlines() if x.startswith("Your possible moves: "))
    return line[len("Your possible moves: "):].rstrip(".").split(", ")


class FirstOffer:
    """Prefers moves in the order offered: always takes the first."""

    def option_logprobs(self, prompts, options, context=""):
        return np.array([[-float(offered_moves(p).index(o)) for o in options] for p in prompts])


class Likes:
    """Ignores the order: always prefers the move ``word``."""

    def __init__(self, word):
        self.word = word

    def option_logprobs(self, prompts, options, context=""):
        return np.array([[0.0 if o == self.word else -3.0 for o in options] for p in prompts])


class Toward:
    """Reads the coordinate encoding and prefers moves that approach the nearest object."""

    def option_logprobs(self, prompts, options, context=""):
        out = []
        for p in prompts:
            lines = p.splitlines()
            agent = np.array(eval(next(x for x in lines if x.startswith("agent: "))[7:]))
            objs = [np.array(eval(x.split(" at ")[1])) for x in lines if x.startswith("object:")]
            moves = {"up": (-1, 0), "right": (0, 1), "down": (1, 0), "left": (0, -1)}
            dist = [min((np.abs(agent + moves[o] - q).sum() for q in objs), default=0)
                    for o in options]
            out.append(-np.array(dist, float))
        return np.array(out)


@pytest.fixture(scope="module")
def world():
    env, params = envs.make("Orchard-v0", **OVERRIDES)
    _, state = env.reset(jax.random.key(3), params)
    return env, params, lm.numpy_state(state)


def test_encodings_say_where_things_are(world):
    """Each encoding of one known layout names the agent's cell and every object."""
    env, params, state = world
    ar, ac = (int(v) for v in state.agent)
    coords = lm.encode(env, params, state, "coords")
    assert f"agent: ({ar}, {ac})" in coords
    assert coords.count("object: ") == 2
    language = lm.encode(env, params, state, "language")
    assert f"at row {ar}, column {ac}" in language and language.count("A ") == 2
    r, c = (int(v) for v in state.obj_pos[0])
    assert f"at ({r}, {c})" in coords
    ascii_grid = lm.encode(env, params, state, "ascii")
    assert ascii_grid.splitlines()[ar][2 * ac] == "@"
    assert "Legend" not in ascii_grid and "Legend" in lm.legend_text(env, "ascii")
    rules = lm.rules_text(env, params)
    assert "small object is worth 1 points" in rules and str(params.max_steps) in rules
    prompt = lm.prompt_text(coords, ["left", "up", "right", "down"])
    assert offered_moves(prompt) == ["left", "up", "right", "down"]


def test_choose_greedy_and_sampled():
    logprobs = np.log(np.array([[0.1, 0.2, 0.3, 0.4]] * 4000, np.float32))
    offered = np.tile(np.arange(4), (4000, 1))
    greedy = lm.choose(logprobs, offered, jax.random.key(0), 0.0)
    assert np.all(np.asarray(greedy) == 3)
    sampled = np.asarray(lm.choose(logprobs, offered, jax.random.key(1), 1.0))
    np.testing.assert_allclose(np.bincount(sampled, minlength=4) / 4000, [0.1, 0.2, 0.3, 0.4],
                               atol=0.03)
    ties = lm.choose(np.zeros((2, 4)), np.array([[2, 0, 1, 3], [1, 3, 0, 2]]),
                     jax.random.key(2), 0.0)
    assert np.asarray(ties).tolist() == [2, 1]  # an exact tie goes to the first offer


@pytest.mark.slow
def test_lm_policy_in_the_rollout_and_position_bias(world):
    """Position bias, validated on constructed agents: 1 for the agent that takes the first
    offer, chance (1/4) for one that ignores the order, 0 for that one under a fixed order
    that never offers its move first. The policies share one compiled rollout."""
    env, params, _ = world
    key = jax.random.key(0)
    first = lm.lm_policy(FirstOffer(), env, params, "ascii")
    traj, offered = lm.lm_rollout(first, env, params, key, E, T)
    assert offered.shape == (T, E, 4) and traj.action.shape == (T, E)
    np.testing.assert_array_equal(np.asarray(traj.action), offered[..., 0])
    assert lm.position_bias(traj.action, offered) == 1.0
    assert len({tuple(o) for o in offered.reshape(-1, 4)}) > 4  # shuffled per step

    right = lm.lm_policy(Likes("right"), env, params, "language")
    traj, offered = lm.lm_rollout(right, env, params, key, E, T)
    assert np.all(np.asarray(traj.action) == 1)
    rate = lm.position_bias(traj.action, offered)
    assert abs(rate - 0.25) < 3 * math.sqrt(0.25 * 0.75 / (E * T)), rate

    fixed = lm.lm_policy(Likes("right"), env, params, "coords", order="fixed")
    traj, offered = lm.lm_rollout(fixed, env, params, key, E, T)
    assert np.all(offered == np.arange(4)) and lm.position_bias(traj.action, offered) == 0.0


@pytest.mark.slow
def test_goal_directed_fake_beats_random_in_agents_evaluate(world):
    """agents.evaluate runs an LM policy like any other (vmapped over seeds, one host call
    per step): a scorer that approaches the nearest object earns more than random."""
    env, params, _ = world
    toward = lm.lm_policy(Toward(), env, params, "coords")
    ev = agents.evaluate(toward, env, params, episodes=E, seeds=(0, 1), seed=5)
    rand = agents.evaluate(agents.random_policy(4), env, params, episodes=E, seeds=(0, 1), seed=5)
    assert ev.returns.shape == (2, E)
    assert ev.returns.mean() > rand.returns.mean() + 0.3


class NoText(Orchard):
    name = "NoText-v0"

    def render_text(self, state, params=None, legend=True):
        raise NotImplementedError


def test_clear_errors(world):
    env, params, state = world
    with pytest.raises(ValueError, match="argument 'encoding' must be one of"):
        lm.lm_policy(FirstOffer(), env, params, "emoji")
    with pytest.raises(ValueError, match="argument 'encoding' must be one of"):
        lm.encode(env, params, state, "emoji")
    with pytest.raises(FileNotFoundError, match="neither a packaged model"):
        lm.load_model("no/such/model-dir")
    with pytest.raises(ValueError, match="unknown packaged model|neither a packaged"):
        lm.packaged_gguf("gpt-17")
    with pytest.raises(ValueError, match="has no text rendering"):
        lm.lm_policy(FirstOffer(), NoText(), params, "ascii", rules="Collect things.")
    space, sparams = envs.make("Spaceship-v0")
    with pytest.raises(TypeError, match="named discrete actions"):
        lm.lm_policy(FirstOffer(), space, sparams, "ascii", rules="Fly.")
    side, side_params = envs.make("OrchardSideChannel-v0", **OVERRIDES)
    with pytest.raises(TypeError, match="not a GridEnvironment"):
        lm.lm_policy(FirstOffer(), side, side_params, "coords", rules="Collect.")
    with pytest.raises(ValueError, match="no rules text is written"):
        lm.lm_policy(FirstOffer(), side, side_params, "ascii")
    with pytest.raises(ValueError, match="argument 'order'"):
        lm.lm_policy(FirstOffer(), env, params, order="sorted")
    with pytest.raises(ValueError, match="argument 'temperature'"):
        lm.lm_policy(FirstOffer(), env, params, temperature=-1.0)
    with pytest.raises(ValueError, match="argument 'action_names'"):
        lm.lm_policy(FirstOffer(), env, params, action_names=("a", "b"))
    with pytest.raises(TypeError, match="option_logprobs"):
        lm.lm_policy(object(), env, params)
    with pytest.raises(TypeError, match="must come from lm_policy"):
        lm.lm_rollout(agents.random_policy(4), env, params, jax.random.key(0), 2, 2)
