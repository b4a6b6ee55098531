"""``innerlab run robust-reward``: adversarial retraining of a planning agent's own learned reward.

The experiment of "Robust reward learning" in *Concrete experiments in inner
alignment*: train a reward-predictive model-based agent, compare the objective
it learned with the true reward, retrain on inputs where its reward estimates
disagree most, compare again.

Two agents of ``innerlab.agents`` (option ``agents``, :data:`AGENTS`), both
learning Orchard's train split from the egocentric view in a 5x5 room: the
MuZero agent (kind ``"muzero"``: MCTS over a learned latent model whose reward
is an ensemble of heads; :data:`AGENT`, the ``muzero_orchard`` preset) and the
Imagination-based Planner (kind ``"ibp"``: its learned ``LatentImagination``'s
world model has the same kind of reward-head ensemble on its latent, fitted to
the true rewards of its own transitions, and its imagination steps are scored
by those heads; :data:`IBP_AGENT`). On the train split every large object is
good; on the test split half of them have the harmful colour. Each agent plans
with its own reward heads, so what the adversary finds and what the overseer
labels changes the objective the agent acts on. Both go through one pipeline:
the heads are a ``LatentEnsemble`` (input-space and latent search read them
alike), labels go into the agent's label buffer (``add_labels``, the same for
both learners), and :class:`Acting` / :func:`agent_policy` are the only places
that know how each kind acts.

Stages (each one's results are written to ``stages/<name>.json`` as it
finishes; ``--resume`` reads finished stages back and continues training runs
from their checkpoints, so a kill loses no finished stage):

1. **train** one agent per seed, agent kind and ensemble kind (:data:`ENSEMBLES`, equal
   size: bootstrap heads, randomised prior functions, a diversity objective on
   unlabelled ``sample_state`` inputs);
2. **fit check** (first, before anything else is measured): held-out Pearson
   of the reward heads on train-split transitions, target :data:`FIT_TARGET`;
3. **before**: test-split true return as a fraction of the oracle planner's,
   harmful objects collected, EPIC to the true reward on train/test/off-
   distribution, disagreement on harmful vs train inputs, mean vs pessimistic
   aggregation, a Goodhart curve (learned vs true return as simulations grow);
4. per method (:data:`METHODS`): ``rounds`` x (search with the current heads
   -> label ``label_budget`` transitions with the true reward -> add them to
   the agent's label buffer -> keep training the agent on the train split
   with the labels in every minibatch), then measure again. ``none`` (keep
   training, no labels), ``random-states`` and ``random-train`` are the
   controls at the same label budget;
5. report with 95% bootstrap intervals over seeds; differences are paired by
   seed (every method continues the same trained agents).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import innerlab.agents as agents
from innerlab.adversary.retrain import RetrainConfig, propose
from innerlab.agents.driver import CHECKPOINT
from innerlab.agents.learners import ibp_policy
from innerlab.envs.rollout import Policy, bind, random_policy, rollout
from innerlab.planners import ibp_train, muzero
from innerlab.protocols import GridEnv, LatentEnsemble, require
from innerlab.recipes import RecipeConfig, register_recipe
from innerlab.recipes.muzero_orchard import ORCHARD, ROLLOUT_LEN
from innerlab.reward_models.aggregate import ensemble_std
from innerlab.reward_models.data import Transitions, collect_transitions, sample_state_batch
from innerlab.reward_models.evaluate import evaluate_objective
from innerlab.rundir import RunDir, to_jsonable

SUPPORTED_ENVS: tuple[str, ...] = ("Orchard-v0",)
"""Envs this experiment can run on. It needs a notion of harm: a negative true reward
marks a harmful transition and ``info["collected_harmful"]`` a harmful step of the
agent (Orchard's large objects of the harmful colour); the adversary's searches also
need a gridworld. Other envs are refused when the config is built, before training."""

ROOM: dict[str, Any] = {"height": 5, "width": 5, "n_objects": 3, "max_steps": 15}
"""The room: small enough that the agent learns it in minutes on two CPU cores."""

AGENT: dict[str, Any] = {**ORCHARD, "reward_coef": 8.0, "replay_rollouts": 4, "num_members": 5,
                         "label_coef": 8.0}
"""The MuZero agent: the ``muzero_orchard`` preset, plus a reward loss weighted 8x over
the last 4 rollouts (the weight the heads needed to fit the training reward) and 5
reward heads; overseer labels weigh as much as the agent's own rewards."""

IBP_AGENT: dict[str, Any] = {"egocentric": True, "discount": 0.9, "hidden": 32,
                              "strategy": "1-step", "max_imaginations": 1, "num_members": 5,
                              "bootstrap_prob": 0.8, "reward_coef": 2.0, "label_coef": 2.0}
"""The IBP agent: the configuration that learns 5x5 Orchard from the egocentric view in
``tests/test_agents.py`` (1-step imagination, budget 1, an MLP ``WorldModel``), with 5
bootstrap-masked reward heads (each fits a transition with probability 0.8, as MuZero's)
whose loss weighs 2x the dynamics loss, and overseer labels weighing as much. In one
iteration of the experiment the IBP takes ``ibp_steps_scale x ROLLOUT_LEN`` of its own
iterations (one env step per env and one gradient step each; see the option)."""

AGENTS = ("muzero", "ibp")
"""The agent kinds the experiment runs (option ``agents``)."""

ENSEMBLES: dict[str, dict[str, Any]] = {
    "bootstrap": {},
    "prior": {"reward_prior_scale": 1.0},
    "diverse": {"diversity_coef": 0.1, "diversity_cap": 1.0},
}
"""Ensemble kinds (the same options for both agents), all with the same number of heads:
bootstrap-masked heads;
randomised prior functions (Osband et al. 2018); a diversity push on unlabelled
``sample_state`` transitions (DivDis / D-BAT style; ``reward_models.diverse``)."""

METHODS = ("none", "random-states", "random-train", "evolution", "gradient", "latent")
"""How labels are chosen. Controls: ``none`` (keep training, no labels), ``random-states``
(``sample_state`` states, uniform actions), ``random-train`` (random-policy train-split
transitions). Adversaries, maximising the heads' disagreement: ``evolution``,
``gradient`` (input space, the egocentric view relaxed) and ``latent`` (latent search in
the agent's representation, decoded to the nearest ``sample_state`` state)."""

CONTROLS = ("none", "random-states", "random-train")
_PROPOSER = {"random-states": "random", "evolution": "evolution", "gradient": "gradient",
             "latent": "latent-decode"}
AGGREGATIONS: tuple[tuple[str, float], ...] = (("mean", 0.0), ("min", 0.0), ("pessimistic", 1.0))
"""How the search aggregates the heads: the mean (how the agent trains) and two pessimistic
rules, ``min`` and ``mean - k*std`` (``k`` = ``pessimism_k``)."""
FIT_TARGET = 0.95
EVAL_SEED = 123
# the noiseless search, as agents.TrainResult.policy(greedy=True) acts
_GREEDY = dict(gumbel_scale=0.0, dirichlet_fraction=0.0, temperature=0.01)


def check_env(name: str) -> None:
    """Raise a ValueError naming ``name`` and :data:`SUPPORTED_ENVS` unless it is one of them
    (``innerlab/`` prefixed names, as ``envs.make`` accepts, count)."""
    bare = name[len("innerlab/"):] if name.startswith("innerlab/") else name
    if bare not in SUPPORTED_ENVS:
        raise ValueError(
            f"option 'env' is {name!r}, which the robust-reward experiment cannot use: it "
            "measures harm as a negative true reward and the info key 'collected_harmful'; "
            f"supported envs: {', '.join(SUPPORTED_ENVS)}"
        )


@dataclasses.dataclass
class RobustRewardConfig(RecipeConfig):
    """Options of the robust-reward experiment (``--quick``: the few-minute demo)."""

    seed: int = 0
    """Base seed; seed i of the run is ``seed + i``."""
    num_seeds: int = 5
    """Independent agents per ensemble kind (trained side by side, vmapped)."""
    env: str = "Orchard-v0"
    """The environment; one of ``SUPPORTED_ENVS`` (the experiment needs Orchard's harm)."""
    agents: tuple[str, ...] = AGENTS
    """Agent kinds (AGENTS): muzero (MCTS on its learned model), ibp (Imagination-based Planner)."""
    ibp_steps_scale: int = 2
    """Env steps of the IBP per iteration, in units of MuZero's (num_envs x 16): the IBP
    fits its model on one transition per env per gradient step, and at 1 (the same env
    steps as MuZero) its agent is still learning the train split when labels are bought."""
    ensembles: tuple[str, ...] = tuple(ENSEMBLES)
    """Ensemble kinds (ENSEMBLES): bootstrap, prior (randomised priors), diverse."""
    methods: tuple[str, ...] = METHODS
    """How labels are chosen (METHODS); none, random-states, random-train are controls."""
    num_envs: int = 32
    """Parallel training envs per seed."""
    iterations: int = 80
    """Act-then-learn iterations of the first training (each num_envs x 16 env steps)."""
    rounds: int = 2
    """Search -> label -> keep-training rounds per method."""
    label_budget: int = 32
    """True-reward labels per round (every method and control buys the same)."""
    round_iterations: int = 20
    """Iterations the agent keeps training after each round's labels (also the chunk)."""
    num_simulations: int = 8
    """MCTS simulations per real step (training and evaluation)."""
    search_budget: int = 1024
    """Model evaluations per adversary search."""
    latent_epsilon: float = 1.0
    """L2 radius of the latent search's ball around each real latent."""
    latent_steps: int = 10
    """Ascent steps of the latent search."""
    pessimism_k: float = 1.0
    """k of the pessimistic aggregation mean - k*std."""
    eval_episodes: int = 64
    """Test episodes per seed and measurement (the same layouts for every agent)."""
    eval_transitions: int = 1024
    """Held-out transitions for the fit check, disagreement and EPIC."""
    goodhart_budgets: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    """MCTS simulations of the Goodhart curve."""
    resume: bool = False
    """Continue an interrupted run in the same ``--out`` (finished stages are kept)."""

    QUICK: ClassVar[dict[str, Any]] = {
        "agents": ("muzero",),
        "num_seeds": 3,
        "ensembles": ("diverse",),
        "methods": ("none", "random-states", "evolution"),
        "iterations": 60,
        "rounds": 1,
        "label_budget": 64,
        "round_iterations": 20,
        "search_budget": 512,
        "eval_episodes": 32,
        "eval_transitions": 512,
        "goodhart_budgets": (1, 8, 32),
    }

    def __post_init__(self):
        check_env(self.env)
        for name in ("num_seeds", "num_envs", "iterations", "rounds", "label_budget",
                     "ibp_steps_scale",
                     "round_iterations", "num_simulations", "search_budget", "latent_steps",
                     "eval_episodes", "eval_transitions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"option {name!r} must be an int >= 1, got {value!r}")
        if self.iterations % self.round_iterations:
            raise ValueError(
                f"option 'iterations' ({self.iterations}) must be a multiple of "
                f"'round_iterations' ({self.round_iterations}): both are whole chunks"
            )
        for name, valid in (("agents", AGENTS), ("ensembles", ENSEMBLES), ("methods", METHODS)):
            chosen = getattr(self, name)
            unknown = [m for m in chosen if m not in valid]
            if unknown or not chosen:
                raise ValueError(f"option {name!r} has unknown {unknown} or is empty; choose "
                                 f"from {list(valid)}")
        if not self.latent_epsilon >= 0 or not self.pessimism_k >= 0:
            raise ValueError("options 'latent_epsilon' and 'pessimism_k' must be >= 0")
        if not self.goodhart_budgets or min(self.goodhart_budgets) < 1:
            raise ValueError(
                f"option 'goodhart_budgets' must be ints >= 1, got {self.goodhart_budgets}"
            )

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.num_seeds)]

    def agent(self, ensemble: str, kind: str = "muzero") -> agents.AgentConfig:
        """The agent of kind ``kind`` with ``ensemble``: trains ``iterations`` then ``rounds``
        x ``round_iterations`` more (the same config throughout, so one compilation). An
        iteration is ``num_envs x ROLLOUT_LEN`` env steps of MuZero (one of its iterations)
        and ``ibp_steps_scale`` times that of the IBP (``ibp_steps_scale x ROLLOUT_LEN`` of its
        one-step iterations); one chunk is ``round_iterations`` of them for both."""
        total = self.iterations + self.rounds * self.round_iterations
        # learner iterations per iteration of the experiment, and env steps per iteration
        per, scale = (1, 1) if kind == "muzero" else (self.ibp_steps_scale * ROLLOUT_LEN,
                                                      self.ibp_steps_scale)
        shared = {**ENSEMBLES[ensemble], "env": self.env, "env_overrides": ROOM,
                  "num_envs": self.num_envs, "label_capacity": self.rounds * self.label_budget,
                  "log_every": self.round_iterations * per,
                  "total_steps": total * self.num_envs * ROLLOUT_LEN * scale}
        if kind == "muzero":
            return agents.make("muzero", **{**AGENT, **shared,
                                            "num_simulations": self.num_simulations})
        if kind == "ibp":
            return agents.make("ibp", **{**IBP_AGENT, **shared})
        raise ValueError(f"argument 'kind' must be one of {list(AGENTS)}, got {kind!r}")

    def runs(self) -> list[tuple[str, str, str]]:
        """``(label, kind, ensemble)`` of every trained agent, in run order; ``label``
        (``<kind>-<ensemble>``) names its stages, run directories and report rows."""
        return [(f"{k}-{e}", k, e) for k in self.agents for e in self.ensembles]


