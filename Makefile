# calisim: `make demo` runs the seed walk-through, `make test` the whole suite.
# Both install what is missing first (Debian packages, the .venv); running them again installs nothing.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Everything the issues need, installed once: Mininet's mnexec (no Open vSwitch), BIRD 2, etcd,
# the dataplane tools, clang/libbpf/bpftool for the eBPF IPIP backend, and Chromium for the tests of
# `calisim web` (driven by Playwright, which never downloads a browser of its own).
APT_PACKAGES := mininet bird2 etcd-server etcd-client bridge-utils iproute2 iputils-ping util-linux \
	procps net-tools busybox iperf3 tcpdump iptables ipset nftables clang llvm libbpf-dev bpftool graphviz \
	chromium openssh-server sudo gcc make libc6-dev bzip2 patch dpkg-dev

BPF_OBJECT := calisim/felix/bpf/ipip.bpf.o
IMAGES := build/images/.built
BUSYBOX := build/busybox/busybox
CINIT := build/cinit/cinit build/cinit/echo
CALICOCTL_CLIENT := build/node/calicoctl
FAULTS_BPF_OBJECT := calisim/emulation/bpf/impair.bpf.o
BPF_CFLAGS := -O2 -g -Wall -target bpf -I/usr/include/$(shell uname -m)-linux-gnu

.PHONY: setup demo lint test unit bench clean docker-cli path bench-peers-setup bench-peers bench-large

# A docker CLI when `docker` is not on PATH.  Debian 12 has no CLI-only package, so the client is
# taken out of docker.io's .deb (downloaded and unpacked, never installed: no dockerd, no service)
# and linked into the .venv's bin, which is on every emulated host's PATH.
docker-cli: | $(VENV)/.installed
	@if ! command -v docker >/dev/null; then \
		echo "no docker CLI on PATH: unpacking the client from Debian's docker.io"; \
		rm -rf build/docker-cli && mkdir -p build/docker-cli && \
		(cd build/docker-cli && apt-get download -q docker.io >/dev/null && dpkg-deb -x docker.io_*.deb root && \
		 mv root/usr/bin/docker docker && rm -rf root docker.io_*.deb) && \
		ln -sf $(abspath build/docker-cli/docker) $(VENV)/bin/docker; \
	fi

# Docker Hub's busybox: BusyBox's source (Debian's source package, through a deb-src list of our own
# under build/busybox/apt), upstream's defconfig, static; built once, kept (calisim/docker/busybox.py).
$(BUSYBOX): | apt $(VENV)/.installed
	$(PY) -m calisim.docker.busybox build/busybox

# The emulated dockerd's images (busybox, workload): root filesystems around that binary
# (calisim/docker/images.py).
$(IMAGES): calisim/docker/images.py $(BUSYBOX) | apt $(VENV)/.installed
	rm -rf build/images
	$(PY) -m calisim.docker.images build/images
	touch $@

setup: apt $(VENV)/.installed $(BPF_OBJECT) $(FAULTS_BPF_OBJECT) $(IMAGES) $(CINIT) $(CALICOCTL_CLIENT) docker-cli path

# `calisim` on PATH, also under sudo (whose secure_path has /usr/local/bin): a link to this clone's
# .venv/bin/calisim, made where none is (or the one there points nowhere); another clone's is kept.
CALISIM_LINK := /usr/local/bin/calisim
path: | $(VENV)/.installed
	@target=$(abspath $(VENV)/bin/calisim); \
	if [ ! -e $(CALISIM_LINK) ]; then \
		ln -sfn $$target $(CALISIM_LINK) && echo "calisim: $(CALISIM_LINK) -> $$target"; \
	elif [ "$$(readlink -f $(CALISIM_LINK))" != "$$target" ]; then \
		echo "calisim: $(CALISIM_LINK) is $$(readlink -f $(CALISIM_LINK)), not this clone's $$target (kept)"; \
	fi

# Every container's init and shim (calisim/docker/runtime.py starts it) and the workload image's
# echo services (images.py): C, static, so that a container costs no interpreter and the binaries
# need nothing from the container's root.
build/cinit/%: calisim/docker/cinit/%.c | apt
	@command -v gcc >/dev/null || { echo "make: gcc is missing: it builds the containers' init ($@); apt-get install gcc libc6-dev" >&2; exit 1; }
	@mkdir -p $(@D)
	gcc -O2 -Wall -Wextra -Werror -static -o $@ $<

