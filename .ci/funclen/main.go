// funclen lists the functions (tests aside) longer than a limit in the
// given directories, longest first, and exits 1 when there is one:
//
//	go run ./.ci/funclen -max 100 api jobs models casebook store
//
// cmd/collider's TestStyle_FunctionsAReaderCanHold runs it over the
// packages STYLE.md holds to that limit.
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type long struct {
	where string
	lines int
}

func main() {
	limit := flag.Int("max", 100, "the most lines a function may have")
	flag.Parse()
	var found []long
	for _, dir := range flag.Args() {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			more, err := longFuncs(path, *limit)
			found = append(found, more...)
			return err
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "funclen:", err)
			os.Exit(2)
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].lines > found[j].lines })
	for _, f := range found {
		fmt.Printf("%4d  %s\n", f.lines, f.where)
	}
	if len(found) > 0 {
		os.Exit(1)
	}
}

// longFuncs are a file's functions over the limit, named with their receiver.
func longFuncs(path string, limit int) ([]long, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		return nil, err
	}
	var out []long
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Body == nil {
			continue
		}
		n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1
		if n <= limit {
			continue
		}
		name := fd.Name.Name
		if fd.Recv != nil && len(fd.Recv.List) > 0 {
			t := fd.Recv.List[0].Type
			if s, ok := t.(*ast.StarExpr); ok {
				t = s.X
			}
			if id, ok := t.(*ast.Ident); ok {
				name = id.Name + "." + name
			}
		}
		out = append(out, long{fmt.Sprintf("%s:%d %s", path, fset.Position(fd.Pos()).Line, name), n})
	}
	return out, nil
}
