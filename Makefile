# calisim: `make demo` runs the seed walk-through, `make test` the whole suite.
# Both install what is missing first (Debian packages, the .venv); running them again installs nothing.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Everything the issues need, installed once: Mininet's mnexec (no Open vSwitch), BIRD 2, etcd,
# the dataplane tools, and clang/libbpf/bpftool for the eBPF IPIP backend.
APT_PACKAGES := mininet bird2 etcd-server etcd-client bridge-utils iproute2 iputils-ping util-linux \
	procps net-tools busybox iperf3 tcpdump iptables ipset nftables clang llvm libbpf-dev bpftool

BPF_OBJECT := calisim/felix/bpf/ipip.bpf.o
FAULTS_BPF_OBJECT := calisim/emulation/bpf/impair.bpf.o
BPF_CFLAGS := -O2 -g -Wall -target bpf -I/usr/include/$(shell uname -m)-linux-gnu

.PHONY: setup demo test unit bench clean

setup: apt $(VENV)/.installed $(BPF_OBJECT) $(FAULTS_BPF_OBJECT)

# The eBPF IPIP backend's tc programs (calisim/ipip.py loads them with bpftool).
$(BPF_OBJECT): calisim/felix/bpf/ipip.bpf.c | apt
	clang $(BPF_CFLAGS) -c $< -o $@

# Link loss, corruption, duplication and partitions without sch_netem (calisim/emulation/faults.py).
$(FAULTS_BPF_OBJECT): calisim/emulation/bpf/impair.bpf.c | apt
	clang $(BPF_CFLAGS) -c $< -o $@

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

demo: setup
	$(PY) -m calisim two-host

test: setup
	$(PY) -m pytest tests

unit: setup
	$(PY) -m pytest tests -m "not emulation"

bench: setup
	$(PY) benchmarks/bringup.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis $(BPF_OBJECT) $(FAULTS_BPF_OBJECT)
