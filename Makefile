# Timedeal: `make demo` runs the product, `make test` runs every test. Both install what is missing.
.PHONY: setup demo test lint bench chaos crd rbac screenshots

setup:
	@scripts/setup.sh

demo: setup
	@scripts/demo.sh

test: setup
	cargo test --workspace --locked
	@e2e/cluster.sh

# Measures the storefront against the bare and lock reference servers and rewrites BENCHMARKS.md
# (about 12 minutes after the release build). BENCH_ARGS passes options, e.g. BENCH_ARGS="--rounds 5".
bench: setup
	cargo build --release --locked -p timedeal-tenant-app -p timedeal-directory -p timedeal-e2e
	TIMEDEAL_BENCH_COMMAND="make bench$(if $(BENCH_ARGS), BENCH_ARGS=\"$(BENCH_ARGS)\")" \
		target/release/timedeal-bench run $(BENCH_ARGS)

# Runs the fault drills round after round (a replica killed, Redis lost or back a second
# behind, PostgreSQL stopped and frozen, racing cancels, a failing payment provider, skewed
# clocks), then the fault explorer on 20 random seeds, and writes what they cost into
# BENCHMARKS.md beside the speed figures (about 25 minutes after the release build).
# CHAOS_ARGS passes options, e.g. CHAOS_ARGS="--rounds 5 --faults redis-empty,postgres-stop",
# CHAOS_ARGS="--explore 100", or CHAOS_ARGS="--seeds 7,8" to replay explorer seeds.
chaos: setup
	cargo build --release --locked -p timedeal-tenant-app -p timedeal-e2e
	TIMEDEAL_BENCH_COMMAND="make chaos$(if $(CHAOS_ARGS), CHAOS_ARGS=\"$(CHAOS_ARGS)\")" \
		target/release/timedeal-bench chaos $(CHAOS_ARGS)

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

# crds/ is generated: edit operator/api/src/types.rs, then run this and commit the result.
crd:
	cargo run -q -p timedeal-operator -- crd > crds/timedeal.yaml
	cargo run -q -p timedeal-operator -- crd --helm > charts/timedeal-operator/templates/crds/timedeal.yaml

# manifests/base/rbac.yaml is generated from operator/src/rbac.rs.
rbac:
	cargo run -q -p timedeal-operator -- rbac > manifests/base/rbac.yaml

# Refreshes the screenshots the README shows (headless Chromium walk-throughs of the storefront,
# the deal directory and the rental portal).
screenshots: setup
	TIMEDEAL_SCREENSHOTS=$(CURDIR)/docs/screenshots cargo test -p timedeal-tenant-app --test browser
	TIMEDEAL_SCREENSHOTS=$(CURDIR)/docs/screenshots cargo test -p timedeal-portal --test portal_browser
	TIMEDEAL_SCREENSHOTS=$(CURDIR)/docs/screenshots cargo test -p timedeal-directory --test directory_browser
