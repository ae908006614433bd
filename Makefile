PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: test demo install clean

# --no-compile: Python compiles what is imported when it is first imported, not all of TensorFlow and JAX up front
# (half the install time from pip's cache). For that, Python must be allowed to write the bytecode it compiles:
# where the environment sets PYTHONDONTWRITEBYTECODE, every process would compile JAX's sources again (importing
# the training stack took 3.5 s instead of 1.6 s on the 2-core machine), so these targets do not pass it on.
unexport PYTHONDONTWRITEBYTECODE

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install --quiet --no-compile -e ".[test]"
	touch $@

# The test install is a superset of the plain one: reuse it when it is up to date.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/activate
	@if [ -f $(VENV)/.installed-test ] && [ $(VENV)/.installed-test -nt pyproject.toml ]; then \
	  echo "using the test install in $(VENV)"; else $(PIP) install --quiet --no-compile -e . ; fi
	touch $@

install: $(VENV)/.installed

# Trains configs/quickstart.py on the synthetic dataset, evaluates it on the held-out split, draws detections.
# DEMO_ARGS: extra flags, e.g. DEMO_ARGS="--config.total_steps=100 --workdir runs/short_demo".
demo: $(VENV)/.installed
	$(PY) experiments/demo.py $(DEMO_ARGS)

test: $(VENV)/.installed-test
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=25 tests

clean:
	rm -rf $(VENV)
