"""muzero-orchard: does the MCTS-as-a-layer agent learn Orchard, and what does it learn?

Trains the MuZero agent (``innerlab.agents``, kind ``"muzero"``) with the
Orchard preset (:data:`ORCHARD`, :func:`orchard_agent`) on Orchard-v0's train
split over several seeds (``vmap``-ped), plus ablations of that configuration
as controls, each in its own run directory ``runs/<label>/`` (config, metrics,
checkpoint; ``--resume`` continues them), and scores every agent with
``agents.evaluate`` on fresh episodes of both splits against each episode's
optimal return bound (the sum of its positive object values; no policy earns
more). A uniformly random policy (``agents.random_policy``) is scored the same way.

Two policies are scored per agent: *acting*, the search exactly as the learner
acts with it (root noise, action sampled from the visit counts), and *greedy*,
the deterministic search (no noise, most-visited action). The train split says
whether the agent learned the task (the target is 90% of the bound); the test
split, where large objects of the harmful colour appear, shows what objective
the agent took from training.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

import innerlab.agents as agents
from innerlab.recipes import RecipeConfig, RunDir, register_recipe

ROLLOUT_LEN = 16  # env steps per env in one act-then-learn iteration (the learner's default)
# The configuration that learns Orchard-v0 (7x7, 5 objects) on a laptop CPU, in
# ``agents.make("muzero", ...)`` options: 300 iterations of 64 envs x 16 steps (307k env
# steps, about 3 minutes on 2 cores; tested in tests/test_muzero.py, slow). What it needs
# beyond the defaults: the egocentric view (a flat encoder cannot learn the reward from the
# global grid), discount 0.9 (Q-values that prefer collecting sooner, so the greedy search
# does not wander), MuZero's visit-count targets with a prior entropy bonus, and 32 Adam
# steps per rollout.
ORCHARD: dict[str, Any] = {
    "env": "Orchard-v0",
    "egocentric": True,
    "discount": 0.9,
    "policy": "muzero",
    "entropy_coef": 0.05,
    "num_epochs": 4,
    "num_minibatches": 8,
    "rollout_len": ROLLOUT_LEN,
}


def orchard_agent(num_iterations: int = 300, num_envs: int = 64, chunk: int = 20,
                  **changes: Any) -> agents.AgentConfig:
    """The Orchard preset as an ``AgentConfig``: ``num_iterations`` act-then-learn iterations
    of ``num_envs`` envs, ``chunk`` iterations per jitted call (logged row, checkpoint);
    ``changes`` override any option (e.g. ``discount=0.97``)."""
    options = {**ORCHARD, "num_envs": num_envs, "log_every": chunk,
               "total_steps": num_iterations * num_envs * ROLLOUT_LEN, **changes}
    return agents.make("muzero", **options)


# Each control is the Orchard preset with one change.
CONTROLS: dict[str, dict[str, Any]] = {
    "global-view": {"egocentric": False},
    "discount-0.97": {"discount": 0.97},
    "gumbel": {"policy": "gumbel"},
}
TARGET = 0.9
CELLS = (("train", False), ("train", True), ("test", False), ("test", True))


@dataclasses.dataclass
class MuZeroOrchardConfig(RecipeConfig):
    """Options of the experiment (see module docstring)."""

    seeds: int = 3
    """Seeds 0..seeds-1 of the main configuration (trained side by side with vmap)."""
    controls: tuple[str, ...] = ("global-view", "discount-0.97")
    """Ablations of the main configuration, each one change to it: global-view (no
    egocentric view), discount-0.97, gumbel (Gumbel MuZero instead of visit counts)."""
    control_seeds: int = 1
    """Seeds of each control."""
    num_iterations: int = 300
    """Act-then-learn iterations per run (each is num_envs x 16 env steps)."""
    num_envs: int = 64
    chunk: int = 20
    """Iterations per jitted call (a checkpoint and a progress-bar tick after each)."""
    num_simulations: int = 16
    """MCTS simulations per real step."""
    eval_episodes: int = 256
    """Fresh episodes per (split, policy) evaluation; the random policy gets 4x as many."""
    resume: bool = False
    """Continue an interrupted run in the same ``--out`` (each training run resumes
    from its last checkpoint)."""

    QUICK: ClassVar[dict[str, Any]] = {
        "seeds": 2,
        "num_iterations": 40,
        "num_envs": 32,
        "eval_episodes": 64,
    }

    def __post_init__(self):
        for name in ("seeds", "control_seeds", "num_iterations", "num_envs", "chunk",
                     "num_simulations", "eval_episodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"option {name!r} must be an int >= 1, got {value!r}")
        unknown = [c for c in self.controls if c not in CONTROLS]
        if unknown:
            raise ValueError(
                f"option 'controls' has unknown {unknown}; choose from {sorted(CONTROLS)}"
            )

    def runs(self) -> dict[str, tuple[agents.AgentConfig, list[int]]]:
        """``label -> (AgentConfig, seeds)``: the main run first, then the controls."""
        base = dict(num_iterations=self.num_iterations, num_envs=self.num_envs,
                    chunk=min(self.chunk, self.num_iterations),
                    num_simulations=self.num_simulations)
        out = {"main": (orchard_agent(**base), list(range(self.seeds)))}
        for name in self.controls:
            out[name] = (orchard_agent(**base, **CONTROLS[name]),
                         list(range(self.control_seeds)))
        return out


EVAL_SEED = 123  # every agent and the random policy are scored on the same episodes


def _metrics(ev: agents.Evaluation) -> dict[str, np.ndarray]:
    """Per seed ``[S]``: mean return, mean optimal bound and their ratio."""
    return {"return": ev.returns.mean(1), "optimal_bound": ev.optimal.mean(1),
            "fraction_of_optimal": ev.fraction_of_optimal}


def score(result: agents.TrainResult, episodes: int) -> dict[tuple, dict]:
    """Every seed's evaluation in each (split, greedy) cell: ``{cell: {metric: [S]}}``."""
    out = {}
    for split, greedy in CELLS:
        env, params = result.config.make_env(split=split)
        ev = agents.evaluate(result, env, params, episodes, seed=EVAL_SEED, greedy=greedy)
        out[split, greedy] = _metrics(ev)
    return out


