"""muzero-orchard: does the MCTS-as-a-layer agent learn Orchard, and what does it learn?

Trains the MuZero learner (``innerlab.planners.muzero``) with
``MuZeroConfig.orchard()`` on Orchard-v0's train split over several seeds
(``vmap``-ped), plus ablations of that configuration as controls, and scores
every agent on fresh episodes of both splits against each episode's optimal
return bound (the sum of its positive object values; no policy earns more).
A uniformly random policy is scored the same way.

Two policies are scored per agent: *acting*, the search exactly as the learner
acts with it (root noise, action sampled from the visit counts), and *greedy*,
the deterministic search (no noise, most-visited action). The train split says
whether the agent learned the task (the target is 90% of the bound); the test
split, where large objects of the harmful colour appear, shows what objective
the agent took from training.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

import equinox as eqx
import jax
import numpy as np

from innerlab.planners import muzero
from innerlab.recipes import RecipeConfig, RunDir, register_recipe

# Each control is MuZeroConfig.orchard() with one change.
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

    def runs(self) -> dict[str, tuple[muzero.MuZeroConfig, list[int]]]:
        """``label -> (MuZeroConfig, seeds)``: the main run first, then the controls."""
        base = dict(num_iterations=self.num_iterations, num_envs=self.num_envs,
                    chunk=min(self.chunk, self.num_iterations),
                    num_simulations=self.num_simulations)
        out = {"main": (muzero.MuZeroConfig.orchard(**base), list(range(self.seeds)))}
        for name in self.controls:
            cfg = muzero.MuZeroConfig.orchard(**base, **CONTROLS[name])
            out[name] = (cfg, list(range(self.control_seeds)))
        return out


def score(models, config: muzero.MuZeroConfig, key, episodes: int) -> dict[tuple, dict]:
    """Every seed's evaluation in each (split, greedy) cell: ``{cell: {metric: [S]}}``."""
    out = {}
    for split, greedy in CELLS:
        fn = eqx.filter_jit(eqx.filter_vmap(
            lambda m, s=split, g=greedy: muzero.evaluate(m, config, key, s, episodes, g)
        ))
        out[split, greedy] = {k: np.asarray(v) for k, v in fn(models).items()}
    return out


def random_score(config: muzero.MuZeroConfig, key, episodes: int) -> dict[str, dict]:
    """The uniformly random policy's evaluation on each split (the floor)."""
    out = {}
    for split in ("train", "test"):
        env, params = muzero.make_env(config, split=split)
        act = muzero.random_actions(env.num_actions(params))
        res = jax.jit(lambda k, e=env, p=params, a=act: muzero.episode_returns(
            e, p, a, k, episodes))(key)
        out[split] = {k: float(v) for k, v in res.items()}
    return out


def _curves(path) -> tuple[np.ndarray, np.ndarray]:
    """``(env_steps [I], acting-policy episode return [I, S])`` from a training run's log."""
    lines = (path / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return (np.array([r["env_steps"] for r in rows]),
            np.array([r["episode_return"] for r in rows], dtype=float))


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    width = max(1, min(width, len(x)))
    kernel = np.ones(width) / width
    return np.stack([np.convolve(col, kernel, mode="valid") for col in x.T], axis=1)


def _fmt(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.1%}" if v.size == 1 else f"{v.mean():.1%} ({v.min():.1%}-{v.max():.1%})"


def _plot(rundir: RunDir, curves, scores, rand, bound_train: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 4.5))
    for label, (steps, ret) in curves.items():
        sm = _smooth(ret, 10)
        x = steps[len(steps) - len(sm):]
        frac = sm / bound_train
        (line,) = ax0.plot(x, frac.mean(1), label=f"{label} ({ret.shape[1]} seeds)")
        ax0.fill_between(x, frac.min(1), frac.max(1), color=line.get_color(), alpha=0.2)
    ax0.axhline(rand["train"]["fraction_of_optimal"], color="grey", ls=":", label="random policy")
    ax0.axhline(TARGET, color="black", ls="--", lw=0.8, label=f"target {TARGET:.0%}")
    ax0.set_xlabel("env steps")
    ax0.set_ylabel("episode return / mean optimal bound")
    ax0.set_title("training rollouts (acting policy; 10-iteration mean, band = seeds)")
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
    key = jax.random.key(123)
    runs = config.runs()
    rand = random_score(runs["main"][0], key, 4 * config.eval_episodes)
    rundir.log_metrics({"stage": "random", **rand})
    curves, scores = {}, {}
    for label, (cfg, seeds) in runs.items():
        path = rundir.path / "runs" / label
        state = muzero.train(cfg, seeds, path, resume=config.resume)
        curves[label] = _curves(path)
        scores[label] = score(state.model, cfg, key, config.eval_episodes)
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
    changes = "\n".join(f"- `{n}`: `MuZeroConfig.orchard()` with {CONTROLS[n]}"
                        for n in config.controls)
    verdict = lambda ok: "**met**" if ok else "**not met**"
    main_cfg, main_seeds = runs["main"]
    test_params = muzero.make_env(main_cfg, split="test")[1]
    report = f"""# MuZero on Orchard-v0

Main configuration: `MuZeroConfig.orchard()` with {config.num_iterations} iterations of
{config.num_envs} envs x {main_cfg.rollout_len} steps
({config.num_iterations * config.num_envs * main_cfg.rollout_len:,} env steps per seed),
{config.num_simulations} simulations, seeds {main_seeds}. Every agent is scored on
{config.eval_episodes} fresh episodes per cell as return / optimal bound (sum of the
episode's positive object values; no policy earns more). *acting*: the policy the
learner acts with (root noise, action sampled from visit counts); *greedy*: the
deterministic search. Cells show the mean over seeds (min-max).

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
                "config": dataclasses.asdict(runs[label][0]),
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
