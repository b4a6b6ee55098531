"""MCTSLayer: exactness on a tabular MDP, determinism, composition, and clear errors."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import innerlab.envs as envs
from innerlab.envs.core import Environment, EnvParams
from innerlab.planners import PlannerOutput, WorldModel
from innerlab.planners.mcts import MCTSLayer

S, A, HORIZON, GAMMA = 4, 3, 2, 0.9


class TabularState(eqx.Module):
    """A state of a random deterministic MDP; the tables travel in the state so one
    compiled search serves every MDP the test draws."""

    s: jax.Array
    time: jax.Array
    next_state: jax.Array  # [S, A] int
    reward: jax.Array  # [S, A]


class Tabular(Environment):
    """A finite-horizon deterministic MDP (exact dynamics for the planner)."""

    name = "Tabular"

    @property
    def default_params(self):
        return EnvParams(max_steps=HORIZON)

    def num_actions(self, params=None):
        return A

    def observe(self, state, params=None):
        return jax.nn.one_hot(state.s, S)

    def sample_state(self, key, params=None):
        k1, k2 = jax.random.split(key)
        return TabularState(
            s=jnp.int32(0),
            time=jnp.int32(0),
            next_state=jax.random.randint(k1, (S, A), 0, S),
            reward=jax.random.uniform(k2, (S, A), minval=-1.0, maxval=1.0),
        )

    def reset_env(self, key, params):
        state = self.sample_state(key, params)
        return self.observe(state), state

    def step_env(self, key, state, action, params):
        r = state.reward[state.s, action]
        nxt = TabularState(
            s=state.next_state[state.s, action],
            time=state.time + 1,
            next_state=state.next_state,
            reward=state.reward,
        )
        trunc = nxt.time >= params.max_steps
        return self.observe(nxt), nxt, r, jnp.bool_(False), trunc, {}


def value_iteration_q(next_state: np.ndarray, reward: np.ndarray) -> np.ndarray:
    """Optimal Q of the start state by finite-horizon value iteration, ``[A]``."""
    v = np.zeros(S)
    for _ in range(HORIZON - 1):
        v = np.max(reward + GAMMA * v[next_state], axis=1)
    return (reward + GAMMA * v[next_state])[0]


ENV = Tabular()


def _layer(policy: str) -> MCTSLayer:
    return MCTSLayer(
        None,
        num_simulations=200,
        policy=policy,
        env=ENV,
        reward="env",
        discount=GAMMA,
        gumbel_scale=0.0,
        dirichlet_fraction=0.0,
    )


def trap_state() -> TabularState:
    """Greedy takes 0.5 now and then loses 1; the optimum gives up nothing now for 1 later."""
    next_state = jnp.array([[1, 2, 3], [1, 1, 1], [2, 2, 2], [3, 3, 3]], jnp.int32)
    reward = jnp.array([[0.5, 0.0, -0.2], [-1, -1, -1], [1.0, 0.0, 0.0], [0, 0, 0]], jnp.float32)
    return TabularState(jnp.int32(0), jnp.int32(0), next_state, reward)


@pytest.fixture(scope="module")
def tabular_plan():
    """Both policies over 32 random MDPs plus the trap MDP (last), one compilation."""

    @jax.jit
    def plan(key):
        states = jax.vmap(ENV.sample_state)(jax.random.split(key, 32))
        states = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), states, trap_state())
        return states, _layer("gumbel")(states, key), _layer("muzero")(states, key)

    return plan(jax.random.key(0))


def test_trap_mdp_both_policies_pick_value_iteration_action(tabular_plan):
    states, gumbel, muzero = tabular_plan
    q = value_iteration_q(np.asarray(states.next_state[-1]), np.asarray(states.reward[-1]))
    assert int(np.argmax(q)) == 1 and int(np.argmax(states.reward[-1][0])) == 0  # greedy is wrong
    assert int(gumbel.action[-1]) == 1
    assert int(np.argmax(muzero.stats["visit_counts"][-1])) == 1


def test_random_mdps_agree_with_value_iteration(tabular_plan):
    """MCTS's Q-values are means over the explored subtree, so near-ties can flip; on MDPs
    whose optimum is clear (gap >= 0.1) MuZero's most visited action must match value
    iteration almost always and Gumbel's chosen action mostly."""
    states, gumbel, muzero = tabular_plan
    agree_mz, agree_g, n = 0, 0, 0
    for i in range(32):
        q = value_iteration_q(np.asarray(states.next_state[i]), np.asarray(states.reward[i]))
        top2 = np.sort(q)[-2:]
        if top2[1] - top2[0] < 0.1:
            continue
        best = int(np.argmax(q))
        n += 1
        agree_mz += int(np.argmax(muzero.stats["visit_counts"][i])) == best
        agree_g += int(gumbel.action[i]) == best
    assert n >= 16
    assert agree_mz >= 0.9 * n, (agree_mz, n)
    assert agree_g >= 0.75 * n, (agree_g, n)


@pytest.fixture(scope="module")
def orchard():
    env, params = envs.make("Orchard-v0")
    keys = jax.random.split(jax.random.key(0), 4)
    obs, states = jax.vmap(lambda k: env.reset(k, params))(keys)
    wm = WorldModel.create(obs.shape[1:], 4, key=jax.random.key(1), latent_dim=8, width=16)
    return env, params, obs, states, wm


