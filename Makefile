# anycast-announcer: every target installs what it needs on a fresh Debian 12 (as root).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help deps system-deps test-deps venv lint unit test integration fabric reliability demo bench clean

help:
	@echo "make demo   - deploy the leaf/spine lab, show weights and traffic split, withdraw a server"
	@echo "make test   - lint + the whole suite (unit, integration with real FRR, fabric, faults)"
	@echo "make bench  - benchmarks (writes docs/benchmarks.md)"

APT_INSTALL := apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q
# $(call need,PROGRAM,PACKAGES): install PACKAGES unless PROGRAM is already on the PATH.
need = command -v $(1) >/dev/null || ($(APT_INSTALL) $(2))

# FRR from Debian's packages is the lab fabric; iproute2 builds the namespaces; nftables
# is flow rescue's data path (docs/rescue.md).
system-deps:
	@if ! [ -x /usr/lib/frr/bgpd ] || ! command -v ip >/dev/null || ! command -v vtysh >/dev/null \
			|| ! command -v nft >/dev/null; then \
		$(APT_INSTALL) frr iproute2 procps nftables; \
	fi

# Chromium renders the status page in its test; promtool (Debian's prometheus package)
# checks and unit-tests configs/prometheus/ and lints a live /metrics scrape; the flow
# rescue benchmark's smoke test runs iperf3. Only the test suite needs them.
test-deps: system-deps
	@$(call need,chromium,chromium)
	@$(call need,promtool,--no-install-recommends prometheus)
	@$(call need,iperf3,iperf3)
# The unit watch's tests run a real systemd user manager with its D-Bus user bus.
	@if ! [ -x /lib/systemd/systemd ] || ! [ -e /usr/lib/systemd/user/dbus.socket ]; then \
		$(APT_INSTALL) systemd dbus-user-session; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@

venv: $(STAMP)

deps: system-deps venv

lint: venv
	$(BIN)/ruff check anycast_announcer tests
	$(BIN)/ruff format --check anycast_announcer tests
	$(BIN)/mypy anycast_announcer tests

unit: venv
	$(BIN)/pytest tests/unit

test: deps test-deps lint
	$(BIN)/pytest -m "not benchmark" tests

integration: deps
	$(BIN)/pytest -m integration tests

fabric: deps
	$(BIN)/pytest -m fabric tests

reliability: deps
	$(BIN)/pytest tests/reliability
	$(BIN)/python -m tests.reliability.report

# iperf3 measures a rescued bulk flow against a direct one. The BFD section runs on its
# own two-node lab and writes docs/benchmarks/bfd.{json,md} (about 25 minutes full size).
bench: deps
	@$(call need,iperf3,iperf3)
	$(BIN)/python -m tests.benchmarks.run
	$(BIN)/python -m tests.benchmarks.bfd

demo: deps
	$(BIN)/python -m anycast_announcer.netlab.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
