package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Limits bound what Unpack extracts and what Inspect reads (zip and gzip
// bombs, inode floods). A zero field means the default (DefaultLimits); a
// negative one means no limit.
type Limits struct {
	MaxFiles int   // entries of any kind (files, directories, links)
	MaxBytes int64 // total bytes of regular file content (and of a spooled zip): gear.bundle.max-unpacked-size
	// MaxExpansion bounds the ratio of unpacked content bytes to archive
	// bytes read so far (gear.bundle.max-expansion). It is checked while
	// extracting, so a bomb stops after a few MiB instead of filling the
	// disk. Content up to ExpansionFloor is never refused for its ratio: a
	// small bundle with a compressible file is not a bomb.
	MaxExpansion int
}

// DefaultLimits are used for zero fields of Limits. Real jars and tarballs
// compress 2:1 to 10:1; gzip's best on zeros is about 1000:1.
var DefaultLimits = Limits{MaxFiles: 100_000, MaxBytes: 4 << 30, MaxExpansion: 100}

// ExpansionFloor is how much content an archive may always unpack to,
// whatever its expansion ratio.
const ExpansionFloor = 16 << 20

func (l Limits) withDefaults() Limits {
	if l.MaxFiles == 0 {
		l.MaxFiles = DefaultLimits.MaxFiles
	}
	if l.MaxBytes == 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	if l.MaxExpansion == 0 {
		l.MaxExpansion = DefaultLimits.MaxExpansion
	}
	return l
}

// meter counts content bytes against the limits while they are written (or
// discarded, when Inspect reads an archive), so that a bomb is stopped early.
type meter struct {
	limits Limits
	// in returns the archive bytes consumed so far; nil when the content is
	// not compressed (a jar is stored as is).
	in    func() int64
	bytes int64
}

// check reports ErrLimit when the content counted so far is over a limit.
func (m *meter) check(name string) error {
	if m.limits.MaxBytes > 0 && m.bytes > m.limits.MaxBytes {
		return fmt.Errorf("%w: unpacked content exceeds %d bytes (%s) at %q: is it a zip bomb? if not, raise gear.bundle.max-unpacked-size in gear.conf",
			ErrLimit, m.limits.MaxBytes, humanBytes(m.limits.MaxBytes), name)
	}
	if m.limits.MaxExpansion > 0 && m.in != nil && m.bytes > ExpansionFloor {
		in := max(m.in(), 1)
		if m.bytes/in >= int64(m.limits.MaxExpansion) && m.bytes > in*int64(m.limits.MaxExpansion) {
			return fmt.Errorf("%w: %d archive bytes unpack to more than %d bytes at %q, an expansion over %d:1 (gear.bundle.max-expansion): is it a zip bomb? if not, raise gear.bundle.max-expansion in gear.conf",
				ErrLimit, in, m.bytes, name, m.limits.MaxExpansion)
		}
	}
	return nil
}

// errRead marks an error of the archive stream (not of the destination).
type errRead struct{ err error }

func (e *errRead) Error() string { return e.err.Error() }
func (e *errRead) Unwrap() error { return e.err }

// copy copies the content of entry name from r to w in chunks, counting and
// checking the limits after each chunk; it never writes more than one chunk
// past a limit. Errors reading r are returned as *errRead.
func (m *meter) copy(ctx context.Context, w io.Writer, r io.Reader, name string) (int64, error) {
	buf := make([]byte, 64<<10)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		p := buf
		if m.limits.MaxBytes > 0 {
			if left := m.limits.MaxBytes - m.bytes + 1; left < int64(len(p)) {
				p = p[:max(left, 1)]
			}
		}
		n, rerr := r.Read(p)
		if n > 0 {
			if _, err := w.Write(p[:n]); err != nil {
				return total, err
			}
			total += int64(n)
			m.bytes += int64(n)
			if err := m.check(name); err != nil {
				return total, err
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, &errRead{rerr}
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// zipDeclared refuses a zip whose central directory already declares more
// content than the limits allow, before anything is extracted. (archive/zip
// refuses an entry that inflates to more than its declared size, so the
// declared sizes bound what extraction can write.)
func zipDeclared(files []zipSizes, archiveSize int64, l Limits) error {
	var total uint64
	for _, f := range files {
		total = min(total+min(f.uncompressed, 1<<62), 1<<62)
		if l.MaxBytes > 0 && total > uint64(l.MaxBytes) {
			return fmt.Errorf("%w: unpacked content exceeds %d bytes (%s) at %q (sizes declared in the zip directory): is it a zip bomb? if not, raise gear.bundle.max-unpacked-size in gear.conf",
				ErrLimit, l.MaxBytes, humanBytes(l.MaxBytes), f.name)
		}
	}
	if l.MaxExpansion > 0 && total > ExpansionFloor {
		in := uint64(max(archiveSize, 1))
		if total/in >= uint64(l.MaxExpansion) && total > in*uint64(l.MaxExpansion) {
			return fmt.Errorf("%w: the %d-byte zip declares %d bytes of content, an expansion over %d:1 (gear.bundle.max-expansion): is it a zip bomb? if not, raise gear.bundle.max-expansion in gear.conf",
				ErrLimit, archiveSize, total, l.MaxExpansion)
		}
	}
	return nil
}

type zipSizes struct {
	name         string
	uncompressed uint64
}

// CheckSymlink refuses a symlink entry whose target is empty, absolute or
// leads outside the bundle from where the link is (name is the link's
// normalised entry name). It is the one check the CLI (Inspect, before an
// upload) and the worker (Unpack) both apply to every link; chains of links
// are resolved on top of it (Inspect in memory, Unpack on disk).
func CheckSymlink(name, target string) error {
	if target == "" {
		return fmt.Errorf("%w: symlink %q has an empty target", ErrUnsafeEntry, name)
	}
	if strings.HasPrefix(target, "/") || strings.ContainsRune(target, 0) {
		return fmt.Errorf("%w: symlink %q points to absolute path %q, outside the bundle", ErrUnsafeEntry, name, target)
	}
	if !filepath.IsLocal(path.Join(path.Dir(name), target)) {
		return fmt.Errorf("%w: symlink %q points to %q, outside the bundle", ErrUnsafeEntry, name, target)
	}
	return nil
}

// errDangling and errEscape are what resolveEntry reports.
var (
	errDangling = errors.New("dangling")
	errEscape   = errors.New("escape")
)

// resolveSymlinks resolves every symlink of an archive listing in memory,
// the way the kernel will once it is unpacked (a ".." after a link goes to
// the parent of the link's target), and refuses links that lead outside the
// bundle or to nothing, in the words of Unpack's on-disk check. links maps
// link entry names to their targets; others maps every other entry to
// whether it is a directory.
func resolveSymlinks(links map[string]string, others map[string]bool) error {
	if len(links) == 0 {
		return nil
	}
	// What exists once unpacked: every entry and its parents, with the
	// parents resolved through links (an entry may be written through a
	// link to a directory).
	anything := func(string) (bool, bool) { return true, true }
	physical := func(e string) string {
		dir, base := path.Split(e)
		if dir == "" {
			return e
		}
		d, err := resolveEntry(strings.TrimSuffix(dir, "/"), links, anything)
		if err != nil || d == "" {
			return base
		}
		return d + "/" + base
	}
	plinks := make(map[string]string, len(links))
	for l, t := range links {
		plinks[physical(l)] = t
	}
	isDir := map[string]bool{} // what exists once unpacked -> is a directory
	for e, dir := range others {
		p := physical(e)
		if _, ok := isDir[p]; !ok || dir {
			isDir[p] = dir
		}
		for p = path.Dir(p); p != "." && p != "" && !isDir[p]; p = path.Dir(p) {
			isDir[p] = true // implicit parent
		}
	}
	for l := range plinks {
		for p := path.Dir(l); p != "." && !isDir[p]; p = path.Dir(p) {
			isDir[p] = true
		}
	}
	names := make([]string, 0, len(links))
	for n := range links {
		names = append(names, n)
	}
	sort.Strings(names)
	has := func(p string) (bool, bool) { d, ok := isDir[p]; return ok, d }
	for _, name := range names {
		if _, err := resolveEntry(physical(name), plinks, has); err != nil {
			if errors.Is(err, errEscape) {
				return fmt.Errorf("%w: symlink %q resolves outside the bundle", ErrUnsafeEntry, name)
			}
			return fmt.Errorf("%w: symlink %q does not resolve to a file in the bundle (dangling or a loop)", ErrUnsafeEntry, name)
		}
	}
	return nil
}

// resolveEntry returns the physical entry name p refers to ("" = the root).
// exists reports whether an entry exists and is a directory; as in the
// kernel, an entry followed by more components must be a directory.
func resolveEntry(p string, links map[string]string, exists func(string) (bool, bool)) (string, error) {
	var stack []string // resolved components so far
	todo := strings.Split(p, "/")
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return "", errEscape
			}
			stack = stack[:len(stack)-1]
			continue
		}
		cur := strings.Join(append(stack, c), "/")
		if target, ok := links[cur]; ok {
			if hops++; hops > 40 {
				return "", errDangling // a loop
			}
			if strings.HasPrefix(target, "/") {
				return "", errEscape
			}
			todo = append(strings.Split(target, "/"), todo...)
			continue
		}
		ok, dir := exists(cur)
		if !ok || len(todo) > 0 && !dir {
			return "", errDangling
		}
		stack = append(stack, c)
	}
	return strings.Join(stack, "/"), nil
}
