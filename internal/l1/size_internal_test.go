package l1

import (
	"testing"
	"unsafe"
)

// An entry fits the 32-byte size class.
func TestEntrySize(t *testing.T) {
	if s := unsafe.Sizeof(entry{}); s > 32 {
		t.Fatalf("entry is %d bytes", s)
	}
}
