package image

import (
	"net/url"
	"slices"
	"strings"
)

// The cache key of a proxied image is its URL as the proxy fetches it: checkURL's canonical
// host and port, no fragment, and only the query parameters the operator listed. Whatever
// else a client varies makes neither another origin fetch nor another entry.

// queryRule is a parsed ProxyOptions.KeepQueryParams.
type queryRule struct {
	keepAll bool
	keep    map[string]bool
}

func newQueryRule(names []string) queryRule {
	if len(names) == 1 && names[0] == "*" {
		return queryRule{keepAll: true}
	}
	q := queryRule{keep: make(map[string]bool, len(names))}
	for _, n := range names {
		q.keep[n] = true
	}
	return q
}

// apply drops u's fragment and the query parameters that do not count, and sorts those that
// do by name (keeping the order of repeated ones). It returns the names it dropped.
func (q queryRule) apply(u *url.URL) (dropped []string) {
	u.Fragment, u.RawFragment = "", ""
	u.ForceQuery = false
	if q.keepAll || u.RawQuery == "" {
		return nil
	}
	type param struct{ name, raw string }
	var kept []param
	// ";" separates parameters too for many origins: "w=200;x=1" must not keep x.
	for _, raw := range strings.FieldsFunc(u.RawQuery, func(r rune) bool { return r == '&' || r == ';' }) {
		name, _, _ := strings.Cut(raw, "=")
		if n, err := url.QueryUnescape(name); err == nil && q.keep[n] {
			kept = append(kept, param{n, raw})
		} else if !slices.Contains(dropped, name) {
			dropped = append(dropped, name)
		}
	}
	slices.SortStableFunc(kept, func(a, b param) int { return strings.Compare(a.name, b.name) })
	raws := make([]string, len(kept))
	for i, k := range kept {
		raws[i] = k.raw
	}
	u.RawQuery = strings.Join(raws, "&")
	return dropped
}
