# ai-doc-qa deployment tool. The two commands a newcomer needs:
#   make staging   set everything up, start the local staging host, run a timed `fab deploy` (v1 -> v2)
#   make test      set everything up, start the local staging host, run the whole test suite
# Both need root on Debian/Ubuntu (apt-get, sshd, dockerd); see README.md.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CTL    := sandbox/ctl
STAMP  := $(VENV)/.installed

.PHONY: config-docs setup sandbox-install sandbox-up sandbox-down staging staging-down lint test unit coverage integration bench clean

setup: $(STAMP) $(VENV)/.fab-entry-point

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $(STAMP)

# The venv's `fab` becomes the project's (tasks/program.py). Stock fab runs `fab -H HOST -- CMD` with
# no host-key check, and in that form never loads anything of this project that could refuse it.
# A reinstall of fabric (pip) writes its own fab again: newer than this stamp, so it is replaced again.
$(VENV)/.fab-entry-point: $(STAMP) tasks/program.py $(wildcard $(BIN)/fab)
	$(BIN)/python -m tasks.program install $(BIN)/fab
	touch $@

sandbox-install:
	$(CTL) install

# Starts only what is not running (idempotent).
sandbox-up: sandbox-install
	$(CTL) up

sandbox-down:
	$(CTL) down

# The runbook's exercise: a timed deploy to staging. Resets the staging host to v1, publishes v2,
# then deploys it with fab (progress per step, the timing table and the bottleneck).
staging: setup sandbox-up
	$(CTL) reset
	$(CTL) version v2
	$(BIN)/fab deploy --stage staging

staging-down: sandbox-down

# The linter (ruff's default rules plus import sorting; settings in pyproject.toml).
lint: setup
	$(BIN)/ruff check .

# config/defaults.env and the key table of docs/configuration.md, written from config/keys.py.
config-docs: setup
	$(BIN)/python -m config.render

# The whole suite: the linter, the unit tests and the real deploys against the staging host.
# Lint first: a finding fails fast, before the staging host is started. The unit tests run beside
# the real deploys, at nice 19, in the time those wait (tests/suite.sh); their report comes after.
# The slowest tests are listed at the end (the suite must stay under 30 minutes on CI's 2 cores:
# docs/testing.md).
test: setup lint sandbox-up
	tests/suite.sh $(BIN) --durations=20

unit: setup
	$(BIN)/pytest tests --ignore=tests/integration

# Unit tests alone (no staging host) with line coverage of tasks/ and commands/: prints the report
# with the missing lines and the total, and fails under COV_FAIL_UNDER percent (make coverage
# COV_FAIL_UNDER=0 only prints it).
COV_FAIL_UNDER ?= 85
coverage: setup
	$(BIN)/pytest tests --ignore=tests/integration --cov --cov-report=term-missing --cov-fail-under=$(COV_FAIL_UNDER)

integration: setup sandbox-up
	$(BIN)/pytest tests/integration

# The benchmark (bench/README.md): `fab deploy` vs the plain bash runbook (bench/runbook.sh), side by
# side in one run, for Compose v2 and v1, and one table of the targets. It resets the staging host
# many times (~10 min): nobody else may use the sandbox meanwhile (here: `with-sandbox make bench`).
# BENCH_ARGS: --quick (1 round), --rounds N, --json, --generations v2.
bench: setup sandbox-up
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .coverage
