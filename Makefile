# pg_usage_analytics — the two front doors are `make demo` and `make test`.
# Every target installs what it needs first (`make deps`, idempotent and quick
# when everything is present), so a clean clone on a fresh machine works.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export CARGO_BUILD_JOBS ?= 2

PG_BIN      ?= /usr/lib/postgresql/15/bin
PG_CONFIG   ?= $(PG_BIN)/pg_config
PGRX_VERSION := 0.18.0
APT_PACKAGES := postgresql-15 postgresql-server-dev-15 libclang-dev sudo \
                postgresql-15-cron prometheus prometheus-postgres-exporter curl unzip python3-pip

.PHONY: all deps build install install-release upgrade-script install-upgrade-scripts freeze-release test fmt-check clippy unit pgrx-test integration \
        grafana-test dashboards demo bench bench-smoke fuzz clean price-catalog

all: build

## deps: Debian packages, cargo-pgrx $(PGRX_VERSION), pgrx init for PostgreSQL 15.
deps:
	@scripts/deps.sh "$(PG_CONFIG)" "$(PGRX_VERSION)" $(APT_PACKAGES)

build: deps
	cargo build --workspace

## install: the extension (debug build) into the local PostgreSQL 15.
EXTENSION_DIR = $(shell $(PG_CONFIG) --sharedir)/extension
VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

install: deps
	cd pg_usage_analytics && cargo pgrx install --pg-config "$(PG_CONFIG)"
	$(MAKE) --no-print-directory install-upgrade-scripts

install-release: deps
	cd pg_usage_analytics && cargo pgrx install --release --pg-config "$(PG_CONFIG)"
	$(MAKE) --no-print-directory install-upgrade-scripts

## upgrade-script: build the upgrade script to the current version from its
## hand-written template and every SQL function of sql/*.sql
## (scripts/upgrade_functions.py), into target/sql-upgrades/.
SQL_SOURCES := sql/roles.sql sql/schema.sql sql/identity.sql sql/counters.sql sql/audit.sql sql/admin.sql \
               sql/partitions.sql sql/records.sql sql/summaries.sql sql/rollups.sql \
               sql/self_test.sql
# Files new in this version: the upgrade script includes them whole.
NEW_SQL_SOURCES := sql/price_catalog.sql sql/budgets.sql sql/budget_spend.sql sql/budget_reservations.sql sql/forecasts.sql sql/recommendations.sql sql/retention.sql sql/collector.sql sql/explorer.sql
UPGRADE_BUILD_DIR := $(CURDIR)/target/sql-upgrades
CURRENT_UPGRADE := pg_usage_analytics--0.1.0--$(VERSION).sql
upgrade-script:
	@rm -rf $(UPGRADE_BUILD_DIR)
	@if [ -e sql/upgrades/$(CURRENT_UPGRADE).in ]; then \
	    python3 scripts/upgrade_functions.py sql/upgrades/$(CURRENT_UPGRADE).in $(UPGRADE_BUILD_DIR)/$(CURRENT_UPGRADE) \
	        $(SQL_SOURCES) --new $(NEW_SQL_SOURCES); \
	fi

## price-catalog: refresh the shipped LiteLLM price catalog from PyPI
## (LITELLM_VERSION=x.y.z for a given litellm release).
price-catalog: deps
	bash scripts/refresh_price_catalog.sh $(LITELLM_VERSION)