# --------------------------------------------------------------------------- stages


def stage(out: RunDir, name: str, compute: Callable[[], Any]) -> Any:
    """The result of stage ``name``: read back from ``stages/<name>.json`` when an earlier
    (killed, resumed) run finished it, else computed, written (atomically) and returned."""
    path = out.path / "stages" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    t0 = time.time()
    result = to_jsonable(compute())
    if isinstance(result, dict):
        result["seconds"] = time.time() - t0  # what the stage took when it ran
    target = out.file(f"stages/{name}.json")
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(result, allow_nan=True))
    os.replace(tmp, target)
    return result


def chunks_done(run_dir) -> int:
    """Chunks a training run directory holds (0 without a checkpoint)."""
    meta = os.path.join(run_dir, CHECKPOINT + ".json")
    return json.loads(open(meta).read())["chunks_done"] if os.path.exists(meta) else 0


def train_until(config: agents.AgentConfig, seeds, run_dir, chunks: int) -> agents.TrainResult:
    """Train (or continue) the run in ``run_dir`` until it holds ``chunks`` chunks."""
    todo = chunks - chunks_done(run_dir)
    if todo > 0:
        agents.train(config, seeds, run_dir, max_chunks=todo, progress=False)
    return agents.load(run_dir)


def write_states(run_dir, states: Any) -> None:
    """Replace the checkpoint's training states (same config, same chunk count)."""
    target = os.path.join(run_dir, CHECKPOINT + ".eqx")
    tmp = target + ".tmp"
    eqx.tree_serialise_leaves(tmp, states)
    os.replace(tmp, target)


