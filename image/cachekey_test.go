package image

import (
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestQueryRule(t *testing.T) {
	for _, c := range []struct {
		keep    []string
		in, out string
		dropped []string
	}{
		{nil, "http://h/a.png?x=1&y=2#f", "http://h/a.png", []string{"x", "y"}},
		{nil, "http://h/a.png?", "http://h/a.png", nil},
		{[]string{"w"}, "http://h/a.png?x=1&w=200&x=2", "http://h/a.png?w=200", []string{"x"}},
		{[]string{"w"}, "http://h/a.png?w=200;x=1", "http://h/a.png?w=200", []string{"x"}},
		{[]string{"w", "h"}, "http://h/a.png?w=2&h=1&w=1", "http://h/a.png?h=1&w=2&w=1", nil},
		{[]string{"w h"}, "http://h/a.png?w+h=1&w%20h=2&%zz=3", "http://h/a.png?w+h=1&w%20h=2", []string{"%zz"}},
		{[]string{"sig"}, "http://h/a.png?sig=a%2Bb+c", "http://h/a.png?sig=a%2Bb+c", nil},
		{[]string{"*"}, "http://h/a.png?z=1&a=2#f", "http://h/a.png?z=1&a=2", nil},
	} {
		u, err := url.Parse(c.in)
		require.NoError(t, err)
		dropped := newQueryRule(c.keep).apply(u)
		assert.Equal(t, c.out, u.String(), "%v %s", c.keep, c.in)
		assert.Equal(t, c.dropped, dropped, "%v %s", c.keep, c.in)
	}
}
