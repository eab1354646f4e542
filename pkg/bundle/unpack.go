package bundle

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Unpack extracts a bundle read from src into dir, which must not exist yet.
// It extracts into a temporary sibling of dir and renames it into place only
// when everything succeeded, so on any error nothing is left at dir.
//
// A KindJar bundle is not unpacked: it is written as dir/bundle.jar
// (JarFileName), which is what ${BUNDLE} points at.
//
// Refused (ErrUnsafeEntry): entries with absolute paths or ".." components,
// symlinks whose target lies outside dir (also through other symlinks, and
// dangling ones), hard links to anything but an earlier regular file of the
// bundle, device files, FIFOs and unknown entry types. Refused (ErrLimit):
// more than limits.MaxFiles entries, more than limits.MaxBytes bytes of
// content, or content over ExpansionFloor that is more than
// limits.MaxExpansion times the archive bytes read so far. The limits are
// checked while writing, so a bomb stops early.
// Setuid/setgid/sticky bits are dropped; execute bits are kept.
func Unpack(ctx context.Context, src io.Reader, kind Kind, dir string, limits Limits) (err error) {
	limits = limits.withDefaults()
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("unpack bundle: destination %s already exists: remove it or unpack elsewhere", dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unpack bundle: %w", err)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("unpack bundle: create %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".unpack-")
	if err != nil {
		return fmt.Errorf("unpack bundle: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return fmt.Errorf("unpack bundle: %w", err)
	}
	x := &extractor{ctx: ctx, root: root, dir: tmp, limits: limits, m: meter{limits: limits}}
	switch kind {
	case KindTarGz:
		cr := &countingReader{r: src}
		x.m.in = func() int64 { return cr.n }
		err = x.tarGz(cr)
	case KindZip:
		err = x.zip(src, parent)
	case KindJar:
		x.files = 1
		err = x.writeFile(JarFileName, 0o644, src)
	default:
		err = fmt.Errorf("%w: kind %v (want a .jar, .tar.gz, .tgz or .zip bundle)", ErrUnknownKind, kind)
	}
	if err == nil {
		err = x.checkSymlinks()
	}
	if cerr := root.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("unpack bundle into %s: %w", dir, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("unpack bundle: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("unpack bundle: move into place: %w", err)
	}
	return nil
}

type extractor struct {
	ctx      context.Context
	root     *os.Root
	dir      string
	limits   Limits
	m        meter
	files    int
	symlinks []string
}

// entryName validates and normalises an archive entry name. "" means the
// root directory itself (e.g. "./"), which is skipped.
func entryName(raw string) (string, error) {
	name := raw
	for strings.HasPrefix(name, "./") {
		name = name[2:]
	}
	switch {
	case strings.ContainsRune(name, 0):
		return "", fmt.Errorf("%w: entry name %q contains a NUL byte", ErrUnsafeEntry, raw)
	case strings.Contains(name, `\`):
		return "", fmt.Errorf("%w: entry %q contains a backslash (Windows path separators are not allowed)", ErrUnsafeEntry, raw)
	case strings.HasPrefix(name, "/"):
		return "", fmt.Errorf("%w: entry %q has an absolute path", ErrUnsafeEntry, raw)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." {
			return "", fmt.Errorf("%w: entry %q has a \"..\" component (path traversal)", ErrUnsafeEntry, raw)
		}
	}
	name = strings.TrimSuffix(path.Clean("/"+name), "/")
	name = strings.TrimPrefix(name, "/")
	if name == "" {
		return "", nil
	}
	if !filepath.IsLocal(name) {
		return "", fmt.Errorf("%w: entry %q is not a plain relative path", ErrUnsafeEntry, raw)
	}
	return name, nil
}

func (x *extractor) count(name string) error {
	if err := x.ctx.Err(); err != nil {
		return err
	}
	x.files++
	if x.limits.MaxFiles > 0 && x.files > x.limits.MaxFiles {
		return fmt.Errorf("%w: more than %d entries (at %q)", ErrLimit, x.limits.MaxFiles, name)
	}
	return nil
}

func (x *extractor) mkdir(name string) error {
	if name == "" {
		return nil
	}
	if err := x.root.MkdirAll(name, 0o755); err != nil {
		return fmt.Errorf("create directory %q: %w", name, err)
	}
	return nil
}

// prepare makes the parent directories of name and removes an earlier
// non-directory entry of the same name (later entries win, as with tar).
func (x *extractor) prepare(name string) error {
	if err := x.mkdir(path.Dir(name)); err != nil && path.Dir(name) != "." {
		return err
	}
	fi, err := x.root.Lstat(name)
	if err == nil {
		if fi.IsDir() {
			return fmt.Errorf("%w: entry %q is both a directory and a file", ErrUnsafeEntry, name)
		}
		return x.root.Remove(name)
	}
	return nil
}

func (x *extractor) writeFile(name string, mode fs.FileMode, r io.Reader) error {
	if err := x.prepare(name); err != nil {
		return err
	}
	perm := mode.Perm()&0o755 | 0o600
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("create %q: %w", name, err)
	}
	_, err = x.m.copy(x.ctx, f, r, name)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	var rerr *errRead
	switch {
	case err == nil:
	case errors.Is(err, ErrLimit) || x.ctx.Err() != nil:
		return err
	case errors.As(err, &rerr):
		if errors.Is(err, zip.ErrChecksum) || errors.Is(err, zip.ErrFormat) {
			return fmt.Errorf("%w: reading %q from the archive: %w", ErrCorruptArchive, name, rerr.err)
		}
		return fmt.Errorf("%w: reading %q from the archive: %v", ErrCorruptArchive, name, rerr.err)
	default:
		return fmt.Errorf("extract %q: %w", name, err)
	}
	return x.root.Chmod(name, perm)
}

func (x *extractor) symlink(name, target string) error {
	if err := CheckSymlink(name, target); err != nil {
		return err
	}
	if err := x.prepare(name); err != nil {
		return err
	}
	if err := x.root.Symlink(target, name); err != nil {
		return fmt.Errorf("create symlink %q: %w", name, err)
	}
	x.symlinks = append(x.symlinks, name)
	return nil
}

func (x *extractor) hardlink(name, rawTarget string) error {
	target, err := entryName(rawTarget)
	if err != nil || target == "" {
		return fmt.Errorf("%w: hard link %q points to %q, outside the bundle", ErrUnsafeEntry, name, rawTarget)
	}
	fi, err := x.root.Lstat(target)
	if err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: hard link %q points to %q, which is not an earlier regular file of the bundle", ErrUnsafeEntry, name, rawTarget)
	}
	if err := x.prepare(name); err != nil {
		return err
	}
	if err := x.root.Link(target, name); err != nil {
		return fmt.Errorf("create hard link %q: %w", name, err)
	}
	return nil
}

// checkSymlinks resolves every symlink on disk: chains of individually
// harmless links can still lead outside, and dangling links could be
// completed later by something else.
func (x *extractor) checkSymlinks() error {
	if len(x.symlinks) == 0 {
		return nil
	}
	rootReal, err := filepath.EvalSymlinks(x.dir)
	if err != nil {
		return err
	}
	for _, name := range x.symlinks {
		real, err := filepath.EvalSymlinks(filepath.Join(x.dir, filepath.FromSlash(name)))
		if err != nil {
			return fmt.Errorf("%w: symlink %q does not resolve to a file in the bundle (dangling or a loop)", ErrUnsafeEntry, name)
		}
		rel, err := filepath.Rel(rootReal, real)
		if err != nil || !filepath.IsLocal(rel) && rel != "." {
			return fmt.Errorf("%w: symlink %q resolves outside the bundle", ErrUnsafeEntry, name)
		}
	}
	return nil
}

func (x *extractor) tarGz(src io.Reader) error {
	gz, err := gzip.NewReader(src)
	if err != nil {
		return fmt.Errorf("%w: not gzip data (%v): is the file really a .tar.gz?", ErrCorruptArchive, err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: reading tar: %v", ErrCorruptArchive, err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if err := x.count(hdr.Name); err != nil {
			return err
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "" {
			if hdr.Typeflag == tar.TypeDir {
				continue
			}
			return fmt.Errorf("%w: entry %q has no name", ErrUnsafeEntry, hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = x.mkdir(name)
		case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
			err = x.writeFile(name, fs.FileMode(hdr.Mode), tr)
		case tar.TypeSymlink:
			err = x.symlink(name, hdr.Linkname)
		case tar.TypeLink:
			err = x.hardlink(name, hdr.Linkname)
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			err = fmt.Errorf("%w: entry %q is a device file or FIFO", ErrUnsafeEntry, hdr.Name)
		default:
			err = fmt.Errorf("%w: entry %q has unsupported tar type %q", ErrUnsafeEntry, hdr.Name, hdr.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

// sizedReaderAt is what zip needs; an *os.File bundle is used in place.
type sizedReaderAt interface {
	io.ReaderAt
	Stat() (fs.FileInfo, error)
}

func (x *extractor) zip(src io.Reader, spoolDir string) error {
	var ra io.ReaderAt
	var size int64
	if f, ok := src.(sizedReaderAt); ok {
		fi, err := f.Stat()
		if err == nil && fi.Mode().IsRegular() {
			ra, size = f, fi.Size()
		}
	}
	if ra == nil {
		// zip's directory is at the end: spool the stream to a file first.
		spool, err := os.CreateTemp(spoolDir, ".bundle-spool-*.zip")
		if err != nil {
			return err
		}
		defer func() { spool.Close(); os.Remove(spool.Name()) }()
		lr := src
		if x.limits.MaxBytes > 0 {
			lr = io.LimitReader(src, x.limits.MaxBytes+1)
		}
		n, err := io.CopyBuffer(spool, &ctxReader{ctx: x.ctx, r: lr}, make([]byte, 64<<10))
		if err != nil {
			return fmt.Errorf("spool zip: %w", err)
		}
		if x.limits.MaxBytes > 0 && n > x.limits.MaxBytes {
			return fmt.Errorf("%w: zip file exceeds %d bytes", ErrLimit, x.limits.MaxBytes)
		}
		ra, size = spool, n
	}
	zr, err := zip.NewReader(ra, size)
	if err != nil {
		return fmt.Errorf("%w: not a zip file (%v): is the file really a .zip?", ErrCorruptArchive, err)
	}
	if x.limits.MaxFiles > 0 && len(zr.File) > x.limits.MaxFiles {
		return fmt.Errorf("%w: %d entries, more than %d", ErrLimit, len(zr.File), x.limits.MaxFiles)
	}
	if err := zipDeclared(declaredSizes(zr.File), size, x.limits); err != nil {
		return err
	}
	// Archive bytes "read" so far: the compressed sizes of the entries up
	// to the current one.
	var in int64
	x.m.in = func() int64 { return in }
	for _, f := range zr.File {
		in += int64(min(f.CompressedSize64, 1<<62))
		if err := x.count(f.Name); err != nil {
			return err
		}
		name, err := entryName(f.Name)
		if err != nil {
			return err
		}
		mode := f.Mode()
		if name == "" {
			if mode.IsDir() {
				continue
			}
			return fmt.Errorf("%w: entry %q has no name", ErrUnsafeEntry, f.Name)
		}
		switch {
		case mode.IsDir():
			err = x.mkdir(name)
		case mode&fs.ModeSymlink != 0:
			err = x.zipSymlink(f, name)
		case mode&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket|fs.ModeIrregular) != 0:
			err = fmt.Errorf("%w: entry %q is a device file, FIFO or socket", ErrUnsafeEntry, f.Name)
		default:
			err = x.zipFile(f, name, mode)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (x *extractor) zipFile(f *zip.File, name string, mode fs.FileMode) error {
	rc, err := f.Open()
	if err != nil {
		return fmt.Errorf("%w: entry %q: %v", ErrCorruptArchive, f.Name, err)
	}
	defer rc.Close()
	return x.writeFile(name, mode, rc)
}

func declaredSizes(files []*zip.File) []zipSizes {
	out := make([]zipSizes, 0, len(files))
	for _, f := range files {
		if !f.Mode().IsDir() {
			out = append(out, zipSizes{name: f.Name, uncompressed: f.UncompressedSize64})
		}
	}
	return out
}

func (x *extractor) zipSymlink(f *zip.File, name string) error {
	target, err := zipLinkTarget(f)
	if err != nil {
		return err
	}
	return x.symlink(name, target)
}

// zipLinkTarget reads a zip symlink entry's target (its content).
func zipLinkTarget(f *zip.File) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", fmt.Errorf("%w: entry %q: %v", ErrCorruptArchive, f.Name, err)
	}
	defer rc.Close()
	target, err := io.ReadAll(io.LimitReader(rc, 4097))
	if err != nil || len(target) > 4096 {
		return "", fmt.Errorf("%w: symlink %q has an unreadable or too long target", ErrUnsafeEntry, f.Name)
	}
	return string(target), nil
}

// ctxReader stops a stream once ctx is done and remembers the source's own
// error (other than EOF).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	err error
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}
