package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/1588-pizza/pizza/db"
	"github.com/1588-pizza/pizza/graph"
	"github.com/1588-pizza/pizza/lifecycle"
)

// The docs are checked where that is cheap: what they list against what the code reads, and
// their links against the files. Everything a reader needs is in the repository.

const repoRoot = "../.."

// docFiles are the repository's user documentation: README.md and docs/*.md.
func docFiles(t *testing.T) []string {
	files, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "docs/ holds the documentation")
	return append([]string{filepath.Join(repoRoot, "README.md"), filepath.Join(repoRoot, "BENCHMARKS.md")}, files...)
}

func readDoc(t *testing.T, path string) string {
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(raw)
}

// fences matches fenced code blocks, which hold examples rather than links or tables.
var fences = regexp.MustCompile("(?s)```.*?```")

// section is the text of the markdown section under heading (up to the next heading of its level
// or above).
func section(t *testing.T, doc, heading string) string {
	i := strings.Index(doc, "\n"+heading+"\n")
	require.GreaterOrEqual(t, i, 0, "heading %q", heading)
	rest := doc[i+len(heading)+2:]
	level := strings.Repeat("#", strings.IndexFunc(heading, func(r rune) bool { return r != '#' }))
	for _, l := range regexp.MustCompile(`(?m)^#+ `).FindAllStringIndex(rest, -1) {
		if hashes := strings.TrimSpace(rest[l[0]:l[1]]); len(hashes) <= len(level) {
			return rest[:l[0]]
		}
	}
	return rest
}

// tableRows are the cells of the markdown table rows in text (header and rule rows excluded).
func tableRows(text string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "| ---") {
			continue
		}
		// Split on unescaped pipes (cells write \| inside code).
		var cells []string
		cell := strings.Builder{}
		for i := 1; i < len(line); i++ {
			switch {
			case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
				cell.WriteByte('|')
				i++
			case line[i] == '|':
				cells = append(cells, strings.TrimSpace(cell.String()))
				cell.Reset()
			default:
				cell.WriteByte(line[i])
			}
		}
		rows = append(rows, cells)
	}
	if len(rows) > 0 {
		rows = rows[1:] // the header
	}
	return rows
}

var codeName = regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")

// Every variable the configuration reads is in the operations guide's table, and every variable
// the table names is one the configuration (or Go's runtime) reads.
func TestDocsListEveryConfigurationVariable(t *testing.T) {
	t.Parallel()
	table := section(t, readDoc(t, filepath.Join(repoRoot, "docs", "operations.md")), "## Configuration")
	var documented []string
	for _, row := range tableRows(table) {
		for _, m := range codeName.FindAllStringSubmatch(row[0], -1) {
			documented = append(documented, m[1])
		}
	}
	keys := configKeys(t)
	for _, k := range keys {
		require.True(t, slices.Contains(documented, k), "docs/operations.md's configuration table does not document %s", k)
	}
	for _, k := range documented {
		if k == "GOGC" || k == "GOMEMLIMIT" { // read by Go's runtime
			continue
		}
		require.True(t, slices.Contains(keys, k), "docs/operations.md documents %s, which the configuration does not read", k)
	}
}

// The events table says who produces and who consumes each event, as the services' queues are
// bound.
func TestDocsEventTableMatchesTheQueues(t *testing.T) {
	t.Parallel()
	table := section(t, readDoc(t, filepath.Join(repoRoot, "docs", "architecture.md")), "## Events")
	consumes := map[string][]string{}
	var listed []string
	for _, row := range tableRows(table) {
		require.Len(t, row, 3, "routing key | producer | consumers: %v", row)
		key := strings.Trim(row[0], "`")
		listed = append(listed, key)
		producer, _, _ := strings.Cut(key, ".")
		require.Equal(t, producer, row[1], "%s is produced by the service it is named after", key)
		for _, c := range strings.Split(row[2], ",") {
			consumes[strings.TrimSpace(c)] = append(consumes[strings.TrimSpace(c)], key)
		}
	}
	var all []string
	for _, s := range db.Services {
		want := slices.Sorted(slices.Values(queueKeys[s]))
		require.Equal(t, want, slices.Sorted(slices.Values(consumes[string(s)])), "the events %s consumes", s)
		all = append(all, want...)
	}
	require.Equal(t, slices.Sorted(slices.Values(graph.LiveKeys)), slices.Sorted(slices.Values(consumes["every running BFF replica"])),
		"the events every BFF replica listens to")
	all = append(all, lifecycle.MyPageUpdated)
	slices.Sort(all)
	require.Equal(t, slices.Compact(all), slices.Sorted(slices.Values(listed)), "the table lists every event once")
}

var link = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)\)`)

// anchors are the GitHub anchors of a markdown document's headings.
func anchors(doc string) map[string]bool {
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^#+ (.+)$`).FindAllStringSubmatch(fences.ReplaceAllString(doc, ""), -1) {
		slug := strings.Map(func(r rune) rune {
			switch {
			case r == ' ':
				return '-'
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				return unicode.ToLower(r)
			}
			return -1
		}, strings.TrimSpace(m[1]))
		for n := 0; ; n++ {
			s := slug
			if n > 0 {
				s += "-" + string(rune('0'+n))
			}
			if !out[s] {
				out[s] = true
				break
			}
		}
	}
	return out
}

// Every relative link in the docs leads to a file of the repository, and every #anchor to a
// heading of its document.
func TestDocsLinksResolve(t *testing.T) {
	t.Parallel()
	for _, file := range docFiles(t) {
		doc := readDoc(t, file)
		for _, m := range link.FindAllStringSubmatch(fences.ReplaceAllString(doc, ""), -1) {
			target := m[1]
			if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.Join(filepath.Dir(file), path)
				_, err := os.Stat(dest)
				require.NoError(t, err, "%s links to %s, which is not in the repository", file, target)
			}
			if anchor != "" {
				require.True(t, anchors(readDoc(t, dest))[anchor], "%s links to %s: no such heading", file, target)
			}
		}
	}
}

// Nothing points outside the repository (design notes a user of it does not have), and the docs'
// examples do not assume an order's id (ids are the database's; "1" holds only on an empty one).
func TestDocsStayInTheRepository(t *testing.T) {
	t.Parallel()
	outside := []string{".." + "/shared", "/work" + "/shared"}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != repoRoot && (strings.HasPrefix(name, ".") || name == "bin" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if info, err := d.Info(); err != nil || info.Size() > 1<<20 {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, o := range outside {
			require.False(t, strings.Contains(string(raw), o), "%s refers to %s, outside the repository", path, o)
		}
		return nil
	})
	require.NoError(t, err)

	fixedID := regexp.MustCompile(`(orderId|order\(id): \\?"[0-9]+|/(orders|store-orders)/[0-9]+`)
	for _, file := range docFiles(t) {
		if filepath.Base(file) == "BENCHMARKS.md" {
			continue
		}
		doc := readDoc(t, file)
		for _, name := range []string{"CONTRACT.md", "DESIGN.md"} {
			require.False(t, strings.Contains(doc, name), "%s refers to %s, which is not in the repository", file, name)
		}
		for _, m := range fixedID.FindAllString(doc, -1) {
			if strings.Contains(m, `"42`) { // the docs' stand-in, introduced as such
				continue
			}
			t.Errorf("%s: %q assumes an order's id; take it from placeOrder's answer", file, m)
		}
	}
}
