package bundle

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gear-run/gear/pkg/cluster"
)

// Kind is the archive type of a bundle.
type Kind int

const (
	KindUnknown Kind = iota
	KindJar          // run as java -cp BUNDLE MAIN ARGS
	KindTarGz        // .tar.gz / .tgz with gear-app.conf at its root
	KindZip          // .zip with gear-app.conf at its root
)

func (k Kind) String() string {
	switch k {
	case KindJar:
		return "jar"
	case KindTarGz:
		return "tar.gz"
	case KindZip:
		return "zip"
	}
	return "unknown"
}

// BundleKind is the kind as the API and the replicated state name it.
func (k Kind) BundleKind() cluster.BundleKind { return cluster.BundleKind(k.String()) }

// ParseKind is the inverse of Kind.String ("tgz" is accepted too).
func ParseKind(s string) (Kind, error) {
	switch strings.ToLower(s) {
	case "jar":
		return KindJar, nil
	case "tar.gz", "tgz":
		return KindTarGz, nil
	case "zip":
		return KindZip, nil
	}
	return KindUnknown, fmt.Errorf("%w: %q (want jar, tar.gz or zip)", ErrUnknownKind, s)
}

// JarFileName is the name a jar bundle gets in its unpack directory.
const JarFileName = "bundle.jar"

// BundleVar in a command is replaced by the worker with the path of the
// bundle: the jar file for a jar bundle, the unpacked directory otherwise.
const BundleVar = "${BUNDLE}"

// Sentinel errors (wrapped with details; test with errors.Is).
var (
	ErrUnknownKind    = errors.New("unknown bundle type")
	ErrNoManifest     = errors.New("bundle has no " + ManifestName + " at its root")
	ErrMainClass      = errors.New("main class not found in jar")
	ErrUnsafeEntry    = errors.New("unsafe archive entry")
	ErrLimit          = errors.New("bundle exceeds the unpack limits")
	ErrCorruptArchive = errors.New("corrupt archive")
)

// KindOf tells the bundle type from the file name.
func KindOf(name string) (Kind, error) {
	lower := strings.ToLower(name)
	switch {
	case strings.HasSuffix(lower, ".jar"):
		return KindJar, nil
	case strings.HasSuffix(lower, ".tar.gz"), strings.HasSuffix(lower, ".tgz"):
		return KindTarGz, nil
	case strings.HasSuffix(lower, ".zip"):
		return KindZip, nil
	}
	return KindUnknown, fmt.Errorf("%w: %s: supported bundles are .jar (run with java -cp), and .tar.gz, .tgz or .zip with %s at the root", ErrUnknownKind, filepath.Base(name), ManifestName)
}

// Inspect checks the bundle at path and returns its manifest.
//
// For a jar the manifest is synthesised: one process "main" running
// ["java", "-cp", "${BUNDLE}", mainClass, args...], where mainClass comes
// from the argument or the jar's META-INF/MANIFEST.MF Main-Class, and must
// exist in the jar. For .tar.gz/.zip, gear-app.conf is read from the root
// and validated; a command starting with "./" must name a file in the
// bundle; args (if any) are appended to every process's command, and
// mainClass must be empty.
//
// An archive is read through to the end with the checks Unpack applies
// (DefaultLimits; see InspectLimits), so that a bundle the workers would
// refuse is refused before it is uploaded.
func Inspect(path string, mainClass string, args []string) (*Manifest, Kind, error) {
	return InspectLimits(path, mainClass, args, Limits{})
}

// InspectLimits is Inspect with the unpack limits of gear.conf
// (gear.bundle.*): content size, expansion ratio and entry count are
// checked while the archive is read, and every symlink must resolve inside
// the bundle (CheckSymlink, then the chains in memory).
func InspectLimits(path string, mainClass string, args []string, limits Limits) (*Manifest, Kind, error) {
	limits = limits.withDefaults()
	kind, err := KindOf(path)
	if err != nil {
		return nil, KindUnknown, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, kind, fmt.Errorf("bundle %s: no such file: %w", path, err)
		}
		return nil, kind, fmt.Errorf("bundle %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, kind, fmt.Errorf("bundle %s is not a regular file", path)
	}
	if kind == KindJar {
		m, err := inspectJar(path, mainClass, args)
		return m, kind, err
	}
	if mainClass != "" {
		return nil, kind, fmt.Errorf("bundle %s: -main only applies to .jar bundles; a %s bundle's commands come from its %s", path, kind, ManifestName)
	}
	var data []byte
	var files map[string]fs.FileMode
	if kind == KindTarGz {
		data, files, err = scanTarGz(path, limits)
	} else {
		data, files, err = scanZip(path, limits)
	}
	if err != nil {
		return nil, kind, fmt.Errorf("bundle %s: %w", path, err)
	}
	m, err := manifestOf(path, data, files, args)
	return m, kind, err
}

