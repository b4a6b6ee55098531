"""The Imagination-based Planner: layer outputs, strategies, gradients, determinism, and the
IBP agent imagining with the true dynamics (training, resume and learning are the agent
contract of tests/test_agents.py)."""

import json
import pathlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import innerlab.agents as agents
import innerlab.envs as envs
from innerlab.planners import IBP, PlannerOutput
from innerlab.planners.ibp import (
    LatentImagination,
    TrueImagination,
    VectorImagination,
    make_imagination,
)
from innerlab.planners.ibp_train import IBPTrainConfig
from innerlab.reward_models import aggregate

B = 8


@pytest.fixture(scope="module")
def spaceship():
    return envs.make("Spaceship-v0")


@pytest.fixture(scope="module")
def ship_obs(spaceship):
    env, params = spaceship
    return jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.key(0), B), params)


@pytest.fixture(scope="module")
def ship_model(spaceship):
    env, params = spaceship
    return make_imagination(env, params, key=jax.random.key(1), width=16)


@pytest.fixture(scope="module")
def ship_ibp(ship_model):
    return IBP(ship_model, "n-step", 3, hidden=16, width=16, key=jax.random.key(2))


@pytest.fixture(scope="module")
def ship_layer(ship_ibp):
    return eqx.filter_jit(lambda ibp, obs, key: ibp(obs, key))


# --------------------------------------------------------------------------- configs


def test_bad_configs_rejected(ship_model):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="strategy"):
        IBP(ship_model, "beam", 2, key=key)
    with pytest.raises(ValueError, match="max_imaginations"):
        IBP(ship_model, "tree", -1, key=key)
    with pytest.raises(TypeError, match="max_imaginations"):
        IBP(ship_model, "tree", 1.5, key=key)
    with pytest.raises(TypeError, match="imagination model"):
        IBP(object(), "tree", 1, key=key)
    with pytest.raises(ValueError, match="strategy"):
        IBPTrainConfig(strategy="bfs")
    with pytest.raises(ValueError, match="max_imaginations"):
        IBPTrainConfig(max_imaginations=-3)
    with pytest.raises(ValueError, match="imagination"):
        IBPTrainConfig(imagination="oracle")
    with pytest.raises(ValueError, match="how"):
        VectorImagination(3, 2, how="median", key=key)


@pytest.mark.parametrize("strategy", ["1-step", "n-step", "tree"])
def test_route_masks_encode_strategies(ship_model, strategy):
    ibp = IBP(ship_model, strategy, 3, hidden=8, width=8, key=jax.random.key(0))
    for i in range(3):
        mask = np.asarray(ibp.route_mask(jnp.int32(i)))
        assert mask[0]  # acting is always allowed
        nodes = np.flatnonzero(mask[1:])
        expected = {"1-step": [0], "n-step": [i], "tree": list(range(i + 1))}[strategy]
        assert nodes.tolist() == expected


# --------------------------------------------------------------------------- the layer


def test_continuous_layer_output(ship_layer, ship_ibp, ship_obs):
    obs, _ = ship_obs
    out = ship_layer(ship_ibp, obs, jax.random.key(3))
    assert isinstance(out, PlannerOutput)
    assert out.action.shape == (B, 2) and bool(jnp.all(jnp.abs(out.action) <= 1))
    np.testing.assert_allclose(out.action_weights.sum(-1), 1.0)
    assert out.value.shape == (B,)
    imag, routes = np.asarray(out.stats["imaginations"]), np.asarray(out.stats["routes"])
    assert routes.shape == (B, 3) and np.all((imag >= 0) & (imag <= 3))
    for r, n in zip(routes, imag, strict=True):
        # n-step: imagine from the real state, then always from the last imagined one
        taken = r[r >= 0]
        assert taken[:n].tolist() == list(range(1, n + 1))
        assert n == 3 or taken[n] == 0  # then act, unless the budget ran out
        assert np.all(r[len(taken):] == -1)
    assert imag.max() > 0  # an untrained manager imagines sometimes


def test_same_seed_same_result(ship_layer, ship_ibp, ship_obs):
    obs, _ = ship_obs
    a = ship_layer(ship_ibp, obs, jax.random.key(7))
    b = ship_layer(ship_ibp, obs, jax.random.key(7))
    c = ship_layer(ship_ibp, obs, jax.random.key(8))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.stats["routes"], c.stats["routes"])


