"""Zero-shot objectives: a language model acts in Orchard, inverse RL recovers its objective.

The seed's fourth proposal: let a language model act in an environment to
optimise a reward, do IRL on its behaviour, inspect the objective and measure
how coherent it is, and compare with an RL agent trained on the reward; vary
how observations are encoded as text and see how consistent the recovered
objectives are; and try a new game whose rules are given only in the prompt.

Agents (every one acts in the same layouts: the same rollout keys):

- ``lm-<encoding>-greedy`` / ``-t<T>``: :func:`innerlab.lm.lm_policy` with each
  encoding, the most likely move or a sample at temperature ``T``, the offered
  order of moves shuffled per step;
- ``lm-<encoding>-greedy-fixed``: the same with the moves always offered in one
  order (the control for position bias);
- ``newgame-lm-...``: a new game: made-up words for the moves and a changed
  value table, both given only in the rules of the prompt;
- ``ppo-lstm``: recurrent PPO trained on the true reward (``innerlab.agents``);
- ``random`` and ``oracle`` (MCTS on the true dynamics): the controls.

Demonstrations: ``demo_seeds`` rollouts of ``envs`` fresh layouts each. For each
agent: the return and its fraction of the layouts' optimal bound; position
bias (LM agents: how often the chosen move was the first offered); MCE IRL
(:mod:`innerlab.irl`) on the demonstrations, leave-one-seed-out: the held-out
log-likelihood per action of the recovered reward's soft-optimal policy
against the uniform policy, behavioural cloning and the true reward at a
fitted scale (coherence); the EPIC distance of the recovered reward to the
true one, and between the rewards recovered from the different agents
(consistency across encodings).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import innerlab.agents as agents
import innerlab.envs as envs
from innerlab import irl, lm
from innerlab.envs import grid
from innerlab.envs.rollout import rollout
from innerlab.recipes import RecipeConfig, RunDir, register_recipe

ENV = "Orchard-v0"
NEW_GAME_WORDS = ("gar", "zed", "rof", "jib")  # one token each in SmolLM2's vocabulary
REWARD_MODELS = ("linear", "neural", "both")


@dataclasses.dataclass
class ZeroShotConfig(RecipeConfig):
    """Options of ``innerlab run zero-shot``."""

    model: str = "smollm2-135m"
    """Packaged model name, a local Hugging Face model directory or a .gguf file."""
    encodings: tuple[str, ...] = ("ascii", "language", "coords")
    """Text encodings of the observation, one LM agent each (innerlab.lm.ENCODINGS)."""
    temperature: float = 1.0
    """The sampled LM agents' temperature (the greedy ones always run too)."""
    fixed_order_control: bool = True
    """Also run the first encoding's greedy agent with the moves in a fixed order."""
    new_game: bool = True
    """Also run the first encoding's greedy agent in the new game (rules only in the prompt)."""
    height: int = 6
    width: int = 6
    n_objects: int = 3
    max_steps: int = 12
    demo_seeds: int = 3
    """Independent demonstration sets (fresh layouts), at least 3 (IRL leaves one out)."""
    envs: int = 16
    """Layouts (one episode each) per demonstration seed."""
    ppo_iterations: int = 80
    ppo_envs: int = 32
    ppo_width: int = 64
    ppo_learning_rate: float = 1e-3
    oracle_simulations: int = 32
    irl_l2: float = 1e-5
    reward_model: str = "linear"
    """IRL's reward model: 'linear' (step features), 'neural' (an MLP of the egocentric
    observation, innerlab.irl.fit_neural_reward) or 'both' (a row each in the report)."""
    neural_width: int = 64
    neural_steps: int = 1000
    neural_learning_rate: float = 3e-3
    neural_l2: float = 1e-4
    seed: int = 0

    QUICK: ClassVar[dict[str, Any]] = {
        "encodings": ("ascii",),
        "height": 5,
        "width": 5,
        "n_objects": 3,
        "max_steps": 8,
        "envs": 8,
        "ppo_iterations": 60,
    }

    def __post_init__(self):
        self.encodings = tuple(self.encodings)
        if not self.encodings or len(set(self.encodings)) != len(self.encodings):
            raise ValueError(f"option 'encodings' must be distinct names from {lm.ENCODINGS}, "
                             f"got {list(self.encodings)}")
        for e in self.encodings:
            lm.check_encoding(e)
        if self.reward_model not in REWARD_MODELS:
            raise ValueError(f"option 'reward_model' must be one of {list(REWARD_MODELS)}, "
                             f"got {self.reward_model!r}")
        for name in ("height", "width", "n_objects", "max_steps", "envs", "ppo_iterations",
                     "ppo_envs", "ppo_width", "oracle_simulations", "neural_width",
                     "neural_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"option {name!r} must be an int >= 1, got {value!r}")
        if isinstance(self.demo_seeds, bool) or not isinstance(self.demo_seeds, int) or (
                self.demo_seeds < 3):
            raise ValueError(f"option 'demo_seeds' must be an int >= 3, got {self.demo_seeds!r}")
        for name in ("temperature", "irl_l2", "ppo_learning_rate", "neural_learning_rate",
                     "neural_l2"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"option {name!r} must be a finite number > 0, got {value!r}")
        if self.n_objects > 4:
            raise ValueError("option 'n_objects' must be <= 4 (the tabular MDP has "
                             f"H*W*2**n_objects states), got {self.n_objects}")
        self.env()  # the env's own checks, now

    def overrides(self) -> dict[str, int]:
        return {"height": self.height, "width": self.width, "n_objects": self.n_objects,
                "max_steps": self.max_steps, "split": "test"}

    def env(self, new_game: bool = False):
        overrides = self.overrides()
        if new_game:  # small objects are now the valuable ones
            overrides.update(reward_small=2.0, reward_large=1.0)
        return envs.make(ENV, **overrides)

    def ppo(self) -> agents.AgentConfig:
        return agents.make("ppo-lstm", env=ENV, egocentric=True, width=self.ppo_width,
                           env_overrides=self.overrides(), num_envs=self.ppo_envs,
                           learning_rate=self.ppo_learning_rate,
                           total_steps=self.ppo_iterations * self.ppo_envs * 32)


def new_game_rules(params) -> str:
    """The rules of the new game: the usual rules with made-up words for the moves."""
    moves = ", ".join(f"'{w}' moves you {m}"
                      for w, m in zip(NEW_GAME_WORDS, grid.MOVE_NAMES, strict=True))
    base = lm.rules_text(envs.Orchard(), params)
    return (f"{base} This game has its own words for the moves: {moves}. Answer with one of "
            "these words.")


# --------------------------------------------------------------------------- demonstrations


@dataclasses.dataclass
class Demo:
    """One agent's demonstrations: per seed a rollout, its tabular layouts and demos."""

    name: str
    params: Any
    returns: np.ndarray  # [K, E]
    optimal: np.ndarray  # [K, E]
    mdps: irl.TabularMDP  # stacked [K*E]
    starts: Any  # [K*E] grid states: the layouts (observations for the neural reward)
    demos: irl.Demos  # [K*E, T]
    position_bias: list[float] | None = None  # per seed
    seconds: float = 0.0


@eqx.filter_jit
def _rollout(env, params, policy, key, num_envs: int, num_steps: int):
    return rollout(env, params, policy, key, num_envs, num_steps)


def _bounds(env, params, traj) -> np.ndarray:
    first = jax.tree.map(lambda x: x[0], traj.state)
    return np.asarray(jax.vmap(lambda s: env.optimal_return_upper_bound(s, params))(first))


def _is_lm(policy) -> bool:
    try:
        lm.agent_of(policy)
    except TypeError:
        return False
    return True


def collect(name: str, policy, env, params, config: ZeroShotConfig) -> Demo:
    """``demo_seeds`` rollouts of one episode in each of ``envs`` fresh layouts."""
    start = time.perf_counter()
    is_lm = _is_lm(policy)
    rows, bounds, parts, bias, starts = [], [], [], [], []
    for k in range(config.demo_seeds):
        key = jax.random.key(config.seed * 1000 + k)
        if is_lm:
            traj, offered = lm.lm_rollout(policy, env, params, key, config.envs, config.max_steps)
            mask = np.asarray(traj.first_episode)
            bias.append(lm.position_bias(np.asarray(traj.action), offered, mask))
        else:
            traj = _rollout(env, params, policy, key, config.envs, config.max_steps)
        rows.append(np.asarray((traj.reward * traj.first_episode).sum(0)))
        bounds.append(_bounds(env, params, traj))
        parts.append(irl.demos_from_trajectory(env, params, traj))
        starts.append(irl.trajectory_layouts(env, traj))
    mdps = jax.tree.map(lambda *x: jnp.concatenate(x) if eqx.is_array(x[0]) else x[0],
                        *[p[0] for p in parts])
    demos = jax.tree.map(lambda *x: jnp.concatenate(x), *[p[1] for p in parts])
    starts = jax.tree.map(lambda *x: jnp.concatenate(x), *starts)
    return Demo(name, params, np.stack(rows), np.stack(bounds), mdps, starts, demos,
                bias or None, time.perf_counter() - start)


# --------------------------------------------------------------------------- IRL and measures


def _per_episode(ll: jax.Array, demos: irl.Demos) -> np.ndarray:
    return np.asarray(ll) / np.maximum(np.asarray(demos.mask.sum(1)), 1)


def analyse(demo: Demo, config: ZeroShotConfig) -> dict[str, Any]:
    """Leave-one-seed-out MCE IRL, BC and true-reward fits; held-out log-likelihood per
    action (per episode), EPIC of each fold's reward to the true one."""
    k, e = demo.returns.shape
    truth = irl.true_weights(demo.params)
    inputs = irl.bc_features(demo.mdps)
    # the true reward at a fitted scale, plus a fitted constant per step (with it the
    # uniform policy is one of the model's members, as it is one of MCE IRL's)
    true_basis = jnp.stack([truth, jnp.zeros_like(truth).at[-1].set(1.0)])
    neural = config.reward_model in ("neural", "both")
    linear = config.reward_model in ("linear", "both")
    if neural:
        lobs = irl.observe_layouts(envs.Egocentric(envs.Orchard()), demo.params, demo.starts,
                                   demo.mdps)
    held = {"irl": [], "bc": [], "true": [], "uniform": [], "neural": []}
    epic, epic_neural, weights = [], [], []
    for fold in range(k):
        test = np.arange(fold * e, (fold + 1) * e)
        train = np.setdiff1d(np.arange(k * e), test)
        m_tr, d_tr = irl.split_layouts(demo.mdps, train), irl.split_layouts(demo.demos, train)
        m_te, d_te = irl.split_layouts(demo.mdps, test), irl.split_layouts(demo.demos, test)
        w = irl.fit_reward(m_tr, d_tr, l2=config.irl_l2)
        w_true = irl.fit_reward(m_tr, d_tr, l2=config.irl_l2, basis=true_basis)
        w_bc = irl.fit_bc(inputs[train], d_tr, config.irl_l2)
        held["irl"].append(_per_episode(irl.log_likelihood(m_te, d_te, w), d_te))
        held["true"].append(_per_episode(irl.log_likelihood(m_te, d_te, w_true), d_te))
        held["uniform"].append(np.full(len(test), -math.log(demo.mdps.next.shape[-1])))
        held["bc"].append(_per_episode(irl.bc_log_likelihood(inputs[test], d_te, w_bc), d_te))
        epic.append(irl.epic_to(m_te, w, truth))
        weights.append(np.asarray(w))
        if neural:
            net = fit_neural(m_tr, irl.split_layouts(lobs, train), d_tr, config, fold)
            table = irl.reward_tables(net, irl.split_layouts(lobs, test))
            held["neural"].append(_per_episode(irl.log_likelihood_of(m_te, d_te, table), d_te))
            epic_neural.append(irl.epic_tables(m_te, table, m_te.features @ truth))
    held = {name: np.concatenate(v) for name, v in held.items() if v}
    w_all = irl.fit_reward(demo.mdps, demo.demos, l2=config.irl_l2)
    out = {"weights": np.asarray(w_all), "fold_weights": np.stack(weights),
           "epic_to_true": _stat(np.array(epic)), "epic_per_fold": epic}
    for name in ("irl", "bc", "true", "neural"):
        if name in held:
            out[f"ll_{name}"] = _stat(held[name])
            out[f"gain_{name}"] = _stat(held[name] - held["uniform"])
    out["ll_uniform"] = _stat(held["uniform"])
    if neural:
        out["epic_neural_to_true"] = _stat(np.array(epic_neural))
        out["epic_neural_per_fold"] = epic_neural
    out["reward_models"] = ["linear"] * linear + ["neural"] * neural
    return out


def fit_neural(mdps: irl.TabularMDP, lobs: irl.LayoutObs, demos: irl.Demos,
               config: ZeroShotConfig, fold: int) -> irl.RewardNet:
    """The neural reward of one fold (its init drawn from the seed and the fold)."""
    return irl.fit_neural_reward(mdps, lobs, demos, jax.random.key(config.seed * 1000 + fold),
                                 width=config.neural_width, steps=config.neural_steps,
                                 learning_rate=config.neural_learning_rate, l2=config.neural_l2)


def _stat(values: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values, float)
    finite = values[np.isfinite(values)]
    mean = float(finite.mean()) if finite.size else math.nan
    return {"mean": mean, "ci95": list(agents.bootstrap_ci(finite)), "n": int(finite.size)}


def performance(demo: Demo) -> dict[str, Any]:
    """Return and fraction of the optimal bound: per seed, mean and interval over seeds."""
    per_seed = demo.returns.mean(1)
    frac = demo.returns.sum(1) / np.maximum(demo.optimal.sum(1), 1e-9)
    mask = np.asarray(demo.demos.mask)
    moves = np.bincount(np.asarray(demo.demos.a)[mask], minlength=4) / max(mask.sum(), 1)
    out = {"return": _stat(per_seed), "fraction_of_optimal": _stat(frac),
           "return_per_seed": per_seed.tolist(), "fraction_per_seed": frac.tolist(),
           "move_shares": dict(zip(grid.MOVE_NAMES, moves.tolist(), strict=True))}
    if demo.position_bias is not None:
        out["position_bias"] = _stat(np.array(demo.position_bias))
        out["position_bias_per_seed"] = demo.position_bias
    return out


def consistency(demos: dict[str, Demo], results: dict[str, dict]) -> dict[str, dict]:
    """EPIC distance between the rewards recovered from every pair of agents of the usual
    game (on the first agent's layouts)."""
    names = [n for n in demos if not n.startswith("newgame")]
    ref = demos[names[0]].mdps
    return {a: {b: irl.epic_to(ref, results[a]["weights"], results[b]["weights"])
                for b in names} for a in names}


# --------------------------------------------------------------------------- run


def _fmt(stat: dict) -> str:
    lo, hi = stat["ci95"]
    if not math.isfinite(stat["mean"]):
        return "n/a"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{stat['mean']:.2f}"
    return f"{stat['mean']:.2f} [{lo:.2f}, {hi:.2f}]"


def _plots(run: RunDir, perf: dict, results: dict, consist: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(perf)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key, title in ((axes[0], "fraction_of_optimal", "fraction of optimal return"),):
        means = [perf[n][key]["mean"] for n in names]
        err = [[m - perf[n][key]["ci95"][0] if math.isfinite(perf[n][key]["ci95"][0]) else 0
                for m, n in zip(means, names, strict=True)],
               [perf[n][key]["ci95"][1] - m if math.isfinite(perf[n][key]["ci95"][1]) else 0
                for m, n in zip(means, names, strict=True)]]
        ax.bar(range(len(names)), means, yerr=err, capsize=3)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
        ax.set_title(title)
    width = 0.27
    for i, (kind, label) in enumerate((("gain_irl", "IRL reward"), ("gain_bc", "BC"),
                                       ("gain_true", "true reward (fitted scale)"))):
        means = [results[n][kind]["mean"] for n in names]
        axes[1].bar(np.arange(len(names)) + (i - 1) * width, means, width, label=label)
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_xticks(range(len(names)), names, rotation=60, ha="right")
    axes[1].set_title("held-out log-lik. per action minus uniform (nats)")
    axes[1].legend(fontsize=7)
    lm_names = [n for n in names if "position_bias" in perf[n]]
    axes[2].bar(range(len(lm_names)), [perf[n]["position_bias"]["mean"] for n in lm_names])
    axes[2].axhline(0.25, color="k", ls="--", lw=0.8, label="chance (1/4)")
    axes[2].set_xticks(range(len(lm_names)), lm_names, rotation=60, ha="right")
    axes[2].set_ylim(0, 1.05)
    axes[2].set_title("position bias: chose the first offered move")
    axes[2].legend(fontsize=7)
    run.save_figure(fig, "measures.png")
    cn = list(consist)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(cn), 0.8 + 0.6 * len(cn)))
    table = np.array([[consist[a][b] for b in cn] for a in cn])
    im = ax.imshow(table, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(cn)), cn, rotation=60, ha="right")
    ax.set_yticks(range(len(cn)), cn)
    for (i, j), v in np.ndenumerate(table):
        ax.text(j, i, "nan" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center",
                fontsize=7, color="w")
    fig.colorbar(im, ax=ax, label="EPIC distance")
    ax.set_title("EPIC between recovered rewards")
    run.save_figure(fig, "consistency.png")


