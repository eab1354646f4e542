package jarstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/user"
	"path"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/colinmarc/hdfs/v2"
	"github.com/colinmarc/hdfs/v2/hadoopconf"
)

// hdfsDefaultPort is the namenode RPC port Hadoop assumes when a URI names a
// host without one.
const hdfsDefaultPort = "8020"

// hdfsStore keeps objects as files in one HDFS directory.
type hdfsStore struct {
	client *hdfs.Client
	root   string // absolute HDFS directory
	desc   string // for messages: hdfs://authority/root
	closed atomic.Bool
	log    *slog.Logger
	// inflight: temporary files of Puts in progress (see SweepTemps).
	inflight inflight
}

// HDFSTarget is the resolved form of an hdfs:// root path.
type HDFSTarget struct {
	Namenodes   []string // host:port RPC addresses, in failover order
	Nameservice string   // the HA nameservice name, "" for a single host:port
	Dir         string   // absolute directory inside HDFS
	User        string   // HDFS user the client acts as
}

// ResolveHDFS turns an hdfs:// root path into namenode addresses.
//
//   - hdfs://host:port/dir        -> [host:port]
//   - hdfs://nameservice/dir      -> the namenodes of that nameservice from
//     conf (dfs.nameservices, dfs.ha.namenodes.<ns>,
//     dfs.namenode.rpc-address.<ns>.<nn>)
//   - hdfs://host/dir (no port, not a nameservice) -> [host:8020]
//
// conf is the parsed Hadoop configuration (hadoopconf.Load of
// HADOOP_CONF_DIR); it may be nil. confDir only improves error messages.
// The user comes from the URI's user info, else $HADOOP_USER_NAME, else the
// current OS user.
func ResolveHDFS(rootPath string, conf hadoopconf.HadoopConf, confDir string) (HDFSTarget, error) {
	u, err := url.Parse(rootPath)
	if err != nil || !strings.EqualFold(u.Scheme, "hdfs") {
		return HDFSTarget{}, fmt.Errorf("jarstore: %q is not an hdfs:// URI (want hdfs://host:port/dir or hdfs://nameservice/dir)", rootPath)
	}
	if u.Host == "" {
		return HDFSTarget{}, fmt.Errorf("jarstore: root path %q names no namenode: want hdfs://host:port/dir or hdfs://nameservice/dir", rootPath)
	}
	t := HDFSTarget{Dir: path.Clean("/" + u.Path)}
	if u.User != nil && u.User.Username() != "" {
		t.User = u.User.Username()
	} else if v := os.Getenv("HADOOP_USER_NAME"); v != "" {
		t.User = v
	} else if cu, err := user.Current(); err == nil {
		t.User = cu.Username
	} else {
		t.User = "gear"
	}
	if u.Port() != "" {
		t.Namenodes = []string{u.Host}
		return t, nil
	}
	ns := u.Hostname()
	where := "HADOOP_CONF_DIR"
	if confDir != "" {
		where = "HADOOP_CONF_DIR=" + confDir
	}
	declared := false
	for _, s := range strings.Split(conf["dfs.nameservices"], ",") {
		if strings.TrimSpace(s) == ns {
			declared = true
		}
	}
	ids := conf["dfs.ha.namenodes."+ns]
	if ids == "" {
		if declared {
			return HDFSTarget{}, fmt.Errorf("jarstore: root path %q: nameservice %q is in dfs.nameservices but %s has no dfs.ha.namenodes.%s: list its namenode ids there", rootPath, ns, where, ns)
		}
		t.Namenodes = []string{net.JoinHostPort(ns, hdfsDefaultPort)}
		return t, nil
	}
	for _, id := range strings.Split(ids, ",") {
		id = strings.TrimSpace(id)
		if id == "" {
			continue
		}
		key := "dfs.namenode.rpc-address." + ns + "." + id
		addr := strings.TrimSpace(conf[key])
		if addr == "" {
			return HDFSTarget{}, fmt.Errorf("jarstore: root path %q: %s has no %s (namenode %q of nameservice %q): add its host:port", rootPath, where, key, id, ns)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(addr, hdfsDefaultPort)
		}
		t.Namenodes = append(t.Namenodes, addr)
	}
	if len(t.Namenodes) == 0 {
		return HDFSTarget{}, fmt.Errorf("jarstore: root path %q: dfs.ha.namenodes.%s in %s lists no namenode ids", rootPath, ns, where)
	}
	t.Nameservice = ns
	return t, nil
}

