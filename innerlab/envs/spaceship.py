"""Spaceship-v0: thrust a ship through planets' gravity to a target, paying for fuel.

Modelled on the spaceship task of Pascanu, Li et al. (2017), "Learning
model-based planning from scratch", where the Imagination-based Planner was
introduced: the effect of a thrust is hard to compute in one forward pass
(gravity bends the path), so trying thrusts in imagination before acting pays.

Each real step the agent fires a continuous 2-D thrust ``action`` in
``[-1, 1]^2``. The applied thrust is noisy (multiplicative Gaussian noise of
std ``control_noise`` per component), it changes the ship's velocity by
``thrust_scale * applied``, and then the ship coasts for ``flight_steps``
physics sub-steps (semi-implicit Euler, step ``dt``) under the gravity of
``n_planets`` fixed planets (softened inverse-square law). The reward of the
step is::

    -(fuel_cost * |action|^2 + |ship position after the flight - target|^2)

so the task loss is the squared miss distance plus the fuel spent. With the
default ``max_steps=1`` an episode is one thrust and one flight, as in the
paper; more steps give several corrections per episode.

Observations are float32 vectors ``[7 + 3 * n_planets]``: ship position
and velocity, target, planet positions and masses, and the fraction of the
episode elapsed. They hold the whole state (``state_from_obs`` inverts
``observe``), which lets a planner imagine with the true dynamics.

Train and test splits differ only in the planets' masses: the test split's
planets are heavier (``test_mass_range``), so gravity bends paths more than
training ever showed.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, UInt8

from innerlab.envs.core import Box, Environment, EnvParams, check_range

ACTION_DIM = 2


class SpaceshipParams(EnvParams):
    """Spaceship's configuration; ``split`` switches the planets' mass range."""

    n_planets: int = eqx.field(static=True, default=2)
    arena: float = eqx.field(static=True, default=1.0)
    mass_range: tuple[float, float] = eqx.field(static=True, default=(0.5, 1.0))
    test_mass_range: tuple[float, float] = eqx.field(static=True, default=(1.0, 1.5))
    gravity: float = eqx.field(static=True, default=0.3)
    softening: float = eqx.field(static=True, default=0.15)
    thrust_scale: float = eqx.field(static=True, default=1.5)
    flight_steps: int = eqx.field(static=True, default=8)
    dt: float = eqx.field(static=True, default=0.1)
    fuel_cost: float = eqx.field(static=True, default=0.05)
    control_noise: float = eqx.field(static=True, default=0.05)
    start_speed: float = eqx.field(static=True, default=0.3)
    max_steps: int = eqx.field(static=True, default=1)

    SPLIT_FIELDS = ("test_mass_range",)

    def check_values(self) -> None:
        super().check_values()
        check_range(self, "n_planets", 0)
        for name in ("arena", "softening", "dt", "thrust_scale"):
            check_range(self, name, 0.0, low_open=True)
        for name in ("gravity", "fuel_cost", "control_noise", "start_speed"):
            check_range(self, name, 0.0)
        check_range(self, "flight_steps", 1)
        for name in ("mass_range", "test_mass_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"param {name!r} must be (low, high) with 0 < low <= high, "
                                 f"got {(lo, hi)}")

    @property
    def masses(self) -> tuple[float, float]:
        """The planets' mass range in this split."""
        return self.mass_range if self.split == "train" else self.test_mass_range

    @property
    def obs_dim(self) -> int:
        return 7 + 3 * self.n_planets


class SpaceshipState(eqx.Module):
    """The ship, target and planets.

    Shapes: ``pos [2]``, ``vel [2]``, ``target [2]``, ``planets [P, 2]``, ``masses [P]``,
    ``time []``.
    """

    pos: Float[Array, "2"]
    vel: Float[Array, "2"]
    target: Float[Array, "2"]
    planets: Float[Array, "P 2"]
    masses: Float[Array, " P"]
    time: Int[Array, ""]