@pytest.fixture(scope="module")
def model_layer(orchard):
    *_, wm = orchard
    layer = MCTSLayer(wm, num_simulations=8)
    return layer, eqx.filter_jit(lambda lay, x, k: lay(x, k))


def test_output_shapes_and_determinism(orchard, model_layer):
    _, _, obs, _, wm = orchard
    layer, run = model_layer
    out1 = run(layer, obs, jax.random.key(3))
    out2 = run(layer, obs, jax.random.key(3))
    assert isinstance(out1, PlannerOutput)
    assert out1.action.shape == (4,) and out1.action.dtype == jnp.int32
    assert out1.action_weights.shape == (4, 4) and out1.value.shape == (4,)
    np.testing.assert_allclose(out1.action_weights.sum(-1), 1.0, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(out1), jax.tree.leaves(out2), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(out1.stats["visit_counts"].sum()) == 4 * 8


def test_composes_inside_another_module_and_vmaps(orchard, model_layer):
    """A user's network that embeds the layer: jit and vmap over two seeds work."""
    _, _, obs, _, _ = orchard
    layer, _ = model_layer

    class Agent(eqx.Module):
        planner: MCTSLayer
        scale: jax.Array

        def __call__(self, obs, key):
            out = self.planner(obs, key)
            return out.action, self.scale * out.value

    agent = Agent(layer, jnp.float32(2.0))
    keys = jax.random.split(jax.random.key(0), 2)
    actions, values = eqx.filter_jit(eqx.filter_vmap(agent, in_axes=(None, 0)))(obs, keys)
    assert actions.shape == (2, 4) and values.shape == (2, 4)
    ref = layer(obs, keys[0])
    np.testing.assert_array_equal(actions[0], ref.action)
    np.testing.assert_allclose(values[0], 2.0 * ref.value, rtol=1e-5)


def test_true_dynamics_modes_on_orchard(orchard):
    """True dynamics + true reward gives bounded real values; the learned-reward mode runs."""
    env, params, _, states, wm = orchard
    true = MCTSLayer(None, 64, env=env, env_params=params, reward="env", gumbel_scale=0.0)
    learned = MCTSLayer(wm.reward_model, 16, env=env, env_params=params, how="pessimistic", k=2.0)
    out_true = eqx.filter_jit(true)(states, jax.random.key(0))
    out_learned = eqx.filter_jit(learned)(states, jax.random.key(0))
    assert out_learned.action.shape == (4,)
    # with the true model the search's value is the (discounted, averaged) value of real
    # action sequences: in the train split no object is harmful, so it lies in
    # [0, sum of the remaining object values]; fruit beyond the tree's reach gives 0
    bound = jax.vmap(lambda s: env.optimal_return_upper_bound(s, params))(states)
    value = np.asarray(out_true.value)
    assert np.all(value >= 0) and np.all(value <= np.asarray(bound) + 1e-5)
    assert np.any(value > 0)


def test_bad_inputs_give_clear_errors(orchard):
    env, params, obs, states, wm = orchard
    with pytest.raises(ValueError, match="num_simulations"):
        MCTSLayer(wm, num_simulations=0)
    with pytest.raises(ValueError, match="'how'.*'median'"):
        MCTSLayer(wm, 4, how="median")
    with pytest.raises(ValueError, match="policy"):
        MCTSLayer(wm, 4, policy="alphazero")
    with pytest.raises(ValueError, match="'env' is required"):
        MCTSLayer(wm, 4, dynamics="env")
    with pytest.raises(ValueError, match=r"obs.*\[B, 7, 7, 9\].*\(7, 7, 9\)"):
        MCTSLayer(wm, 4)(obs[0], jax.random.key(0))
    with pytest.raises(ValueError, match="states"):
        MCTSLayer(None, 4, env=env, env_params=params, reward="env")(obs, jax.random.key(0))
    with pytest.raises(ValueError, match="'how'"):
        wm.reward(wm.represent(obs[0]), jnp.int32(0), how="avg")


def test_rescale_values_off_keeps_tiny_value_gaps_from_deciding_the_target():
    """A start state whose actions differ by 0.001 in reward (noise-sized): Gumbel's
    min-max rescaling turns the gap into a near-certain policy target, without it the
    target stays near the uniform prior; a real gap (1.0) decides it either way."""
    next_state = jnp.zeros((S, A), jnp.int32).at[0].set(1)
    states = jax.vmap(lambda gap: TabularState(
        jnp.int32(0), jnp.int32(0), next_state,
        jnp.zeros((S, A), jnp.float32).at[0, 0].set(gap)))(jnp.array([1e-3, 1.0]))

    def weights(rescale):
        layer = MCTSLayer(None, num_simulations=32, env=ENV, reward="env", discount=GAMMA,
                          gumbel_scale=0.0, rescale_values=rescale)
        return np.asarray(layer(states, jax.random.key(0)).action_weights)

    tiny_rescaled, real_rescaled = weights(True)
    tiny_kept, real_kept = weights(False)
    assert tiny_rescaled[0] > 0.9  # the noise-sized gap decides the target
    assert np.abs(tiny_kept - 1 / A).max() < 0.02  # the prior's, nearly
    assert real_rescaled[0] > 0.9 and real_kept[0] > 0.9
    with pytest.raises(ValueError, match="rescale_values"):
        MCTSLayer(None, 4, env=ENV, reward="env", rescale_values="no")