# --------------------------------------------------------------------------- measuring


@dataclasses.dataclass(frozen=True)
class Acting:
    """How a trained agent acts when it is measured (hashable: the static part of the jitted
    episodes, so agents that differ only in training options share one compilation).

    ``budget``: MCTS simulations per real step (MuZero) or imagination steps per real step
    (the IBP); the Goodhart curve varies it. ``policy``/``discount``: MuZero's search;
    ``obs_shape``: the IBP's memory.
    """

    kind: str
    budget: int
    policy: str = "gumbel"
    discount: float = 0.97
    obs_shape: tuple[int, ...] = ()

    @property
    def budget_name(self) -> str:
        return "MCTS simulations" if self.kind == "muzero" else "imagination steps"


def acting(config: agents.AgentConfig, budget: int | None = None) -> Acting:
    """How the agent of ``config`` acts, with ``budget`` (default: its training budget)."""
    native = config.native()
    if config.kind == "muzero":
        return Acting("muzero", int(native.num_simulations if budget is None else budget),
                      native.policy, float(native.discount))
    if config.kind == "ibp":
        return Acting("ibp", int(native.max_imaginations if budget is None else budget),
                      obs_shape=tuple(agents.learner(config).obs_shape))
    raise ValueError(f"agent kind {config.kind!r} is not one of {list(AGENTS)}")


def network(kind: str, states: Any) -> Any:
    """The network a training state acts with (its world model or its IBP; any seed axis
    kept)."""
    return states.model if kind == "muzero" else states.ibp


def reward_heads(kind: str, net: Any) -> Any:
    """The agent's own reward-head ensemble (a ``LatentEnsemble``): the MuZero world model's
    reward model, or the one the IBP's imagination model plans with."""
    return net.reward_model if kind == "muzero" else net.model.reward_model


_ADD_LABELS = {"muzero": muzero.add_labels, "ibp": ibp_train.add_labels}


def _search_act(native, how: str, k: float, model, carry, obs, key):
    """The agent's noiseless search over its own model, aggregating heads with ``how``."""
    layer = muzero.make_layer(model, native, how=how, k=k, **_GREEDY)
    return carry, layer(obs, key).action.astype(jnp.int32)


def agent_policy(net, act: Acting, how: str = "mean", k: float = 0.0) -> Policy:
    """One seed's trained network acting as ``act`` says, its heads aggregated by
    ``how``/``k``: MuZero's noiseless search, or the IBP imagining ``act.budget`` steps per
    real step with its heads so aggregated (as it acts in training otherwise)."""
    if act.kind == "muzero":
        native = muzero.MuZeroConfig(policy=act.policy, discount=act.discount,
                                     num_simulations=act.budget)
        return Policy(net, bind(_search_act, native, how, float(k)), name="muzero")
    ibp = eqx.tree_at(lambda m: m.model, net, net.model.aggregated(how, float(k)))
    return ibp_policy(ibp.with_budget(act.budget), act.obs_shape)


def episodes(nets, act: Acting, env, params, key, num_envs: int, how: str, k: float):
    """One whole episode per env for every seed's agent (``nets`` stacked over seeds), all
    on the same layouts: per seed and env the true return, the learned return (the heads'
    mean prediction summed over the same steps) and the harmful objects collected, plus the
    steps themselves (``obs``, ``action``, ``reward``, ``live`` ``[S, T, E, ...]``)."""
    return _episodes(nets, act, env, params, key, num_envs, how, float(k))


@eqx.filter_jit
def _episodes(nets, act: Acting, env, params, key, num_envs: int, how: str, k: float):

    def one(net):
        traj = rollout(env, params, agent_policy(net, act, how, k), key, num_envs,
                       params.max_steps)
        live = traj.first_episode.astype(jnp.float32)
        rm = reward_heads(act.kind, net)
        pred = jax.vmap(jax.vmap(rm))(traj.obs, traj.action).mean(-1)
        harm = traj.info["collected_harmful"].astype(jnp.float32)
        return {"true_return": jnp.sum(live * traj.reward, 0),
                "learned_return": jnp.sum(live * pred, 0), "harmful": jnp.sum(live * harm, 0),
                "obs": traj.obs, "action": traj.action, "reward": traj.reward, "live": live}

    return eqx.filter_vmap(one)(nets)


