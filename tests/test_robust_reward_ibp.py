"""The IBP in the robust-reward experiment: its reward heads' options (fit, bootstrap, labels,
priors, diversity), its place in the recipe's config, and a tiny end-to-end run."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import innerlab.agents as agents
import innerlab.envs as envs
from innerlab.planners import ibp_train
from innerlab.planners.ibp import Transitions, make_imagination
from innerlab.planners.ibp_train import IBPTrainConfig
from innerlab.protocols import LatentEnsemble, TrainableEnsemble
from innerlab.recipes.robust_reward import (
    ROOM,
    RobustRewardConfig,
    acting,
    network,
    pearson_np,
    reward_heads,
)
from innerlab.reward_models.data import sample_state_batch
from innerlab.reward_models.diverse import PriorHead

SMALL = dict(env="Orchard-v0", egocentric=True, env_overrides=tuple(ROOM.items()), num_envs=4,
             hidden=8, width=16, latent_dim=8, num_members=3, encoder="mlp",
             strategy="1-step", max_imaginations=1, iterations=4, log_every=4)


@pytest.fixture(scope="module")
def room():
    return envs.make("Orchard-v0", egocentric=True, **ROOM)


def _ibp_batch(trans) -> Transitions:
    """The IBP's model batch (one-hot actions) of reward_models.data transitions."""
    return Transitions(trans.obs, jax.nn.one_hot(trans.action, 4), trans.reward, trans.next_obs,
                       trans.done)


def test_reward_head_options_are_checked():
    for changes, match in [({"label_capacity": -1}, "'label_capacity' must be an int >= 0"),
                           ({"bootstrap_prob": 0.0}, "'bootstrap_prob' must be in"),
                           ({"reward_coef": -1.0}, "'reward_coef' must be >= 0"),
                           ({"diversity_coef": 0.1, "num_members": 1}, "num_members >= 2"),
                           ({"imagination": "true", "label_capacity": 4},
                            "imagination='true' has none")]:
        with pytest.raises(ValueError, match=match):
            IBPTrainConfig(**{**SMALL, **changes})
    assert IBPTrainConfig(**SMALL).reward_heads_options == []
    assert IBPTrainConfig(**SMALL, label_capacity=4).reward_heads_options == ["label_capacity"]
    # the vector model of Spaceship has no latent reward heads to give these to
    with pytest.raises(ValueError, match="need a grid env"):
        ibp_train.init_ibp(IBPTrainConfig(env="Spaceship-v0", label_capacity=4), jax.random.key(0))


@pytest.mark.slow  # trains the IBP's heads (13-15 s of compiling); the default suite is over budget
def test_heads_fit_a_known_reward_and_the_bootstrap_masks_members(room):
    """Fitted with model_loss on sample_state transitions (the true reward known, every kind
    of object and collection among them), the heads' mean fits them (Pearson > 0.95, from
    about 0 untrained); the masked reward loss is member k's error on its own rows."""
    env, params = room
    config = IBPTrainConfig(**SMALL, reward_coef=2.0, bootstrap_prob=0.7)
    model = make_imagination(env, params, key=jax.random.key(0), width=32, latent_dim=16,
                             num_members=3, encoder="mlp")
    n = 384
    data = sample_state_batch(env, params, jax.random.key(1), n)[0]
    batch = _ibp_batch(data)
    opt = optax.adam(3e-3)

    @eqx.filter_jit
    def fit(model):
        def step(carry, key):
            model, state = carry
            rows = jax.random.choice(key, n, (128,))
            sub = jax.tree.map(lambda x: x[rows], batch)
            loss, grads = eqx.filter_value_and_grad(
                lambda m: ibp_train.model_loss(config, m, sub, {}, key, env, params)[0])(model)
            updates, state = opt.update(grads, state)
            return (eqx.apply_updates(model, updates), state), loss

        params_, static = eqx.partition(model, eqx.is_inexact_array)
        def body(carry, key):
            (p, s), loss = step((eqx.combine(carry[0], static), carry[1]), key)
            return (eqx.filter(p, eqx.is_inexact_array), s), loss
        (p, _), losses = jax.lax.scan(body, (params_, opt.init(params_)),
                                      jax.random.split(jax.random.key(3), 600))
        return eqx.combine(p, static), losses

    before = jax.vmap(model.reward_model)(data.obs, data.action).mean(-1)
    fitted, losses = fit(model)
    after = jax.vmap(fitted.reward_model)(data.obs, data.action).mean(-1)
    assert pearson_np(after, data.reward) > 0.95 and abs(pearson_np(before, data.reward)) < 0.5
    assert float(losses[-100:].mean()) < 0.5 * float(losses[:100].mean())
    # the masked reward loss differs from the unmasked one (members fit different rows)
    full, _ = fitted.loss_terms(batch)
    masked, _ = fitted.loss_terms(batch, (jnp.arange(3) == 0).astype(jnp.float32)[None]
                                  * jnp.ones((n, 1)))
    per_member = jnp.mean((jax.vmap(fitted.reward_model)(data.obs, data.action)
                           - data.reward[:, None]) ** 2, 0)
    assert float(masked) == pytest.approx(float(per_member[0]), rel=1e-4)
    assert float(full) == pytest.approx(float(per_member.mean()), rel=1e-4)


