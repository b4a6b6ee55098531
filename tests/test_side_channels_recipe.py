"""``innerlab run side-channels``: the switch index on constructed agents whose answer is
known, the costly-read channel, option errors, same seed same report, and resume.

The tiny run (module fixture) trains ppo-lstm and muzero for one iteration: its agents are
not competent and nothing here asserts what they learned. What is asserted holds for any
agent: the measure on the controls and on the planner that reads the channel, the files,
determinism and resume. The quick preset's real run is the slow test at the end.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from innerlab.envs import list_envs, make, unregister
from innerlab.recipes import _side_channel_measures as measures
from innerlab.recipes import get_recipe
from innerlab.recipes.side_channels import (
    ENV,
    HEAD_VS_CHANNEL,
    SideChannelsConfig,
    ensure_env,
    run,
)


@pytest.fixture(scope="module", autouse=True)
def _forget_the_recipes_env():
    """The recipe registers its env lazily; forget it afterwards so that other tests in
    this process see the registry as ``import innerlab`` leaves it."""
    had = ENV in list_envs()
    yield
    if not had and ENV in list_envs():
        unregister(ENV)


TINY = dict(
    kinds=("ppo-lstm", "muzero"), modes=("next",), modifications=("identity", "replace"),
    noise_stds=(1.0,), read_variant=False, cells_variant=True, seeds=2, height=5, width=5,
    n_objects=3,
    max_steps=8, ppo_iterations=1, ppo_envs=8, ppo_width=16, muzero_iterations=1,
    muzero_envs=4, muzero_simulations=2, eval_episodes=16, oracle_simulations=8,
    strip_cells=0,
)


# --------------------------------------------------------------------------- the measure


def test_switch_index_is_0_and_1_at_the_references_and_linear_between():
    ref_r, ref_alt = (10.0, 2.0), (4.0, 8.0)
    g_r = np.array([10.0, 4.0, 7.0])
    g_alt = np.array([2.0, 8.0, 5.0])
    c = measures.switch_components(g_r, g_alt, ref_r, ref_alt)
    np.testing.assert_allclose(c["index"], [0.0, 1.0, 0.5])
    np.testing.assert_allclose(c["off_axis"], 0.0)
    assert c["defined"].all()


def test_an_agent_that_optimises_neither_reward_is_undefined():
    # gives up all of r's advantage (lost 1) and takes none of r' (gained 0): a random
    # walker that collects little. Its projection is 0.5, which would read as "half
    # switched"; it is 0.5 from the line between the references, so undefined.
    c = measures.switch_components([4.0], [2.0], (10.0, 2.0), (4.0, 8.0))
    assert c["lost"][0] == pytest.approx(1.0) and c["gained"][0] == pytest.approx(0.0)
    assert c["projection"][0] == pytest.approx(0.5)
    assert c["off_axis"][0] == pytest.approx(0.5)
    strict = measures.switch_components([4.0], [2.0], (10.0, 2.0), (4.0, 8.0), tolerance=0.4)
    assert not strict["defined"][0] and math.isnan(strict["index"][0])
    assert measures.switch_summary(strict)["verdict"] == "undefined"


def test_references_that_do_not_separate_the_rewards_give_undefined():
    # r' = r (identity) or a constant: both oracles score the same
    c = measures.switch_components([5.0, 6.0], [5.0, 6.0], (10.0, 10.0), (10.0, 10.0))
    assert not c["defined"].any()
    assert measures.switch_summary(c)["verdict"].startswith("undefined (references")


def test_verdicts_name_near_0_near_1_and_disagreement():
    ones = np.ones(5, bool)
    assert measures.verdict(np.full(5, 0.02), ones) == "near 0"
    assert measures.verdict(np.full(5, 0.97), ones) == "near 1"
    assert measures.verdict(np.array([0.0, 0.1, 0.9, 1.0, 0.5]), ones) == "seeds disagree"
    assert measures.verdict(np.array([0.4, 0.5, 0.6, 0.5, 0.5]), ones) == "between"
    some = np.array([True, False, True, True, True])
    assert measures.verdict(np.full(5, 0.0), some).startswith("seeds disagree")


def test_measure_errors_name_the_argument():
    with pytest.raises(ValueError, match="'tolerance'"):
        measures.switch_components([1.0], [1.0], (2.0, 0.0), (0.0, 2.0), tolerance=-1)
    with pytest.raises(ValueError, match="'g_r' and 'g_alt'"):
        measures.switch_components([1.0, 2.0], [1.0], (2.0, 0.0), (0.0, 2.0))


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("changes, named", [
    ({"modes": ("none", "sideways")}, "'modes'"),
    ({"modifications": ("identity", "invert")}, "'modifications'"),
    ({"kinds": ("ppo-gru",)}, "'kinds'"),
    ({"noise_stds": (1.0, -0.5)}, "'noise_stds'"),
    ({"noise_stds": (math.nan,)}, "'noise_stds'"),
    ({"seeds": 0}, "'seeds'"),
    ({"read_cost": -0.1}, "'read_cost'"),
    ({"eval_split": "val"}, "'eval_split'"),
    ({"n_objects": 30}, "n_objects"),
])
def test_bad_options_are_clear_errors(changes, named):
    with pytest.raises(ValueError, match=named) as err:
        SideChannelsConfig(**changes)
    bad = next(iter(changes.values()))
    shown = bad[-1] if isinstance(bad, tuple) else bad
    assert str(shown) in str(err.value)  # the actual value is in the message


def test_the_recipe_is_registered_with_a_quick_preset():
    recipe = get_recipe("side-channels")
    assert recipe.config_cls is SideChannelsConfig
    quick = SideChannelsConfig(quick=True).resolved()
    assert quick.seeds == 2 and quick.kinds == ("ppo-lstm",)
    assert quick.modes == ("none", "previous", "next")
    assert not quick.cells_variant and "ppo-lstm-next-cells" not in quick.runs()
    assert set(quick.modifications) < set(SideChannelsConfig().modifications)
    full = SideChannelsConfig()
    assert full.seeds >= 5 and set(full.kinds) == {"ppo-lstm", "ppo-transformer", "muzero"}
    assert set(full.runs()) >= {f"{k}-{m}" for k in full.kinds for m in full.modes}
    assert {f"{k}-next-cells" for k in full.kinds} <= set(full.runs())
    assert set(full.planners()) == {"channel-planner-next", "channel-planner-next-cells"}
    assert full.read_cells() == ((1, 1), (1, 4), (4, 1), (4, 4))  # the 6x6 room's inner corners


# --------------------------------------------------------------------------- costly read


def test_the_channel_is_seen_only_after_a_read_that_costs():
    ensure_env()
    env, params = make(ENV, mode="next", access="read", read_cost=0.25, height=5, width=5,
                       n_objects=3)
    free = params.replace(access="always")
    assert env.num_actions(params) == 2 * env.num_actions(free) == 8
    assert env.observation_space(params).shape == env.observation_space(free).shape
    obs, state = env.reset(jax.random.key(0), params)
    assert not np.any(np.asarray(state.channel))  # nothing read yet
    # env steps only: XLA's cheapest optimisation level compiles them faster
    step = jax.jit(env.step_env, static_argnums=3,
                   compiler_options={"xla_backend_optimization_level": 0})
    for a in range(4):
        # the same move without and with a read, from the same state
        _, s0, r0, *_, info0 = step(jax.random.key(1), state, jnp.int32(a), params)
        _, s1, r1, *_, info1 = step(jax.random.key(1), state, jnp.int32(4 + a), params)
        _, sf, rf, *_ = step(jax.random.key(1), state, jnp.int32(a),
                             free.replace(mode="next"))
        assert float(r1) == pytest.approx(float(r0) - 0.25) and float(r0) == float(rf)
        assert not np.any(np.asarray(s0.channel))
        np.testing.assert_allclose(s1.channel, sf.channel)  # a read shows the free channel
        assert float(info0["read"]) == 0.0 and float(info1["read"]) == 1.0
        assert float(env.true_reward(state, jnp.int32(4 + a), params)) == pytest.approx(
            float(r1))
    with pytest.raises(ValueError, match="'access'"):
        make(ENV, access="sometimes")
    with pytest.raises(ValueError, match="mode 'none'"):
        make(ENV, mode="none", access="read")


# --------------------------------------------------------------------------- only on some cells


@pytest.mark.parametrize("mode", ["next", "previous"])
def test_the_channel_is_seen_exactly_on_the_read_cells(mode):
    """access='cells': after a reset or a step, the channel is the free channel where the
    agent stands on a read cell and 0 elsewhere; actions, rewards and dynamics unchanged."""
    ensure_env()
    cells = ((1, 1), (3, 3))
    env, params = make(ENV, mode=mode, access="cells", read_cells=cells, height=5, width=5,
                       n_objects=3)
    free = params.replace(access="always", read_cells=())
    assert env.num_actions(params) == env.num_actions(free) == 4
    assert env.observation_space(params).shape == env.observation_space(free).shape
    n = 64
    keys = jax.random.split(jax.random.key(3), n)
    fast = {"xla_backend_optimization_level": 0}  # env steps only: cheapest to compile
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)), static_argnums=1,
                    compiler_options=fast)
    step = jax.jit(jax.vmap(env.step_env, in_axes=(0, 0, 0, None)), static_argnums=3,
                   compiler_options=fast)

    def on_cell(state):
        agent = np.asarray(state.inner.agent)
        return np.array([tuple(a) in cells for a in agent])

    def check(state, state_free, obs):
        on = on_cell(state)
        want = np.where(on[:, None], np.asarray(state_free.channel), 0.0)
        np.testing.assert_array_equal(np.asarray(state.channel), want)
        planes = np.asarray(obs)[..., -env.num_planes(params):]  # what the agent sees
        np.testing.assert_array_equal(planes, np.broadcast_to(
            want[:, None, None, :], planes.shape))
        return on

    obs, state = reset(keys, params)
    _, state_free = reset(keys, free)
    seen = [check(state, state_free, obs)]
    for t in range(6):
        k = jax.random.split(jax.random.key(10 + t), n)
        action = jax.random.randint(jax.random.key(20 + t), (n,), 0, 4)
        obs, nxt, reward, *_, info = step(k, state, action, params)
        _, nxt_free, reward_free, *_ = step(k, state_free, action, free)
        np.testing.assert_array_equal(reward, reward_free)  # seeing costs nothing
        np.testing.assert_array_equal(nxt.inner.agent, nxt_free.inner.agent)
        on = check(nxt, nxt_free, obs)
        np.testing.assert_array_equal(np.asarray(info["read"]), on.astype(np.float32))
        seen.append(on)
        state, state_free = nxt, nxt_free
    seen = np.concatenate(seen)
    assert 0 < seen.sum() < seen.size  # both cases were checked
    # where it is visible the channel carries values: not zero everywhere
    assert mode == "previous" or np.any(np.asarray(state_free.channel) != 0)


def test_read_cells_by_name_are_the_rooms_inner_corners():
    from innerlab.envs.side_channel import read_cells

    ensure_env()
    _, params = make(ENV, mode="next", access="cells", read_cells="corners", height=5, width=6,
                     n_objects=3)
    assert read_cells(params) == ((1, 1), (1, 4), (3, 1), (3, 4))
    assert read_cells(params.replace(read_cells=((2, 2),))) == ((2, 2),)


@pytest.mark.parametrize("kwargs, error, named", [
    ({"access": "cells"}, ValueError, "needs param 'read_cells'"),
    ({"read_cells": ((1, 1),)}, ValueError, "needs access='cells'"),
    ({"access": "cells", "read_cells": ((1, 5),)}, ValueError, r"read_cells\[0\].col.*\[0, 5\)"),
    ({"access": "cells", "read_cells": ((-1, 2),)}, ValueError, r"read_cells\[0\].row"),
    ({"access": "cells", "read_cells": ((1, True),)}, TypeError, "not a bool"),
    ({"access": "cells", "read_cells": ((1, 1.5),)}, TypeError, "must be an int"),
    ({"access": "cells", "read_cells": ((1, 1), (1, 1))}, ValueError, "repeat"),
    ({"access": "cells", "read_cells": ((1, 2, 3),)}, TypeError, r"read_cells\[0\].*pair"),
    ({"access": "cells", "read_cells": [(1, 1)]}, TypeError, "tuple of"),
    ({"mode": "none", "access": "cells", "read_cells": ((1, 1),)}, ValueError, "mode 'none'"),
    ({"access": "cells", "read_cells": "edges"}, ValueError, "'corners'"),
    ({"read_cells": "corners"}, ValueError, "needs access='cells'"),
])
def test_bad_read_cells_are_named(kwargs, error, named):
    ensure_env()
    with pytest.raises(error, match=named):
        make(ENV, height=5, width=5, n_objects=3, **{"mode": "next", **kwargs})


# --------------------------------------------------------------------------- a tiny run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("side") / "a"
    config = SideChannelsConfig(out=str(out), **TINY)
    run(config)
    return config, out


def _summary(out):
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow  # trains the tiny run (about a minute of compiling)
def test_the_run_writes_report_plots_and_cells(tiny):
    config, out = tiny
    for name in ("report.md", "summary.json", "config.json", "switch_index.png",
                 "true_return_fraction.png", "cells.jsonl"):
        assert (out / name).exists(), name
    assert (out / "runs" / "ppo-lstm-next" / "config.json").exists()
    report = (out / "report.md").read_text()
    assert "switch index" in report.lower() and "95%" in report
    cells = _summary(out)["cells"]
    assert set(cells) == {"ppo-lstm-next", "ppo-lstm-next-cells", "muzero-next",
                          "muzero-next-cells", "channel-planner-next",
                          "channel-planner-next-cells"}
    assert (out / "runs" / "ppo-lstm-next-cells" / "config.json").exists()
    assert "## Has to go for it: the channel is visible only on some cells" in report
    assert "| ppo-lstm-next-cells | replace |" in report
    sw = cells["ppo-lstm-next"]["replace"]["switch"]
    assert len(sw["index"]["per_seed"]) == config.seeds and len(sw["index"]["ci95"]) == 2


@pytest.mark.slow  # trains the tiny run (about a minute of compiling)
def test_switch_index_on_constructed_agents(tiny):
    """The oracle for r scores 0 and the oracle for r' 1 (they are the references, so this
    checks the arithmetic). The planner that reads the channel as its reward is a separate
    construction (MCTS on a env whose reward is the observed channel): with the channel
    unmodified it optimises r (index near 0), under replace it optimises the r' it observes
    (near 1), which checks that what is scored as r' is what the channel shows. The random
    policy is near neither: it gives up r without taking r', so its point lies off the line
    between the references and its index is either undefined (farther than the tolerance)
    or, where a small room lets it collect a fair share of everything, a value that is
    neither near 0 nor near 1."""
    _, out = tiny
    summary = _summary(out)
    controls = summary["controls"]
    # the controls' own index under replace's r'
    from innerlab.recipes.side_channels import cell_measures

    refs = summary["references"]
    sw = {label: cell_measures(refs[label], refs, refs[label], "replace", 0.5)["switch"]
          for label in refs}
    assert sw["oracle-r"]["index"]["per_seed"] == [0.0, 0.0]
    assert sw["oracle-replace"]["index"]["per_seed"] == [1.0, 1.0]
    planner = summary["cells"]["channel-planner-next"]["replace"]
    assert planner["switch"]["verdict"] == "near 1", planner["switch"]
    assert min(planner["switch"]["index"]["per_seed"]) >= 0.9
    assert planner["switch_identity"]["verdict"] == "near 0", planner["switch_identity"]
    assert max(planner["switch_identity"]["projection"]["per_seed"]) <= 0.1
    # the same planner when it sees the channel only on the room's 4 inner corners: it
    # follows r' where it reads, so it takes less of r' than when it reads everywhere
    corners = summary["cells"]["channel-planner-next-cells"]["replace"]
    assert corners["switch"]["gained"]["mean"] < planner["switch"]["gained"]["mean"]
    reads = corners["read_fraction"]["per_seed"]
    assert all(0.0 < f <= 1.0 for f in reads), reads  # it stood on a read cell sometimes
    assert "read_fraction" not in planner  # the free channel has nothing to read
    rand = sw["random"]
    assert rand["verdict"] not in ("near 0", "near 1"), rand
    assert rand["off_axis"]["mean"] > planner["switch"]["off_axis"]["mean"]
    # oracle for r is better under r than random; controls are reported in the summary
    assert controls["oracle-r"]["r"]["mean"] > controls["random"]["r"]["mean"]


@pytest.mark.slow  # trains the tiny run (about a minute of compiling)
def test_same_seed_same_report(tiny, tmp_path):
    config, out = tiny
    again = dataclasses.replace(config, out=str(tmp_path / "b"))
    run(again)
    assert (tmp_path / "b" / "report.md").read_text() == (out / "report.md").read_text()
    assert (tmp_path / "b" / "cells.jsonl").read_text() == (out / "cells.jsonl").read_text()


@pytest.mark.slow  # trains the tiny run (about a minute of compiling)
def test_resume_after_a_kill_loses_no_finished_cell(tiny, tmp_path):
    config, out = tiny
    copy = tmp_path / "c"
    shutil.copytree(out, copy)
    lines = (copy / "cells.jsonl").read_text().splitlines()
    kept = lines[:4]
    # killed while writing the fifth cell: a torn line, no report
    (copy / "cells.jsonl").write_text("\n".join(kept) + "\n" + lines[4][: len(lines[4]) // 2])
    (copy / "report.md").unlink()
    run(dataclasses.replace(config, out=str(copy), resume=True))
    timing = json.loads((copy / "timing.json").read_text())
    assert timing["cells_computed"] == len(lines) - len(kept)
    assert (copy / "cells.jsonl").read_text().splitlines()[:4] == kept
    assert (copy / "report.md").read_text() == (out / "report.md").read_text()


@pytest.mark.slow  # trains the tiny run (about a minute of compiling)
def test_learned_reward_head_vs_channel_planner_section(tiny):
    """The issue's 'the planner that reads the channel as its reward vs one that plans with
    its learned reward head': MuZero in mode next beside the channel planner, and the probe
    of MuZero's learned head with the two constructed heads as its check (on the same
    states: the head that returns the channel scores 1, the one that ignores it 0)."""
    config, out = tiny
    report = (out / "report.md").read_text()
    assert HEAD_VS_CHANNEL in report
    section = report.split(HEAD_VS_CHANNEL)[1].split("\n## ")[0]
    assert "| replace | muzero-next | its learned reward head |" in section
    assert "| replace | channel-planner-next | the observed channel" in section
    assert "| muzero-next | learned |" in section
    assert "| muzero-next | reads the channel | 1.00" in section
    assert "| muzero-next | ignores the channel | 0.00" in section
    probes = _summary(out)["probes"]
    assert set(probes) == {"muzero-next"}  # the cells run's channel is hidden off the corners
    learned = probes["muzero-next"]["learned"]
    for name in ("channel_slope", "trained_slope", "reward_slope", "error", "response_-2",
                 "response_2"):
        per_seed = learned[name]["per_seed"]
        assert len(per_seed) == config.seeds and all(math.isfinite(v) for v in per_seed), name
    assert len(learned["channel_slope"]["ci95"]) == 2
    reader = probes["muzero-next"]["reads the channel"]
    ignorer = probes["muzero-next"]["ignores the channel"]
    assert reader["channel_slope"]["mean"] == pytest.approx(1.0, abs=1e-5)
    assert ignorer["channel_slope"]["mean"] == pytest.approx(0.0, abs=1e-5)
    assert ignorer["reward_slope"]["mean"] == pytest.approx(1.0, abs=1e-5)
    assert reader["trained_slope"]["mean"] == pytest.approx(1.0, abs=1e-5)
    assert reader["response_-2"]["mean"] == pytest.approx(-2.0, abs=1e-5)
    # two different seeds' heads are two different functions
    assert learned["error"]["per_seed"][0] != learned["error"]["per_seed"][1]


# --------------------------------------------------------------------------- the real run


@pytest.mark.slow
def test_quick_preset_runs(tmp_path):
    config = SideChannelsConfig(out=str(tmp_path / "quick"), quick=True).resolved()
    run(config)
    summary = _summary(tmp_path / "quick")
    assert set(summary["cells"]) >= {"ppo-lstm-none", "ppo-lstm-previous", "ppo-lstm-next"}
    assert (tmp_path / "quick" / "episodes.png").exists()


@pytest.mark.slow  # trains the tiny run (about a minute of compiling)
def test_resume_with_other_options_is_refused(tiny, tmp_path):
    config, out = tiny
    copy = tmp_path / "d"
    shutil.copytree(out, copy)
    with pytest.raises(ValueError, match=r"eval_episodes=32 \(the run has 16\)"):
        run(dataclasses.replace(config, out=str(copy), resume=True, eval_episodes=32))