// InspectTarGz is InspectLimits for a .tar.gz bundle read from r (e.g.
// while it is being received, so that the check does not follow the
// transfer); name names the bundle in messages.
func InspectTarGz(r io.Reader, name string, args []string, limits Limits) (*Manifest, error) {
	data, files, err := scanTarGzFrom(r, limits.withDefaults())
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", name, err)
	}
	return manifestOf(name, data, files, args)
}

// manifestOf parses an archive's gear-app.conf (data) and checks its
// commands against the archive's entries (files); args are appended to
// every command.
func manifestOf(path string, data []byte, files map[string]fs.FileMode, args []string) (*Manifest, error) {
	m, err := ParseManifest(data, filepath.Base(path)+":"+ManifestName)
	if err != nil {
		return nil, err
	}
	for i := range m.Processes {
		p := &m.Processes[i]
		if exe := p.Command[0]; strings.HasPrefix(exe, "./") {
			name := path2entry(exe)
			mode, ok := files[name]
			switch {
			case !ok:
				return nil, fmt.Errorf("bundle %s: process %q: command %s is not in the bundle (%s)", path, p.Name, exe, listSome(files, 5))
			case mode.IsDir():
				return nil, fmt.Errorf("bundle %s: process %q: command %s is a directory", path, p.Name, exe)
			case mode&0o111 == 0 && mode&fs.ModeSymlink == 0:
				return nil, fmt.Errorf("bundle %s: process %q: command %s is not executable in the archive (chmod +x it before packing)", path, p.Name, exe)
			}
		}
		p.Command = append(p.Command, args...)
	}
	return m, nil
}

