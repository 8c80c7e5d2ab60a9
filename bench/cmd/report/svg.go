package main

import (
	"fmt"
	"html"
	"strings"
)

// chartScenarios are the scenarios drawn in results.svg, with their titles and the metric
// drawn (ns/op unless unit says otherwise).
var chartScenarios = []struct{ name, title, unit string }{
	{"DataL1Hit", "L1 hit: a decoded ~300 B struct from process memory", ""},
	{"DataL2Hit", "L2 hit: the struct read from Redis and decoded", ""},
	{"DataZipf", "Zipf(1.01) 95% reads / 5% writes, 100k keys, two instances, L1 = 1% of the key space", ""},
	{sizeScenario, "L1 size: heap bytes per entry beyond the value (a 48 B *Small), at 10k, 100k and 1M entries", "beyond-value-B/entry"},
}

// chart draws horizontal bars of median ns/op per contender and mode (or of a panel's unit,
// per size and contender), one panel per scenario of chartScenarios, each panel on its own
// linear scale. Plain SVG, no dependency.
func chart(rs *results) string {
	const (
		width   = 960
		labelW  = 330
		barMaxW = 470
		rowH    = 20
		barH    = 14
		titleH  = 30
		gap     = 18
		margin  = 12
	)
	var body strings.Builder
	y := margin
	for _, sc := range chartScenarios {
		rows := rs.of(sc.name)
		if len(rows) == 0 {
			continue
		}
		unit := sc.unit
		if unit == "" {
			unit = "ns/op"
		}
		peak := 0.0
		for _, r := range rows {
			if v, ok := r.median(unit); ok && v > peak {
				peak = v
			}
		}
		if peak == 0 {
			continue
		}
		fmt.Fprintf(&body, `<text x="%d" y="%d" class="title">%s</text>`+"\n", margin, y+18, html.EscapeString(sc.title))
		y += titleH
		for _, r := range rows {
			v, ok := r.median(unit)
			if !ok {
				continue
			}
			label, name, shown := r.contender, r.contender, fmtNs(v)
			if sc.name == sizeScenario {
				entries, c := sizeRow(r)
				label, name, shown = entries+" · "+c, c, fmt.Sprintf("%.0f B", v)
			}
			if r.mode != "" {
				label += " · " + strings.ToLower(r.mode)
			}
			class := "peer"
			if strings.HasPrefix(name, "tiercache") {
				class = "ours"
			}
			if r.mode == "Parallel" {
				class += " par"
			}
			w := max(v/peak*barMaxW, 1)
			extra := ""
			if hr, ok := r.median("l1-hit-ratio"); ok && sc.name == "DataZipf" {
				extra = fmt.Sprintf(", L1 hit ratio %.2f", hr)
			}
			fmt.Fprintf(&body, `<text x="%d" y="%d" class="label">%s</text>`+"\n", labelW-8, y+barH-2, html.EscapeString(label))
			fmt.Fprintf(&body, `<rect x="%d" y="%d" width="%.1f" height="%d" class="%s"/>`+"\n", labelW, y, w, barH, class)
			fmt.Fprintf(&body, `<text x="%.1f" y="%d" class="value">%s%s</text>`+"\n", float64(labelW)+w+6, y+barH-2, html.EscapeString(shown), html.EscapeString(extra))
			y += rowH
		}
		y += gap
	}
	fmt.Fprintf(&body, `<text x="%d" y="%d" class="note">median ns/op (shorter is faster), B/entry in the L1 size panel (shorter is smaller); each panel has its own scale; darker bars: one goroutine, lighter: 16×GOMAXPROCS goroutines</text>`+"\n", margin, y+4)
	y += margin + 8

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, y, width, y)
	b.WriteString(`<style>
.title { font-weight: bold; font-size: 13px; fill: #222; }
.label { text-anchor: end; fill: #333; }
.value { fill: #333; }
.note { fill: #666; font-size: 11px; }
.ours { fill: #1f6fb2; }
.peer { fill: #8a96a3; }
.ours.par { fill: #6fa8dc; }
.peer.par { fill: #c3cad2; }
</style>
`)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", width, y)
	b.WriteString(body.String())
	b.WriteString("</svg>\n")
	return b.String()
}