def test_zero_budget_is_model_free(ship_model, ship_obs):
    obs, _ = ship_obs
    ibp = IBP(ship_model, "tree", 0, hidden=16, width=16, key=jax.random.key(2))
    out = ibp(obs, jax.random.key(0))
    assert out.stats["routes"].shape == (B, 0)
    assert int(out.stats["imaginations"].sum()) == 0


def _to_f64(tree):
    return jax.tree.map(
        lambda x: x.astype(jnp.float64) if eqx.is_array(x) and x.dtype == jnp.float32 else x, tree
    )


def test_controller_memory_gradient_matches_finite_differences(ship_ibp, ship_obs):
    """d(task loss)/d(controller, memory) along a random direction vs central differences (f64)."""
    with jax.enable_x64(True):
        ibp64, obs = _to_f64(ship_ibp), _to_f64(ship_obs[0])
        keys = jax.random.split(jax.random.key(11), B)
        select = lambda m: (m.controller, m.memory)
        params, rest = eqx.partition(select(ibp64), eqx.is_array)
        leaves, treedef = jax.tree.flatten(params)
        dir_keys = jax.random.split(jax.random.key(5), len(leaves))
        direction = jax.tree.unflatten(treedef, [
            jax.random.normal(k, x.shape, jnp.float64)
            for k, x in zip(dir_keys, leaves, strict=True)
        ])

        def task_loss(ibp):
            trace = jax.vmap(ibp.plan)(obs, keys)
            step = lambda c, a: ibp.model.step(c, a, None)
            _, r_hat = jax.vmap(step)(trace.carry, trace.action_vec)
            return -jnp.mean(r_hat), trace.imaginations

        @jax.jit
        def along(t):
            moved = jax.tree.map(lambda p, d: p + t * d, params, direction)
            return task_loss(eqx.tree_at(select, ibp64, eqx.combine(moved, rest)))

        grad = jax.jit(jax.grad(lambda t: along(t)[0]))(0.0)
        eps = 1e-5
        (up, n_up), (down, n_down) = along(eps), along(-eps)
        np.testing.assert_array_equal(n_up, n_down)  # same imagination routes either side
        assert int(n_up.sum()) > 0  # and the path includes imagined steps
        fd = (up - down) / (2 * eps)
        assert abs(float(grad)) > 1e-6
        np.testing.assert_allclose(grad, fd, rtol=1e-4)


def test_true_imagination_matches_env():
    env, params = envs.make("Spaceship-v0", control_noise=0.0)
    true = TrueImagination(env, params)
    state = env.sample_state(jax.random.key(0), params)
    carry = true.initial(env.observe(state, params))  # state recovered from the observation
    action = jnp.array([0.4, -0.6])
    nxt, reward = true.step(carry, action, jax.random.key(1))
    np.testing.assert_allclose(reward, env.true_reward(state, action, params), rtol=1e-5)
    np.testing.assert_allclose(true.features(nxt), env.observe(nxt, params))


# --------------------------------------------------------------------------- discrete


@pytest.fixture(scope="module")
def orchard():
    return envs.make("Orchard-v0", height=5, width=5, n_objects=3, max_steps=10)