func path2entry(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

func listSome(files map[string]fs.FileMode, n int) string {
	var names []string
	for k, m := range files {
		if !m.IsDir() {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "it has no files"
	}
	more := ""
	if len(names) > n {
		more = fmt.Sprintf(", ... %d more", len(names)-n)
		names = names[:n]
	}
	return "it has " + strings.Join(names, ", ") + more
}

// maxScanEntries bounds how many entry names Inspect remembers.
const maxScanEntries = 200_000

func manifestHint(files map[string]fs.FileMode) string {
	for name := range files {
		if path.Base(name) == ManifestName {
			return fmt.Sprintf(": found %s; pack the bundle from inside its directory (tar -C dir -czf app.tar.gz .) so the manifest is at the root", name)
		}
	}
	return fmt.Sprintf(": add a %s (name = ..., processes { ... }) at the top level of the archive", ManifestName)
}

// scanner collects what Inspect needs from an archive's entries and applies
// Unpack's per-entry checks.
type scanner struct {
	limits Limits
	m      meter
	count  int
	files  map[string]fs.FileMode
	links  map[string]string // symlink entry -> target
}

func newScanner(limits Limits) *scanner {
	return &scanner{limits: limits, m: meter{limits: limits}, files: map[string]fs.FileMode{}, links: map[string]string{}}
}

// entry records one entry (name already normalised, not "").
func (s *scanner) entry(name string, mode fs.FileMode) error {
	s.count++
	if s.limits.MaxFiles > 0 && s.count > s.limits.MaxFiles {
		return fmt.Errorf("%w: more than %d entries (at %q)", ErrLimit, s.limits.MaxFiles, name)
	}
	if len(s.files) < maxScanEntries {
		s.files[name] = mode
	}
	delete(s.links, name) // a later entry replaces an earlier one
	return nil
}

func (s *scanner) symlink(name, target string) error {
	if err := CheckSymlink(name, target); err != nil {
		return err
	}
	s.links[name] = target
	return nil
}

func (s *scanner) finish() error {
	others := make(map[string]bool, len(s.files))
	for n, mode := range s.files {
		if _, ok := s.links[n]; !ok {
			others[n] = mode.IsDir()
		}
	}
	return resolveSymlinks(s.links, others)
}

func scanTarGz(p string, limits Limits) ([]byte, map[string]fs.FileMode, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return scanTarGzFrom(f, limits)
}

func scanTarGzFrom(r io.Reader, limits Limits) ([]byte, map[string]fs.FileMode, error) {
	cr := &countingReader{r: r}
	gz, err := gzip.NewReader(bufio.NewReaderSize(cr, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: not gzip data (%v): is the file really a .tar.gz?", ErrCorruptArchive, err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	s := newScanner(limits)
	s.m.in = func() int64 { return cr.n }
	var manifest []byte
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: reading tar: %v", ErrCorruptArchive, err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return nil, nil, err
		}
		if name == "" {
			continue
		}
		if err := s.entry(name, hdr.FileInfo().Mode()); err != nil {
			return nil, nil, err
		}
		if name == ManifestName && hdr.Typeflag != tar.TypeDir && hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
			return nil, nil, fmt.Errorf("%w: %s must be a regular file, not a link", ErrUnsafeEntry, ManifestName)
		}
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			err = s.symlink(name, hdr.Linkname)
		case tar.TypeLink:
			if target, terr := entryName(hdr.Linkname); terr != nil || target == "" || !s.files[target].IsRegular() {
				err = fmt.Errorf("%w: hard link %q points to %q, which is not an earlier regular file of the bundle", ErrUnsafeEntry, name, hdr.Linkname)
			}
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			err = fmt.Errorf("%w: entry %q is a device file or FIFO", ErrUnsafeEntry, hdr.Name)
		}
		if err != nil {
			return nil, nil, err
		}
		if name == ManifestName && hdr.Typeflag != tar.TypeDir {
			var buf bytes.Buffer
			if _, err := s.m.copy(context.Background(), &buf, io.LimitReader(tr, MaxManifestSize+1), name); err != nil {
				return nil, nil, scanErr(name, err)
			}
			manifest = buf.Bytes()
		}
		// Read the content through the meter: a bomb stops here, early.
		if _, err := s.m.copy(context.Background(), io.Discard, tr, name); err != nil {
			return nil, nil, scanErr(name, err)
		}
	}
	if manifest == nil {
		return nil, nil, fmt.Errorf("%w%s", ErrNoManifest, manifestHint(s.files))
	}
	if err := s.finish(); err != nil {
		return nil, nil, err
	}
	return manifest, s.files, nil
}

func scanErr(name string, err error) error {
	var rerr *errRead
	if errors.As(err, &rerr) {
		return fmt.Errorf("%w: reading %q: %v", ErrCorruptArchive, name, rerr.err)
	}
	return err
}

func scanZip(p string, limits Limits) ([]byte, map[string]fs.FileMode, error) {
	zr, err := zip.OpenReader(p)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: not a zip file (%v): is the file really a .zip?", ErrCorruptArchive, err)
	}
	defer zr.Close()
	var size int64
	if fi, err := os.Stat(p); err == nil {
		size = fi.Size()
	}
	if err := zipDeclared(declaredSizes(zr.File), size, limits); err != nil {
		return nil, nil, err
	}
	s := newScanner(limits)
	var manifest []byte
	for _, f := range zr.File {
		name, err := entryName(f.Name)
		if err != nil {
			return nil, nil, err
		}
		if name == "" {
			continue
		}
		if err := s.entry(name, f.Mode()); err != nil {
			return nil, nil, err
		}
		if name == ManifestName && !f.Mode().IsDir() && !f.Mode().IsRegular() {
			return nil, nil, fmt.Errorf("%w: %s must be a regular file, not a link", ErrUnsafeEntry, ManifestName)
		}
		switch mode := f.Mode(); {
		case mode&fs.ModeSymlink != 0:
			target, err := zipLinkTarget(f)
			if err == nil {
				err = s.symlink(name, target)
			}
			if err != nil {
				return nil, nil, err
			}
		case mode&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket|fs.ModeIrregular) != 0:
			return nil, nil, fmt.Errorf("%w: entry %q is a device file, FIFO or socket", ErrUnsafeEntry, f.Name)
		}
		if name == ManifestName && !f.Mode().IsDir() {
			if !f.Mode().IsRegular() {
				return nil, nil, fmt.Errorf("%w: %s must be a regular file, not a link", ErrUnsafeEntry, ManifestName)
			}
			rc, err := f.Open()
			if err != nil {
				return nil, nil, fmt.Errorf("%w: %s: %v", ErrCorruptArchive, ManifestName, err)
			}
			manifest, err = io.ReadAll(io.LimitReader(rc, MaxManifestSize+1))
			rc.Close()
			if err != nil {
				return nil, nil, fmt.Errorf("%w: reading %s: %v", ErrCorruptArchive, ManifestName, err)
			}
		}
	}
	if manifest == nil {
		return nil, nil, fmt.Errorf("%w%s", ErrNoManifest, manifestHint(s.files))
	}
	if err := s.finish(); err != nil {
		return nil, nil, err
	}
	files := s.files
	// A zip made on Windows has no unix modes: treat files as executable
	// rather than refusing a command that was never given a mode.
	for name, m := range files {
		if m.IsRegular() && m.Perm() == 0o666 {
			files[name] = m | 0o111
		}
	}
	return manifest, files, nil
}

