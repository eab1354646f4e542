// The application commands: submit, update, rollback, history, list,
// info, restart, scale and logs.

package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/sys/unix"

	"github.com/gear-run/gear/pkg/bundle"
	"github.com/gear-run/gear/pkg/cluster"
)

func appSubmit(fs *flag.FlagSet) Action {
	name := fs.String("name", "", "application `name` (default: the manifest's name or the file name)")
	executors := fs.Int("executors", 0, "instances of every process group (default: the manifest's)")
	mainClass := fs.String("main", "", "main `class` of a .jar (default: its manifest's Main-Class)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	return func(ctx context.Context, c *Call) error {
		path := c.Args[0]
		cl, req, log, err := uploadBundle(ctx, c, path, *name, *executors, *mainClass, *quiet)
		if err != nil {
			return err
		}
		start := time.Now()
		id, err := cl.Submit(ctx, req)
		if err != nil {
			return fmt.Errorf("submit %s: %w", path, err)
		}
		log.Debug("application submitted", "app", id, "took", time.Since(start).Round(time.Millisecond))
		fmt.Fprintln(c.Stdout, id)
		return nil
	}
}

// uploadBundle checks the bundle at path as the masters will, uploads it,
// and returns the request that submits it (or updates an app to it), and
// the command's logger.
//
// The check (bundle.InspectLimits: for a .tar.gz, gunzip and CRC of the
// whole archive, about 0.3 s of CPU per GiB) runs alongside the upload
// instead of before it, and the upload holds back its last bytes
// (uploadHoldBack) until the check has passed: the master cannot store a
// bundle it has not received whole, so a bundle the check refuses never
// becomes a blob. On a refusal the upload is cut off (the master drops its
// partial temporary file) and the check's error is returned, as it was
// when the check ran first. A bundle that is missing, not a regular file
// or of an unknown type is refused before any connection.
func uploadBundle(ctx context.Context, c *Call, path, name string, executors int, mainClass string, quiet bool) (*cluster.Client, cluster.SubmitRequest, *slog.Logger, error) {
	var req cluster.SubmitRequest
	cfg, err := c.LoadConfig(nil)
	if err != nil {
		return nil, req, nil, err
	}
	log := c.Logger(cfg)
	start := time.Now()
	st, err := os.Stat(path)
	if _, kerr := bundle.KindOf(path); err != nil || kerr != nil || !st.Mode().IsRegular() {
		// InspectLimits says what is wrong, in its words.
		if _, _, ierr := bundle.InspectLimits(path, mainClass, c.Rest, BundleLimits(cfg)); ierr != nil {
			return nil, req, nil, ierr
		}
		if err != nil {
			return nil, req, nil, err
		}
	}
	upCtx, cancelUpload := context.WithCancelCause(ctx)
	defer cancelUpload(nil)
	gate := newUploadGate()
	type inspection struct {
		man  *bundle.Manifest
		kind bundle.Kind
		err  error
	}
	inspected := make(chan inspection, 1)
	go func() {
		// The workers refuse what breaks these limits or holds unsafe
		// entries: refuse it here, before the upload completes.
		man, kind, err := inspectBundle(path, mainClass, c.Rest, BundleLimits(cfg))
		if err == nil {
			if executors > 0 {
				for i := range man.Processes {
					man.Processes[i].Instances = executors
				}
			}
			// The masters run the same check on submit: refuse here
			// what they would refuse.
			if verr := cluster.ValidateProcesses(man.Processes); verr != nil {
				err = fmt.Errorf("%s: %w", path, verr)
			}
		}
		if err != nil {
			gate.fail(err)
			cancelUpload(err)
		} else {
			log.Debug("bundle inspected", "path", path, "took", time.Since(start).Round(time.Millisecond))
			gate.pass()
		}
		inspected <- inspection{man, kind, err}
	}()
	// The check's verdict comes first: a refused bundle is reported as
	// such whatever happened to the upload meanwhile.
	checked := func(err error) error {
		select {
		case in := <-inspected:
			if in.err != nil {
				return in.err
			}
		case <-ctx.Done(): // interrupted: do not wait for the check
		}
		return err
	}

	cl, err := c.Client()
	if err != nil {
		return nil, req, nil, checked(err)
	}
	sendfileConns(cl)
	showBar := !quiet && isTerminal(c.Stderr)
	open := func() (io.ReadCloser, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		body := newGatedBody(upCtx, f, f, st.Size(), gate)
		if showBar {
			bar := progressbar.DefaultBytes(st.Size(), "uploading "+filepath.Base(path))
			pr := progressbar.NewReader(f, bar)
			body.r, body.file = &pr, nil // through the bar: no sendfile
		}
		return body, nil
	}
	upStart := time.Now()
	b, err := cl.UploadBundle(uploadTrace(upCtx, log, upStart), filepath.Base(path), st.Size(), open)
	if err != nil {
		return nil, req, nil, checked(fmt.Errorf("upload %s: %w", path, err))
	}
	in := <-inspected
	if in.err != nil {
		// Not reached: the upload cannot complete before the check passed.
		return nil, req, nil, in.err
	}
	log.Debug("bundle uploaded", "digest", b.Digest, "size", b.Size, "took", time.Since(upStart).Round(time.Millisecond), "since_start", time.Since(start).Round(time.Millisecond))
	if showBar {
		fmt.Fprintln(c.Stderr)
	}
	man, procs := in.man, in.man.Processes
	appName := name
	if appName == "" {
		appName = man.Name
	}
	if appName == "" {
		appName = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), ".tar")
	}
	b.Kind = in.kind.BundleKind()
	// The arguments are already part of each process's command (bundle.Inspect);
	// they are recorded with the app for `app info`.
	return cl, cluster.SubmitRequest{Name: appName, Bundle: b, Processes: procs, Args: c.Rest}, log, nil
}

