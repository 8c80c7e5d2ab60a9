module github.com/synspirit/tiercache/examples

go 1.26.0

require github.com/synspirit/tiercache v0.0.0

replace github.com/synspirit/tiercache => ../