func inspectJar(p, mainClass string, args []string) (*Manifest, error) {
	zr, err := zip.OpenReader(p)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w: not a valid jar (zip) file (%v)", p, ErrCorruptArchive, err)
	}
	defer zr.Close()
	classes := map[string]bool{}
	var mf []byte
	for _, f := range zr.File {
		if strings.HasSuffix(f.Name, ".class") {
			classes[strings.TrimSuffix(f.Name, ".class")] = true
		}
		if strings.EqualFold(f.Name, "META-INF/MANIFEST.MF") {
			rc, err := f.Open()
			if err != nil {
				return nil, fmt.Errorf("bundle %s: %w: %v", p, ErrCorruptArchive, err)
			}
			mf, err = io.ReadAll(io.LimitReader(rc, MaxManifestSize))
			rc.Close()
			if err != nil {
				return nil, fmt.Errorf("bundle %s: %w: reading META-INF/MANIFEST.MF: %v", p, ErrCorruptArchive, err)
			}
		}
	}
	from := "-main"
	if mainClass == "" {
		mainClass = JarMainClass(mf)
		from = "META-INF/MANIFEST.MF Main-Class"
		if mainClass == "" {
			return nil, fmt.Errorf("bundle %s: %w: no main class given: pass -main CLASS or set Main-Class in META-INF/MANIFEST.MF (%s)", p, ErrMainClass, someClasses(classes, 5))
		}
	}
	entry := strings.ReplaceAll(mainClass, ".", "/")
	if !classes[entry] {
		return nil, fmt.Errorf("bundle %s: %w: %s (from %s) has no %s.class in the jar; %s", p, ErrMainClass, mainClass, from, entry, someClasses(classes, 5))
	}
	name := jarAppName(p)
	cmd := append([]string{"java", "-cp", BundleVar, strings.ReplaceAll(mainClass, "/", ".")}, args...)
	return &Manifest{Name: name, Processes: []cluster.Process{{
		Name: "main", Command: cmd, Instances: 1, Restart: cluster.RestartAlways,
	}}}, nil
}

func someClasses(classes map[string]bool, n int) string {
	var names []string
	for c := range classes {
		if !strings.Contains(c, "$") && !strings.HasSuffix(c, "module-info") && !strings.HasSuffix(c, "package-info") {
			names = append(names, strings.ReplaceAll(c, "/", "."))
		}
	}
	if len(names) == 0 {
		return "the jar contains no classes"
	}
	sort.Strings(names)
	more := ""
	if len(names) > n {
		more = fmt.Sprintf(", ... (%d classes)", len(names))
		names = names[:n]
	}
	return "classes in the jar include " + strings.Join(names, ", ") + more
}

// JarMainClass returns the Main-Class attribute of a jar manifest (handling
// 72-byte continuation lines), or "".
func JarMainClass(mf []byte) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(mf))
	sc.Buffer(make([]byte, 64<<10), MaxManifestSize)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		if strings.HasPrefix(l, " ") && len(lines) > 0 {
			lines[len(lines)-1] += l[1:]
			continue
		}
		if l == "" {
			break // end of the main section
		}
		lines = append(lines, l)
	}
	for _, l := range lines {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), "Main-Class") {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func jarAppName(p string) string {
	base := strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
	var b strings.Builder
	for _, c := range base {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	name := strings.TrimLeft(b.String(), "-_")
	if len(name) > 64 {
		name = name[:64]
	}
	if name == "" {
		name = "app"
	}
	return name
}
