"""Draw the train and test variants of every registered env into ``docs/images/``.

Run from the repository root: ``python docs/make_images.py`` (or ``make docs-images``).
Each ``<Name>.png`` shows resets from the same seeds in the train split (top row)
and the test split (bottom row); ``BoostChain-v0_chain.png`` shows a boost
bought in one episode carried into the next.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from innerlab.envs import list_envs, make  # noqa: E402
from innerlab.envs.boost_chain import BOOST  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "images"
SEEDS = (0, 1, 2)


def _reset_image(env, params, seed: int) -> np.ndarray:
    _, state = env.reset(jax.random.key(seed), params)
    return np.asarray(env.render_rgb(state, params))


def draw_splits(name: str) -> pathlib.Path:
    """Train (top) and test (bottom) resets of ``name`` from the same seeds."""
    env, train = make(name)
    _, test = make(name, split="test")
    fig, axes = plt.subplots(2, len(SEEDS), figsize=(1.6 * len(SEEDS), 3.6), squeeze=False)
    for row, (label, params) in enumerate((("train", train), ("test", test))):
        for col, seed in enumerate(SEEDS):
            ax = axes[row, col]
            ax.imshow(_reset_image(env, params, seed), interpolation="nearest")
            ax.set_title(f"{label}, seed {seed}", fontsize=7)
            ax.axis("off")
    fig.suptitle(name, fontsize=9)
    fig.tight_layout()
    path = OUT / f"{name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _greedy(state) -> int:
    (ar, ac), (gr, gc) = np.asarray(state.grid.agent), np.asarray(state.grid.obj_pos[0])
    if ar != gr:
        return 2 if gr > ar else 0
    return 1 if gc > ac else 3


def draw_boost_chain() -> pathlib.Path:
    """One chain: buy a boost, reach the goal, then the boosted next episode."""
    env, params = make("BoostChain-v0")
    step = jax.jit(env.step)
    _, state = env.reset(jax.random.key(0), params)
    frames = [("episode 1 start", state)]
    _, state, *_ = step(jax.random.key(1), state, jnp.int32(BOOST), params)
    frames.append(("boost bought (-0.3)", state))
    for t in range(params.max_steps):
        _, state, reward, term, *_ = step(jax.random.key(2 + t), state, _greedy(state), params)
        if bool(term):
            break
    frames.append((f"episode 2 start, boosted (goal paid {float(reward):.0f})", state))
    fig, axes = plt.subplots(1, len(frames), figsize=(2.0 * len(frames), 2.4))
    for ax, (title, s) in zip(axes, frames, strict=True):
        ax.imshow(np.asarray(env.render_rgb(s, params)), interpolation="nearest")
        ax.set_title(title, fontsize=6)
        ax.axis("off")
    fig.tight_layout()
    path = OUT / "BoostChain-v0_chain.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in list_envs():
        print(draw_splits(name))
    print(draw_boost_chain())


if __name__ == "__main__":
    main()