// inspectBundle is the CLI's check of a bundle (a test holds it up).
var inspectBundle = bundle.InspectLimits

// uploadHoldBack is how many bytes at the end of a bundle an upload holds
// back until the CLI's check of the bundle has passed (uploadBundle).
const uploadHoldBack = 64 << 10

// uploadGate is the CLI's check of a bundle, as the upload waits for it.
type uploadGate struct {
	done chan struct{}
	err  error // set before done is closed
	once sync.Once
}

func newUploadGate() *uploadGate { return &uploadGate{done: make(chan struct{})} }

func (g *uploadGate) pass() { g.once.Do(func() { close(g.done) }) }

func (g *uploadGate) fail(err error) {
	g.once.Do(func() {
		g.err = err
		close(g.done)
	})
}

// gatedBody is an upload's body: the bundle's bytes, of which the last
// uploadHoldBack (all of a smaller bundle) are read only once the gate has
// passed. It fails when the gate fails, when ctx ends or once closed.
type gatedBody struct {
	ctx    context.Context
	r      io.Reader
	file   *os.File // r itself when it is the bundle's file: sendTo may sendfile it
	c      io.Closer
	free   int64 // bytes that may be read before the gate has passed
	gate   *uploadGate
	closed chan struct{}
	once   sync.Once
}

func newGatedBody(ctx context.Context, r io.Reader, c io.Closer, size int64, gate *uploadGate) *gatedBody {
	f, _ := r.(*os.File)
	return &gatedBody{ctx: ctx, r: r, file: f, c: c, free: max(size-uploadHoldBack, 0), gate: gate, closed: make(chan struct{})}
}

func (b *gatedBody) Read(p []byte) (int, error) {
	if b.free > 0 {
		n, err := b.r.Read(p[:min(int64(len(p)), b.free)])
		b.free -= int64(n)
		return n, err
	}
	if err := b.wait(); err != nil {
		return 0, err
	}
	return b.r.Read(p)
}

// wait returns once the gate has passed, or why it never will.
func (b *gatedBody) wait() error {
	if b.gate == nil {
		return nil
	}
	select {
	case <-b.gate.done:
		if b.gate.err != nil {
			return b.gate.err
		}
		b.gate = nil
		return nil
	case <-b.ctx.Done():
		return context.Cause(b.ctx)
	case <-b.closed:
		return os.ErrClosed
	}
}

// sendTo writes n bytes of the body to c with sendfile(2), the free part
// at once and the held-back rest once the gate has passed: the kernel
// moves the bundle from the page cache to the socket, which costs the CLI
// about half the CPU of reading it and writing it (0.3 against 0.7 s of
// system time per GiB).
func (b *gatedBody) sendTo(c *net.TCPConn, n int64) (int64, error) {
	var sent int64
	if k := min(b.free, n); k > 0 {
		m, err := c.ReadFrom(io.LimitReader(b.file, k))
		b.free -= m
		sent += m
		if err != nil {
			return sent, err
		}
		if m < k {
			return sent, io.ErrUnexpectedEOF // the file shrank
		}
	}
	if sent == n {
		return sent, nil
	}
	if err := b.wait(); err != nil {
		return sent, err
	}
	m, err := c.ReadFrom(io.LimitReader(b.file, n-sent))
	return sent + m, err
}

