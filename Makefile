# s2s-guard: build the Wasm filter, test it in the proxy-wasm test host, demo, bench.
# Every target that needs the .wasm builds it first; `make setup` finds or installs
# a Wasm toolchain (scripts/wasm-toolchain.sh).

CARGO ?= cargo
HOST  := $(CARGO) run -q -p s2s-guard-host --
WASM  := dist/s2s-guard.wasm

.PHONY: all setup build test lint check-deploy demo bench bench-nginx soak clean

all: build

setup:
	@bash scripts/wasm-toolchain.sh

build: setup
	@bash scripts/build-wasm.sh

# The whole suite: format and lint checks, native unit tests, the host's own
# tests, and the integration tests that load dist/*.wasm into the test host.
test: build lint check-deploy
	$(CARGO) test --workspace

# Deployment files (envoy/) against Envoy's API, the WasmPlugin CRD schema and the
# compose specification, and their embedded configurations against the filter.
check-deploy: build
	@bash scripts/check-deploy.sh

lint:
	@bash scripts/lint.sh

demo: build
	@bash scripts/demo.sh

bench: build
	@bash scripts/bench.sh

# The same comparisons in a real third-party proxy-wasm host (nginx + Kong's
# ngx_wasm_module, built by ../shared/realhost/build.sh): NGINX=... FLOORS=...
bench-nginx: build
	@bash scripts/bench-nginx.sh $(NGINX) $(FLOORS)

# A million mixed requests (signed and replayed ones included) through the .wasm
# with 4 workers: guest memory flat after warm-up, shared data within the replay
# memory's bound (not part of `make test`; tests/soak.rs is its short version).
soak: build
	cargo build --release -q -p s2s-guard-host
	cargo run --release -q -p s2s-guard-host -- soak --wasm $(WASM) --config demo/config.json \
	    --requests demo/requests.jsonl,bench/signature-requests.jsonl --count 1000000 --workers 4 \
	    --out BENCHMARKS.md --section soak

clean:
	$(CARGO) clean
	rm -rf dist
