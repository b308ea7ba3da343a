# virtops.migration: the two commands a new user runs are `make demo` and `make test`.
# Both set this machine up themselves (Debian packages, a venv, the collection path).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

REPO        := $(abspath .)
VENV        := $(REPO)/.venv
PY          := $(VENV)/bin/python
COLLECTIONS := $(REPO)/build/collections
COLL_LINK   := $(COLLECTIONS)/ansible_collections/virtops/migration
SANITY_TREE := $(REPO)/build/sanity/ansible_collections/virtops/migration
LAB         := $(PY) $(REPO)/lab/virtops_lab.py
LAB_NAME    ?= vtl
BENCH_LAB   ?= vtb
BENCH_SUBNET ?= 10.81.0.0/24
BENCH_OUT   ?= $(REPO)/docs/benchmarks

export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
# molecule and ansible-lint provision the collection under $ANSIBLE_HOME/collections;
# with ANSIBLE_HOME here, that is build/collections, where the symlink to this checkout
# already stands, so they test the working tree and never a stale copy in ~/.ansible.
export ANSIBLE_HOME := $(REPO)/build
export ANSIBLE_FORCE_COLOR := false
export PYTHONDONTWRITEBYTECODE := 1

# Debian packages the controller needs: the lab (nspawn, debootstrap, NAT, apt cache),
# libvirt-python's build (libvirt-dev, pkg-config, gcc) and client-side checks.
HOST_PACKAGES := systemd-container debootstrap iptables apt-cacher-ng util-linux \
                 libvirt-dev libvirt-clients pkg-config gcc openssh-client rsync git

.PHONY: help setup host-packages venv collection-link demo test lint sanity unit integration \
        molecule lab-up lab-down lab-status bench clean

help:
	@echo "make demo        build the lab, bootstrap it with the roles, migrate and evacuate VMs over TLS"
	@echo "make test        every test: ruff, ansible-lint, ansible-test sanity, unit, lab integration, molecule"
	@echo "make bench       benchmarks on the lab: results (JSON, markdown, PNG plots) in $(BENCH_OUT)"
	@echo "make lab-up | lab-down | lab-status    the lab of real Debian 12 hosts (LAB_NAME=$(LAB_NAME))"

setup: host-packages venv collection-link

host-packages:
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  apt-get update -q; \
	  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing \
	    || { rm -f /usr/sbin/policy-rc.d; exit 1; }; \
	  rm -f /usr/sbin/policy-rc.d; \
	fi

venv: $(VENV)/.requirements-installed

$(VENV)/.requirements-installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

collection-link:
	@mkdir -p $(dir $(COLL_LINK))
	@ln -sfn $(REPO) $(COLL_LINK)

lab-up: setup
	$(LAB) up --name $(LAB_NAME)

lab-down: venv
	$(LAB) down --name $(LAB_NAME)

lab-status: venv
	$(LAB) status --name $(LAB_NAME)

demo: setup
	$(LAB) up --name $(LAB_NAME)
	ansible-playbook -i $$($(LAB) inventory --name $(LAB_NAME)) lab/demo.yml

# ---------------------------------------------------------------- tests
test: setup
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory sanity
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory integration
	$(MAKE) --no-print-directory molecule
	@echo "make test: every level passed"

lint: setup
	ruff check plugins tests lab
	ansible-lint --offline --profile production
	antsibull-changelog lint

# ansible-test wants the collection under ansible_collections/<ns>/<name>/ and its
# pip bootstrap from an unreachable host: copy the tree (a git repository of its own,
# since ansible-test lists files with git), give it the offline stand-in.
sanity: setup
	@rm -rf $(SANITY_TREE) && mkdir -p $(SANITY_TREE)
	@git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- ./ $(SANITY_TREE)/
	@cd $(SANITY_TREE) && git init -q && git add -A
	@mkdir -p $$HOME/.ansible/test/cache
	@cp tests/sanity/offline_get_pip.py $$HOME/.ansible/test/cache/get_pip_24_2.py
	cd $(SANITY_TREE) && ansible-test sanity --venv --python 3.11 --color no

unit: setup
	$(PY) -m pytest tests/unit -q -p no:cacheprovider

# The lab stays up while the tests run and is taken down after them (guests use CPU).
integration: setup
	status=0; $(PY) -m pytest tests/integration -v -p no:cacheprovider || status=$$?; \
	$(LAB) down --name $(LAB_NAME); exit $$status

# Every scenario on a lab of its own, MOLECULE_JOBS at a time (logs in build/molecule-logs/).
MOLECULE_JOBS ?= 2
molecule: setup
	$(PY) tests/run_molecule.py --jobs $(MOLECULE_JOBS)

# Benchmarks on a lab of their own (BENCH_LAB), bootstrapped by the collection, taken down after.
bench: setup
	status=0; VIRTOPS_LAB_SUBNET=$(BENCH_SUBNET) $(PY) tests/bench/bench.py --lab $(BENCH_LAB) --out $(BENCH_OUT) || status=$$?; \
	$(LAB) down --name $(BENCH_LAB); exit $$status

clean:
	rm -rf build tests/output .pytest_cache