// sendfileConns makes cl's plaintext connections hand an upload's
// gatedBody the socket (sendfileConn); other bodies are copied as before.
func sendfileConns(cl *cluster.Client) {
	tr, ok := cl.HTTP.Transport.(*http.Transport)
	if !ok {
		return
	}
	dial := tr.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok && err == nil {
			return sendfileConn{tc}, nil
		}
		return c, err
	}
}

// sendfileConn is a TCP connection whose ReadFrom, which net/http's
// transport calls with the request body (limited to its length), lets a
// gatedBody send itself by sendfile: the transport alone would copy a
// body that is not a bare *os.File through a 32 KiB buffer.
type sendfileConn struct{ *net.TCPConn }

func (c sendfileConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if b, ok := lr.R.(*gatedBody); ok && b.file != nil {
			n, err := b.sendTo(c.TCPConn, lr.N)
			lr.N -= n
			return n, err
		}
	}
	return c.TCPConn.ReadFrom(r)
}

func (b *gatedBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return b.c.Close()
}

func appUpdate(fs *flag.FlagSet) Action {
	mainClass := fs.String("main", "", "main `class` of a .jar (default: its manifest's Main-Class)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	return func(ctx context.Context, c *Call) error {
		id, path := c.Args[0], c.Args[1]
		cl, req, _, err := uploadBundle(ctx, c, path, "", 0, *mainClass, *quiet)
		if err != nil {
			return err
		}
		a, err := cl.Update(ctx, id, req)
		if err != nil {
			return fmt.Errorf("update app %s to %s: %w", id, path, err)
		}
		fmt.Fprintf(c.Stdout, "app %s rolls to version %d (bundle %s), one executor at a time; see gear app history %s\n", a.ID, a.Version, a.Bundle.Digest, a.ID)
		return nil
	}
}

func appRollback(fs *flag.FlagSet) Action {
	return show(func(ctx context.Context, cl *cluster.Client, c *Call) (*cluster.App, error) {
		if len(c.Args) < 1 || len(c.Args) > 2 {
			return nil, fmt.Errorf("usage: gear app rollback ID [VERSION]")
		}
		v := 0
		if len(c.Args) > 1 {
			n, err := strconv.Atoi(c.Args[1])
			if err != nil || n < 1 {
				return nil, fmt.Errorf("VERSION %q is not a version number (see gear app history %s)", c.Args[1], c.Args[0])
			}
			v = n
		}
		return cl.Rollback(ctx, c.Args[0], v)
	}, func(w io.Writer, a *cluster.App) {
		fmt.Fprintf(w, "app %s rolls back to version %d (bundle %s), one executor at a time\n", a.ID, a.Version, a.Bundle.Digest)
	})
}