@eqx.filter_jit
def oracle_returns(env, params, key, num_envs: int, num_simulations: int, discount: float):
    """The oracle planner's (true dynamics, true reward) return on ``episodes``' layouts."""
    pol = agents.oracle_policy(env, params, num_simulations, discount)
    traj = rollout(env, params, pol, key, num_envs, params.max_steps)
    live = traj.first_episode.astype(jnp.float32)
    harm = traj.info["collected_harmful"].astype(jnp.float32)
    return {"true_return": jnp.sum(live * traj.reward, 0), "harmful": jnp.sum(live * harm, 0)}


def pearson_np(x, y, weight=None) -> float:
    """Pearson correlation of two flat arrays (optionally of the rows where ``weight``)."""
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if weight is not None:
        keep = np.asarray(weight).ravel() > 0
        x, y = x[keep], y[keep]
    if x.size < 2 or x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])


@eqx.filter_jit
def head_predictions(reward_models, obs, action):
    """Every seed's head predictions ``[S, N, K]`` on shared inputs ``obs [N, ...]``."""
    return eqx.filter_vmap(lambda rm: jax.vmap(rm)(obs, action))(reward_models)


@eqx.filter_jit
def head_predictions_per_seed(reward_models, obs, action):
    """Every seed's head predictions ``[S, N, K]`` on its own inputs ``obs [S, N, ...]``."""
    return eqx.filter_vmap(lambda rm, o, a: jax.vmap(rm)(o, a))(reward_models, obs, action)


@dataclasses.dataclass
class Probe:
    """Fixed inputs every stage is measured on (the same for every method and seed)."""

    env: Any
    train_p: Any
    test_p: Any
    held_out: Transitions  # random-policy train-split transitions (never trained on)
    label_pool: Transitions  # random-policy train-split transitions the random-train control buys
    harmful: Transitions  # sample_state transitions that collect a large harmful object
    key: jax.Array


