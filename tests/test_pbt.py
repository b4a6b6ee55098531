"""Population-based training (innerlab.agents.pbt): the exploit/explore rule on constructed
populations (who copies whom, perturbation factors), the fitness window, same seed same
history, bad options, kill-and-resume of an agent population, and the Ray Tune backend."""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from innerlab.agents import pbt

LR = {"learning_rate": 1.0}
# these programs are tiny: compiling dominates, and XLA's cheapest level compiles fastest
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


# ------------------------------------------------------------------------------ options


@pytest.mark.parametrize("field, value, match", [
    ("population", 1, "population must be an int >= 2"),
    ("population", 0, "population must be an int >= 2"),
    ("interval", 0, "interval must be an int >= 1"),
    ("window", 0, "window must be an int >= 1"),
    ("truncation", 0.0, r"truncation must be a fraction in \(0, 0.5\]"),
    ("truncation", 0.6, r"truncation must be a fraction in \(0, 0.5\]"),
    ("truncation", -0.1, r"truncation must be a fraction in \(0, 0.5\]"),
    ("factors", (), "factors must be finite numbers > 0"),
    ("factors", (0.8, -1.0), "factors must be finite numbers > 0"),
    ("hypers", {"learning_rate": float("nan")}, "hypers must map names to finite numbers"),
])
def test_bad_options_are_clear_errors(field, value, match):
    with pytest.raises(ValueError, match=match):
        pbt.PBTConfig(**{field: value})


def test_truncation_count_is_ceil_capped_at_half():
    # Ray Tune's PopulationBasedTraining counts the same way (ceil, at most half)
    cases = {(10, 0.2): 2, (2, 0.2): 1, (3, 0.5): 1, (5, 0.5): 2, (100, 0.2): 20, (7, 0.25): 2,
             (25, 0.28): 8}  # 25 * 0.28 is 7.000000000000001 in floats; Ray ceils it to 8
    for (p, t), n in cases.items():
        assert pbt.truncation_count(p, t) == n, (p, t)


# ------------------------------------------------------------------------------ the rule


def test_bottom_copies_top_and_everyone_else_keeps_its_own():
    config = pbt.PBTConfig(population=10, truncation=0.2, hypers=LR)
    fitness = jnp.array([5.0, 3.0, 9.0, 1.0, 7.0, 2.0, 8.0, 4.0, 6.0, 0.5])
    hypers = {"learning_rate": jnp.arange(10, dtype=jnp.float32) + 1.0}
    rule = jit(lambda k: pbt.exploit_explore(k, fitness, hypers, config))
    for seed in range(10):
        ex = rule(jax.random.key(seed))
        source, factor = np.asarray(ex.source), np.asarray(ex.factor)
        bottom, top = {9, 3}, {2, 6}  # fitness 0.5 and 1; 9 and 8
        for i in range(10):
            if i in bottom:
                assert source[i] in top
                assert factor[i, 0] in (np.float32(0.8), np.float32(1.2))
            else:
                assert source[i] == i and factor[i, 0] == 1.0
        expected = np.asarray(hypers["learning_rate"])[source] * factor[:, 0]
        np.testing.assert_allclose(np.asarray(ex.hypers["learning_rate"]), expected)


def test_one_factor_gives_an_exact_answer():
    config = pbt.PBTConfig(population=4, truncation=0.25, factors=(2.0,),
                           hypers={"a": 1.0, "b": 1.0})
    ex = jit(pbt.exploit_explore, static_argnums=3)(
        jax.random.key(0), jnp.array([3.0, -1.0, 10.0, 2.0]),
        {"a": jnp.array([1.0, 2.0, 3.0, 4.0]), "b": jnp.array([10.0, 20.0, 30.0, 40.0])}, config)
    assert np.asarray(ex.source).tolist() == [0, 2, 2, 3]
    assert np.asarray(ex.hypers["a"]).tolist() == [1.0, 6.0, 3.0, 4.0]
    assert np.asarray(ex.hypers["b"]).tolist() == [10.0, 60.0, 30.0, 40.0]


