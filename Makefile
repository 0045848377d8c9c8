# Two commands on a fresh machine:  `make run`  (set up + launch the dashboard)
#                                   `make test` (set up + run every test)
# Both build a project-local virtualenv in .venv on first use.

PYTHON ?= python3
VENV   ?= .venv
# The CPU build of torch is on disk here; on a GPU box pip fetches the CUDA build.
TORCH  ?= torch==2.13.0
BIN     = $(VENV)/bin

.PHONY: setup run test test-cuda bench gpu-check clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

run: setup
	$(BIN)/mletui

# The references the K-FAC tests compare with (BackPACK, curvlinops). --no-deps: their
# declared dependencies would make pip replace the CPU build of torch.
REFERENCES = backpack-for-pytorch==1.7.1 curvlinops-for-pytorch==3.0.1 einops unfoldNd \
             einconv linear_operator opt-einsum tqdm

$(VENV)/.references: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --no-deps $(REFERENCES)
	touch $@

# pytest's exit status 5 (no tests collected) counts as a failure.
test: setup $(VENV)/.references
	$(BIN)/python -m pytest -q ; rc=$$? ; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi ; exit $$rc

test-cuda: setup
	$(BIN)/python -m pytest -q -m cuda

bench: setup
	$(BIN)/mletui bench ising

# The prepared device check, on a CUDA machine with the project copied in and no network:
# installs this checkout into the machine's own Python (--no-deps), runs the CUDA tests and the
# quick benchmarks, each step with its own timeout, 4 minutes in all; writes DIR/gpu-check.json
# and DIR/gpu-check.md. No venv: the GPU box's python3 holds its torch and Triton.
gpu-check:
	@test -n "$(DIR)" || { echo "make gpu-check: name the report folder: make gpu-check DIR=gpu-report" >&2; exit 2; }
	$(PYTHON) engine/gpu_check.py $(DIR)

clean:
	rm -rf $(VENV) build *.egg-info
