"""innerlab.recipes (work in progress)."""