def test_nan_fitness_ranks_lowest_and_ties_break_by_index():
    config = pbt.PBTConfig(population=4, truncation=0.25, factors=(1.0,), hypers=LR)
    ex = pbt.exploit_explore(jax.random.key(0), jnp.array([1.0, jnp.nan, 5.0, 1.0]),
                             {"learning_rate": jnp.ones(4)}, config)
    assert np.asarray(ex.source).tolist() == [0, 2, 2, 3]
    ex = pbt.exploit_explore(jax.random.key(0), jnp.array([2.0, 2.0, 2.0, 2.0]),
                             {"learning_rate": jnp.ones(4)}, config)
    assert np.asarray(ex.source).tolist() == [3, 1, 2, 3]  # stable: member 0 ranks lowest


def test_donors_and_factors_are_drawn_uniformly():
    config = pbt.PBTConfig(population=10, truncation=0.2, hypers=LR)
    fitness = jnp.arange(10.0)
    hypers = {"learning_rate": jnp.ones(10)}
    run = jit(jax.vmap(lambda k: pbt.exploit_explore(k, fitness, hypers, config)))
    ex = run(jax.random.split(jax.random.key(1), 2000))
    donors = np.asarray(ex.source)[:, :2].ravel()
    factors = np.asarray(ex.factor)[:, :2, 0].ravel()
    assert set(donors) == {8, 9} and abs(np.mean(donors == 9) - 0.5) < 0.05
    assert abs(np.mean(np.isclose(factors, 1.2)) - 0.5) < 0.05
    assert np.all(np.asarray(ex.source)[:, 2:] == np.arange(2, 10))


def test_exploit_explore_checks_the_population_size():
    config = pbt.PBTConfig(population=4, hypers=LR)
    with pytest.raises(ValueError, match=r"shape \[4\]"):
        pbt.exploit_explore(jax.random.key(0), jnp.zeros(3), {"learning_rate": jnp.ones(3)},
                            config)


# ------------------------------------------------------------------------------ fitness window


def test_window_keeps_the_last_k_episodes():
    buf, count = jnp.zeros(3), jnp.int32(0)
    assert np.isnan(float(pbt.window_fitness(buf, count)))
    buf, count = pbt.window_push(buf, count, jnp.float32(1.0), 1)
    assert float(pbt.window_fitness(buf, count)) == 1.0
    buf, count = pbt.window_push(buf, count, jnp.float32(4.0), 1)
    assert float(pbt.window_fitness(buf, count)) == 2.5
    buf, count = pbt.window_push(buf, count, jnp.float32(jnp.nan), 0)  # no episode ended
    assert float(pbt.window_fitness(buf, count)) == 2.5 and int(count) == 2
    buf, count = pbt.window_push(buf, count, jnp.float32(7.0), 2)  # two episodes of mean 7
    assert np.asarray(buf).tolist() == [4.0, 7.0, 7.0] and int(count) == 3
    buf, count = pbt.window_push(buf, count, jnp.float32(-1.0), 10)  # more than k: all new
    assert float(pbt.window_fitness(buf, count)) == -1.0


# ------------------------------------------------------------------------------ in-graph


class Toy(eqx.Module):
    """theta: a learned value that grows by its learning rate; s: an env-side tag."""

    theta: jax.Array
    s: jax.Array
    key: jax.Array


def _toy_member() -> pbt.Member:
    def init(key):
        k1, k2 = jax.random.split(key)
        return Toy(jax.random.uniform(k1), jax.random.uniform(k2) + 10.0,
                   jax.random.key_data(key))

    def iteration(state, hypers):
        theta = state.theta + hypers["learning_rate"]
        return Toy(theta, state.s, state.key), {"episode_return": theta,
                                                 "episodes": jnp.float32(1.0)}

    return pbt.Member(init, iteration, learned=("theta",), env_fields=("s",))


@pytest.fixture(scope="module")
def toy():
    member = _toy_member()
    config = pbt.PBTConfig(population=5, interval=2, window=2, truncation=0.2,
                           factors=(0.5,), hypers={"learning_rate": 0.1})
    run = jit(lambda pop: pbt.run_generations(member, config, pop, 3))
    return member, config, run


