"""A fake language model for tests that need an LM agent without loading one."""

from __future__ import annotations

import numpy as np


class FirstOffer:
    """Takes the first move offered (reads the prompt's list of moves): position bias 1,
    no reward behind its choices."""

    def option_logprobs(self, prompts, options, context=""):
        out = []
        for p in prompts:
            line = next(x for x in p.splitlines() if x.startswith("Your possible moves: "))
            order = line[len("Your possible moves: "):].rstrip(".").split(", ")
            out.append([-float(order.index(o)) for o in options])
        return np.array(out)
