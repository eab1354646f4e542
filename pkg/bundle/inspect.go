package bundle

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
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
func Inspect(path string, mainClass string, args []string) (*Manifest, Kind, error) {
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
		data, files, err = scanTarGz(path)
	} else {
		data, files, err = scanZip(path)
	}
	if err != nil {
		return nil, kind, fmt.Errorf("bundle %s: %w", path, err)
	}
	m, err := ParseManifest(data, filepath.Base(path)+":"+ManifestName)
	if err != nil {
		return nil, kind, err
	}
	for i := range m.Processes {
		p := &m.Processes[i]
		if exe := p.Command[0]; strings.HasPrefix(exe, "./") {
			name := path2entry(exe)
			mode, ok := files[name]
			switch {
			case !ok:
				return nil, kind, fmt.Errorf("bundle %s: process %q: command %s is not in the bundle (%s)", path, p.Name, exe, listSome(files, 5))
			case mode.IsDir():
				return nil, kind, fmt.Errorf("bundle %s: process %q: command %s is a directory", path, p.Name, exe)
			case mode&0o111 == 0 && mode&fs.ModeSymlink == 0:
				return nil, kind, fmt.Errorf("bundle %s: process %q: command %s is not executable in the archive (chmod +x it before packing)", path, p.Name, exe)
			}
		}
		p.Command = append(p.Command, args...)
	}
	return m, kind, nil
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

func scanTarGz(p string) ([]byte, map[string]fs.FileMode, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: not gzip data (%v): is the file really a .tar.gz?", ErrCorruptArchive, err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	files := map[string]fs.FileMode{}
	var manifest []byte
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%w: reading tar: %v", ErrCorruptArchive, err)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return nil, nil, err
		}
		if len(files) < maxScanEntries {
			files[name] = hdr.FileInfo().Mode()
		}
		if name == ManifestName && hdr.Typeflag != tar.TypeDir {
			if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
				return nil, nil, fmt.Errorf("%w: %s must be a regular file, not a link", ErrUnsafeEntry, ManifestName)
			}
			manifest, err = io.ReadAll(io.LimitReader(tr, MaxManifestSize+1))
			if err != nil {
				return nil, nil, fmt.Errorf("%w: reading %s: %v", ErrCorruptArchive, ManifestName, err)
			}
		}
	}
	if manifest == nil {
		return nil, nil, fmt.Errorf("%w%s", ErrNoManifest, manifestHint(files))
	}
	return manifest, files, nil
}

func scanZip(p string) ([]byte, map[string]fs.FileMode, error) {
	zr, err := zip.OpenReader(p)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: not a zip file (%v): is the file really a .zip?", ErrCorruptArchive, err)
	}
	defer zr.Close()
	files := map[string]fs.FileMode{}
	var manifest []byte
	for _, f := range zr.File {
		name, err := entryName(f.Name)
		if err != nil {
			return nil, nil, err
		}
		if len(files) < maxScanEntries {
			files[name] = f.Mode()
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
		return nil, nil, fmt.Errorf("%w%s", ErrNoManifest, manifestHint(files))
	}
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
	return &Manifest{Name: name, Processes: []Process{{
		Name: "main", Command: cmd, Instances: 1, Restart: RestartAlways,
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
