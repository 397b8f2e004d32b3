# anycast-announcer: every target installs what it needs on a fresh Debian 12 or 13 (as root).
# PYTHON: the interpreter for .venv; by default the first of python3, python3.13,
# python3.12, python3.11 on the PATH that is 3.11 or newer (`make PYTHON=python3.12 demo`).
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help deps system-deps test-deps venv lint unit test integration fabric reliability demo bench \
	bench-scale bench-price bench-rescued bench-hairpin \
	constraints install clean

help:
	@echo "make demo   - deploy the leaf/spine lab, show weights and traffic split, withdraw a server"
	@echo "make test   - lint + the whole suite (unit, integration with real FRR, fabric, faults)"
	@echo "make bench  - benchmarks (writes docs/benchmarks.md)"
	@echo "make bench-scale - rescue at group sizes 16 and 64 (docs/benchmarks/scale.{json,md})"
	@echo "make bench-price - rescue's per-packet price with a perf breakdown (quiet host)"
	@echo "make bench-rescued - rescued against direct bulk throughput, CPU and perf (quiet host)"
	@echo "make bench-hairpin - the rescued upload taken apart, one part at a time (quiet host)"
	@echo "make install - production install: /opt/anycast-announcer, user, /etc, unit (README)"

# Recommended packages stay out: FRR's would bring the exim4 mail server, among others.
APT_INSTALL := apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	--no-install-recommends
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
# rescue benchmark's smoke test runs iperf3; iptables-nft is the host firewall flow
# rescue's coexistence test runs. Only the test suite needs them.
test-deps: system-deps
	@$(call need,chromium,chromium)
	@$(call need,promtool,prometheus)
	@$(call need,iperf3,iperf3)
	@$(call need,iptables-nft,iptables)
# The unit watch's tests run a real systemd user manager with its D-Bus user bus.
	@if ! [ -x /lib/systemd/systemd ] || ! [ -e /usr/lib/systemd/user/dbus.socket ]; then \
		$(APT_INSTALL) systemd dbus-user-session; \
	fi

# The distribution's Python, with python3-venv when ensurepip is missing (Debian splits
# it out); packages pinned by constraints.txt.
define need-python
	@py='$(1)'; if [ -z "$$py" ] || ! command -v "$$py" >/dev/null; then \
		($(APT_INSTALL) python3 python3-venv); py=$${py:-python3}; fi; \
	$$py -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "$$py is older than \
		3.11: name a newer one in PYTHON (INSTALL_PYTHON for make install)" >&2; exit 1; }; \
	$$py -c 'import ensurepip, venv' 2>/dev/null || ($(APT_INSTALL) $$(basename $$py)-venv); \
	$$py -m venv $(2)
endef

$(STAMP): pyproject.toml constraints.txt
	$(call need-python,$(PYTHON),$(VENV))
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,bench]'
	touch $@

venv: $(STAMP)

deps: system-deps venv

lint: venv
	$(BIN)/ruff check anycast_announcer tests
	$(BIN)/ruff format --check anycast_announcer tests
	$(BIN)/mypy anycast_announcer tests

# On every core: the unit tests are pure, and serially they take about a minute on two.
unit: venv
	$(BIN)/pytest -n auto tests/unit

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
	$(MAKE) bench-scale

# Flow rescue at N = 16 and 64 on the generated scale lab (containerlab/rescue64), with
# rescue on, then off (the control). SCALE_ARGS passes options on, e.g.
# SCALE_ARGS="--sizes 64 --repeats 3" (python -m tests.benchmarks.scale --help).
SCALE_ARGS ?=
bench-scale: deps
	$(BIN)/python -m tests.benchmarks.scale $(SCALE_ARGS)

# The price every packet pays for rescue: direct throughput off / on / clamp
# inert / no clamp, interleaved, and a perf profile per case (docs/benchmarks/price.*).
# Needs a quiet host: on a shared one, other work swamps both figures.
bench-price: deps
	@$(call need,iperf3,iperf3)
	@$(call need,perf,linux-perf)
	$(BIN)/python -m tests.benchmarks.price

# Rescued bulk throughput against direct, upload and download, and the upload with the
# sender pinned to CPU 0: 5 interleaved runs per case with the host's (and CPU 0's) busy
# fraction and CPU per GB, then a perf profile per case grouped by kind of work
# (docs/benchmarks/rescued.*, the conclusion in docs/rescue.md). About 10 minutes; needs a
# quiet host and two CPUs, the CPU figures are the whole machine's.
bench-rescued: deps
	@$(call need,iperf3,iperf3)
	@$(call need,perf,linux-perf)
	$(BIN)/python -m tests.benchmarks.rescued_throughput

# The rescued upload taken apart: the flow detours through a plain host, one part of the
# rescued path added at a time (hops, VXLAN, conntrack, dup), then all of rescue, and
# forwarding in a netdev hook as a contrast; 9 interleaved runs per case
# (docs/benchmarks/hairpin.*, the conclusion in docs/rescue.md). About 16 minutes; needs
# a quiet host.
bench-hairpin: deps
	@$(call need,iperf3,iperf3)
	$(BIN)/python -m tests.benchmarks.hairpin

demo: deps
	$(BIN)/python -m anycast_announcer.netlab.demo

# Pin what the venv holds now (after a deliberate upgrade that passes make test).
constraints: venv
	{ sed -n '/^#/p' constraints.txt; $(BIN)/pip freeze --exclude-editable; } > constraints.tmp
	mv constraints.tmp constraints.txt

# Production install (README "Running it on a server"): its own venv, the service user,
# /etc/anycast-announcer, the state directory and the unit. Run again to upgrade.
# The venv is made from the distribution's interpreter (the service user must be able to
# reach it: not one under /root), so INSTALL_PYTHON is /usr/bin/python3 unless given.
INSTALL_PYTHON ?= /usr/bin/python3
# The unit names these paths: they are not meant to be changed.
PREFIX   := /opt/anycast-announcer
SVC_USER := anycast-announcer
SYSTEMD_DIR := /etc/systemd/system
install:
	$(call need-python,$(INSTALL_PYTHON),$(PREFIX))
	$(PREFIX)/bin/pip install -q --upgrade -c constraints.txt .
	ln -sf $(PREFIX)/bin/anycast-announcer /usr/local/bin/anycast-announcer
	getent passwd $(SVC_USER) >/dev/null || useradd --system --user-group \
		--home-dir /var/lib/anycast-announcer --no-create-home --shell /usr/sbin/nologin $(SVC_USER)
	install -d -m 0750 -o root -g $(SVC_USER) /etc/anycast-announcer
	install -d -m 0700 -o $(SVC_USER) -g $(SVC_USER) /var/lib/anycast-announcer
	install -m 0644 configs/anycast-announcer.yaml /etc/anycast-announcer/config.yaml.example
	install -m 0644 configs/anycast-announcer.service $(SYSTEMD_DIR)/anycast-announcer.service
	! [ -d /run/systemd/system ] || systemctl daemon-reload
	@echo "installed $$($(PREFIX)/bin/anycast-announcer --version); next: README, Running it on a server"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
