"""Shared test settings: hypothesis profiles suited to JAX (no deadline: first calls compile)."""

import os

# Tests are dominated by XLA compile time, not run time: compile with LLVM's
# cheapest optimisation level (numerics are unchanged; only code speed is).
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
).strip()

from hypothesis import HealthCheck, settings

settings.register_profile(
    "innerlab",
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("ci", parent=settings.get_profile("innerlab"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "innerlab")
