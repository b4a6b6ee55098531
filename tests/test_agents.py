"""The agent contract, for every kind: learns, is reproducible, resumes bit-identically,
saves and loads, and rejects bad options with a clear error.

Every kind trains on the same tiny egocentric Orchard (5x5, 3 objects, 10 steps) with a
budget that is enough for it to beat the random policy; the run shares compilations
across tests (module-scoped fixtures, runs differing only in length share one program).
"""

from __future__ import annotations

import json

import equinox as eqx
import jax
import numpy as np
import pytest

import innerlab.agents as agents
from innerlab.envs.rollout import rollout

SMALL = {"height": 5, "width": 5, "n_objects": 3, "max_steps": 10}
COMMON = dict(env="Orchard-v0", env_overrides=SMALL, egocentric=True, width=32)
# per kind: options and total env steps; log_every fixes the compiled chunk length
BUDGETS = {
    "ppo-lstm": dict(num_envs=16, total_steps=16 * 32 * 24, log_every=4, learning_rate=3e-3),
    "ppo-transformer": dict(num_envs=16, total_steps=16 * 32 * 24, log_every=4,
                            learning_rate=3e-3, memory=4, num_heads=2, num_layers=1),
    "muzero": dict(num_envs=16, total_steps=16 * 16 * 64, log_every=8, num_simulations=8,
                   latent_dim=16, policy="muzero", entropy_coef=0.05, discount=0.9,
                   num_epochs=4, num_minibatches=8),
    "ibp": dict(num_envs=32, total_steps=32 * 1500, log_every=100, hidden=32, discount=0.9,
                strategy="1-step", max_imaginations=1),
}
KINDS = sorted(BUDGETS)
SEEDS = (0, 1)


def same_rows(a: list, b: list) -> bool:
    """Row lists equal, NaN included (a chunk where no episode ended logs NaN)."""
    return json.dumps(a) == json.dumps(b)


def config_of(kind: str, **changes) -> agents.AgentConfig:
    return agents.make(kind, **{**COMMON, **BUDGETS[kind], **changes})


@pytest.fixture(scope="module", params=KINDS)
def trained(request, tmp_path_factory):
    kind = request.param
    config = config_of(kind)
    run_dir = tmp_path_factory.mktemp(kind) / "run"
    return kind, config, agents.train(config, SEEDS, run_dir, progress=False)


def test_learns_and_beats_random(trained):
    kind, config, result = trained
    env, params = config.make_env()
    assert result.env_steps == config.total_steps
    greedy = kind in ("ppo-lstm", "ppo-transformer")  # search agents act as in training
    agent = agents.evaluate(result, episodes=128, greedy=greedy, seed=7).per_seed()
    control = agents.evaluate(agents.random_policy(4), env, params, 128, seeds=SEEDS,
                              seed=7).per_seed()
    # every seed beats the random policy on the same episodes
    assert np.all(agent > control + 0.3), (kind, agent, control)


def test_run_dir_and_reproducible_resume(trained, tmp_path):
    kind, config, result = trained
    run = result.run_dir
    assert {"config.json", "metrics.jsonl", "checkpoint.eqx", "checkpoint.json"} <= set(
        run.files()
    )
    rows = run.read_metrics()
    chunks = config.schedule()[0] // config.schedule()[1]
    assert len(rows) == chunks * len(SEEDS) == len(result.history)
    assert json.loads((run.path / "config.json").read_text())["agent"]["kind"] == kind
    # a shorter run (same chunk program), killed after one chunk and resumed, ends
    # bit-identical to the same shorter run done in one go, and to the long run's first rows
    short = config_of(kind, total_steps=config.steps_per_iteration * config.log_every * 2)
    first = agents.train(short, SEEDS, tmp_path / "killed", progress=False, max_chunks=1)
    assert len(first.history) == len(SEEDS)
    resumed = agents.train(short, SEEDS, tmp_path / "killed", progress=False)
    whole = agents.train(short, SEEDS, tmp_path / "whole", progress=False)
    leaves = lambda r: jax.tree.leaves(eqx.filter(r.states, eqx.is_array))
    for a, b in zip(leaves(resumed), leaves(whole), strict=True):
        np.testing.assert_array_equal(a, b)
    assert same_rows(resumed.history, whole.history)
    assert same_rows(whole.history, result.history[: 2 * len(SEEDS)])
    assert same_rows(resumed.run_dir.read_metrics(), whole.history)
    # the same config resumed from a finished run trains nothing more
    again = agents.train(short, SEEDS, tmp_path / "whole", progress=False)
    assert same_rows(again.history, whole.history)


