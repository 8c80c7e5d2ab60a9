# The README's commands. `make test` is what CI runs.
MODULES := ./... ./bench/... ./examples/... ./otelmetrics/...

.PHONY: test bench demo
test:
	@scripts/test.sh $(MODULES)

bench:
	go test -run '^$$' -bench . -benchmem $(MODULES)

demo:
	@scripts/demo.sh
