"""innerlab.testing (work in progress)."""
