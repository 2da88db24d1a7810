# make test     the test command (same as ./scripts/test, what CI runs)
# make package  sam build through cargo-lambda (arm64), then each function's zipped bootstrap size (≤ 6 MB)
.PHONY: test package bench faults

VENV := .tools/venv
export SAM_CLI_TELEMETRY := 0
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

test:
	./scripts/test

$(VENV)/bin/cargo-lambda $(VENV)/bin/sam:
	[ -x $(VENV)/bin/pip ] || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check cargo-lambda aws-sam-cli cfn-lint

package: $(VENV)/bin/cargo-lambda $(VENV)/bin/sam
	cd infra && sam build --template template.yaml
	@echo "zipped bootstrap sizes (limit 6 MB):"
	@for d in infra/.aws-sam/build/*Function; do \
	  [ -f "$$d/bootstrap" ] || continue; \
	  rm -f "$$d.zip"; (cd "$$d" && zip -q -9 "../$$(basename $$d).zip" bootstrap); \
	  size=$$(stat -c %s "$$d.zip"); \
	  printf '  %-28s %8d bytes  %s\n' "$$(basename $$d)" "$$size" "$$(file -b $$d/bootstrap | cut -d, -f1-2)"; \
	  [ "$$size" -le 6291456 ] || { echo "  $$(basename $$d): over 6 MB"; exit 1; }; \
	done

# make bench    the figures table (docs/benchmarks.md)
# make faults   N orders under chaos and crashes, checked against the simulators' ledgers
#               (STORE=dynamodb: against DynamoDB Local, started and stopped by scripts/faults; N default 5000;
#               DIALECTS=random: every simulator account speaks a seeded random dialect)
SEED ?= 7
STORE ?= memory
DIALECTS ?= documented


## bench: the figures table (throughput, sweep rate, DynamoDB round trips, warm latency, Lambda cold start vs a
## Python peer, latency through the runtime API, peak memory, arm64 package sizes); BENCH_PACKAGES=0 skips arm64
bench:
	./scripts/bench $(BENCH_ARGS)

## faults: N orders (default 100000; 5000 with STORE=dynamodb) under chaos and crashes, checked against the
## simulators' ledgers
faults:
	STORE=$(STORE) SEED=$(SEED) DIALECTS=$(DIALECTS) $(if $(N),N=$(N)) ./scripts/faults