func openHDFS(ctx context.Context, u *url.URL, raw string, log *slog.Logger) (Store, error) {
	confDir := os.Getenv("HADOOP_CONF_DIR")
	var conf hadoopconf.HadoopConf
	if confDir != "" {
		c, err := hadoopconf.Load(confDir)
		if err != nil {
			return nil, fmt.Errorf("jarstore: read Hadoop configuration in HADOOP_CONF_DIR=%s: %w", confDir, err)
		}
		conf = c
	} else if c, err := hadoopconf.LoadFromEnvironment(); err == nil {
		conf = c
	}
	t, err := ResolveHDFS(raw, conf, confDir)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	opts := hdfs.ClientOptions{
		Addresses:        t.Namenodes,
		User:             t.User,
		NamenodeDialFunc: dialer.DialContext,
		DatanodeDialFunc: dialer.DialContext,
	}
	if conf != nil {
		opts.UseDatanodeHostname = conf["dfs.client.use.datanode.hostname"] == "true"
	}
	hint := ""
	if t.Nameservice == "" && u.Port() == "" {
		hint = fmt.Sprintf(" (%q is not an HA nameservice in HADOOP_CONF_DIR=%q, so port %s was assumed)", u.Hostname(), confDir, hdfsDefaultPort)
	}
	client, err := hdfs.NewClient(opts)
	if err != nil {
		return nil, fmt.Errorf("jarstore: connect to HDFS namenode(s) %s for %q%s: %w: check the namenodes are up and reachable", strings.Join(t.Namenodes, ","), raw, hint, err)
	}
	s := &hdfsStore{client: client, root: t.Dir, log: log, desc: "hdfs://" + u.Host + t.Dir}
	if err := s.retry(ctx, func() error { return client.MkdirAll(t.Dir, 0o755) }); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("jarstore: create jar store directory %s: %w", s.desc, s.mapErr(err))
	}
	var fi os.FileInfo
	if err := s.retry(ctx, func() (err error) { fi, err = client.Stat(t.Dir); return err }); err != nil || !fi.IsDir() {
		_ = client.Close()
		return nil, fmt.Errorf("jarstore: jar store path %s is not a directory in HDFS", s.desc)
	}
	// The client caches the server defaults on first use without a lock
	// (Client.fetchDefaults), so concurrent first Creates race; fetch them
	// once here, before the store is shared.
	if err := s.retry(ctx, func() error { _, err := client.ServerDefaults(); return err }); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("jarstore: read HDFS server defaults for %s: %w", s.desc, s.mapErr(err))
	}
	log.Info("jar store opened", "backend", "hdfs", "namenodes", t.Namenodes, "nameservice", t.Nameservice, "dir", t.Dir, "user", t.User)
	return s, nil
}

func (s *hdfsStore) String() string { return s.desc }

func (s *hdfsStore) path(name string) string { return s.root + "/" + name }

