# dockwright — install, serve, test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
APT_PACKAGES := runc docker-registry busybox-static bzip2 xz-utils zstd skopeo umoci openssl iproute2 nftables docker.io
DATA_ROOT ?= /var/lib/dockwright
HOST ?= unix:///run/dockwright.sock

.PHONY: install serve test lint apt venv

install: apt venv

apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing apt packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

serve: install
	$(VENV)/bin/dockwright serve -H $(HOST) --data-root $(DATA_ROOT)

test: install
	$(VENV)/bin/python -m pytest -q tests $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy --strict src/dockwright

.PHONY: proto
proto: venv
	scripts/gen-proto $(VENV)/bin/python
