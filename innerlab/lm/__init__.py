"""Language-model agents: load a packaged model, encode observations as text, act by scoring.

>>> import innerlab.envs as envs
>>> from innerlab.lm import encode
>>> env, params = envs.make("Orchard-v0", height=5, width=5, n_objects=1)
>>> import jax
>>> _, state = env.reset(jax.random.key(0), params)
>>> encode(env, params, state, "coords").splitlines()[1]
'agent: (1, 3)'

torch and transformers are imported only when a model is loaded
(:func:`load_model`); the agent itself (:func:`lm_policy`) is a
``innerlab.envs.rollout.Policy``, so ``rollout`` and ``agents.evaluate`` run it.
"""

from innerlab.lm.model import (
    PACKAGED,
    LanguageModel,
    Scorer,
    cache_root,
    check_model,
    load_model,
    packaged_gguf,
)
from innerlab.lm.policy import (
    ORDERS,
    LMConfig,
    LMParams,
    TextAgent,
    agent_of,
    choose,
    decide,
    lm_policy,
    lm_rollout,
    offer,
    position_bias,
)
from innerlab.lm.text import (
    ENCODINGS,
    check_encoding,
    encode,
    legend_text,
    numpy_state,
    prompt_text,
    rules_text,
)

__all__ = [
    "ENCODINGS",
    "ORDERS",
    "PACKAGED",
    "LMConfig",
    "LMParams",
    "LanguageModel",
    "Scorer",
    "TextAgent",
    "agent_of",
    "cache_root",
    "check_encoding",
    "check_model",
    "choose",
    "decide",
    "encode",
    "legend_text",
    "lm_policy",
    "lm_rollout",
    "load_model",
    "numpy_state",
    "offer",
    "packaged_gguf",
    "position_bias",
    "prompt_text",
    "rules_text",
]