def test_discrete_layer_world_model_and_straight_through_gradient(orchard):
    """One jitted program: layer output, LatentImagination == WorldModel step, ST gradient."""
    env, params = orchard
    obs, _ = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.key(0), 4), params)
    model = make_imagination(env, params, key=jax.random.key(1), width=8, latent_dim=8,
                             num_members=3, encoder="mlp", how="pessimistic", k=0.5)
    assert isinstance(model, LatentImagination)
    ibp = IBP(model, "tree", 2, hidden=8, width=8, key=jax.random.key(2))
    keys = jax.random.split(jax.random.key(4), 4)

    def task_loss(controller):
        m = eqx.tree_at(lambda x: x.controller, ibp, controller)
        trace = jax.vmap(m.plan)(obs, keys)
        _, r_hat = jax.vmap(lambda c, a: model.step(c, a, None))(trace.carry, trace.action_vec)
        return -jnp.mean(r_hat), trace.action_vec

    @eqx.filter_jit
    def run(ibp):
        out = ibp(obs, jax.random.key(3))
        (_, action_vec), grads = eqx.filter_value_and_grad(task_loss, has_aux=True)(ibp.controller)
        latent = model.initial(obs[0])
        mixed = model.step(latent, jax.nn.one_hot(2, 4), None)
        direct = model.world_model.step(latent, jnp.int32(2))
        return out, action_vec, grads, mixed, direct

    out, action_vec, grads, (nxt, reward), (want_next, preds) = run(ibp)
    assert out.action.shape == (4,) and out.action.dtype == jnp.int32
    np.testing.assert_allclose(out.action_weights.sum(-1), 1.0, rtol=1e-5)
    # forward pass: one-hot samples (up to float rounding of hard + soft - soft)
    onehot = jax.nn.one_hot(jnp.argmax(action_vec, -1), 4)
    np.testing.assert_allclose(action_vec, onehot, atol=1e-6)
    flat = jnp.concatenate([g.reshape(-1) for g in jax.tree.leaves(grads)])
    assert bool(jnp.all(jnp.isfinite(flat))) and float(jnp.abs(flat).sum()) > 0
    np.testing.assert_allclose(nxt, want_next, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reward, aggregate(preds, "pessimistic", 0.5), rtol=1e-5)


# --------------------------------------------------------------------------- the agent

TRUE_SHIP = dict(env="Spaceship-v0", imagination="true", num_envs=4, width=8, hidden=8,
                 max_imaginations=1)


def test_true_imagination_agent_plans_from_the_env_state():
    """With ``imagination="true"`` the IBP policy is handed (obs, state) by the rollout and
    imagines from that state; its real-step memory update and whole episodes run."""
    config = agents.make("ibp", **TRUE_SHIP, total_steps=16)
    env, params = config.make_env()
    lrn = agents.learner(config)
    policy = lrn.policy(lrn.init(jax.random.key(0)), True)
    assert policy.observes == "obs_state"
    obs, states = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.key(1), 3), params)
    others = jax.vmap(env.sample_state, (0, None))(jax.random.split(jax.random.key(2), 3), params)
    carry, action = eqx.filter_jit(policy)(policy.initial_carry(3), (obs, others),
                                           jax.random.key(3))
    assert action.shape == (3, 2)
    # the plan started from the state it was given, not from the one the observation encodes
    seen = jax.vmap(lambda s: env.observe(s, params))(others)
    np.testing.assert_allclose(carry["real"], seen.reshape(3, -1))
    assert not np.allclose(carry["real"], obs.reshape(3, -1))
    ev = agents.evaluate(policy, env, params, episodes=8, seeds=(0, 1))
    assert ev.returns.shape == (2, 8) and np.all(np.isfinite(ev.returns))
    assert np.all(ev.returns <= 0)  # Spaceship's reward is -(fuel + miss^2)


@pytest.mark.slow  # compiles the IBP training step with the true dynamics (about a minute)
def test_true_imagination_agent_trains_and_evaluates():
    config = agents.make("ibp", **TRUE_SHIP, total_steps=4 * 4, log_every=2)
    result = agents.train(config, (0, 1), progress=False)
    assert len(result.history) == 2 * 2
    assert all(row["loss_model"] == 0.0 for row in result.history)  # nothing to learn
    ev = agents.evaluate(result, episodes=8)
    assert ev.returns.shape == (2, 8) and np.all(np.isfinite(ev.returns))


