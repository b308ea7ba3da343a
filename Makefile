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

.PHONY: help setup host-packages venv collection-link demo test lint sanity unit integration integration-main integration-side molecule-then-side \
        molecule lab-up lab-down lab-status bench footprint clean packaging sanity-core-min docs

help:
	@echo "make demo        build the lab, bootstrap it with the roles, migrate and evacuate VMs over TLS"
	@echo "make test        every test: ruff, ansible-lint, ansible-test sanity, unit, lab integration, molecule"
	@echo "make docs        the collection's documentation site (HTML) in build/docs/html"
	@echo "make bench       benchmarks on the lab: results (JSON, markdown, PNG plots) in $(BENCH_OUT)"
	@echo "make footprint   the modules' payload and an idempotent re-run's process time, before/after, in $(BENCH_OUT)/footprint.md"
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

venv: $(VENV)/.requirements-installed $(VENV)/.lab-on-path

$(VENV)/.requirements-installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

# lab/ on the venv's import path (a .pth file): every venv python imports the lab's package
# (virtops_lab), whose client the integration tests, the benchmarks and molecule's runner use.
$(VENV)/.lab-on-path: $(VENV)/.requirements-installed
	echo $(REPO)/lab > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/virtops-lab.pth"
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

# The collection as operators get it: this tree's tarball, built and installed into an empty
# collections path (build/installed/<lab>); the demo and the integration tests use only that,
# from a directory outside the repository (OPERATOR_DIR), never the checkout.
INSTALLED    = $(REPO)/build/installed/$(LAB_NAME)
OPERATOR_DIR ?= /var/tmp/virtops-operator-$(LAB_NAME)

demo: setup
	$(LAB) up --name $(LAB_NAME)
	collections=$$($(PY) tests/packaging/artifact.py $(INSTALLED)); \
	inventory=$$($(LAB) inventory --name $(LAB_NAME)); \
	mkdir -p $(OPERATOR_DIR) && cd $(OPERATOR_DIR) && \
	env -u ANSIBLE_HOME ANSIBLE_COLLECTIONS_PATH=$$collections \
	  ansible-playbook -i $$inventory $(REPO)/lab/demo.yml

# ---------------------------------------------------------------- tests
test: setup
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory sanity
	$(MAKE) --no-print-directory packaging
	$(MAKE) --no-print-directory sanity-core-min
	$(MAKE) --no-print-directory unit
	@# Two lanes side by side, each on labs of its own: the lab integration suites, and the
	@# molecule scenarios (one at a time) followed by the side suites (placement lifecycle,
	@# post-copy). The tests mostly wait on their guests, so the two cores have room for both.
	rm -rf $(FAULT_SHARDS)
	$(MAKE) --no-print-directory -j2 integration-main molecule-then-side
	@echo "make test: every level passed"

lint: setup
	ruff check plugins tests lab
	ansible-lint --offline --profile production
	antsibull-changelog lint
	antsibull-docs lint-collection-docs --plugin-docs $(COLL_LINK)

# ansible-test wants the collection under ansible_collections/<ns>/<name>/ and its
# pip bootstrap from an unreachable host: copy the tree (a git repository of its own,
# since ansible-test lists files with git), give it the offline stand-in.
define sanity_tree
	@rm -rf $(1) && mkdir -p $(1)
	@git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- ./ $(1)/
	@cd $(1) && git init -q && git add -A
	@mkdir -p $$HOME/.ansible/test/cache
	@cp tests/sanity/offline_get_pip.py $$HOME/.ansible/test/cache/get_pip_24_2.py
endef

sanity: setup
	$(call sanity_tree,$(SANITY_TREE))
	cd $(SANITY_TREE) && ansible-test sanity --venv --python 3.11 --color no

# What operators get: every collection the content names declared in galaxy.yml, the
# tarball holding only what operators use, installed and used from another directory,
# and what ansible-builder finds in it for an execution environment.
packaging: setup
	$(PY) tests/packaging/check_dependencies.py
	$(PY) tests/packaging/check_tarball.py
	$(PY) tests/packaging/check_installed.py
	$(PY) tests/packaging/check_execution_environment.py

# The lowest ansible-core meta/runtime.yml claims, in a venv of its own: the installed
# tarball's playbooks and docs, and ansible-test sanity, on it.
CORE_MIN       := 2.18.0
CORE_MIN_VENV  := $(REPO)/build/venv-core-min
CORE_MIN_TREE  := $(REPO)/build/sanity-core-min/ansible_collections/virtops/migration
# What operators run (tests and lab are checked on the venv's ansible-core by `sanity`).
SHIPPED_CONTENT := plugins/ roles/ playbooks/ meta/

$(CORE_MIN_VENV)/.ansible-core-$(CORE_MIN):
	rm -rf $(CORE_MIN_VENV) && python3 -m venv $(CORE_MIN_VENV)
	$(CORE_MIN_VENV)/bin/pip install -q --disable-pip-version-check ansible-core==$(CORE_MIN)
	touch $@

sanity-core-min: setup $(CORE_MIN_VENV)/.ansible-core-$(CORE_MIN)
	$(PY) tests/packaging/check_tarball.py > /dev/null
	$(PY) tests/packaging/check_installed.py --lowest --ansible-bin $(CORE_MIN_VENV)/bin
	$(call sanity_tree,$(CORE_MIN_TREE))
	cd $(CORE_MIN_TREE) && PATH=$(CORE_MIN_VENV)/bin:$$PATH ansible-test sanity --venv --python 3.11 --color no \
	  $(SHIPPED_CONTENT)