def test_save_load_and_policy_in_any_rollout(trained):
    kind, config, result = trained
    loaded = agents.load(result.run_dir.path)
    assert loaded.config == config and loaded.seeds == SEEDS
    env, params = config.make_env()
    key = jax.random.key(3)
    for seed in SEEDS:
        a = eqx.filter_jit(rollout)(env, params, result.policy(seed), key, 4, 12)
        b = eqx.filter_jit(rollout)(env, params, loaded.policy(seed), key, 4, 12)
        np.testing.assert_array_equal(a.action, b.action)
    steps, curve = result.curve("episode_return")
    assert curve.shape == (len(SEEDS), steps.size) and steps[-1] == config.total_steps


def test_evaluate_checks_the_observation_shape(trained):
    kind, config, result = trained
    global_env, global_params = agents.make(kind, env_overrides=SMALL).make_env()
    with pytest.raises(ValueError, match="shape"):
        agents.evaluate(result, global_env, global_params, episodes=2)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("ppo-gru", {}, "unknown agent kind 'ppo-gru'.*did you mean 'ppo-lstm'"),
        ("ppo-lstm", {"gamma": 0.9}, "'gamma': did you mean 'discount'"),
        ("ibp", {"lr": 1e-3}, "'lr': did you mean 'learning_rate'"),
        ("muzero", {"num_iterations": 5}, "did you mean 'total_steps'"),
        ("ppo-lstm", {"num_envs": 0}, "'num_envs' must be an int >= 1, got 0"),
        ("muzero", {"num_envs": True}, "'num_envs' must be an int >= 1, got True"),
        ("ppo-lstm", {"discount": 1.5}, "'discount' must be a number in"),
        ("ppo-lstm", {"encoder": "resnet"}, "'encoder' must be one of"),
        ("ppo-lstm", {"env": "Orchard-v9"}, "'env' must be one of"),
        ("ppo-lstm", {"total_steps": 10}, "'total_steps' \\(10\\) must be at least one iteration"),
        ("ppo-lstm", {"num_envs": 6}, "divisible by num_minibatches"),
        ("ppo-transformer", {"memory": 0}, "memory"),
    ],
)
def test_bad_options_are_named(kind, options, message):
    with pytest.raises(ValueError, match=message):
        agents.make(kind, **options)


def test_bad_train_and_evaluate_arguments():
    config = config_of("ppo-lstm")
    with pytest.raises(ValueError, match="seeds"):
        agents.train(config, seeds=[], progress=False)
    with pytest.raises(ValueError, match="repeat"):
        agents.train(config, seeds=[1, 1], progress=False)
    with pytest.raises(TypeError, match="AgentConfig"):
        agents.train({"kind": "ppo-lstm"}, progress=False)
    with pytest.raises(ValueError, match="episodes"):
        agents.evaluate(agents.random_policy(4), *config.make_env(), episodes=0)
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        agents.load("no-such-run-dir")


def test_config_round_trips_through_json():
    for kind in KINDS:
        config = config_of(kind)
        assert agents.AgentConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
        assert set(agents.SHARED_OPTIONS) <= set(agents.kind_options(kind))


def test_a_tuple_valued_option_resumes(tmp_path):
    """The checkpoint's config is JSON, where tuples read back as lists: resume compares
    the two in JSON form (before, an env override ``read_cells=((1, 1),)`` refused to resume)."""
    from innerlab.agents import driver

    config = agents.make("ppo-lstm", env="OrchardSideChannel-v0",
                         env_overrides={"access": "cells", "read_cells": ((1, 1), (2, 3))})
    (tmp_path / f"{driver.CHECKPOINT}.json").write_text(
        json.dumps({"config": config.to_dict(), "seeds": [0]}))
    _, meta = driver._open_run(tmp_path, config, (0,), resume=True)
    assert meta["config"]["env_overrides"]["read_cells"] == [[1, 1], [2, 3]]
    other = agents.make("ppo-lstm", env="OrchardSideChannel-v0",
                        env_overrides={"access": "cells", "read_cells": ((1, 1),)})
    with pytest.raises(ValueError, match="different config"):
        driver._open_run(tmp_path, other, (0,), resume=True)
