// Package sentinel makes sentinel errors of one package that also match another's: the
// counter package's ErrUnavailable matches tiered.ErrUnavailable, so that one errors.Is
// check covers both.
package sentinel

// New returns a sentinel error with message msg that also matches parent (errors.Is).
func New(msg string, parent error) error { return &wrapped{msg: msg, parent: parent} }

type wrapped struct {
	msg    string
	parent error
}

func (e *wrapped) Error() string { return e.msg }
func (e *wrapped) Unwrap() error { return e.parent }

// Join is errors.Join in one line: the messages of errs (nil ones skipped) joined by "; ".
// It returns nil when every err is nil. errors.Is and As see each of them.
func Join(errs ...error) error {
	var j joined
	for _, err := range errs {
		if err != nil {
			j = append(j, err)
		}
	}
	if len(j) == 0 {
		return nil
	}
	return j
}

type joined []error

func (j joined) Error() string {
	s := ""
	for i, err := range j {
		if i > 0 {
			s += "; "
		}
		s += err.Error()
	}
	return s
}

func (j joined) Unwrap() []error { return j }

// WithoutPrefix is err with prefix dropped from the front of its text ("tiered: "), for a
// cause quoted inside another package's error; errors.Is and As see err unchanged.
func WithoutPrefix(err error, prefix string) error {
	if err == nil {
		return nil
	}
	return trimmed{err: err, prefix: prefix}
}

type trimmed struct {
	err    error
	prefix string
}

func (t trimmed) Error() string {
	s := t.err.Error()
	if len(s) >= len(t.prefix) && s[:len(t.prefix)] == t.prefix {
		return s[len(t.prefix):]
	}
	return s
}

func (t trimmed) Unwrap() error { return t.err }
