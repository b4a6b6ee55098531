"""pytest plugin for innerlab (fixtures arrive with innerlab.testing)."""