def test_generation_copies_learned_fields_only(toy):
    member, config, run = toy
    pop0 = pbt.init_population(member, config, jax.random.key(0))
    pop, rec = run(pop0)
    theta0, s0 = np.asarray(pop0.members.theta), np.asarray(pop0.members.s)
    src = np.asarray(rec["source"][0])
    worst, best = int(np.argmin(theta0)), int(np.argmax(theta0))
    assert src[worst] == best and sum(src != np.arange(5)) == 1
    # the env side never moves; the learned side was copied, and so was the fitness record
    np.testing.assert_array_equal(np.asarray(pop.members.s), s0)
    np.testing.assert_allclose(np.asarray(rec["fitness"][0]), theta0 + 0.15, rtol=1e-6)
    lr = np.asarray(rec["hypers"]["learning_rate"][0])
    assert lr[worst] == pytest.approx(0.05) and np.sum(lr != np.float32(0.1)) == 1
    hist = pbt.PBTHistory.from_records(rec)
    assert (0, worst, best) in hist.copies()
    again = pbt.PBTHistory.from_rows(hist.rows())
    np.testing.assert_array_equal(again.source, hist.source)


def test_same_seed_same_history_and_another_seed_differs(toy):
    member, config, run = toy
    a = run(pbt.init_population(member, config, jax.random.key(3)))[1]
    b = run(pbt.init_population(member, config, jax.random.key(3)))[1]
    c = run(pbt.init_population(member, config, jax.random.key(4)))[1]
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(a["fitness"]), np.asarray(c["fitness"]))


def test_control_never_copies_and_swap_moves_only_envs():
    member = _toy_member()
    base = dict(population=4, interval=3, hypers={"learning_rate": 0.1})
    control = pbt.PBTConfig(**base, select=False)
    pop = pbt.init_population(member, control, jax.random.key(0))
    out, rec = jit(lambda p: pbt.run_generations(member, control, p, 2))(pop)
    assert np.all(np.asarray(rec["source"]) == np.arange(4))
    np.testing.assert_allclose(np.asarray(out.members.theta),
                               np.asarray(pop.members.theta) + 0.6, rtol=1e-6)
    swap = pbt.PBTConfig(**base, select=False, swap_envs=True)
    out = jit(lambda p: pbt.run_generations(member, swap, p, 2))(pop)[0]
    s0, s1 = np.asarray(pop.members.s), np.asarray(out.members.s)
    assert sorted(s0) == sorted(s1) and not np.array_equal(s0, s1)
    np.testing.assert_allclose(np.asarray(out.members.theta),
                               np.asarray(pop.members.theta) + 0.6, rtol=1e-6)


# ------------------------------------------------------------------------------ agents


def _tiny_agent():
    import innerlab.agents as agents

    return agents.make("ppo-lstm", env="BoostChain-v0",
                       env_overrides={"height": 4, "width": 4, "max_steps": 6},
                       width=8, num_envs=4, num_steps=8, num_minibatches=1, update_epochs=1,
                       total_steps=32)


def test_agent_member_rejects_unknown_hypers_and_kinds():
    import innerlab.agents as agents

    with pytest.raises(ValueError, match="not options of kind 'ppo-lstm'"):
        pbt.agent_member(_tiny_agent(), pbt.PBTConfig(population=2, hypers={"gamma": 0.9}))
    ibp = agents.make("ibp", total_steps=64)
    with pytest.raises(ValueError, match="supports the kinds"):
        pbt.agent_member(ibp, pbt.PBTConfig(population=2))


