# The README's commands. `make test` is what CI runs.
MODULES := ./... ./bench/... ./examples/...

.PHONY: test bench demo
test:
	go test -race -count=1 -timeout 15m $(MODULES)

bench:
	go test -run '^$$' -bench . -benchmem $(MODULES)

demo:
	go run ./examples/demo