@pytest.mark.slow  # compiles the IBP training step with every reward-head option (~30 s)
def test_labels_priors_and_diversity_train_the_ibps_own_heads(room):
    env, params = room
    config = IBPTrainConfig(**SMALL, label_capacity=8, label_coef=4.0, label_batch=8,
                            reward_prior_scale=1.0, diversity_coef=0.1, bootstrap_prob=0.8)
    state = ibp_train.init_state(config, jax.random.key(0))
    heads = state.ibp.model.reward_model
    assert isinstance(heads, LatentEnsemble) and isinstance(heads, TrainableEnsemble)
    assert isinstance(heads.head, PriorHead)
    # the overseer says: this transition is worth +5 (whatever the heads thought)
    trans = sample_state_batch(env, params, jax.random.key(1), 8)[0]
    state = ibp_train.add_labels(state, trans.obs, trans.action, jnp.full(8, 5.0))
    assert int(state.labels["count"]) == 8
    step = eqx.filter_jit(lambda s: ibp_train.train_step(config, s))
    start = jax.vmap(heads)(trans.obs, trans.action).mean()
    s = state
    for _ in range(40):
        s, metrics = step(s)
    for name in ("loss_labels", "loss_diversity", "loss_reward", "loss_dynamics"):
        assert np.isfinite(float(metrics[name])), name
    now = s.ibp.model.reward_model
    assert float(jax.vmap(now)(trans.obs, trans.action).mean()) > float(start) + 1.0
    frozen = lambda m: jax.tree.leaves(eqx.filter(m.head.prior, eqx.is_array))  # noqa: E731
    for a, b in zip(frozen(now), frozen(heads), strict=True):
        np.testing.assert_array_equal(a, b)  # the priors never train


def test_recipe_builds_the_ibp_agent_with_the_same_chunks():
    full, quick = RobustRewardConfig(), RobustRewardConfig(quick=True).resolved()
    assert full.agents == ("muzero", "ibp") and quick.agents == ("muzero",)
    assert [r[0] for r in full.runs()][:4] == ["muzero-bootstrap", "muzero-prior",
                                               "muzero-diverse", "ibp-bootstrap"]
    mz, ibp = full.agent("diverse"), full.agent("diverse", "ibp")
    native = ibp.native()
    assert ibp.kind == "ibp" and ibp.egocentric and native.num_members == 5
    assert native.diversity_coef > 0 and native.label_capacity == full.rounds * full.label_budget
    assert full.agent("prior", "ibp").native().reward_prior_scale > 0
    # the same number of chunks, and the IBP gets ibp_steps_scale times the env steps
    (mz_it, mz_chunk), (ibp_it, ibp_chunk) = mz.schedule(), ibp.schedule()
    assert mz_it // mz_chunk == ibp_it // ibp_chunk
    assert ibp.total_steps == full.ibp_steps_scale * mz.total_steps
    assert acting(ibp).budget == 1 and acting(ibp, 8).budget_name == "imagination steps"
    with pytest.raises(ValueError, match="unknown \\['dreamer'\\]"):
        RobustRewardConfig(agents=("dreamer",))
    with pytest.raises(ValueError, match="'ibp_steps_scale' must be an int >= 1"):
        RobustRewardConfig(ibp_steps_scale=0)


TINY_IBP = dict(
    agents=("ibp",), num_seeds=2, ensembles=("bootstrap",),
    methods=("none", "random-train", "evolution", "latent"), num_envs=8, iterations=2, rounds=1,
    label_budget=4, round_iterations=2, num_simulations=2, search_budget=64, latent_steps=2,
    eval_episodes=4, eval_transitions=64, goodhart_budgets=(1, 2),
)


@pytest.mark.slow  # trains and measures the IBP (several minutes on 2 shared cores)
def test_tiny_ibp_run_goes_through_the_whole_pipeline(tmp_path):
    from innerlab.recipes import run_recipe

    out = tmp_path / "run"
    run_recipe("robust-reward", RobustRewardConfig(out=str(out), **TINY_IBP))
    for name in ("summary.json", "report.md", "strip.png", "goodhart.png",
                 "stages/ibp-bootstrap-fit.json", "stages/ibp-bootstrap-latent.json",
                 "runs/ibp-bootstrap/latent/checkpoint.eqx"):
        assert (out / name).is_file(), name
    res = json.loads((out / "summary.json").read_text())["results"]["ibp-bootstrap"]
    assert res["kind"] == "ibp" and len(res["fit"]["pearson_own"]) == 2
    assert res["evolution"]["curve"][0]["labels"] == 4
    for key in ("goodhart@2/learned_return", "pessimistic/fraction_of_oracle", "std_ratio"):
        assert np.all(np.isfinite(res["before"][key])), key
    report = (out / "report.md").read_text()
    assert "### ibp-bootstrap" in report and "imagination step" in report
    # 2 iterations cannot fit the reward: the report says so, plainly and first
    assert "is NOT met for: ibp-bootstrap" in report.split("## 2.")[0]
    # the labels went into the IBP's own buffer and moved its own heads towards them: the
    # `none` run is the same training (same seeds and PRNG streams) without labels
    none, latent = (agents.load(out / "runs" / "ibp-bootstrap" / m) for m in ("none", "latent"))
    assert np.all(np.asarray(latent.states.labels["count"]) == 4)
    assert np.all(np.asarray(none.states.labels["count"]) == 0)
    for i, seed in enumerate(latent.seeds):
        lab = {k: jnp.asarray(latent.states.labels[k][i][:4]) for k in ("obs", "action",
                                                                       "reward")}
        err = {}
        for name, run in (("none", none), ("latent", latent)):
            heads = reward_heads("ibp", network("ibp", run.state(seed)))
            pred = jax.vmap(heads)(lab["obs"], lab["action"])
            err[name] = float(jnp.mean(jnp.abs(pred - lab["reward"][:, None])))
        assert err["latent"] < err["none"], (seed, err)