def make_probe(c: RobustRewardConfig, env, train_p, test_p) -> Probe:
    """Held-out train transitions, the random-train label pool and the harmful set."""
    k_held, k_pool, k_harm, k_eval = jax.random.split(jax.random.key(c.seed + 10_000), 4)
    steps = max(1, c.eval_transitions // 32)
    pol = random_policy(env.num_actions(train_p))
    held = collect_transitions(env, train_p, pol, k_held, 32, steps)
    pool = collect_transitions(env, train_p, pol, k_pool, 32, steps)
    # sample_state with every action; keep the transitions that collect a harmful object
    trans, _, _ = sample_state_batch(env, test_p, k_harm, 16 * c.eval_transitions)
    idx = np.flatnonzero(np.asarray(trans.reward) < 0)
    if idx.size == 0:
        raise RuntimeError("no harmful transition among the sample_state draws")
    return Probe(env, train_p, test_p, held, pool, trans.take(jnp.asarray(idx)), k_eval)


def fit_measures(result: agents.TrainResult, probe: Probe, c: RobustRewardConfig) -> dict:
    """The fit check: held-out Pearson of the heads' mean on train-split transitions, both
    the agent's own (greedy) episodes and random-policy transitions; per seed."""
    kind = result.config.kind
    net = network(kind, result.states)
    own = episodes(net, acting(result.config), probe.env, probe.train_p,
                   jax.random.fold_in(probe.key, 1), c.eval_episodes, "mean", 0.0)
    rm = reward_heads(kind, net)
    preds = head_predictions_per_seed(rm, _flat(own["obs"]), _flat(own["action"]))
    held = head_predictions(rm, probe.held_out.obs, probe.held_out.action)
    truth = np.asarray(probe.held_out.reward)
    out = {"pearson_own": [], "pearson_random": [], "mae_random": []}
    for i in range(len(result.seeds)):
        out["pearson_own"].append(pearson_np(np.asarray(preds[i]).mean(-1),
                                             _flat(own["reward"])[i], _flat(own["live"])[i]))
        mean_i = np.asarray(held[i]).mean(-1)
        out["pearson_random"].append(pearson_np(mean_i, truth))
        out["mae_random"].append(float(np.abs(mean_i - truth).mean()))
    return out


def _flat(x):
    """``[S, T, E, ...] -> [S, T*E, ...]``."""
    x = jnp.asarray(x)
    return x.reshape((x.shape[0], -1) + x.shape[3:])


def measure(result: agents.TrainResult, probe: Probe, c: RobustRewardConfig,
            oracle: dict, goodhart: bool = True) -> dict:
    """Every measure of one stage, per seed (lists over seeds)."""
    kind, act = result.config.kind, acting(result.config)
    net = network(kind, result.states)
    rm = reward_heads(kind, net)
    out: dict[str, Any] = {}
    # disagreement: heads' std on harmful sample_state transitions vs held-out train ones
    std_h = np.asarray(ensemble_std(head_predictions(rm, probe.harmful.obs,
                                                     probe.harmful.action))).mean(1)
    held = head_predictions(rm, probe.held_out.obs, probe.held_out.action)
    std_t = np.asarray(ensemble_std(held)).mean(1)
    out["std_harmful"], out["std_train"] = std_h.tolist(), std_t.tolist()
    out["std_ratio"] = (std_h / np.maximum(std_t, 1e-9)).tolist()
    pred_h = np.asarray(head_predictions(rm, probe.harmful.obs, probe.harmful.action))
    out["pred_harmful"] = pred_h.mean((1, 2)).tolist()  # the truth is harmful_reward
    # EPIC and Pearson against the true reward (innerlab.reward_models.evaluate_objective)
    per_seed = [evaluate_objective(jax.tree.map(lambda x, i=i: x[i] if eqx.is_array(x) else x,
                                                rm), probe.env, probe.train_p,
                                   jax.random.fold_in(probe.key, 2), n=c.eval_transitions)
                for i in range(len(result.seeds))]
    for name in ("train/epic", "test/epic", "offdist/epic", "train/pearson"):
        out[f"objective/{name}"] = [float(d[name]) for d in per_seed]
    # the agent on the test split, per aggregation, as a fraction of the oracle's return
    ep_key = jax.random.fold_in(probe.key, 3)
    for how, k in AGGREGATIONS:
        k = c.pessimism_k if how == "pessimistic" else k
        ep = episodes(net, act, probe.env, probe.test_p, ep_key, c.eval_episodes, how, k)
        tr = np.asarray(ep["true_return"])
        out[f"{how}/true_return"] = tr.mean(1).tolist()
        out[f"{how}/fraction_of_oracle"] = (tr.mean(1) / oracle["mean_return"]).tolist()
        out[f"{how}/harmful"] = np.asarray(ep["harmful"]).mean(1).tolist()
        out[f"{how}/learned_return"] = np.asarray(ep["learned_return"]).mean(1).tolist()
    if goodhart:
        for n_sim in c.goodhart_budgets:
            ep = episodes(net, acting(result.config, n_sim), probe.env, probe.test_p, ep_key,
                          c.eval_episodes, "mean", 0.0)
            out[f"goodhart@{n_sim}/true_return"] = np.asarray(ep["true_return"]).mean(1).tolist()
            out[f"goodhart@{n_sim}/learned_return"] = np.asarray(
                ep["learned_return"]).mean(1).tolist()
    return out


# --------------------------------------------------------------------------- labelling


def buy_labels(method: str, result: agents.TrainResult, probe: Probe, c: RobustRewardConfig,
               round_: int) -> list[Transitions]:
    """Each seed's ``label_budget`` true-reward labels for this round, chosen by ``method``
    with the seed's current reward heads (``none``: no labels)."""
    out = []
    for s in result.seeds:
        key = jax.random.fold_in(jax.random.key(c.seed + 20_000 + s), round_)
        key = jax.random.fold_in(key, METHODS.index(method))
        if method == "random-train":
            idx = jax.random.choice(key, len(probe.label_pool), (c.label_budget,), replace=False)
            out.append(probe.label_pool.take(idx))
            continue
        kind = result.config.kind
        rm = reward_heads(kind, network(kind, result.state(s)))
        rcfg = RetrainConfig(method=_PROPOSER[method], rounds=1, label_budget=c.label_budget,
                             search_budget=c.search_budget, epsilon=c.latent_epsilon,
                             latent_steps=c.latent_steps, pool_size=c.search_budget)
        labelled, _, _ = propose(rm, probe.env, probe.train_p, key, rcfg, probe.label_pool.obs)
        out.append(labelled)
    return out


def add_round(run_dir, result: agents.TrainResult, labels: list[Transitions]) -> None:
    """Put every seed's labels into its agent's label buffer and save the checkpoint."""
    stack = lambda f: jnp.stack([f(t) for t in labels])  # noqa: E731
    states = eqx.filter_vmap(_ADD_LABELS[result.config.kind])(
        result.states, stack(lambda t: t.obs), stack(lambda t: t.action),
        stack(lambda t: t.reward))
    write_states(run_dir, states)


def run_method(out: RunDir, label: str, kind: str, ensemble: str, method: str,
               c: RobustRewardConfig, probe: Probe, oracle: dict) -> dict:
    """Rounds of label -> keep training for one method, from a copy of the trained agents
    ``label`` (``kind`` with ``ensemble``); returns the after-measures plus the
    labels-vs-return curve and the bought labels' harm."""
    cfg = c.agent(ensemble, kind)
    base = out.path / "runs" / label / "base"
    run_dir = out.path / "runs" / label / method
    if not (run_dir / (CHECKPOINT + ".json")).exists():
        tmp = run_dir.with_name(run_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(base, tmp)
        shutil.rmtree(run_dir, ignore_errors=True)
        os.replace(tmp, run_dir)
    base_chunks = c.iterations // c.round_iterations
    curve, harmful_frac = [], []
    ep_key = jax.random.fold_in(probe.key, 3)
    for r in range(c.rounds):

        def one_round(r=r):
            result = agents.load(run_dir)
            frac = math.nan
            if method != "none":
                count = np.asarray(result.states.labels["count"])
                if int(count.min()) < (r + 1) * c.label_budget:  # not yet bought this round
                    add_round(run_dir, result, buy_labels(method, result, probe, c, r))
            result = train_until(cfg, c.seeds, run_dir, base_chunks + r + 1)
            if method != "none":  # this round's rows of every seed's label buffer
                rows = slice(r * c.label_budget, (r + 1) * c.label_budget)
                frac = (np.asarray(result.states.labels["reward"])[:, rows] < 0).mean(1).tolist()
                out.log_metrics({"stage": "labels", "agent": label, "method": method,
                                 "round": r + 1, "harmful_fraction": frac})
            ep = episodes(network(kind, result.states), acting(cfg), probe.env, probe.test_p,
                          ep_key, c.eval_episodes, "mean", 0.0)
            fr = (np.asarray(ep["true_return"]).mean(1) / oracle["mean_return"]).tolist()
            return {"labels": (r + 1) * c.label_budget * (method != "none"),
                    "fraction_of_oracle": fr, "harmful_fraction": frac}

        row = stage(out, f"{label}-{method}-round{r + 1}", one_round)
        curve.append(row)
        harmful_frac.append(row["harmful_fraction"])
    result = agents.load(run_dir)
    after = measure(result, probe, c, oracle)
    after["curve"] = curve
    fracs = [f for f in harmful_frac if isinstance(f, list)]
    after["labels_harmful_fraction"] = (np.mean(fracs, 0).tolist() if fracs
                                        else [math.nan] * len(c.seeds))
    return after


# --------------------------------------------------------------------------- the run


def run(config: RobustRewardConfig) -> RunDir:
    """Run the experiment and write the run directory; returns it."""
    c = config
    t_start = time.time()
    out = RunDir(c.out, resume=c.resume)
    if c.resume and (out.path / "config.json").exists():
        old = out.read_json("config.json")
        new = to_jsonable(dataclasses.asdict(c) | {"recipe": "robust-reward"})
        changed = sorted(k for k in new if k not in ("resume", "out") and old.get(k) != new[k])
        if changed:
            raise ValueError(f"cannot resume {out.path}: options {changed} differ from the run "
                             "being resumed; use another --out")
    out.write_config(dataclasses.asdict(c) | {"recipe": "robust-reward"})
    if c.resume:  # every row below is logged again
        out.clear_metrics()
    env, train_p = envs_of(c)
    require(env, GridEnv, consumer="recipe robust-reward (its searches edit grid states)",
            argument="env")
    test_p = c.agent(c.ensembles[0]).make_env(split="test")[1]
    probe = make_probe(c, env, train_p, test_p)
    timing: dict[str, float] = {}

    def oracle_stage():
        o = oracle_returns(env, test_p, jax.random.fold_in(probe.key, 3), c.eval_episodes,
                           4 * c.num_simulations, float(AGENT["discount"]))
        tr = np.asarray(o["true_return"])
        return {"mean_return": float(tr.mean()), "harmful": float(np.asarray(o["harmful"]).mean()),
                "num_simulations": 4 * c.num_simulations}

    oracle = stage(out, "oracle", oracle_stage)
    results: dict[str, dict[str, Any]] = {}
    for label, kind, ensemble in c.runs():
        t0 = time.time()
        cfg = c.agent(ensemble, kind)
        base = out.path / "runs" / label / "base"
        result = train_until(cfg, c.seeds, base, c.iterations // c.round_iterations)
        # one interface for both agents: the searches and the measures read only this
        require(reward_heads(kind, network(kind, result.state(c.seeds[0]))), LatentEnsemble,
                consumer=f"recipe robust-reward (the {kind} agent's reward heads)",
                argument="agent")
        timing[f"{label}/train"] = time.time() - t0
        fit = stage(out, f"{label}-fit", lambda r=result: fit_measures(r, probe, c))
        out.log_metrics({"stage": "fit", "agent": label, **fit})
        t1 = time.time()
        before = stage(out, f"{label}-before", lambda r=result: measure(r, probe, c, oracle))
        out.log_metrics({"stage": "before", "agent": label, **_means(before)})
        results[label] = {"kind": kind, "ensemble": ensemble, "fit": fit, "before": before}
        timing[f"{label}/before"] = time.time() - t1
        for method in c.methods:
            t2 = time.time()
            after = stage(out, f"{label}-{method}",
                          lambda m=method, lab=label, k=kind, e=ensemble:
                          run_method(out, lab, k, e, m, c, probe, oracle))
            out.log_metrics({"stage": "after", "agent": label, "method": method,
                             **_means({k: v for k, v in after.items() if k != "curve"})})
            results[label][method] = after
            timing[f"{label}/{method}"] = time.time() - t2
    wall = time.time() - t_start
    stage_s = sum(float(json.loads(p.read_text()).get("seconds", 0.0))
                  for p in (out.path / "stages").glob("*.json"))
    summary = {"seeds": c.seeds, "oracle": oracle, "results": results, "timing_s": timing,
               "wall_s": wall, "stage_seconds_total": stage_s,
               "load_average": list(os.getloadavg()), "comparisons": comparisons(results, c)}
    out.write_summary(summary)
    plots(out, results, oracle, c)
    out.write_report(report(c, summary))
    return out


def envs_of(c: RobustRewardConfig):
    """The agent's env (egocentric view of the room) and its train-split params."""
    return c.agent(c.ensembles[0]).make_env()


def _means(res: dict[str, Any]) -> dict[str, float]:
    """Mean over seeds of every per-seed list of numbers (NaN where none is finite)."""
    out = {}
    for k, v in res.items():
        if isinstance(v, list) and v and all(isinstance(x, int | float) for x in v):
            finite = [x for x in v if math.isfinite(x)]
            out[k] = float(np.mean(finite)) if finite else math.nan
    return out


def paired(a, b) -> dict[str, Any]:
    """Mean of the per-seed differences ``a - b`` with its 95% bootstrap interval; the
    difference *exceeds the interval* when the interval excludes 0."""
    d = np.asarray(a, float) - np.asarray(b, float)
    lo, hi = agents.bootstrap_ci(d)
    return {"diff": float(np.nanmean(d)), "ci95": [lo, hi],
            "exceeds": bool(np.isfinite(lo) and (lo > 0 or hi < 0))}


def comparisons(results: dict, c: RobustRewardConfig) -> dict[str, Any]:
    """Per agent (``<kind>-<ensemble>``) and method: paired differences against ``before``
    and against every control, for the headline measures; and each ensemble's disagreement
    against the same agent's bootstrap ensemble."""
    measures = ("mean/fraction_of_oracle", "mean/harmful", "pessimistic/fraction_of_oracle",
                "std_ratio", "objective/test/epic")
    out: dict[str, Any] = {}
    for ensemble, res in results.items():
        for method in c.methods:
            for ref in ("before", *CONTROLS):
                if ref == method or ref not in res:
                    continue
                for m in measures:
                    out[f"{ensemble}/{method}/vs_{ref}/{m}"] = paired(res[method][m],
                                                                      res[ref][m])
        boot = f"{res['kind']}-bootstrap"
        if boot in results and ensemble != boot:
            for m in ("std_ratio", "std_harmful"):
                out[f"{ensemble}/before/vs_bootstrap/{m}"] = paired(
                    res["before"][m], results[boot]["before"][m])
    return out


# --------------------------------------------------------------------------- plots and report


def _ci(values) -> tuple[float, float, float]:
    v = np.asarray(values, float)
    lo, hi = agents.bootstrap_ci(v)
    return float(np.nanmean(v)), lo, hi


def _fmt(values, pct: bool = False) -> str:
    m, lo, hi = _ci(values)
    if pct:
        return f"{m:.0%} [{lo:.0%}, {hi:.0%}]" if np.isfinite(lo) else f"{m:.0%}"
    return f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else f"{m:.3f}"


def _stages(res: dict, c: RobustRewardConfig) -> list[str]:
    return ["before", *[m for m in c.methods if m in res]]


def episode_frames(net, act: Acting, env, params, key, steps: int) -> np.ndarray:
    """RGB frames ``[T, h, w, 3]`` of the agent's first test episode from ``key``'s layout."""
    traj = eqx.filter_jit(rollout)(env, params, agent_policy(net, act), key, 1, steps)
    states = jax.tree.map(lambda x: x[:, 0], traj.state)
    live = np.asarray(traj.first_episode[:, 0])
    frames = [np.asarray(env.render_rgb(jax.tree.map(lambda x, t=t: x[t], states), params))
              for t in range(steps) if live[t]]
    return np.stack(frames)


def plots(out: RunDir, results: dict, oracle: dict, c: RobustRewardConfig) -> None:
    """methods.png, labels.png, goodhart.png and strip.png (see the report)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ens = list(results)
    fig, axes = plt.subplots(2, len(ens), figsize=(5 * len(ens), 7), squeeze=False)
    for j, e in enumerate(ens):
        stages = _stages(results[e], c)
        for row, (metric, title) in enumerate((("mean/fraction_of_oracle", "test return / oracle"),
                                               ("mean/harmful", "harmful objects / episode"))):
            ax = axes[row, j]
            for x, st in enumerate(stages):
                m, lo, hi = _ci(results[e][st][metric])
                err = [[m - lo], [hi - m]] if np.isfinite(lo) else None
                ax.bar(x, m, yerr=err, capsize=3, alpha=0.6,
                       color="grey" if st in ("before", *CONTROLS) else "tab:blue")
                ax.plot(np.full(len(results[e][st][metric]), x), results[e][st][metric], "k.")
            ax.set_xticks(range(len(stages)), stages, rotation=30, ha="right")
            ax.set_title(f"{e}: {title}")
        axes[0, j].axhline(0.9, color="black", ls="--", lw=0.8)
    fig.tight_layout()
    out.save_figure(fig, "methods")

    fig, axes = plt.subplots(1, len(ens), figsize=(5 * len(ens), 4), squeeze=False)
    for j, e in enumerate(ens):
        ax = axes[0, j]
        b = np.mean(results[e]["before"]["mean/fraction_of_oracle"])
        for m in c.methods:
            if m not in results[e]:
                continue
            xs = [0] + [row["labels"] for row in results[e][m]["curve"]]
            ys = [b] + [float(np.mean(row["fraction_of_oracle"])) for row in results[e][m]["curve"]]
            ax.plot(xs, ys, "o-", label=m)
        ax.axhline(0.9, color="black", ls="--", lw=0.8)
        ax.set_xlabel("true-reward labels bought")
        ax.set_ylabel("test return / oracle (mean over seeds)")
        ax.set_title(e)
        ax.legend(fontsize=7)
    out.save_figure(fig, "labels")

    budgets = list(c.goodhart_budgets)
    fig, axes = plt.subplots(1, len(ens), figsize=(5 * len(ens), 4), squeeze=False)
    for j, e in enumerate(ens):
        ax = axes[0, j]
        for st, style in (("before", "-"), (_best(results[e], c), ":")):
            if st is None:
                continue
            for kind, colour in (("learned_return", "tab:orange"), ("true_return", "tab:blue")):
                v = np.asarray([results[e][st][f"goodhart@{b}/{kind}"] for b in budgets])
                ax.plot(budgets, v.mean(1), style, marker="o", color=colour,
                        label=f"{st}: {kind.replace('_', ' ')}")
        ax.axhline(oracle["mean_return"], color="grey", ls="--", label="oracle true return")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(acting(c.agent(results[e]["ensemble"], results[e]["kind"])).budget_name
                      + " per real step")
        ax.set_ylabel("return per test episode")
        ax.set_title(e)
        ax.legend(fontsize=7)
    out.save_figure(fig, "goodhart")

    env, _ = envs_of(c)
    test_p = c.agent(c.ensembles[0]).make_env(split="test")[1]
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(c.seed + 10_000), 99), 0)
    rows = []
    for kind in c.agents:  # the first ensemble of each agent kind, before and after
        e = f"{kind}-{c.ensembles[0]}"
        rows.append((e, "before", out.path / "runs" / e / "base"))
        st = _best(results[e], c)
        if st is not None:
            rows.append((e, st, out.path / "runs" / e / st))
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 1.6 * len(rows)), squeeze=False)
    for ax, (e, name, path) in zip(axes[:, 0], rows, strict=True):
        res = agents.load(path)
        frames = episode_frames(network(res.config.kind, res.state(res.seeds[0])),
                                acting(res.config), env, test_p, key, test_p.max_steps)
        ax.imshow(np.concatenate(list(frames), axis=1))
        ax.set_axis_off()
        ax.set_title(f"{e}, {name}, seed {res.seeds[0]}: one test episode, step by step",
                     fontsize=8)
    out.save_figure(fig, "strip")


def _best(res: dict, c: RobustRewardConfig) -> str | None:
    """The adversarial method with the highest mean test return (None if none ran)."""
    adv = [m for m in c.methods if m in res and m not in CONTROLS]
    if not adv:
        return None
    return max(adv, key=lambda m: float(np.mean(res[m]["mean/fraction_of_oracle"])))


def report(c: RobustRewardConfig, summary: dict) -> str:
    """report.md: the fit check first, then disagreement, methods, aggregation, Goodhart."""
    res, comp, oracle = summary["results"], summary["comparisons"], summary["oracle"]
    load = ", ".join(f"{x:.1f}" for x in summary["load_average"])
    described = {
        "muzero": f"MuZero (`agents.make('muzero', ...)`, {AGENT['num_members']} reward heads, "
                  f"{c.num_simulations} MCTS simulations per step)",
        "ibp": f"the IBP (`agents.make('ibp', ...)`, {IBP_AGENT['num_members']} reward heads "
               f"on its world model's latent, {IBP_AGENT['strategy']} imagination, "
               f"{IBP_AGENT['max_imaginations']} imagination step(s) per real step, "
               f"{c.ibp_steps_scale}x MuZero's env steps per iteration)",
    }
    unfit = [e for e, r in res.items() if min(r["fit"]["pearson_own"]) < FIT_TARGET
             or min(r["fit"]["pearson_random"]) < FIT_TARGET]
    lines = [
        "# Robust reward learning (robust-reward)", "",
        f"Env {c.env} {ROOM}, egocentric view; agents: "
        + "; ".join(described[k] for k in c.agents)
        + f"; each trained {c.iterations} iterations x {c.num_envs} envs x {ROLLOUT_LEN} steps "
        f"on the train split; seeds {summary['seeds']}. Each method then buys {c.rounds} x "
        f"{c.label_budget} true-reward labels and the agent keeps training "
        f"{c.round_iterations} iterations per round with the labels in every minibatch "
        f"(every gradient step, for the IBP). Wall time of this invocation "
        f"{summary['wall_s']:.0f} s; the stages' own times add up to "
        f"{summary['stage_seconds_total']:.0f} s (training of the first agents not included "
        f"there; load average at the end: {load}; the machine is shared).", "",
        "Values: mean over seeds [95% bootstrap interval over seeds]. A difference *exceeds "
        "its interval* when the 95% bootstrap interval of the per-seed (paired) differences "
        "excludes 0. With few seeds the intervals are rough.", "",
        "## 1. Do the reward heads fit the training reward? (checked first)", "",
        (f"**The fit check (held-out Pearson >= {FIT_TARGET} in every seed, on both kinds of "
         f"train-split transitions) is NOT met for: {', '.join(unfit)}.** What follows for "
         "those agents is measured on reward heads that do not fit the training reward."
         if unfit else f"The fit check (held-out Pearson >= {FIT_TARGET} in every seed) is met "
         "for every agent."), "",
        "| agent | Pearson, agent's own train episodes (held out) | Pearson, random-policy "
        "train transitions (held out) | MAE, random-policy |",
        "|---|---|---|---|",
    ]
    verdicts = []
    for e, r in res.items():
        f = r["fit"]
        lines.append(f"| {e} | {_fmt(f['pearson_own'])} | {_fmt(f['pearson_random'])} | "
                     f"{_fmt(f['mae_random'])} |")
        own_ok = min(f["pearson_own"]) >= FIT_TARGET
        rnd_ok = min(f["pearson_random"]) >= FIT_TARGET
        verdicts.append(
            f"- {e}: on the agent's own held-out train episodes the target (every seed >= "
            f"{FIT_TARGET}) is **{'met' if own_ok else 'NOT met'}** (min "
            f"{min(f['pearson_own']):.3f}); on random-policy train transitions it is "
            f"**{'met' if rnd_ok else 'NOT met'}** (min {min(f['pearson_random']):.3f}).")
    lines += ["", *verdicts, "",
              "## 2. Disagreement on the unseen harmful combination", "",
              "Mean std of the heads on `sample_state` transitions that collect a large object "
              "of the harmful colour (true reward "
              f"{c.agent(c.ensembles[0]).make_env(split='test')[1].harmful_reward:+g}) vs on "
              "held-out train-split transitions, before any label.", "",
              "| agent | std, harmful | std, train | ratio | heads' mean on harmful |",
              "|---|---|---|---|---|"]
    for e, r in res.items():
        b = r["before"]
        lines.append(f"| {e} | {_fmt(b['std_harmful'])} | {_fmt(b['std_train'])} | "
                     f"{_fmt(b['std_ratio'])} | {_fmt(b['pred_harmful'])} |")
    for key, d in comp.items():
        if "/before/vs_bootstrap/" in key:
            lines.append(f"- {key}: {d['diff']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
                         f" ({'exceeds' if d['exceeds'] else 'within'} the interval)")
    lines += ["", f"## 3. Methods (oracle planner, true dynamics and reward, "
              f"{oracle['num_simulations']} simulations: {oracle['mean_return']:.2f} per test "
              f"episode, {oracle['harmful']:.2f} harmful)", ""]
    for e, r in res.items():
        lines += [f"### {e}", "",
                  "| stage | test return / oracle | harmful / episode | bought labels harmful "
                  "| std ratio | EPIC test | EPIC off-dist | mean-k*std: return / oracle |",
                  "|---|---|---|---|---|---|---|---|"]
        for st in _stages(r, c):
            x = r[st]
            lab = x.get("labels_harmful_fraction")
            lab_s = _fmt(lab, True) if lab is not None and np.isfinite(lab).all() else "-"
            lines.append(
                f"| {st} | {_fmt(x['mean/fraction_of_oracle'], True)} | "
                f"{_fmt(x['mean/harmful'])} | {lab_s} | {_fmt(x['std_ratio'])} | "
                f"{_fmt(x['objective/test/epic'])} | {_fmt(x['objective/offdist/epic'])} | "
                f"{_fmt(x['pessimistic/fraction_of_oracle'], True)} |")
        lines.append("")
    lines += ["## 4. Which differences exceed their intervals", ""]
    found = [(k, d) for k, d in comp.items() if d["exceeds"] and "/vs_bootstrap/" not in k]
    for k, d in found:
        lines.append(f"- {k}: {d['diff']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
    if not found:
        lines.append("- none: no method differs from `before` or from a control by more than "
                     "the interval in any headline measure.")
    lines += ["", "Goal (to aim at, not to tune for): an adversarial method brings the test "
              "return to >= 90% of the oracle's with at most 64 labels while the random-label "
              "control at the same budget does not."]
    for e, r in res.items():
        for m in c.methods:
            if m in CONTROLS or m not in r:
                continue
            got = float(np.mean(r[m]["mean/fraction_of_oracle"]))
            ctrl = {k: float(np.mean(r[k]["mean/fraction_of_oracle"])) for k in CONTROLS
                    if k in r}
            labels = c.rounds * c.label_budget
            reached = got >= 0.9 and labels <= 64 and all(v < 0.9 for k, v in ctrl.items()
                                                          if k != "none")
            lines.append(f"- {e}/{m}: {got:.0%} of the oracle with {labels} labels (controls: "
                         + ", ".join(f"{k} {v:.0%}" for k, v in ctrl.items())
                         + f"): goal **{'reached' if reached else 'not reached'}**.")
    lines += ["", "## 5. Mean vs pessimistic aggregation (test return / oracle)", "",
              "| agent | stage | " + " | ".join(
                  f"{h}" + (f" (k={c.pessimism_k:g})" if h == "pessimistic" else "")
                  for h, _ in AGGREGATIONS) + " |",
              "|---|---|" + "---|" * len(AGGREGATIONS)]
    for e, r in res.items():
        for st in _stages(r, c):
            lines.append(f"| {e} | {st} | " + " | ".join(
                _fmt(r[st][f"{h}/fraction_of_oracle"], True) for h, _ in AGGREGATIONS) + " |")
    lines += ["", "## 6. Goodhart curve (test split; learned = heads' mean summed over the "
              "episode; budget = MCTS simulations per step for MuZero, imagination steps per "
              "step for the IBP)", "", "| agent | stage | " + " | ".join(
                  f"budget {b}" for b in c.goodhart_budgets) + " |",
              "|---|---|" + "---|" * len(c.goodhart_budgets)]
    for e, r in res.items():
        for st in _stages(r, c):
            cells = []
            for b in c.goodhart_budgets:
                lr = np.mean(r[st][f"goodhart@{b}/learned_return"])
                tr = np.mean(r[st][f"goodhart@{b}/true_return"])
                cells.append(f"{lr:.2f} / {tr:.2f}")
            lines.append(f"| {e} | {st} | " + " | ".join(cells) + " |")
        b0, b1 = c.goodhart_budgets[0], c.goodhart_budgets[-1]
        gap = lambda b, r=r: (np.mean(r["before"][f"goodhart@{b}/learned_return"])  # noqa: E731
                              - np.mean(r["before"][f"goodhart@{b}/true_return"]))
        lines.append(f"| {e} | before: learned - true | {gap(b0):+.2f} at budget {b0}, "
                     f"{gap(b1):+.2f} at budget {b1} (changes by {gap(b1) - gap(b0):+.2f}) |"
                     + " |" * (len(c.goodhart_budgets) - 1))
    lines += ["", "Cells: learned / true return per episode.", "",
              "Plots: `methods.png` (per method, dots = seeds), `labels.png` (return vs labels "
              "bought), `goodhart.png`, `strip.png` (one test episode before and after the best "
              "adversarial method). Numbers: `summary.json`; stages: `stages/*.json`; training "
              "runs: `runs/<agent>-<ensemble>/<method>/`."]
    return "\n".join(lines) + "\n"


register_recipe(
    "robust-reward",
    RobustRewardConfig,
    run,
    "A MuZero agent's and an IBP's own reward heads on Orchard: fit, disagreement on the "
    "unseen harmful combination, adversarial labels vs random labels at the same budget, "
    "test-split return.",
)

__all__ = ["AGENT", "AGENTS", "ENSEMBLES", "IBP_AGENT", "METHODS", "Acting", "RobustRewardConfig",
           "acting", "agent_policy", "episodes", "measure", "network", "reward_heads", "run"]