func appHistory(fs *flag.FlagSet) Action {
	return show(func(ctx context.Context, cl *cluster.Client, c *Call) ([]cluster.AppVersion, error) {
		a, err := cl.App(ctx, c.Args[0])
		if err != nil {
			return nil, err
		}
		if len(a.Versions) == 0 {
			return []cluster.AppVersion{{Version: 1, Bundle: a.Bundle, Processes: a.Processes, Created: a.Submitted}}, nil
		}
		return a.Versions, nil
	}, func(w io.Writer, vs []cluster.AppVersion) {
		fmt.Fprintln(w, "VERSION\tCREATED\tBUNDLE\tDIGEST\tSTATUS")
		for _, v := range vs {
			status := ""
			if !v.RolledBack.IsZero() {
				status = "rolled back " + v.RolledBack.Local().Format(time.DateTime) + ": " + v.Reason
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", v.Version, v.Created.Local().Format(time.DateTime), v.Bundle.Name, v.Bundle.Digest, status)
		}
	})
}

// uploadTrace logs (at debug) when an upload's connection is ready, its
// last byte is written and the master's answer begins, each as the time
// since start: the phases of `gear app submit` (docs/BENCHMARKS.md, Jar
// store).
func uploadTrace(ctx context.Context, log *slog.Logger, start time.Time) context.Context {
	if !log.Enabled(ctx, slog.LevelDebug) {
		return ctx
	}
	since := func() time.Duration { return time.Since(start).Round(time.Millisecond) }
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) {
			log.Debug("upload connected", "reused", i.Reused, "after", since())
		},
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			log.Debug("upload sent", "after", since(), "err", i.Err)
		},
		GotFirstResponseByte: func() { log.Debug("upload answered", "after", since()) },
	})
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func appTable(w io.Writer, apps []cluster.App) {
	fmt.Fprintln(w, "ID\tNAME\tSTATE\tEXECUTORS\tSUBMITTED")
	for _, a := range apps {
		running := 0
		for _, e := range a.Executors {
			if e.State == cluster.Running {
				running++
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d running\t%s\n", a.ID, a.Name, a.State, running, len(a.Executors), a.Submitted.Local().Format(time.DateTime))
	}
}

func appInfoTable(w io.Writer, app *cluster.App) {
	disabled := ""
	if app.Disabled {
		disabled = ", disabled: out of rotation"
	}
	fmt.Fprintf(w, "app %s %q: %s (bundle %s, %d bytes%s)\n", app.ID, app.Name, app.State, app.Bundle.Digest, app.Bundle.Size, disabled)
	if app.Version > 0 {
		moved := 0
		for _, e := range app.Executors {
			if e.Version == app.Version {
				moved++
			}
		}
		fmt.Fprintf(w, "version %d (%d of %d executors on it; gear app history %s)\n", app.Version, moved, len(app.Executors), app.ID)
	}
	fmt.Fprintln(w, "EXECUTOR\tSTATE\tHEALTH\tWORKER\tPID\tCPUS\tRESTARTS\tLAST EXIT / ERROR")
	for _, e := range app.Executors {
		last := e.LastExit
		if e.LastError != "" {
			last = e.LastError
		}
		health := e.Health
		if health == "" {
			health = cluster.HealthUnknown
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", e.ID, e.State, health, e.Worker, e.PID, cluster.FormatInts(e.CPUs), e.Restarts, last)
	}
	for _, e := range app.Executors {
		if r := e.Replacement; r != nil {
			fmt.Fprintf(w, "replacing %s: its worker drains; the copy on worker %s is %s\n", e.ID, r.Worker, r.State)
		}
		for i, r := range e.Reschedules {
			fmt.Fprintf(w, "rescheduled %s: attempt %d at %s, off worker %s (%s); started again after %s\n", e.ID, i+1,
				r.Time.Local().Format(time.DateTime), r.From, r.Reason, r.NotBefore.Local().Format(time.TimeOnly))
		}
	}
}

type envFlags map[string]string

func (e envFlags) String() string { return "" }

func (e envFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	e[k] = v
	return nil
}

func appRestart(fs *flag.FlagSet) Action {
	vars := envFlags{}
	fs.Var(vars, "env", "`KEY=VALUE` for the new executors (repeatable)")
	return request(func(ctx context.Context, cl *cluster.Client, c *Call) (string, error) {
		return "app " + c.Args[0] + ": rolling restart started (one executor at a time)", cl.Restart(ctx, c.Args[0], vars)
	})
}

func appScale(fs *flag.FlagSet) Action {
	process := fs.String("process", "", "process group to scale (needed when the app has several)")
	return func(ctx context.Context, c *Call) error {
		n, err := strconv.Atoi(c.Args[1])
		if err != nil || n < 0 {
			return Usagef("app scale: N must be a count >= 0, got %q", c.Args[1])
		}
		return request(func(ctx context.Context, cl *cluster.Client, c *Call) (string, error) {
			return fmt.Sprintf("app %s: scaled to %d", c.Args[0], n), cl.Scale(ctx, c.Args[0], cluster.ScaleRequest{Process: *process, Instances: n})
		})(ctx, c)
	}
}

func listApps(ctx context.Context, cl *cluster.Client, _ *Call) ([]cluster.App, error) {
	return cl.Apps(ctx)
}

func logs(fs *flag.FlagSet) Action {
	exec := fs.String("executor", "", "show executor `EXEC`, e.g. 3.web.0 (default: the app's first placed executor)")
	follow := fs.Bool("f", false, "follow the log")
	lines := fs.Int("lines", 100, "lines of history to show")
	return func(ctx context.Context, c *Call) error {
		id := c.Args[0]
		if parts := strings.Split(id, "."); len(parts) == 3 && *exec == "" {
			id, *exec = parts[0], c.Args[0]
		}
		cl, err := c.Client()
		if err != nil {
			return err
		}
		q := map[string][]string{"lines": {fmt.Sprint(*lines)}}
		if *exec != "" {
			q["executor"] = []string{*exec}
		}
		if *follow {
			q["follow"] = []string{"1"}
		}
		resp, err := cl.Stream(ctx, cluster.Request{Method: "GET", Path: "/api/v1/apps/" + id + "/logs", Query: q})
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.Copy(c.Stdout, resp.Body)
		if ctx.Err() != nil {
			return context.Cause(ctx) // interrupted: Main exits 128+signal
		}
		return err
	}
}
