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