def random_score(config: agents.AgentConfig, episodes: int) -> dict[str, dict]:
    """The uniformly random policy's evaluation on each split (the floor)."""
    out = {}
    for split in ("train", "test"):
        env, params = config.make_env(split=split)
        ev = agents.evaluate(agents.random_policy(env.num_actions(params)), env, params,
                             episodes, seed=EVAL_SEED)
        out[split] = {k: float(v[0]) for k, v in _metrics(ev).items()}
    return out


def _fmt(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.1%}" if v.size == 1 else f"{v.mean():.1%} ({v.min():.1%}-{v.max():.1%})"


def _plot(rundir: RunDir, curves, scores, rand, bound_train: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 4.5))
    for label, (steps, ret) in curves.items():  # ret [S, C]: one value per seed and chunk
        frac = ret / bound_train
        (line,) = ax0.plot(steps, np.nanmean(frac, 0), label=f"{label} ({ret.shape[0]} seeds)")
        ax0.fill_between(steps, np.nanmin(frac, 0), np.nanmax(frac, 0), color=line.get_color(),
                         alpha=0.2)
    ax0.axhline(rand["train"]["fraction_of_optimal"], color="grey", ls=":", label="random policy")
    ax0.axhline(TARGET, color="black", ls="--", lw=0.8, label=f"target {TARGET:.0%}")
    ax0.set_xlabel("env steps")
    ax0.set_ylabel("episode return / mean optimal bound")
    ax0.set_title("training rollouts (acting policy; mean per logged chunk, band = seeds)")
    ax0.legend(fontsize=7)

    names = list(scores)
    width = 0.8 / len(CELLS)
    for j, cell in enumerate(CELLS):
        vals = [scores[n][cell]["fraction_of_optimal"] for n in names]
        pos = np.arange(len(names)) + (j - (len(CELLS) - 1) / 2) * width
        ax1.bar(pos, [v.mean() for v in vals], width,
                label=f"{cell[0]}, {'greedy' if cell[1] else 'acting'}")
        for p, v in zip(pos, vals, strict=True):
            ax1.scatter(np.full(v.shape, p), v, color="black", s=8, zorder=3)
    for split, ls in (("train", ":"), ("test", "-.")):
        ax1.axhline(rand[split]["fraction_of_optimal"], color="grey", ls=ls,
                    label=f"random, {split}")
    ax1.axhline(TARGET, color="black", ls="--", lw=0.8)
    ax1.set_xticks(np.arange(len(names)), names)
    ax1.set_ylabel("fraction of optimal return (dots = seeds)")
    ax1.set_title("evaluation on fresh episodes")
    ax1.legend(fontsize=7)
    rundir.save_figure(fig, "muzero_orchard")