def gravity_acceleration(
    pos: Float[Array, "2"], planets: Float[Array, "P 2"], masses: Float[Array, " P"],
    params: SpaceshipParams,
) -> Float[Array, "2"]:
    """Softened inverse-square pull of every planet on a ship at ``pos``."""
    delta = planets - pos
    dist2 = jnp.sum(delta**2, axis=-1) + params.softening**2
    return params.gravity * jnp.sum((masses / dist2**1.5)[:, None] * delta, axis=0)


def fly(
    pos: Float[Array, "2"], vel: Float[Array, "2"], planets, masses, params: SpaceshipParams
) -> tuple[Float[Array, "2"], Float[Array, "2"]]:
    """Coast for ``flight_steps`` semi-implicit Euler sub-steps; differentiable."""

    def sub_step(carry, _):
        p, v = carry
        v = v + params.dt * gravity_acceleration(p, planets, masses, params)
        return (p + params.dt * v, v), None

    (pos, vel), _ = jax.lax.scan(sub_step, (pos, vel), None, length=params.flight_steps)
    return pos, vel


def _uniform_in_arena(key, shape, params: SpaceshipParams, frac: float = 0.8):
    return jax.random.uniform(key, shape, jnp.float32, -frac * params.arena, frac * params.arena)


class Spaceship(Environment):
    """Pilot a ship to a target through planets' gravity with noisy, fuel-costly thrust."""

    name = "Spaceship-v0"
    experiment = "Imagination-based Planner replication"
    SPLIT_STATE_FIELDS = ("masses",)

    @property
    def default_params(self) -> SpaceshipParams:
        return SpaceshipParams()

    # -- spaces ------------------------------------------------------------------------
    def num_actions(self, params=None) -> int:
        raise TypeError(
            f"{self.name} has a continuous action space (a thrust in [-1, 1]^{ACTION_DIM}); "
            "use env.action_space(params) instead of num_actions"
        )

    def action_space(self, params=None) -> Box:
        return Box(-1.0, 1.0, (ACTION_DIM,), jnp.float32)

    def observation_space(self, params=None) -> Box:
        params = self.resolve_params(params)
        return Box(-np.inf, np.inf, (params.obs_dim,), jnp.float32)

    def check_action(self, action: Array, params: SpaceshipParams) -> Array:
        """Reject a thrust of the wrong shape or dtype (trace time) or non-finite/out of range."""
        action = jnp.asarray(action)
        if action.shape != (ACTION_DIM,):
            raise ValueError(
                f"{self.name}: argument 'action' must be a thrust of shape ({ACTION_DIM},), got "
                f"shape {action.shape}; use jax.vmap to step a batch of envs"
            )
        if not jnp.issubdtype(action.dtype, jnp.floating):
            raise TypeError(
                f"{self.name}: argument 'action' must be a float array in [-1, 1]^{ACTION_DIM}, "
                f"got dtype {action.dtype}"
            )
        action = action.astype(jnp.float32)
        action = eqx.error_if(
            action,
            ~jnp.all(jnp.isfinite(action)),
            f"{self.name}: argument 'action' must be finite (got NaN or inf)",
        )
        return eqx.error_if(
            action,
            jnp.any(jnp.abs(action) > 1.0),
            f"{self.name}: argument 'action' out of range: expected every component in [-1, 1]",
        )

    # -- dynamics ----------------------------------------------------------------------
    def _planets(self, key, params: SpaceshipParams):
        k_pos, k_mass = jax.random.split(key)
        planets = _uniform_in_arena(k_pos, (params.n_planets, 2), params, 0.6)
        lo, hi = params.masses
        masses = jax.random.uniform(k_mass, (params.n_planets,), jnp.float32, lo, hi)
        return planets, masses

    def reset_env(self, key, params: SpaceshipParams):
        k_pl, k_pos, k_vel, k_tgt = jax.random.split(key, 4)
        planets, masses = self._planets(k_pl, params)
        state = SpaceshipState(
            pos=_uniform_in_arena(k_pos, (2,), params),
            vel=jax.random.uniform(k_vel, (2,), jnp.float32, -1, 1) * params.start_speed,
            target=_uniform_in_arena(k_tgt, (2,), params),
            planets=planets,
            masses=masses,
            time=jnp.int32(0),
        )
        return self.observe(state, params), state

    def apply_thrust(
        self, state: SpaceshipState, applied: Float[Array, "2"], params: SpaceshipParams
    ) -> SpaceshipState:
        """The state after an (already noisy) thrust and the flight that follows it."""
        vel = state.vel + params.thrust_scale * applied
        pos, vel = fly(state.pos, vel, state.planets, state.masses, params)
        return eqx.tree_at(lambda s: (s.pos, s.vel, s.time), state, (pos, vel, state.time + 1))

    def reward_of(
        self, next_state: SpaceshipState, action: Float[Array, "2"], params: SpaceshipParams
    ) -> Float[Array, ""]:
        """``-(fuel_cost |action|^2 + |position - target|^2)`` after the flight."""
        miss = jnp.sum((next_state.pos - next_state.target) ** 2)
        return -(params.fuel_cost * jnp.sum(action**2) + miss)

    def step_env(self, key, state: SpaceshipState, action, params: SpaceshipParams):
        noise = 1.0 + params.control_noise * jax.random.normal(key, (ACTION_DIM,), jnp.float32)
        next_state = self.apply_thrust(state, action * noise, params)
        reward = self.reward_of(next_state, action, params)
        terminated = next_state.time >= params.max_steps
        info = {"miss": jnp.sqrt(jnp.sum((next_state.pos - next_state.target) ** 2)),
                "fuel": jnp.sum(action**2)}
        return (self.observe(next_state, params), next_state, reward.astype(jnp.float32),
                terminated, jnp.bool_(False), info)

    def true_reward(self, state, action, params=None) -> Array:
        """The expected-thrust reward: the noiseless flight's reward (noise has mean 1)."""
        params = self.resolve_params(params)
        state = self.check_state(state, params)
        action = self.check_action(action, params)
        return self.reward_of(self.apply_thrust(state, action, params), action, params)

    def sample_state(self, key, params: SpaceshipParams | None = None) -> SpaceshipState:
        params = self.resolve_params(params)
        k_reset, k_pos, k_vel, k_time = jax.random.split(key, 4)
        _, state = self.reset_env(k_reset, params)
        return eqx.tree_at(
            lambda s: (s.pos, s.vel, s.time),
            state,
            (
                _uniform_in_arena(k_pos, (2,), params, 1.0),
                jax.random.uniform(k_vel, (2,), jnp.float32, -1, 1) * 2 * params.start_speed,
                jax.random.randint(k_time, (), 0, params.max_steps, dtype=jnp.int32),
            ),
        )

    def is_valid(self, state: SpaceshipState, params=None) -> Bool[Array, ""]:
        """Finite positions and velocities, masses in range, ``0 <= time <= max_steps``."""
        params = self.resolve_params(params)
        lo = min(params.mass_range[0], params.test_mass_range[0])
        hi = max(params.mass_range[1], params.test_mass_range[1])
        finite = jnp.all(jnp.isfinite(jnp.concatenate(
            [state.pos, state.vel, state.target, state.planets.reshape(-1), state.masses])))
        return (
            finite
            & jnp.all((state.masses >= lo) & (state.masses <= hi))
            & (state.time >= 0)
            & (state.time <= params.max_steps)
        )

    # -- observation -------------------------------------------------------------------
    def observe(self, state: SpaceshipState, params=None) -> Float[Array, " obs_dim"]:
        params = self.resolve_params(params)
        self.check_state(state, params)
        frac = (state.time / params.max_steps).astype(jnp.float32)[None]
        return jnp.concatenate(
            [state.pos, state.vel, state.target, state.planets.reshape(-1), state.masses, frac]
        ).astype(jnp.float32)

    def state_from_obs(self, obs: Float[Array, " obs_dim"], params=None) -> SpaceshipState:
        """Invert ``observe`` (observations hold the whole state)."""
        params = self.resolve_params(params)
        if obs.shape != (params.obs_dim,):
            raise ValueError(f"argument 'obs' must have shape ({params.obs_dim},), got {obs.shape}")
        p = params.n_planets
        return SpaceshipState(
            pos=obs[0:2],
            vel=obs[2:4],
            target=obs[4:6],
            planets=obs[6 : 6 + 2 * p].reshape(p, 2),
            masses=obs[6 + 2 * p : 6 + 3 * p],
            time=jnp.round(obs[-1] * params.max_steps).astype(jnp.int32),
        )

    # -- rendering ---------------------------------------------------------------------
    def render_rgb(
        self, state: SpaceshipState, params=None, size: int = 64
    ) -> UInt8[Array, "s s 3"]:
        """Planets (orange discs sized by mass), target (green ring) and ship (white); jittable."""
        params = self.resolve_params(params)
        scale = size / (2 * params.arena * 1.25)
        yy, xx = jnp.mgrid[0:size, 0:size] + 0.5
        # world (x, y) -> pixel (col, row), y up
        col = lambda p: (p[..., 0] + 1.25 * params.arena) * scale
        row = lambda p: (1.25 * params.arena - p[..., 1]) * scale
        img = jnp.broadcast_to(jnp.array([10, 10, 30], jnp.uint8), (size, size, 3))

        def disc(centre, radius):
            return (yy - row(centre)) ** 2 + (xx - col(centre)) ** 2 <= radius**2

        for i in range(params.n_planets):
            radius = scale * (0.06 + 0.05 * state.masses[i])
            img = jnp.where(disc(state.planets[i], radius)[..., None],
                            jnp.array([230, 140, 40], jnp.uint8), img)
        ring = disc(state.target, scale * 0.09) & ~disc(state.target, scale * 0.05)
        img = jnp.where(ring[..., None], jnp.array([60, 200, 90], jnp.uint8), img)
        img = jnp.where(disc(state.pos, max(1.0, scale * 0.04))[..., None],
                        jnp.array([245, 245, 245], jnp.uint8), img)
        return img.astype(jnp.uint8)

    def render_text(self, state: SpaceshipState, params=None, cells: int = 11) -> str:
        """A coarse character map (``S`` ship, ``T`` target, ``O`` planet) and the exact numbers."""
        params = self.resolve_params(params)
        grid = [["." for _ in range(cells)] for _ in range(cells)]

        def put(p, ch):
            c = int(np.clip((float(p[0]) / params.arena + 1) / 2 * cells, 0, cells - 1))
            r = int(np.clip((1 - float(p[1]) / params.arena) / 2 * cells, 0, cells - 1))
            grid[r][c] = ch

        for i in range(params.n_planets):
            put(state.planets[i], "O")
        put(state.target, "T")
        put(state.pos, "S")
        fmt = lambda v: "(" + ", ".join(f"{float(x):+.2f}" for x in np.asarray(v)) + ")"
        lines = ["".join(r) for r in grid]
        lines.append(f"ship {fmt(state.pos)} velocity {fmt(state.vel)} target {fmt(state.target)}")
        for i in range(params.n_planets):
            lines.append(f"planet {fmt(state.planets[i])} mass {float(state.masses[i]):.2f}")
        lines.append(f"step {int(state.time)}/{params.max_steps}")
        lines.append("Legend: 'S' ship, 'T' target, 'O' planet, '.' space (x right, y up).")
        return "\n".join(lines)
