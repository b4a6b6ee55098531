"""innerlab.irl's MCE IRL against the `imitation` library's (1.0.1) on the same tabular MDP.

imitation pins gymnasium 0.29 (ours is 1.x), so it runs in its own venv, `.venv-imitation`
(`make irl-peer-venv`), through tests/irl_peer_worker.py; the test is skipped where that
venv is absent.

Matching the settings: imitation's MCE IRL is finite-horizon and fits a *state-only*
reward ``r(s) = features[s] @ w`` (its soft Bellman backup adds ``r(s)`` to every action
of ``s``) with no terminal states, undiscounted here. So the MDP is one Orchard layout's
dynamics (``irl.layout_mdp``) with state features broadcast over the actions and no
terminal states; both fits start at ``w = 0`` and see the same demonstrations, ours as
(t, s, a) steps, theirs as the state visitation counts of the same episodes. The two
objectives differ in one term: imitation's occupancy also counts the state after the last
move, whose reward no decision sees; with enough demonstrations both estimate the same
reward.
"""

import pathlib
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import innerlab.envs as envs
from innerlab import irl

ROOT = pathlib.Path(__file__).resolve().parent.parent
PEER = ROOT / ".venv-imitation" / "bin" / "python"

pytestmark = [
    pytest.mark.slow,  # about 15 s: two fits, a sampled expert, torch starting in the peer venv
    pytest.mark.skipif(
        not PEER.exists(),
        reason="the imitation peer venv is absent (make irl-peer-venv): imitation 1.0.1 pins "
               "gymnasium 0.29, so it is installed beside ours in .venv-imitation, not in .venv",
    ),
]

OVERRIDES = {"height": 5, "width": 5, "n_objects": 2, "max_steps": 8}
TRUE = np.array([1.5, 1.0, -1.0, 0.5])  # collected object 0, object 1, agent row, agent col
EPISODES = 2000


def state_features(mdp: irl.TabularMDP, n_objects: int, height: int, width: int) -> np.ndarray:
    """``[S, F]`` features of each state: which objects are collected, the agent's row and
    column (scaled to [0, 1])."""
    s = np.arange(mdp.next.shape[0])
    cell, mask = s >> n_objects, s & ((1 << n_objects) - 1)
    collected = [1.0 - ((mask >> i) & 1) for i in range(n_objects)]
    rows, cols = (cell // width) / (height - 1), (cell % width) / (width - 1)
    return np.stack(collected + [rows, cols], -1).astype(np.float32)


@pytest.fixture(scope="module")
def problem():
    env, params = envs.make("Orchard-v0", **OVERRIDES)
    _, start = env.reset(jax.random.key(0), params)
    layout = jax.jit(lambda g: irl.layout_mdp(env, params, g))(start)
    phi = state_features(layout, params.n_objects, params.height, params.width)
    actions = layout.next.shape[1]
    mdp = irl.TabularMDP(layout.next, jnp.repeat(jnp.asarray(phi)[:, None], actions, 1),
                         layout.valid, jnp.zeros_like(layout.terminal), layout.start,
                         layout.horizon)
    stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (EPISODES,) + x.shape)
                           if isinstance(x, jax.Array) else x, mdp)
    demos = irl.sample_demos(stacked, jnp.asarray(TRUE, jnp.float32), jax.random.key(1))
    return mdp, demos, phi


def peer_fit(tmp_path, mdp, demos, phi, learning_rate=0.05, iterations=3000) -> dict:
    """imitation's MCE IRL on ``mdp`` and the visitation counts of ``demos``."""
    s, a = np.asarray(demos.s), np.asarray(demos.a)
    nxt = np.asarray(mdp.next)
    states = np.concatenate([s, nxt[s[:, -1], a[:, -1]][:, None]], 1)  # times 0..horizon
    n_states, n_actions = nxt.shape
    occupancy = np.bincount(states.ravel(), minlength=n_states) / states.shape[0]
    transition = np.zeros((n_states, n_actions, n_states))
    transition[np.arange(n_states)[:, None], np.arange(n_actions), nxt] = 1.0
    initial = np.zeros(n_states)
    initial[int(mdp.start)] = 1.0
    path, out = tmp_path / "problem.npz", tmp_path / "result.npz"
    np.savez(path, transition=transition, features=phi, initial=initial, horizon=mdp.horizon,
             discount=1.0, occupancy=occupancy, learning_rate=learning_rate,
             iterations=iterations)
    subprocess.run([str(PEER), str(ROOT / "tests" / "irl_peer_worker.py"), str(path), str(out)],
                   check=True, capture_output=True, timeout=600)
    return dict(np.load(out))


def reward_table(mdp: irl.TabularMDP, w: np.ndarray) -> jax.Array:
    return (mdp.features @ jnp.asarray(w, jnp.float32))[None]


def test_agrees_with_imitation_mce_irl(tmp_path, problem):
    mdp, demos, phi = problem
    one = jax.tree.map(lambda x: x[None] if isinstance(x, jax.Array) else x, mdp)
    # every episode is in the one layout: fit on all their steps as one row of demos
    ours = np.asarray(irl.fit_reward(one, jax.tree.map(lambda x: x.reshape(1, -1), demos)))
    theirs = peer_fit(tmp_path, mdp, demos, phi)

    # the same weights give the same soft-optimal policy in both (the settings match)
    mine_of_theirs = np.exp(np.asarray(irl.soft_policy(mdp, jnp.asarray(theirs["weights"],
                                                                         jnp.float32))))
    np.testing.assert_allclose(mine_of_theirs, theirs["pi"], atol=1e-4)

    # the two fits recover the same reward, and both recover the truth
    epic = irl.epic_tables(one, reward_table(mdp, ours), reward_table(mdp, theirs["weights"]))
    to_true = {name: irl.epic_tables(one, reward_table(mdp, w), reward_table(mdp, TRUE))
               for name, w in (("ours", ours), ("theirs", theirs["weights"]))}
    # their policies on the states the expert visits (time-indexed), total variation
    pi_ours = np.exp(np.asarray(irl.soft_policy(mdp, jnp.asarray(ours))))
    t, s = np.asarray(demos.t).ravel(), np.asarray(demos.s).ravel()
    tv = 0.5 * np.abs(pi_ours[t, s] - theirs["pi"][t, s]).sum(-1).mean()
    print(f"weights ours {np.round(ours, 3)} theirs {np.round(theirs['weights'], 3)} "
          f"true {TRUE}; EPIC ours-theirs {epic:.4f}, to true: ours {to_true['ours']:.4f} "
          f"theirs {to_true['theirs']:.4f}; policy TV on expert states {tv:.4f}; "
          f"imitation fit {float(theirs['seconds']):.1f} s")
    assert epic < 0.05, epic
    assert tv < 0.02, tv
    assert max(to_true.values()) < 0.1, to_true
