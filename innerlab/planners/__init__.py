"""innerlab.planners (work in progress)."""