## Released versions' install scripts and the upgrade scripts between them,
## so ALTER EXTENSION pg_usage_analytics UPDATE works from any shipped version.
install-upgrade-scripts: upgrade-script
	@for f in sql/released/*.sql $(UPGRADE_BUILD_DIR)/*.sql; do \
	    [ -e "$$f" ] || continue; \
	    [ "$$(basename $$f)" = "pg_usage_analytics--$(VERSION).sql" ] && continue; \
	    install -m 644 "$$f" "$(EXTENSION_DIR)/"; \
	done

## freeze-release: record the current install script and the upgrade script to
## it as shipped (then every schema change needs a version bump and a new
## sql/upgrades/…--OLD--NEW.sql.in).
freeze-release: install
	@test -e "sql/upgrades/$(CURRENT_UPGRADE).in" || { echo "freeze-release: $(VERSION) is already frozen in sql/released/; bump the version and add sql/upgrades/pg_usage_analytics--$(VERSION)--NEW.sql.in first (sql/upgrades/README.md)" >&2; exit 1; }
	grep -v '^--' "$(EXTENSION_DIR)/pg_usage_analytics--$(VERSION).sql" > "sql/released/pg_usage_analytics--$(VERSION).sql"
	cp "$(UPGRADE_BUILD_DIR)/$(CURRENT_UPGRADE)" sql/released/
	git rm -q "sql/upgrades/$(CURRENT_UPGRADE).in"

## test: every test, in order, stopping at the first failure.
test: deps fmt-check clippy unit pgrx-test install integration grafana-test bench-smoke
	@echo "make test: all suites passed"

fmt-check:
	cargo fmt --all --check

clippy: deps
	cargo clippy --workspace --all-targets -- -D warnings

## unit: pure Rust tests (pricing, filters, CSV, validation, exporter,
## collector and their shared service crate).
unit: deps
	cargo test -p usage-analytics-core
	cargo test -p usage-analytics-exporter -p usage-analytics-collector -p usage-analytics-service

## pgrx-test: #[pg_test]s inside a real backend (cargo-pgrx runs initdb as postgres).
pgrx-test: deps
	rm -rf /tmp/pua-pgrx-test && mkdir -p /tmp/pua-pgrx-test && chown postgres /tmp/pua-pgrx-test
	cd pg_usage_analytics && cargo pgrx test pg15 --runas postgres --pgdata /tmp/pua-pgrx-test/data

## integration: tests/ against a cluster the tests start (pg_cron preloaded).
integration: install
	cargo build -p usage-analytics-exporter -p usage-analytics-collector
	cargo test -p integration-tests -- --test-threads=2

grafana-test: deps
	bash grafana/test.sh

## dashboards: regenerate grafana/dashboards/*.json from grafana/dashgen/ (grafana-foundation-sdk).
dashboards: deps
	python3 grafana/build_dashboards.py

## demo: the main job: cluster, extension, demo data, rollups, pg_cron, exporter, Prometheus.
demo: deps install-release
	cargo build --release -p usage-analytics-exporter -p usage-analytics-collector
	bash scripts/demo.sh

## fuzz: bounded libFuzzer runs of every parser target (FUZZ_SECONDS each).
## cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets this stable toolchain accept them.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := resolve_model filters csv_writer
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	    RUSTC_BOOTSTRAP=1 cargo fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

## bench-smoke: the benchmark harness at a tiny scale, to keep it working (numbers not judged).
bench-smoke: install
	cargo build -p usage-analytics-exporter
	BENCH_ROWS=20000 BENCH_PGBENCH_SECONDS=1 BENCH_SYNTHETIC_MODELS=500 BENCH_OUT=$(CURDIR)/target/bench-smoke BENCH_PORT=28817 \
	    BENCH_EXPORTER=target/debug/usage-analytics-exporter bash scripts/bench.sh

## bench: benchmarks with ratios against baselines measured in the same run.
bench: deps install-release
	cargo build --release -p usage-analytics-exporter -p usage-analytics-collector
	bash scripts/bench.sh

clean:
	cargo clean

## package: Debian packages from the release build, into target-package/debian/:
## postgresql-15-pg-usage-analytics, usage-analytics-exporter and (once collector/
## exists) usage-analytics-collector. Own target dir, so debug builds stay valid.
PACKAGE_TARGET_DIR ?= $(CURDIR)/target-package
.PHONY: package package-test package-test-host
package: deps upgrade-script
	CARGO_TARGET_DIR="$(PACKAGE_TARGET_DIR)" PG_CONFIG="$(PG_CONFIG)" UPGRADE_BUILD_DIR="$(UPGRADE_BUILD_DIR)" \
	    bash packaging/package.sh

## package-test: the packages on a clean Debian 12 root (debootstrap into target/debroot,
## the base root cached in target/debroot-cache): install, CREATE EXTENSION, self_test(),
## upgrades, the exporter, systemd-analyze verify, purge.
package-test: package
	CARGO_TARGET_DIR="$(PACKAGE_TARGET_DIR)" timeout 2700 bash packaging/test.sh chroot

## package-test-host: the extension package with dpkg on this machine, from the packaged
## files alone; the make-installed files are backed up before and restored after.
package-test-host: package
	CARGO_TARGET_DIR="$(PACKAGE_TARGET_DIR)" PG_CONFIG="$(PG_CONFIG)" timeout 600 bash packaging/test.sh host
