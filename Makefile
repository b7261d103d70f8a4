# Two entry points: `make quickstart` (set up, then encode + index + search a collection) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DATASET ?= vaswani
MODEL ?= splade-tiny

.PHONY: quickstart test clean

# torch first, pinned to the CPU build these machines carry on disk; the project's own range
# admits it, so the editable install below adds nothing on top of it.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

quickstart: $(VENV)/.installed
	$(VENV)/bin/lsr quickstart --dataset $(DATASET) --model $(MODEL)

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) indexes
