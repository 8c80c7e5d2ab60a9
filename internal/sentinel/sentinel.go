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
