"""ibp-replication: the Imagination-based Planner's qualitative findings on Spaceship-v0.

Pascanu, Li et al. (2017) report, on their spaceship task: (1) task loss falls
as the number of imagination steps allowed grows (0 steps = the model-free
baseline); (2) a higher cost ``tau`` per imagination step makes the manager
imagine less; (3) the imagination tree beats n-step beats 1-step at equal
budgets. This recipe trains the IBP agent (``innerlab.agents``, kind ``"ibp"``)
on ``Spaceship-v0`` in three sweeps over several seeds (``vmap``-ped), each
configuration in its own run directory ``runs/<configuration>/`` (config,
metrics, checkpoint), and says, with numbers, which findings reproduced.

Each configuration's score per seed is the mean task loss (fuel + squared
miss distance, i.e. minus the episode return) of the training episodes in the
last ``eval_fraction`` of training -- on-policy episodes with the exploration
noise on, identical for every configuration -- and the imagination steps per
real step it took meanwhile, both from the training log.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

import innerlab.agents as agents
from innerlab.recipes import RecipeConfig, RunDir, register_recipe

Key = tuple[str, int, float]  # (strategy, max imagination steps, tau)


@dataclasses.dataclass
class IBPReplicationConfig(RecipeConfig):
    """Sweeps of the replication (see module docstring)."""

    seeds: int = 3
    iterations: int = 1500
    log_every: int = 100
    num_envs: int = 64
    budgets: tuple[int, ...] = (0, 1, 2, 4)
    """Max imagination steps for finding 1 (strategy ``budget_strategy``, tau 0)."""
    budget_strategy: str = "tree"
    taus: tuple[float, ...] = (0.0, 0.01, 0.05)
    """Imagination costs for finding 2 (strategy tree, budget ``strategy_budget``)."""
    strategies: tuple[str, ...] = ("1-step", "n-step", "tree")
    strategy_budget: int = 4
    """The equal budget of finding 3 (tau 0)."""
    eval_fraction: float = 0.2

    QUICK: ClassVar[dict] = {
        "seeds": 2, "iterations": 200, "log_every": 50, "num_envs": 32,
        "budgets": (0, 2), "taus": (0.0, 0.05), "strategies": ("1-step", "tree"),
        "strategy_budget": 2,
    }

    def runs(self) -> dict[Key, agents.AgentConfig]:
        """``(strategy, budget, tau) -> AgentConfig`` of every configuration the sweeps need
        (a configuration shared by two sweeps is trained once)."""
        keys = [(self.budget_strategy, b, 0.0) for b in self.budgets]
        keys += [("tree", self.strategy_budget, float(t)) for t in self.taus]
        keys += [(s, self.strategy_budget, 0.0) for s in self.strategies]
        return {key: agents.make("ibp", env="Spaceship-v0", num_envs=self.num_envs,
                                 total_steps=self.iterations * self.num_envs,
                                 log_every=self.log_every, strategy=key[0],
                                 max_imaginations=key[1], tau=key[2])
                for key in dict.fromkeys(keys)}


def _label(key: Key) -> str:
    return f"{key[0]} n={key[1]} tau={key[2]:g}"


def _slug(key: Key) -> str:
    """The run directory name of a configuration, e.g. ``tree-n4-tau0.05``."""
    return f"{key[0]}-n{key[1]}-tau{key[2]:g}"


def _final(values: np.ndarray, fraction: float) -> np.ndarray:
    """Per-seed mean of ``values [S, C]`` over the last ``fraction`` of logged chunks: ``[S]``."""
    last = max(1, int(round(values.shape[1] * fraction)))
    return np.nanmean(values[:, -last:], axis=1)


def _scores(result: agents.TrainResult, fraction: float) -> dict[str, np.ndarray | list]:
    """Task loss (minus the episode return) and imaginations per real step, from training."""
    steps, returns = result.curve("episode_return")
    _, imaginations = result.curve("imaginations")
    return {
        "task_loss": _final(-returns, fraction),
        "imaginations": _final(imaginations, fraction),
        "curve": -returns.T,  # [C, S]
        "iterations": (steps // result.config.num_envs).tolist(),
    }


def _fmt(values: np.ndarray) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def run(config: IBPReplicationConfig) -> RunDir:
    """Train every configuration, write plots, summary and report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rundir = RunDir(config.out)
    rundir.write_config(dataclasses.asdict(config))
    seeds = tuple(range(config.seeds))
    results = {}
    for key, agent in config.runs().items():
        result = agents.train(agent, seeds, rundir.path / "runs" / _slug(key))
        for row in result.history:  # one row per seed and chunk, as in the run's own log
            rundir.log_metrics({"run": _label(key), **row, "task_loss": -row["episode_return"]})
        results[key] = _scores(result, config.eval_fraction)

    def series(keys, metric):
        return [results[k][metric] for k in keys]

    budget_keys = [(config.budget_strategy, b, 0.0) for b in config.budgets]
    tau_keys = [("tree", config.strategy_budget, float(t)) for t in config.taus]
    strat_keys = [(s, config.strategy_budget, 0.0) for s in config.strategies]

    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for ax, keys, xs, metric, xlabel in (
        (axes[0], budget_keys, list(config.budgets), "task_loss", "max imagination steps"),
        (axes[1], tau_keys, list(config.taus), "imaginations", "imagination cost tau"),
        (axes[2], strat_keys, list(config.strategies), "task_loss", "strategy"),
    ):
        vals = series(keys, metric)
        pos = np.arange(len(xs))
        for p, v in zip(pos, vals, strict=True):
            ax.scatter(np.full(len(v), p), v, color="grey", s=12, zorder=3)
        ax.errorbar(pos, [np.mean(v) for v in vals], yerr=[np.std(v) for v in vals],
                    marker="o", capsize=4, zorder=4)
        ax.set_xticks(pos, [str(x) for x in xs])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric.replace("_", " ") + " (mean ± std over seeds; dots = seeds)")
    axes[0].set_title("1. task loss vs budget")
    axes[1].set_title("2. imaginations used vs tau")
    axes[2].set_title(f"3. task loss by strategy (n={config.strategy_budget})")
    for key in budget_keys:
        curve = results[key]["curve"]
        axes[3].plot(results[key]["iterations"], curve.mean(1), label=_label(key))
        axes[3].fill_between(results[key]["iterations"], curve.min(1), curve.max(1), alpha=0.2)
    axes[3].set_title("learning curves (band = min..max over seeds)")
    axes[3].set_xlabel("iteration")
    axes[3].set_yscale("log")
    axes[3].legend(fontsize=7)
    rundir.save_figure(fig, "ibp_replication")

    mean = lambda keys, m: [float(np.mean(results[k][m])) for k in keys]
    loss_b, imag_t, loss_s = (mean(budget_keys, "task_loss"), mean(tau_keys, "imaginations"),
                              mean(strat_keys, "task_loss"))
    pairs = lambda xs: zip(xs[:-1], xs[1:], strict=True)
    findings = {
        "loss_falls_with_budget": bool(all(a > b for a, b in pairs(loss_b))),
        "loss_lower_at_max_budget_than_model_free": bool(loss_b[-1] < loss_b[0]),
        "imaginations_fall_with_tau": bool(all(a >= b for a, b in pairs(imag_t))),
        "strategies_ordered": bool(all(a >= b for a, b in pairs(loss_s))),
    }
    table = lambda keys: "\n".join(
        f"| {_label(k)} | {_fmt(results[k]['task_loss'])} | {_fmt(results[k]['imaginations'])} |"
        for k in keys
    )
    head = "| run | task loss | imaginations / real step |\n|---|---|---|\n"
    yes = lambda b: "**reproduced**" if b else "**not reproduced**"
    report = f"""# IBP replication on Spaceship-v0

Seeds: {list(seeds)}; {config.iterations} iterations x {config.num_envs} envs per run; score =
mean task loss (fuel + squared miss) of the training episodes in the last
{config.eval_fraction:.0%} of training, mean ± std over seeds. Each configuration's
training run (config, metrics, checkpoint) is in `runs/<strategy>-n<budget>-tau<tau>/`.

![results](ibp_replication.png)

## 1. Task loss vs imagination budget ({config.budget_strategy}, tau 0)
{head}{table(budget_keys)}

Strictly falling with the budget: {yes(findings['loss_falls_with_budget'])};
max budget below the model-free baseline (n=0):
{yes(findings['loss_lower_at_max_budget_than_model_free'])}.

## 2. Imaginations used vs cost tau (tree, n={config.strategy_budget})
{head}{table(tau_keys)}

Imaginations non-increasing in tau: {yes(findings['imaginations_fall_with_tau'])}.

## 3. Strategies at equal budget n={config.strategy_budget} (tau 0)
{head}{table(strat_keys)}

Ordered {' >= '.join(config.strategies)} in task loss (i.e. later strategies better):
{yes(findings['strategies_ordered'])}.
"""
    rundir.write_report(report)
    rundir.write_summary({
        "findings": findings,
        "runs": {_label(k): {"task_loss": v["task_loss"].tolist(),
                              "imaginations": v["imaginations"].tolist(),
                              "run_dir": f"runs/{_slug(k)}"}
                 for k, v in results.items()},
    })
    return rundir


register_recipe(
    "ibp-replication",
    IBPReplicationConfig,
    run,
    "Imagination-based Planner on Spaceship-v0: task loss vs budget, imaginations vs cost, "
    "1-step/n-step/tree.",
)
