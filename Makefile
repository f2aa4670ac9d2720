# Two commands: `make run` and `make test`. Everything else here is what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV ?= $(shell command -v uv 2>/dev/null || echo $(HOME)/.local/bin/uv)
# `pip install --user uv` puts uv in ~/.local/bin, which a fresh shell may not have on its PATH:
# the Procfile, the benchmark and the scripts call `uv` by name.
export PATH := $(dir $(UV)):$(HOME)/.local/bin:$(PATH)
PORT ?= 8000
FLOWER_PORT ?= 5555
export PORT FLOWER_PORT

.PHONY: help run test install uv db browser lint format bench audit

help:
	@echo "make run    install, create the database, migrate, start web + worker + beat + flower"
	@echo "make test   install and run the whole test suite against real PostgreSQL and Redis"
	@echo "make bench  the benchmark (see README)"
	@echo "make audit  audit the locked dependencies for known vulnerabilities"

uv:
	@command -v uv >/dev/null 2>&1 || test -x "$(UV)" || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv

install: uv
	@$(UV) sync --frozen --quiet

db: install
	@$(UV) run --frozen python manage.py ensure_database
	@$(UV) run --frozen python manage.py migrate --noinput

run: db
	@FLOWER_PASSWORD="$${FLOWER_PASSWORD:-$$(cat .flower-password 2>/dev/null || python3 -c 'import secrets; print(secrets.token_urlsafe(12))' | tee .flower-password)}"; \
	export FLOWER_PASSWORD; \
	$(UV) run --frozen python manage.py ensure_superuser; \
	echo ""; \
	echo "  API and dashboard  http://127.0.0.1:$(PORT)/          (docs: /api/docs, admin: /admin/)"; \
	echo "  Flower             http://127.0.0.1:$(FLOWER_PORT)/    user $${FLOWER_USER:-admin}, password $$FLOWER_PASSWORD"; \
	echo "  First staff user   uv run python manage.py createsuperuser"; \
	echo "                     (or set DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD)"; \
	echo ""; \
	exec $(UV) run --frozen honcho start -f Procfile -p $(PORT)

# Debian's Chromium for the browser tests (never a downloaded browser build).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install chromium: the browser tests will be skipped"; }

test: install browser
	@$(UV) run --frozen python manage.py ensure_database --settings=config.settings_test >/dev/null
	@$(UV) run --frozen pytest $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: that is a failure" >&2; exit 1; fi; \
	exit $$status

lint: install
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format: install
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

# pip-audit over uv.lock; exit 2 = the advisory source could not be reached (not audited).
audit: install
	$(UV) run --frozen python scripts/audit_dependencies.py

bench: install
	$(UV) run --frozen python -m bench $(BENCH_ARGS)