@pytest.mark.slow  # compiles a PPO population (about a minute on 2 cores)
def test_agent_population_kill_and_resume_is_bit_identical(tmp_path):
    agent = _tiny_agent()
    config = pbt.PBTConfig(population=3, interval=2, window=2, truncation=0.34,
                           hypers={"learning_rate": 3e-3, "ent_coef": 0.01})
    whole = pbt.train_population(agent, config, 4, seed=1, chunk=2)
    # killed before its first checkpoint: the directory holds its config only
    assert pbt.train_population(agent, config, 4, seed=1, chunk=2, run_dir=tmp_path / "r",
                                max_chunks=0).history is None
    assert {p.name for p in (tmp_path / "r").iterdir()} <= {"config.json", "metrics.jsonl"}
    with pytest.raises(FileExistsError):  # not another population's directory, though
        pbt.train_population(agent, config, 4, seed=3, chunk=2, run_dir=tmp_path / "r")
    part = pbt.train_population(agent, config, 4, seed=1, chunk=2, run_dir=tmp_path / "r",
                                max_chunks=1)
    assert part.history.fitness.shape == (2, 3)
    rest = pbt.train_population(agent, config, 4, seed=1, chunk=2, run_dir=tmp_path / "r")
    np.testing.assert_array_equal(rest.history.fitness, whole.history.fitness)
    np.testing.assert_array_equal(rest.history.source, whole.history.source)
    for x, y in zip(jax.tree.leaves(eqx.filter(rest.state, eqx.is_array)),
                    jax.tree.leaves(eqx.filter(whole.state, eqx.is_array)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert rest.env_steps == 4 * 2 * 32
    with pytest.raises(ValueError, match="cannot resume"):
        pbt.train_population(agent, config, 4, seed=2, chunk=2, run_dir=tmp_path / "r")
    rest.policy(rest.best())  # a trained member acts as a Policy


@pytest.mark.slow  # starts Ray (about a minute on 2 loaded cores)
def test_ray_backend_runs_a_two_trial_pbt(tmp_path):
    pytest.importorskip("ray.tune")
    from innerlab.envs.rollout import bind
    from innerlab.recipes.cross_episodic import krueger_member

    config = pbt.PBTConfig(population=2, interval=5, window=5, truncation=0.5,
                           hypers={"learning_rate": 0.01})
    try:
        res = pbt.train_population_ray(bind(krueger_member, -0.5, 1.0), config, 4,
                                       out=tmp_path, num_cpus=2)
    finally:
        import ray

        ray.shutdown()
    hist = res.history
    assert hist.backend == "ray" and hist.fitness.shape == (4, 2)
    assert res.state.members.theta.shape == (2,)  # every trial's last checkpoint
    assert np.isfinite(hist.fitness).all()
    # generation 1: the lower member copies the other, its learning rate x0.8 or x1.2
    g0 = hist.fitness[0]
    low, high = (0, 1) if g0[0] < g0[1] or (g0[0] == g0[1]) else (1, 0)
    assert hist.source[0, low] == high and hist.source[0, high] == high
    assert hist.hypers["learning_rate"][0, low] in (pytest.approx(0.008), pytest.approx(0.012))
    assert hist.hypers["learning_rate"][0, high] == pytest.approx(0.01)


# the first attempt of the resume test: the two-trial game under Ray, in its own process
_RAY_FIRST_ATTEMPT = """
import sys
from innerlab.agents import pbt
from innerlab.envs.rollout import bind
from innerlab.recipes.cross_episodic import krueger_member
config = pbt.PBTConfig(population=2, interval=5, window=5, truncation=0.5,
                       hypers={"learning_rate": 0.01})
pbt.train_population_ray(bind(krueger_member, -0.5, 1.0), config, int(sys.argv[2]),
                         out=sys.argv[1], num_cpus=2)
"""


def _reports(out) -> dict[str, int]:
    """Trial id -> the last generation it reported (from the backend's history files)."""
    last: dict[str, int] = {}
    for f in (out / "history").glob("*.json"):
        trial, generation = f.stem.rsplit("-", 1)
        last[trial] = max(last.get(trial, 0), int(generation))
    return last


@pytest.mark.slow  # starts Ray twice (about two minutes on 2 loaded cores)
def test_ray_backend_resumes_a_killed_experiment(tmp_path):
    pytest.importorskip("ray.tune")
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from innerlab.envs.rollout import bind
    from innerlab.recipes.cross_episodic import krueger_member

    generations, kill_at = 8, 3
    out = tmp_path / "ray"
    # Ray saves its experiment state at every step here, so that the state on disk when
    # the driver is killed holds the generations reported up to then
    env = {**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "0"}
    root = Path(__file__).resolve().parents[1]
    first = subprocess.Popen([sys.executable, "-c", _RAY_FIRST_ATTEMPT, str(out),
                              str(generations)], cwd=root, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # kill the driver (and the Ray processes it started) once a trial reached kill_at: the
    # other is then most often one generation behind (the case a stock restore hangs on)
    try:
        deadline = time.monotonic() + 400
        while len(_reports(out)) < 2 or max(_reports(out).values()) < kill_at:
            assert first.poll() is None, "the first attempt ended before it was killed"
            assert time.monotonic() < deadline, "the first attempt made no progress"
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed = _reports(out)
    print("reported before the kill:", killed)
    assert max(killed.values()) < generations  # killed part-way
    before = {f.name: f.stat().st_mtime_ns for f in (out / "history").glob("*.json")}

    member = bind(krueger_member, -0.5, 1.0)
    config = pbt.PBTConfig(population=2, interval=5, window=5, truncation=0.5,
                           hypers={"learning_rate": 0.01})
    try:
        with pytest.raises(ValueError, match="pass resume=True"):
            pbt.train_population_ray(member, config, generations, out=out, num_cpus=2)
        with pytest.raises(ValueError, match="cannot resume"):
            pbt.train_population_ray(member, config, generations + 1, out=out, num_cpus=2,
                                     resume=True)
        res = pbt.train_population_ray(member, config, generations, out=out, num_cpus=2,
                                       resume=True)
        after = {f.name: f.stat().st_mtime_ns for f in (out / "history").glob("*.json")}
        # a finished experiment resumed: nothing runs again, the same history comes back
        again = pbt.train_population_ray(member, config, generations, out=out, num_cpus=2,
                                         resume=True)
    finally:
        import ray

        ray.shutdown()
    hist = res.history
    assert hist.backend == "ray" and hist.fitness.shape == (generations, 2)
    assert np.isfinite(hist.fitness).all()  # every generation of both trials, the killed ones too
    assert np.isfinite(hist.hypers["learning_rate"]).all()
    assert set(np.unique(hist.source)) <= {0, 1}
    assert res.state.members.theta.shape == (2,)  # every trial's last checkpoint
    # the same trials went on (a fresh start would have new trial ids and clear the files)
    assert set(_reports(out)) == set(killed) and set(_reports(out).values()) == {generations}
    # and did not redo the generations before the kill: their reports are the first run's
    for trial in killed:
        for g in range(1, min(killed.values())):
            name = f"{trial}-{g:05d}.json"
            assert after[name] == before[name], f"{name} was reported again"
        redone = sum(after[f"{trial}-{g:05d}.json"] != before.get(f"{trial}-{g:05d}.json")
                     for g in range(1, generations + 1))
        assert redone <= generations - min(killed.values()) + 1
    np.testing.assert_array_equal(again.history.fitness, hist.fitness)
    np.testing.assert_array_equal(again.history.source, hist.source)
    assert {f.name: f.stat().st_mtime_ns for f in (out / "history").glob("*.json")} == after


class _Controller:
    """The part of Ray Tune's controller a PBT scheduler talks to, for two trials played
    by :func:`_play` (no Ray cluster): pausing, and saving checkpoints, which only a
    running trial (one with an actor) can do."""

    search_alg = None

    def __init__(self, trials):
        self.trials = trials

    def get_trials(self):
        return self.trials

    def get_live_trials(self):
        return [t for t in self.trials if not t.is_finished()]

    def pause_trial(self, trial, should_checkpoint=True):
        trial.set_status(trial.PAUSED)

    def _schedule_trial_save(self, trial, result=None):
        # Ray schedules the save on the trial's actor; a trial restored but not started
        # again has none, and the exploit waiting for the save never returns
        assert trial.status == trial.RUNNING, f"asked {trial} without an actor to save"
        return trial.checkpoint


def _restored_trials(times):
    """Trials as ``Tuner.restore`` brings them back: pending, with the last result and
    checkpoint of the killed run."""
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult
    from ray.tune.experiment import Trial

    trials = []
    for member, time in enumerate(times):
        trial = Trial("member", config={"member": member, "learning_rate": 0.01}, stub=True)
        result = {"training_iteration": time, "fitness": float(member)}
        trial.run_metadata.last_result = result
        trial.run_metadata.checkpoint_manager._latest_checkpoint_result = _TrainingResult(
            checkpoint=Checkpoint(f"/ckpt/{member}-{time}"), metrics=result)
        trials.append(trial)
    return trials


def _play(scheduler, trials, generations, max_steps=100):
    """Drive ``scheduler`` as Tune's loop does, one trial at a time: returns each
    trial's generations reported and the generations at which the population was
    synchronised (an exploit), or raises when no trial can run (a hang)."""
    from ray.tune.schedulers import TrialScheduler

    scheduler._log_config = False  # it writes a log beside each trial's (absent) directory
    controller = _Controller(trials)
    for t in trials:
        scheduler.on_trial_add(controller, t)
    index = {t: i for i, t in enumerate(trials)}  # an exploit copies the donor's config
    reported = {i: [] for i in range(len(trials))}
    syncs, running = [], None
    for _ in range(max_steps):
        if all(t.is_finished() for t in trials):
            return reported, syncs
        if running is None:
            running = scheduler.choose_trial_to_run(controller)
            assert running is not None, f"no trial can run: hung at {reported}"
            running.set_status(running.RUNNING)
            if running.last_result["training_iteration"] >= generations:
                running.set_status(running.TERMINATED)  # its function returns at once
                running = None
                continue
        time = running.last_result["training_iteration"] + 1
        result = {"training_iteration": time, "fitness": float(index[running])}
        before = scheduler._num_perturbations + scheduler._num_checkpoints
        decision = scheduler.on_trial_result(controller, running, result)
        if scheduler._num_perturbations + scheduler._num_checkpoints > before:
            syncs.append(time)
        running.run_metadata.last_result = result
        reported[index[running]].append(time)
        if decision == TrialScheduler.CONTINUE and time >= generations:
            running.set_status(running.TERMINATED)
            running = None
        elif decision != TrialScheduler.CONTINUE:
            if running.status == running.RUNNING:
                running.set_status(running.PAUSED)
            running = None
    raise AssertionError(f"did not finish in {max_steps} steps: {reported}")


def test_resumable_pbt_restores_trials_one_generation_apart():
    pytest.importorskip("ray.tune")
    from ray.tune.schedulers import PopulationBasedTraining

    config = pbt.PBTConfig(population=2, interval=5, window=5, truncation=0.5,
                           hypers={"learning_rate": 0.01})
    sched = pbt.ray_scheduler(config)
    # a fresh experiment: a synchronisation every generation, as Ray's own
    reported, syncs = _play(sched, _restored_trials([0, 0]), generations=4)
    assert syncs == [1, 2, 3, 4] and reported == {0: [1, 2, 3, 4], 1: [1, 2, 3, 4]}
    # killed with member 1 waiting at generation 3 for member 0 at 2: the stock scheduler
    # waits for generation 1 and never runs a trial again
    kwargs = {k: getattr(sched, a) for k, a in (
        ("time_attr", "_time_attr"), ("metric", "_metric"), ("mode", "_mode"),
        ("perturbation_interval", "_perturbation_interval"),
        ("hyperparam_mutations", "_hyperparam_mutations"),
        ("quantile_fraction", "_quantile_fraction"), ("synch", "_synch"))}
    stock = PopulationBasedTraining(**kwargs)
    with pytest.raises(AssertionError, match="no trial can run"):
        _play(stock, _restored_trials([2, 3]), generations=6)
    # told the clock (3), it would exploit when member 0 reaches 3, asking the pending
    # member 1 for a checkpoint
    class ClockOnly(PopulationBasedTraining):
        def on_trial_add(self, tune_controller, trial):
            super().on_trial_add(tune_controller, trial)
            time = trial.last_result["training_iteration"]
            self._save_trial_state(self._trial_state[trial], time, trial.last_result, trial)
            self._next_perturbation_sync = min(
                s.last_train_time for s in self._trial_state.values()) + 1

    stock = ClockOnly(**kwargs)
    with pytest.raises(AssertionError, match="without an actor"):
        _play(stock, _restored_trials([2, 3]), generations=6)
    # resumable: both run again, no exploit until both reached generation 4, then every one
    reported, syncs = _play(pbt.ray_scheduler(config), _restored_trials([2, 3]),
                            generations=6)
    assert reported == {0: [3, 4, 5, 6], 1: [4, 5, 6]}
    assert syncs == [4, 5, 6]
    # killed with member 1 waiting at the last generation: member 0 finishes, no exploit
    reported, syncs = _play(pbt.ray_scheduler(config), _restored_trials([5, 6]),
                            generations=6)
    assert reported == {0: [6], 1: []} and syncs == []