def run(config: MuZeroOrchardConfig) -> RunDir:
    """Train the main configuration and the controls, evaluate, plot and report."""
    rundir = RunDir(config.out, resume=config.resume)
    rundir.write_config(dataclasses.asdict(config))
    if config.resume:  # every row is logged again below
        rundir.clear_metrics()
    runs = config.runs()
    rand = random_score(runs["main"][0], 4 * config.eval_episodes)
    rundir.log_metrics({"stage": "random", **rand})
    curves, scores = {}, {}
    for label, (cfg, seeds) in runs.items():
        result = agents.train(cfg, seeds, rundir.path / "runs" / label, resume=config.resume)
        curves[label] = result.curve("episode_return")
        scores[label] = score(result, config.eval_episodes)
        for (split, greedy), res in scores[label].items():
            for i, s in enumerate(seeds):
                rundir.log_metrics({
                    "stage": "eval", "run": label, "seed": s, "split": split,
                    "policy": "greedy" if greedy else "acting",
                    **{k: float(v[i]) for k, v in res.items()},
                })
    bound = float(np.mean(scores["main"]["train", False]["optimal_bound"]))
    _plot(rundir, curves, scores, rand, bound)

    main = scores["main"]
    met = {("greedy" if g else "acting"): bool(np.min(main["train", g]["fraction_of_optimal"])
                                              >= TARGET) for g in (False, True)}
    rows = "\n".join(
        f"| {label} | {len(runs[label][1])} | "
        + " | ".join(_fmt(scores[label][c]["fraction_of_optimal"]) for c in CELLS) + " |"
        for label in scores
    )
    rand_row = (f"| random policy | | {rand['train']['fraction_of_optimal']:.1%} | | "
                f"{rand['test']['fraction_of_optimal']:.1%} | |")
    changes = "\n".join(f"- `{n}`: the main configuration with {CONTROLS[n]}"
                        for n in config.controls)
    verdict = lambda ok: "**met**" if ok else "**not met**"
    main_cfg, main_seeds = runs["main"]
    test_params = main_cfg.make_env(split="test")[1]
    preset = ", ".join(f"{k}={v!r}" for k, v in ORCHARD.items())
    report = f"""# MuZero on Orchard-v0

Main configuration: the Orchard preset (`agents.make("muzero", {preset})`) with
{config.num_iterations} iterations of {config.num_envs} envs x {ROLLOUT_LEN} steps
({main_cfg.total_steps:,} env steps per seed),
{config.num_simulations} simulations, seeds {main_seeds}. Every agent is scored on
{config.eval_episodes} fresh episodes per cell as return / optimal bound (sum of the
episode's positive object values; no policy earns more). *acting*: the policy the
learner acts with (root noise, action sampled from visit counts); *greedy*: the
deterministic search. Cells show the mean over seeds (min-max). Each run's training
directory (config, metrics, checkpoint) is `runs/<run>/`.

![curves and scores](muzero_orchard.png)

| run | seeds | train, acting | train, greedy | test, acting | test, greedy |
|---|---|---|---|---|---|
{rows}
{rand_row}

Target (every main seed >= {TARGET:.0%} of the bound on the train split):
acting {verdict(met['acting'])}, greedy {verdict(met['greedy'])}.

Controls (one change each):
{changes if changes else '- none'}

On the test split a fraction {test_params.test_harmful_prob:.0%} of the large objects
have the harmful colour (worth {test_params.harmful_reward:+g} instead of
{test_params.reward_large:+g}). An agent that learned "large is good" from training
collects them, and its fraction of the bound falls; compare the test columns with
the random policy's.
"""
    rundir.write_report(report)
    rundir.write_summary({
        "target": TARGET,
        "target_met": met,
        "random": rand,
        "runs": {
            label: {
                "seeds": runs[label][1],
                "config": runs[label][0].to_dict(),
                **{f"{s}/{'greedy' if g else 'acting'}": {k: v.tolist() for k, v in r.items()}
                   for (s, g), r in scores[label].items()},
            }
            for label in scores
        },
    })
    return rundir


register_recipe(
    "muzero-orchard",
    MuZeroOrchardConfig,
    run,
    "MuZero (MCTS as a layer) on Orchard-v0: learning curves, train/test return vs the optimal "
    "bound, ablation controls.",
)
