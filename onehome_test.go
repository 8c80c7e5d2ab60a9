package tiercache_test

import (
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// One home per rule: only internal/rcall sends commands to Redis, so that every call has its
// deadline, Pin, the breaker and one classification of errors. This test type-checks the
// library's packages and fails on any call of a Do-family method of a rueidis type, or of
// rueidis's Lua and multi-key helpers (which build commands that cannot be pinned), outside
// internal/rcall.
func TestOnlyRcallCallsRedis(t *testing.T) {
	const rueidisPath = "github.com/redis/rueidis"
	forbiddenMethods := map[string]bool{
		"Do": true, "DoMulti": true, "DoCache": true, "DoMultiCache": true, "DoStream": true,
		"DoMultiStream": true, "Receive": true, "Exec": true, "ExecMulti": true,
	}
	forbiddenFuncs := map[string]bool{
		"NewLuaScript": true, "NewLuaScriptReadOnly": true, "NewLuaScriptNoSha": true,
		"MGet": true, "MDel": true, "MSet": true, "MSetNX": true, "MGetCache": true, "MUnlink": true,
	}
	dirs := []string{"tiered", "counter", "bus", "image", "internal/l1", "internal/flight", "internal/lifetime", "internal/deadline", "internal/sentinel"}
	fset := token.NewFileSet()
	imp := exportImporter(t, fset, dirs)
	for _, dir := range dirs {
		files := parseDir(t, fset, dir)
		info := &types.Info{Uses: map[*ast.Ident]types.Object{}, Selections: map[*ast.SelectorExpr]*types.Selection{}}
		conf := types.Config{Importer: imp, Error: func(error) {}}
		if _, err := conf.Check("github.com/synspirit/tiercache/"+dir, fset, files, info); err != nil {
			t.Fatalf("type-checking %s: %v", dir, err)
		}
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if s, ok := info.Selections[sel]; ok { // a method call
					if forbiddenMethods[sel.Sel.Name] && fromPackage(s.Recv(), rueidisPath) {
						t.Errorf("%s: %s calls Redis (%v) outside internal/rcall", fset.Position(call.Pos()), sel.Sel.Name, s.Recv())
					}
					return true
				}
				if obj := info.Uses[sel.Sel]; obj != nil && obj.Pkg() != nil && obj.Pkg().Path() == rueidisPath && forbiddenFuncs[obj.Name()] {
					t.Errorf("%s: rueidis.%s builds commands outside internal/rcall", fset.Position(call.Pos()), obj.Name())
				}
				return true
			})
		}
	}
}

// fromPackage tells whether typ (a method's receiver) is a named type, or a pointer to one,
// of package path, or an interface defined there.
func fromPackage(typ types.Type, path string) bool {
	if p, ok := typ.(*types.Pointer); ok {
		typ = p.Elem()
	}
	if n, ok := typ.(*types.Named); ok {
		return n.Obj().Pkg() != nil && strings.HasPrefix(n.Obj().Pkg().Path(), path)
	}
	return false
}

// exportImporter imports packages from the compiler's export data, which go list builds (and
// caches): much faster than type-checking every dependency from source.
func exportImporter(t *testing.T, fset *token.FileSet, dirs []string) types.Importer {
	t.Helper()
	args := []string{"list", "-export", "-deps", "-f", "{{.ImportPath}}={{.Export}}"}
	for _, d := range dirs {
		args = append(args, "./"+d)
	}
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		t.Fatalf("go list -export: %v", err)
	}
	exports := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if path, file, ok := strings.Cut(line, "="); ok && file != "" {
			exports[path] = file
		}
	}
	return importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		file, ok := exports[path]
		if !ok {
			return nil, fmt.Errorf("no export data for %s", path)
		}
		return os.Open(file)
	})
}

func parseDir(t *testing.T, fset *token.FileSet, dir string) []*ast.File {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}
