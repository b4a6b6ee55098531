"""Shared test settings: hypothesis profiles suited to JAX (no deadline: first calls compile)."""

import os

# No global XLA_FLAGS here: a lower backend optimisation level compiles faster
# but makes real training loops many times slower (a 40 s fixture took 10 min).
# Tests that only compile env steps pass ``compiler_options`` to their own jit.
from hypothesis import HealthCheck, settings

settings.register_profile(
    "innerlab",
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("ci", parent=settings.get_profile("innerlab"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "innerlab")
