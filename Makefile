# Benchmarks and the fault campaign (README "Benchmarks and fault campaign"). The test command is
# ./scripts/test.
N ?= 100000
SEED ?= 7

.PHONY: bench faults

## bench: the figures table (throughput, sweep rate, DynamoDB round trips, warm latency)
bench:
	./scripts/bench

## faults: N orders (default 100000) under chaos and crashes, checked against the simulators' ledgers
faults:
	cargo run --release --locked -p recharge-bench -- faults --orders $(N) --seed $(SEED)
