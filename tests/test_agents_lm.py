"""Kind "lm" in innerlab.agents: options checked like every kind's, the config round-trips,
train refuses it and lm_policy builds its agent (a fake scorer here; tests/test_lm_model.py
runs the real model through the same call)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from fake_lm import FirstOffer

import innerlab.agents as agents

SMALL = {"height": 5, "width": 5, "n_objects": 2, "max_steps": 4}


def test_options_defaults_and_round_trip():
    config = agents.make("lm", env_overrides=SMALL, encoding="coords", temperature=0.5,
                         order="fixed", action_names=["up", "right", "down", "left"])
    assert config.native().encoding == "coords" and config.native().temperature == 0.5
    assert config.native().action_names == ("up", "right", "down", "left")
    back = agents.AgentConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert back == config and hash(back) == hash(config)
    assert set(config.to_dict()) == {"kind", "env", "env_overrides", "options"}
    options = agents.kind_options("lm")
    assert {"env", "env_overrides", "model", "encoding", "temperature", "order"} <= set(options)
    assert options["model"] == "smollm2-135m" and options["temperature"] == 0.0
    assert config.width is None and config.total_steps is None  # not taken by this kind
    env, params = config.make_env()
    assert (params.height, params.max_steps) == (5, 4)


@pytest.mark.parametrize("options, error, message", [
    ({"encodng": "coords"}, ValueError, "'encodng': did you mean 'encoding'"),
    ({"learning_rate": 1e-3}, ValueError, r"\['learning_rate'\] do not apply to kind 'lm'"),
    ({"egocentric": True}, ValueError, "do not apply to kind 'lm'"),
    ({"encoding": "emoji"}, ValueError, "argument 'encoding' must be one of"),
    ({"temperature": -1.0}, ValueError, "argument 'temperature'"),
    ({"order": "sorted"}, ValueError, "argument 'order'"),
    ({"dtype": "float16"}, ValueError, "argument 'dtype'"),
    ({"model": "no/such/model-dir"}, FileNotFoundError, "neither a packaged model"),
    ({"action_names": "up"}, ValueError, "argument 'action_names'"),
    ({"env": "Nope-v0"}, ValueError, "option 'env' must be one of"),
])
def test_bad_options_are_named(options, error, message):
    with pytest.raises(error, match=message):
        agents.make("lm", **options)


def test_train_refuses_and_points_to_lm_policy():
    config = agents.make("lm", env_overrides=SMALL)
    with pytest.raises(ValueError, match=r"not trained.*agents\.lm_policy\(config\)"):
        agents.train(config, progress=False)
    with pytest.raises(ValueError, match="no iterations"):
        config.schedule()
    with pytest.raises(ValueError, match="is trained"):
        agents.lm_policy(agents.make("ppo-lstm", total_steps=20_000))


def test_importing_agents_loads_no_torch():
    code = ("import sys, innerlab.agents; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_lm_policy_acts_as_configured_in_evaluate():
    """The config's options reach the policy: under order="fixed" a first-offer scorer always
    moves up (action 0); the episodes run through agents.evaluate like any control's."""
    config = agents.make("lm", env_overrides=SMALL, encoding="language", order="fixed")
    policy = agents.lm_policy(config, model=FirstOffer())
    assert policy.name == "lm-language-greedy"
    ev = agents.evaluate(policy, *config.make_env(), episodes=2, seeds=(0,))
    assert ev.returns.shape == (1, 2) and np.all(ev.lengths == SMALL["max_steps"])
    from innerlab import lm

    agent = lm.agent_of(policy)
    assert (agent.encoding, agent.order) == ("language", "fixed")