# The documentation site, rendered from the collection offline (no intersphinx inventories
# to download: links into docs.ansible.com stay unresolved, every other warning fails).
DOCS_SRC := $(REPO)/build/docs-src
docs: setup
	rm -rf $(DOCS_SRC) $(REPO)/build/docs && mkdir -p $(DOCS_SRC)
	antsibull-docs sphinx-init --use-current --squash-hierarchy --fail-on-error \
	  --dest-dir $(DOCS_SRC) --title "virtops.migration" virtops.migration > /dev/null
	printf '\n# Offline: no inventories to download.\nintersphinx_mapping = {}\nsuppress_warnings = ["ref.ref"]\n' >> $(DOCS_SRC)/conf.py
	mkdir -p $(DOCS_SRC)/rst && chmod og-w $(DOCS_SRC)/rst
	cd $(DOCS_SRC) && antsibull-docs --config-file antsibull-docs.cfg collection --cleanup everything \
	  --fail-on-error --use-current --squash-hierarchy --dest-dir rst virtops.migration
	sphinx-build -M html $(DOCS_SRC)/rst $(REPO)/build/docs -c $(DOCS_SRC) -W --keep-going -q
	@echo "documentation site: $(REPO)/build/docs/html/index.html"

unit: setup
	$(PY) -m pytest tests/unit -q -p no:cacheprovider

# The lab stays up while the tests run and is taken down after them (guests use CPU).
# $(1): the lab's name, $(2): its subnet (empty: the default one), $(3): what pytest runs,
# $(4): more of pytest's environment.
# The collection is the tarball, installed for that lab (build/installed/LAB).
define lab_suite
	collections=$$($(PY) tests/packaging/artifact.py $(REPO)/build/installed/$(1)); \
	status=0; VIRTOPS_LAB_NAME=$(1) $(if $(2),VIRTOPS_LAB_SUBNET=$(2)) VIRTOPS_INSTALLED_COLLECTIONS=$$collections \
	  VIRTOPS_OPERATOR_DIR=/var/tmp/virtops-operator-$(1) $(4) \
	  $(PY) -m pytest $(3) -v -p no:cacheprovider --durations=40 || status=$$?; \
	$(LAB) down --name $(1); exit $$status
endef

# Every lab suite on one lab.
integration: setup
	$(call lab_suite,$(LAB_NAME),,tests/integration)

# make test splits them over two labs that run side by side: the placement lifecycle, post-copy and
# rolling maintenance suites (guests of their own; the first and the last each make the placement
# cluster afresh) on SIDE_LAB, the rest on LAB_NAME. Both write their rows
# of the fault-injection table to FAULT_SHARDS; the one that ends last writes the whole table.
SIDE_LAB     ?= vpl
SIDE_SUBNET  ?= 10.86.0.0/24
SIDE_SUITES  := tests/integration/test_placement_lifecycle.py tests/integration/test_postcopy.py \
                tests/integration/test_rolling_maintenance.py
FAULT_SHARDS := $(REPO)/build/fault-results/shards

integration-main: setup
	$(call lab_suite,$(LAB_NAME),,tests/integration $(addprefix --ignore=,$(SIDE_SUITES)),VIRTOPS_FAULT_TABLE_SHARDS=$(FAULT_SHARDS))

integration-side: setup
	$(call lab_suite,$(SIDE_LAB),$(SIDE_SUBNET),$(SIDE_SUITES),VIRTOPS_FAULT_TABLE_SHARDS=$(FAULT_SHARDS))

# The molecule scenarios, then the side suites: the second of make test's two lanes.
molecule-then-side: setup
	status=0; $(MAKE) --no-print-directory molecule MOLECULE_JOBS=1 || status=$$?; \
	$(MAKE) --no-print-directory integration-side || status=$$?; exit $$status

# Every scenario on a lab of its own, MOLECULE_JOBS at a time (logs in build/molecule-logs/).
MOLECULE_JOBS ?= 2
molecule: setup
	$(PY) tests/run_molecule.py --jobs $(MOLECULE_JOBS)

# Benchmarks on a lab of their own (BENCH_LAB), bootstrapped by the collection, taken down after.
bench: setup
	$(PY) tests/bench/placement_scale.py --out $(BENCH_OUT)
	status=0; VIRTOPS_LAB_SUBNET=$(BENCH_SUBNET) $(PY) tests/bench/bench.py --lab $(BENCH_LAB) --out $(BENCH_OUT) || status=$$?; \
	VIRTOPS_LAB_SUBNET=$(BENCH_SUBNET) $(PY) tests/bench/rolling_overhead.py --lab $(BENCH_LAB) --skip-bootstrap \
	  --out $(BENCH_OUT) || status=$$?; \
	$(LAB) down --name $(BENCH_LAB); exit $$status

# The modules' footprint against FOOTPRINT_BEFORE on the shared lab (LAB_NAME, up and prepared):
# the module_utils AnsiballZ ships and the process time of an idempotent migrate re-run.
FOOTPRINT_BEFORE ?= 0ac4fb6
FOOTPRINT_RUNS   ?= 9
footprint: setup
	$(PY) tests/bench/footprint.py --before $(FOOTPRINT_BEFORE) --lab $(LAB_NAME) --runs $(FOOTPRINT_RUNS) \
	  --markdown $(BENCH_OUT)/footprint.md --json $(REPO)/build/footprint/footprint.json

clean:
	rm -rf build tests/output .pytest_cache
