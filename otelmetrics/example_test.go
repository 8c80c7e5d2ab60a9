package otelmetrics_test

import (
	"context"
	"log"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/synspirit/tiercache/otelmetrics"
	"github.com/synspirit/tiercache/tiered"
)

// The durations need the Observer at tiered.New; the counts need Register afterwards. Any
// reader or exporter works: the webapp (examples/webapp) serves them to Prometheus.
func ExampleRegister() {
	ctx := context.Background()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer mp.Shutdown(ctx)

	obs, err := otelmetrics.NewObserver(mp)
	if err != nil {
		log.Fatal(err)
	}
	c, err := tiered.New(ctx, tiered.Options{RedisURL: "redis://127.0.0.1:6379/0", Observer: obs})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	reg, err := otelmetrics.Register(c, mp)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
}
