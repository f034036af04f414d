# Kefu - the two quick-start commands are `make dev` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.13 (Lambda's runtime) where it exists, else any Python 3.11+.
PYTHON := $(shell for c in "env PYENV_VERSION=3.13.0 python3.13" python3.13 python3; do \
	$$c -c 'import sys; assert sys.version_info >= (3, 11); print(sys.executable)' 2>/dev/null && break; done)
VENV := .venv
SAMVENV := .venv-sam
PY := $(VENV)/bin/python
export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help dev test unit integration lint lint-template security env clean bench slow

help:
	@echo "make dev    - run the local stack (AWS emulator + WeCom simulator) with a scripted demo"
	@echo "make test   - run every test and check (creates the environments if needed)"
	@echo "make lint   - ruff and mypy on the code"
	@echo "make lint-template - cfn-lint 1.53.3 and sam validate --lint on template.yaml"
	@echo "make security - checkov on template.yaml, bandit on the code"
	@echo "make bench  - run the benchmarks and the cost model, write docs/PERFORMANCE.md"
	@echo "make slow   - run a test (default: the chaos run) RUNS times on one core (MODE=pin) or beside a busy loop (MODE=hog)"

# $(call new_venv,DIR): a fresh environment at DIR from $(PYTHON), with a current pip.
define new_venv
	@test -n "$(PYTHON)" || { echo "need Python 3.11+ (3.13 preferred)"; exit 1; }
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q --upgrade pip
endef

$(VENV)/.stamp: requirements-dev.txt shared/requirements.txt pyproject.toml
	$(call new_venv,$(VENV))
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q -e .  # the project itself: the `kefu` operator CLI lands on $(VENV)/bin
	touch $@

$(SAMVENV)/.stamp: requirements-sam.txt
	$(call new_venv,$(SAMVENV))
	$(SAMVENV)/bin/python -m pip install -q -r requirements-sam.txt
	touch $@

SECVENV := .venv-sec

$(SECVENV)/.stamp: requirements-sec.txt
	$(call new_venv,$(SECVENV))
	$(SECVENV)/bin/python -m pip install -q -r requirements-sec.txt
	touch $@

env: $(VENV)/.stamp $(SAMVENV)/.stamp $(SECVENV)/.stamp

# checkov on the template (every skipped check carries its reason in the template's Metadata)
# and bandit on the code (every `nosec` carries its reason on its line). Both run offline:
# --skip-download keeps checkov from fetching guideline links from its vendor's platform, and
# where the machine allows it both run in a network namespace of their own with no network at
# all, so a scan that reached out would show here, not on a CI machine without internet.
OFFLINE := $(shell unshare -n true 2>/dev/null && echo unshare -n)
security: $(SECVENV)/.stamp
	$(OFFLINE) $(SECVENV)/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download
	$(OFFLINE) $(SECVENV)/bin/bandit -q -r shared functions local cli

# Benchmarks: `make bench` writes docs/PERFORMANCE.md. Two environments of their own:
# .venv-lambda holds only what a deployed function has - boto3 (Lambda's runtime provides it)
# and, in layer/, the layer's requirements installed without .pyc, as `sam build` ships them;
# .venv-bench holds the layer's requirements plus wechatpy, the callback benchmark's reference.
LAMBDAVENV := .venv-lambda
BENCHVENV := .venv-bench

$(LAMBDAVENV)/.stamp: shared/requirements.txt requirements-dev.txt
	rm -rf $(LAMBDAVENV)
	$(call new_venv,$(LAMBDAVENV))
	echo '*' > $(LAMBDAVENV)/.gitignore
	$(LAMBDAVENV)/bin/python -m pip install -q $$(grep -E '^boto3==' requirements-dev.txt)
	$(LAMBDAVENV)/bin/python -m pip install -q --no-compile --target $(LAMBDAVENV)/layer -r shared/requirements.txt
	touch $@

$(BENCHVENV)/.stamp: shared/requirements.txt benchmarks/requirements-compare.txt
	$(call new_venv,$(BENCHVENV))
	echo '*' > $(BENCHVENV)/.gitignore
	$(BENCHVENV)/bin/python -m pip install -q -r shared/requirements.txt -r benchmarks/requirements-compare.txt
	touch $@

bench: $(VENV)/.stamp $(LAMBDAVENV)/.stamp $(BENCHVENV)/.stamp
	$(PY) benchmarks/run_all.py

dev: $(VENV)/.stamp
	KEFU_DEMO=$${KEFU_DEMO:-1} $(PY) -m local.stack

lint-template: $(SAMVENV)/.stamp
	$(SAMVENV)/bin/cfn-lint template.yaml
	$(SAMVENV)/bin/sam validate --lint --region us-east-1 --template template.yaml

unit: $(VENV)/.stamp
	$(OFFLINE) $(PY) -m pytest tests/unit -q  # no network at all: the unit tests need no port

integration: $(VENV)/.stamp
	$(PY) -m pytest tests/integration -q

# ruff and mypy on the code (rules and settings in pyproject.toml).
lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check shared functions cli local
	$(VENV)/bin/mypy shared/kefu cli/kefu_cli functions/*/app.py functions/route/sweep.py functions/route/conversations.py
	$(VENV)/bin/mypy local

test: env lint lint-template security
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) $(SAMVENV) $(SECVENV) $(LAMBDAVENV) $(BENCHVENV) .aws-sam .pytest_cache .hypothesis

# A slower machine, reproduced: `make slow` runs TEST (default: the chaos run) RUNS times with the
# whole process tree pinned to one core (MODE=pin), beside a busy loop (MODE=hog), or both.
TEST ?= tests/integration/test_chaos.py
RUNS ?= 10
MODE ?= pin
slow: $(VENV)/.stamp
	$(PY) -m local.slow_machine --mode $(MODE) --runs $(RUNS) -- $(PY) -m pytest $(TEST) -q -p no:cacheprovider
