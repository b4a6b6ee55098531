"""innerlab.adversary (work in progress)."""