# The hosts' calicoctl, the node zygote's client (calisim/node/calicoctl.c): C, static, as the init;
# without a zygote it runs this clone's installed calicoctl.
$(CALICOCTL_CLIENT): calisim/node/calicoctl.c | apt
	@command -v gcc >/dev/null || { echo "make: gcc is missing: it builds the hosts' calicoctl ($@); apt-get install gcc libc6-dev" >&2; exit 1; }
	@mkdir -p $(@D)
	gcc -O2 -Wall -Wextra -Werror -static -DINSTALLED_CALICOCTL='"$(abspath $(VENV))/bin/calicoctl"' -o $@ $<

# The eBPF IPIP backend's tc programs (calisim/felix/ipip.py loads them with bpftool).
$(BPF_OBJECT): calisim/felix/bpf/ipip.bpf.c | apt
	clang $(BPF_CFLAGS) -c $< -o $@

# Link loss, corruption, duplication and partitions without sch_netem (calisim/emulation/faults/).
$(FAULTS_BPF_OBJECT): calisim/emulation/bpf/impair.bpf.c | apt
	clang $(BPF_CFLAGS) -c $< -o $@

# openssh-server is for simulated servers' own sshd only: a machine that had no sshd gets none
# running in its own namespace (Debian's ssh service and init script skip when sshd_not_to_be_run exists).
apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		if echo " $$missing " | grep -q " openssh-server "; then mkdir -p /etc/ssh; touch /etc/ssh/sshd_not_to_be_run; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

demo: setup
	$(PY) -m calisim two-host

# pyflakes and pycodestyle over the whole tree (ruff.toml), before either test run.
lint: setup
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest tests

unit: lint
	$(PY) -m pytest tests -m "not emulation"

# The set that fits in 15 minutes (issue 14): bring-up and teardown to 100 hosts, mesh against
# reflectors, workload churn, workloads over 10 hosts each reached from another (200 here, ~35 s;
# issue 14's 1000, `--hosts 10 --total 1000`, takes 3-6 minutes alone: run it by hand), the seed
# demo; each writes a table, JSON and a PNG into benchmarks/results/.
bench: setup
	$(PY) benchmarks/bringup.py --hosts 10 25 50 100
	$(PY) benchmarks/bgp.py --hosts 25 50
	$(PY) benchmarks/workloads.py --remote 10 --total 200
	$(PY) benchmarks/workloads.py --hosts 10 --total 200
	$(PY) benchmarks/demo.py --runs 3
	$(PY) benchmarks/snapshot.py --hosts 2 10

# benchmarks/peers.py's peer: Debian's FRR, installed only for that benchmark (not by `make setup`).
# The package would start a machine-wide frr service: a policy-rc.d of this target's own (where the
# machine has none) refuses every service start during the install, and on a systemd machine the
# unit is disabled and stopped after it; the benchmark starts each host's zebra and bgpd itself.
bench-peers-setup: setup
	@if ! dpkg-query -W -f='$${Status}\n' frr 2>/dev/null | grep -q '^install ok installed$$'; then \
		own_policy=; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1; \
		fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends frr; status=$$?; \
		if [ -n "$$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
		[ $$status -eq 0 ] || exit $$status; \
	fi
	@if [ -d /run/systemd/system ]; then systemctl disable --now frr.service 2>/dev/null || true; fi

# The same mesh three ways (calisim, Mininet + BIRD, Mininet + FRR) at 25, 50 and 100 speakers.
bench-peers: bench-peers-setup
	$(PY) benchmarks/peers.py --hosts 25 50 100

# Issue 25's scale runs, not in `bench` (each takes minutes and most of the machine's memory): 1000
# hosts + 2 route reflectors, every host with its dockerd, start to routes everywhere; then 10,000
# workloads over 100 hosts, each reached from a workload of another host.  Smaller:
# `make bench-large LARGE_HOSTS=200 WIDE_HOSTS=20 WIDE_WORKLOADS=1000`.
LARGE_HOSTS ?= 1000
WIDE_HOSTS ?= 100
WIDE_WORKLOADS ?= 10000
bench-large: setup
	$(PY) benchmarks/large.py --hosts $(LARGE_HOSTS)
	$(PY) benchmarks/workloads.py --hosts $(WIDE_HOSTS) --total $(WIDE_WORKLOADS) --reach-timeout 600 \
		--json benchmarks/results/large-workloads.json --png benchmarks/results/large-workloads.png

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis $(BPF_OBJECT) $(FAULTS_BPF_OBJECT)
