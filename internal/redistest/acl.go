package redistest

import (
	"context"
	"net/url"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// SetUser creates (or resets) an ACL user with a password and the given rules, e.g.
// SetUser("app", "secret", "~app:*", "&app:*", "+@read"). The user starts from "reset": no
// keys, no channels, no commands, beyond the rules given.
func (s *Server) SetUser(name, password string, rules ...string) {
	s.t.Helper()
	args := append([]string{"ACL", "SETUSER", name, "reset", "on", ">" + password}, rules...)
	s.Do(args...)
}

// UserURL is URL with the credentials of an ACL user (escaped as a URL needs).
func (s *Server) UserURL(user, password string, query ...string) string {
	u := url.URL{Scheme: "redis", User: url.UserPassword(user, password), Host: s.Addr(), Path: "/0"}
	if len(query) > 0 {
		u.RawQuery = strings.Join(query, "&")
	}
	return u.String()
}

func dialAdmin(addr string) (rueidis.Client, error) {
	return rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true,
		ClientName: "redistest-admin", DisableRetry: true,
	})
}

func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
