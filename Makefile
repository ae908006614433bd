PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: test demo install clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install --quiet -e ".[test]"
	touch $@

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install --quiet -e .
	touch $@

install: $(VENV)/.installed

# Trains configs/quickstart.py on the synthetic dataset, evaluates it on the held-out split, draws detections.
demo: $(VENV)/.installed
	$(PY) experiments/demo.py

test: $(VENV)/.installed-test
	$(PY) -m pytest -q -n 2 --dist loadfile tests

clean:
	rm -rf $(VENV)