def _verdict(name: str, res: dict) -> str:
    """Whether held-out behaviour is better explained by the recovered reward than by chance
    (the gain's interval above 0), and how that compares with behavioural cloning."""
    gain, lo = res["gain_irl"]["mean"], res["gain_irl"]["ci95"][0]
    text = f"held-out gain {gain:+.3f} nats/action, interval {_fmt(res['gain_irl'])}"
    if not (math.isfinite(lo) and lo > 0):
        return f"{name}: NOT better explained by a coherent reward than by chance ({text})"
    bc_lo = res["ll_bc"]["ci95"][0]
    irl_hi = res["ll_irl"]["ci95"][1]
    if math.isfinite(bc_lo) and math.isfinite(irl_hi) and bc_lo > irl_hi:
        return (f"{name}: better explained by a coherent reward than by chance ({text}), but "
                f"behavioural cloning explains it better still (BC {_fmt(res['ll_bc'])} vs IRL "
                f"{_fmt(res['ll_irl'])}): part of it is not reward-seeking")
    return f"{name}: better explained by a coherent reward than by chance ({text})"


def _report(config, perf, results, consist, feature_names, timings, total) -> str:
    lines = [
        "# Zero-shot objectives: a language model acts, inverse RL recovers its objective", "",
        f"Model `{config.model}`; Orchard {config.height}x{config.width}, {config.n_objects} "
        f"objects, {config.max_steps} steps; {config.demo_seeds} demonstration seeds x "
        f"{config.envs} layouts (one episode each); every agent acts in the same layouts. "
        f"Wall time {total:.0f} s.", "",
        "Intervals: 95% bootstrap; return and fraction of optimal over demonstration seeds, "
        "position bias over seeds, log-likelihoods over held-out episodes "
        "(leave-one-seed-out), EPIC over folds.", "",
        "## Performance and position bias", "",
        "| agent | return | fraction of optimal | position bias (chance 0.25) | "
        "moves up/right/down/left |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n, p in perf.items():
        pb = _fmt(p["position_bias"]) if "position_bias" in p else "-"
        shares = "/".join(f"{v:.2f}" for v in p["move_shares"].values())
        lines.append(f"| {n} | {_fmt(p['return'])} | {_fmt(p['fraction_of_optimal'])} | {pb} "
                     f"| {shares} |")
    lines += ["", "## Inverse RL: coherence and the recovered reward", "",
              "Held-out log-likelihood per action (nats) of the agent's moves; uniform is "
              "log(1/4) = -1.39 where every move counts. Gains are over uniform.", "",
              "| agent | reward model | uniform | IRL reward | BC | true reward (fitted scale) | "
              "gain IRL | EPIC to true |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n, r in results.items():
        rows = {"linear": ("ll_irl", "gain_irl", "epic_to_true"),
                "neural": ("ll_neural", "gain_neural", "epic_neural_to_true")}
        for model in r["reward_models"]:
            ll, gain, epic = rows[model]
            lines.append(f"| {n} | {model} | {_fmt(r['ll_uniform'])} | {_fmt(r[ll])} | "
                         f"{_fmt(r['ll_bc'])} | {_fmt(r['ll_true'])} | {_fmt(r[gain])} | "
                         f"{_fmt(r[epic])} |")
    if config.reward_model != "linear":
        lines += ["", "The neural reward: an MLP of the egocentric observation, one reward per "
                  f"move (width {config.neural_width}, {config.neural_steps} Adam steps, "
                  f"learning rate {config.neural_learning_rate:g}, l2 {config.neural_l2:g}), "
                  "fit by the same MCE likelihood; with one episode per layout it is fit on "
                  "few demonstrations (see docs/zero_shot.md for how many it needs)."]
    lines += ["", "## Verdicts (linear reward)", ""]
    lines += [f"- {_verdict(n, r)}" for n, r in results.items()]
    lines += ["", "## Recovered reward weights (all seeds)", "",
              "| agent | " + " | ".join(feature_names) + " |",
              "| --- |" + " --- |" * len(feature_names)]
    for n, r in results.items():
        lines.append(f"| {n} | " + " | ".join(f"{v:+.2f}" for v in r["weights"]) + " |")
    cn = list(consist)
    lines += ["", "## Consistency: EPIC between recovered rewards", "",
              "| | " + " | ".join(cn) + " |", "| --- |" + " --- |" * len(cn)]
    for a in cn:
        lines.append(f"| {a} | " + " | ".join(
            "nan" if not math.isfinite(consist[a][b]) else f"{consist[a][b]:.2f}" for b in cn)
            + " |")
    lines += ["", "EPIC is undefined (nan) for a reward that is constant on the layouts "
              "(weights ~ 0: behaviour no reward explains).", "",
              "## Wall time per agent (s)", ""]
    lines += [f"- {n}: {t:.0f}" for n, t in timings.items()]
    lines += ["", "![measures](measures.png)", "", "![consistency](consistency.png)", ""]
    return "\n".join(lines)


def lm_agents(config: ZeroShotConfig, model) -> dict[str, tuple]:
    """``name -> (policy, env, params)`` of every LM agent the config asks for."""
    env, params = config.env()
    out = {}
    for enc in config.encodings:
        out[f"lm-{enc}-greedy"] = (lm.lm_policy(model, env, params, enc), env, params)
        out[f"lm-{enc}-t{config.temperature:g}"] = (
            lm.lm_policy(model, env, params, enc, temperature=config.temperature), env, params)
    first = config.encodings[0]
    if config.fixed_order_control:
        out[f"lm-{first}-greedy-fixed"] = (
            lm.lm_policy(model, env, params, first, order="fixed"), env, params)
    if config.new_game:
        genv, gparams = config.env(new_game=True)
        out[f"newgame-lm-{first}-greedy"] = (
            lm.lm_policy(model, genv, gparams, first, rules=new_game_rules(gparams),
                         action_names=NEW_GAME_WORDS), genv, gparams)
    return out


def run(config: ZeroShotConfig, model: lm.Scorer | None = None) -> RunDir:
    """Run the experiment; ``model`` replaces ``config.model`` (tests pass a small fake)."""
    start = time.perf_counter()
    run_dir = RunDir(config.out)
    run_dir.write_config(config)
    env, params = config.env()
    model = lm.load_model(config.model) if model is None else model
    agent_list: dict[str, tuple] = {
        "random": (agents.random_policy(4), env, params),
        "oracle": (agents.oracle_policy(env, params, config.oracle_simulations), env, params),
    }
    t0 = time.perf_counter()
    ppo_cfg = config.ppo()
    trained = agents.train(ppo_cfg, seeds=[config.seed], run_dir=run_dir.file("ppo-lstm"),
                           progress=False)
    ppo_env, ppo_params = ppo_cfg.make_env()
    agent_list["ppo-lstm"] = (trained.policy(config.seed), ppo_env, ppo_params)
    ppo_train_s = time.perf_counter() - t0
    agent_list.update(lm_agents(config, model))
    if config.new_game:
        genv, gparams = config.env(new_game=True)
        agent_list["newgame-random"] = (agents.random_policy(4), genv, gparams)
        agent_list["newgame-oracle"] = (
            agents.oracle_policy(genv, gparams, config.oracle_simulations), genv, gparams)
    demos, perf, results, timings = {}, {}, {}, {"ppo-lstm training": ppo_train_s}
    for name, (policy, a_env, a_params) in agent_list.items():
        demo = collect(name, policy, a_env, a_params, config)
        demos[name] = demo
        perf[name] = performance(demo)
        results[name] = analyse(demo, config)
        timings[name] = demo.seconds
        run_dir.log_metrics({"agent": name, **perf[name],
                             **{k: v for k, v in results[name].items() if k.startswith(
                                 ("ll_", "gain_", "epic_to"))}, "seconds": demo.seconds})
    consist = consistency(demos, results)
    names = irl.feature_names(params)
    total = time.perf_counter() - start
    run_dir.write_summary({"performance": perf, "irl": results, "consistency": consist,
                           "feature_names": names, "seconds": timings, "wall_time_s": total})
    _plots(run_dir, perf, results, consist)
    run_dir.write_report(_report(config, perf, results, consist, names, timings, total))
    return run_dir


register_recipe("zero-shot", ZeroShotConfig, run,
                "A language model acts in Orchard (three text encodings, shuffled moves, a new "
                "game); MCE IRL recovers its objective; coherence, consistency and position bias "
                "against an RL agent, random and oracle.")

__all__ = ["ZeroShotConfig", "analyse", "collect", "consistency", "lm_agents",
           "new_game_rules", "performance", "run"]