func (s *hdfsStore) check(ctx context.Context, names ...string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	for _, n := range names {
		if err := ValidName(n); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// mapErr translates the client's errors into this package's sentinels.
func (s *hdfsStore) mapErr(err error) error {
	if err == nil {
		return nil
	}
	var remote hdfs.Error
	if errors.As(err, &remote) {
		exc := remote.Exception()
		msg := remote.Message()
		switch {
		case strings.Contains(exc, "QuotaExceeded"), strings.Contains(exc, "DiskOutOfSpace"):
			return fmt.Errorf("%w: HDFS quota or disk full in %s: raise the quota or free space (%s: %s)", ErrNoSpace, s.desc, exc, firstLine(msg))
		case strings.Contains(msg, "could only be written to 0") || strings.Contains(msg, "could only be replicated to 0"):
			return fmt.Errorf("%w: no HDFS datanode could take the block for %s (datanodes full or none live): %s", ErrNoSpace, s.desc, firstLine(msg))
		case strings.Contains(exc, "SafeModeException"):
			return fmt.Errorf("jarstore: HDFS namenode for %s is in safe mode (read-only): wait for it to leave safe mode or run `hdfs dfsadmin -safemode leave`: %w", s.desc, err)
		}
	}
	return err
}

// namenodeRetryWindow bounds how long an operation is retried while the
// client has no namenode to try. colinmarc/hdfs skips a namenode for 5 s
// after it answered StandbyException or failed (internal/rpc backoffDuration);
// when the active namenode changes twice within 5 s (a flapping HA pair, or
// the client failed over from the standby at start-up) every call in that
// window fails with "no available namenodes" although the new active one is
// up.
const namenodeRetryWindow = 7 * time.Second

// isNoNamenode reports the client's "no available namenodes" error (it has no
// exported sentinel).
func isNoNamenode(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no available namenodes")
}

// retry runs a namenode operation, retrying it while the client is in its
// failover backoff (see namenodeRetryWindow). Only use it for operations
// that the namenode did not execute when they fail that way (a standby
// executes nothing).
func (s *hdfsStore) retry(ctx context.Context, op func() error) error {
	deadline := time.Now().Add(namenodeRetryWindow)
	delay := 50 * time.Millisecond
	for {
		err := op()
		if !isNoNamenode(err) || time.Now().Add(delay).After(deadline) {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func (s *hdfsStore) notFound(op, name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %q in %s", ErrNotFound, name, s.desc)
	}
	return fmt.Errorf("jarstore: %s %q in %s: %w", op, name, s.desc, s.mapErr(err))
}

// SweepTemps implements TempSweeper.
func (s *hdfsStore) SweepTemps(ctx context.Context, before time.Time) ([]Info, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var ents []os.FileInfo
	if err := s.retry(ctx, func() (err error) { ents, err = s.client.ReadDir(s.root); return err }); err != nil {
		return nil, fmt.Errorf("jarstore: list %s: %w", s.desc, s.mapErr(err))
	}
	var removed []Info
	var errs []error
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		name := e.Name()
		if !strings.HasPrefix(name, tempPrefix) || s.inflight.has(name) || e.IsDir() || !e.ModTime().Before(before) {
			continue
		}
		if err := s.client.Remove(s.path(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("jarstore: remove temporary file %s in %s: %w", name, s.desc, s.mapErr(err)))
			continue
		}
		removed = append(removed, Info{Name: name, Size: e.Size(), ModTime: e.ModTime()})
	}
	return removed, errors.Join(errs...)
}

func randomSuffix() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *hdfsStore) Put(ctx context.Context, name string, r io.Reader) (n int64, err error) {
	if err := s.check(ctx, name); err != nil {
		return 0, err
	}
	base := tempPrefix + randomSuffix()
	done := s.inflight.add(base) // before it exists: SweepTemps never sees it unregistered
	defer done()
	tmp := s.path(base)
	var w *hdfs.FileWriter
	err = s.retry(ctx, func() (err error) { w, err = s.client.Create(tmp); return err })
	if err != nil {
		return 0, fmt.Errorf("jarstore: put %q: create temporary file in %s: %w", name, s.desc, s.mapErr(err))
	}
	defer func() {
		if err != nil {
			_ = w.Close()
			_ = s.client.Remove(tmp)
		}
	}()
	ew := &errWriter{w: w}
	n, err = io.CopyBuffer(ew, &ctxReader{ctx, r}, make([]byte, copyBufSize))
	if err != nil {
		if ew.err != nil {
			return n, fmt.Errorf("jarstore: put %q: write to %s: %w", name, s.desc, s.mapErr(ew.err))
		}
		return n, fmt.Errorf("jarstore: put %q: reading the upload: %w", name, err)
	}
	if err := s.closeWriter(ctx, w); err != nil {
		return n, fmt.Errorf("jarstore: put %q: finish writing to %s: %w", name, s.desc, s.mapErr(err))
	}
	if err := ctx.Err(); err != nil {
		return n, err
	}
	if err := s.retry(ctx, func() error { return s.client.Rename(tmp, s.path(name)) }); err != nil {
		return n, fmt.Errorf("jarstore: put %q: rename into place in %s: %w", name, s.desc, s.mapErr(err))
	}
	return n, nil
}

// closeWriter completes the file, retrying while the namenode reports that
// the last block is still replicating (as the Java client does).
func (s *hdfsStore) closeWriter(ctx context.Context, w *hdfs.FileWriter) error {
	delay := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := w.Close()
		if err == nil || !(hdfs.IsErrReplicating(err) || isNoNamenode(err)) || attempt >= 10 {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay *= 2
	}
}

func (s *hdfsStore) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := s.check(ctx, name); err != nil {
		return nil, err
	}
	var f *hdfs.FileReader
	err := s.retry(ctx, func() (err error) { f, err = s.client.Open(s.path(name)); return err })
	if err != nil {
		return nil, s.notFound("get", name, err)
	}
	if f.Stat().IsDir() {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %q in %s is a directory", ErrNotFound, name, s.desc)
	}
	return withContext(ctx, f), nil
}

func (s *hdfsStore) Stat(ctx context.Context, name string) (Info, error) {
	if err := s.check(ctx, name); err != nil {
		return Info{}, err
	}
	var fi os.FileInfo
	err := s.retry(ctx, func() (err error) { fi, err = s.client.Stat(s.path(name)); return err })
	if err != nil {
		return Info{}, s.notFound("stat", name, err)
	}
	if fi.IsDir() {
		return Info{}, fmt.Errorf("%w: %q in %s is a directory", ErrNotFound, name, s.desc)
	}
	return Info{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

func (s *hdfsStore) List(ctx context.Context) ([]Info, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var ents []os.FileInfo
	err := s.retry(ctx, func() (err error) { ents, err = s.client.ReadDir(s.root); return err })
	if err != nil {
		return nil, fmt.Errorf("jarstore: list %s: %w", s.desc, s.mapErr(err))
	}
	out := make([]Info, 0, len(ents))
	for _, e := range ents {
		if e.IsDir() || ValidName(e.Name()) != nil {
			continue
		}
		out = append(out, Info{Name: e.Name(), Size: e.Size(), ModTime: e.ModTime()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *hdfsStore) Rename(ctx context.Context, from, to string) error {
	if err := s.check(ctx, from, to); err != nil {
		return err
	}
	if err := s.retry(ctx, func() error { return s.client.Rename(s.path(from), s.path(to)) }); err != nil {
		return s.notFound("rename", from, err)
	}
	return nil
}

func (s *hdfsStore) Delete(ctx context.Context, name string) error {
	if err := s.check(ctx, name); err != nil {
		return err
	}
	if err := s.retry(ctx, func() error { return s.client.Remove(s.path(name)) }); err != nil {
		return s.notFound("delete", name, err)
	}
	return nil
}

func (s *hdfsStore) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.client.Close()
}