@pytest.mark.slow  # it trains (compiles the training step)
def test_docs_example_runs():
    """The runnable example in docs/ibp.md."""
    text = (pathlib.Path(__file__).parent.parent / "docs" / "ibp.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "docs/ibp.md", "exec"), namespace)
    assert namespace["out"].action.shape == (8, 2)
    assert np.all(np.isfinite(namespace["task_loss"]))


# --------------------------------------------------------------------------- the recipe


def test_replication_runs_are_agent_configs_one_per_configuration():
    from innerlab.recipes.ibp_replication import IBPReplicationConfig

    config = IBPReplicationConfig(budgets=(0, 4), taus=(0.0, 0.05), strategies=("1-step", "tree"))
    runs = config.runs()
    # (tree, 4, 0) is in all three sweeps but trained once
    assert list(runs) == [("tree", 0, 0.0), ("tree", 4, 0.0), ("tree", 4, 0.05),
                          ("1-step", 4, 0.0)]
    for (strategy, budget, tau), agent in runs.items():
        native = agent.native()
        assert agent.kind == "ibp" and agent.env == "Spaceship-v0"
        assert (native.strategy, native.max_imaginations, native.tau) == (strategy, budget, tau)
        assert agent.schedule() == (config.iterations, config.log_every)
        assert native.num_envs == config.num_envs


@pytest.mark.slow  # trains two IBP configurations
def test_replication_tiny_run_writes_run_dirs(tmp_path):
    from innerlab.recipes import run_recipe
    from innerlab.recipes.ibp_replication import IBPReplicationConfig

    out = tmp_path / "run"
    config = IBPReplicationConfig(out=str(out), seeds=2, iterations=4, log_every=2, num_envs=4,
                                  budgets=(0, 1), taus=(0.0,), strategies=("tree",),
                                  strategy_budget=1)
    run_recipe("ibp-replication", config)
    for name in ("config.json", "metrics.jsonl", "summary.json", "report.md",
                 "ibp_replication.png", "runs/tree-n0-tau0/checkpoint.eqx",
                 "runs/tree-n1-tau0/metrics.jsonl"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["runs"]) == {"tree n=0 tau=0", "tree n=1 tau=0"}
    model_free = summary["runs"]["tree n=0 tau=0"]
    assert model_free["imaginations"] == [0.0, 0.0]  # budget 0 never imagines
    loss = np.array(summary["runs"]["tree n=1 tau=0"]["task_loss"])
    assert loss.shape == (2,) and np.all(loss > 0)  # fuel + squared miss
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * 2  # runs x chunks x seeds
    assert all(r["task_loss"] == -r["episode_return"] for r in rows)
    assert "## 1. Task loss vs imagination budget" in (out / "report.md").read_text()


# --------------------------------------------------------------------------- robust-reward pieces


@pytest.mark.slow  # a trained IBP at three budgets (13 s); the default suite is over budget
def test_budget_and_aggregation_of_a_trained_ibp_change_only_what_they_say(orchard):
    """``IBP.with_budget`` and ``LatentImagination.aggregated`` (the robust-reward
    experiment's Goodhart curve and pessimistic planning) keep every parameter."""
    env, params = orchard
    obs, _ = jax.vmap(env.reset, (0, None))(jax.random.split(jax.random.key(0), 4), params)
    model = make_imagination(env, params, key=jax.random.key(1), width=8, latent_dim=8,
                             num_members=3, encoder="mlp")
    ibp = IBP(model, "tree", 1, hidden=8, width=8, key=jax.random.key(2))
    more = ibp.with_budget(3)
    assert (ibp.max_imaginations, more.max_imaginations) == (1, 3)
    for a, b in zip(jax.tree.leaves(ibp), jax.tree.leaves(more), strict=True):
        assert a is b
    assert more(obs, jax.random.key(3)).stats["routes"].shape == (4, 3)
    with pytest.raises(ValueError, match="max_imaginations"):
        ibp.with_budget(-1)
    cautious = model.aggregated("min")
    latent = model.initial(obs[0])
    _, preds = model.world_model.step(latent, jnp.int32(1))
    _, r_min = cautious.step(latent, jax.nn.one_hot(1, 4), None)
    np.testing.assert_allclose(r_min, preds.min(), rtol=1e-6)
    assert cautious.reward_model is model.reward_model is model.world_model.reward_model
    # loss is the sum of loss_terms; a full mask is the unmasked reward loss
    trans = jax.vmap(lambda o, a: env.step_env(jax.random.key(0),
                                               env.sample_state(jax.random.key(5), params), a,
                                               params))(obs, jnp.arange(4) % 4)
    from innerlab.planners.ibp import Transitions
    batch = Transitions(obs, jax.nn.one_hot(jnp.arange(4) % 4, 4), trans[2], trans[0], trans[3])
    r, d = model.loss_terms(batch)
    r_full, _ = model.loss_terms(batch, jnp.ones((4, 3)))
    np.testing.assert_allclose(model.loss(batch), r + d, rtol=1e-6)
    np.testing.assert_allclose(r_full, r, rtol=1e-6)
