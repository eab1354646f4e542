package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoMaster is returned when no configured master answered.
var ErrNoMaster = errors.New("no master reachable")

// APIError is an error answered by a master.
type APIError struct {
	Status  int    // HTTP status
	Message string // what went wrong and what to do, from the master
	Master  string // who answered
}

func (e *APIError) Error() string { return e.Message }

// ErrorBody is the JSON shape of every error the API answers.
type ErrorBody struct {
	Error string `json:"error"`
}

// Client talks to the masters' HTTP API. It tries the master that last
// answered first and moves on to the others when one cannot be reached or
// has no leader, so a client keeps working through a failover.
type Client struct {
	Token string
	HTTP  *http.Client
	// Retry bounds how long a call keeps trying masters when none has a
	// leader (e.g. during an election): only a 503/502 answer or a timeout
	// is retried. A refused connection or a DNS error is final at once,
	// since waiting does not make a stopped master or a misspelt name
	// answer. Zero means one pass over the masters.
	Retry time.Duration
	// Source says where the master list came from ("-master flag", "env
	// GEAR_MASTERS", "conf/gear.conf:3:9"); the no-master error names it.
	Source string
	// OnWait, if set, is called before every wait between two passes over
	// the masters, with the time waited so far, the bound (Retry) and why
	// the last pass failed, so a command line can print "waiting for a
	// leader… 2 s".
	OnWait func(waited, limit time.Duration, why string)

	mu        sync.Mutex
	masters   []string
	preferred int
	scheme    string // "http", or "https" after UseTLS
}

// UseTLS makes the client speak https to the masters, verifying their
// certificates with cfg.RootCAs and presenting cfg.Certificates (a
// node's certificate; the CLI may have none and use the token).
func (c *Client) UseTLS(cfg *tls.Config) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scheme = "https"
	if tr, ok := c.HTTP.Transport.(*http.Transport); ok {
		tr.TLSClientConfig = cfg
	}
}

// Scheme is "https" after UseTLS, else "http".
func (c *Client) Scheme() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.scheme == "" {
		return "http"
	}
	return c.scheme
}

// NewClient returns a client for the given master addresses (host:port).
func NewClient(masters []string, token string) *Client {
	return &Client{
		Token:   token,
		HTTP:    &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext, MaxIdleConnsPerHost: 4, ResponseHeaderTimeout: 30 * time.Second}},
		masters: append([]string(nil), masters...),
	}
}

// Masters returns the addresses the client knows.
func (c *Client) Masters() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.masters...)
}

// SetMasters replaces the master list (e.g. from a heartbeat reply),
// keeping the preferred one first if it is still listed.
func (c *Client) SetMasters(masters []string) {
	if len(masters) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pref := ""
	if c.preferred < len(c.masters) {
		pref = c.masters[c.preferred]
	}
	c.masters = append([]string(nil), masters...)
	c.preferred = 0
	for i, m := range c.masters {
		if m == pref {
			c.preferred = i
		}
	}
}

// Prefer moves addr to the front of the rotation, e.g. the leader.
func (c *Client) Prefer(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.masters {
		if m == addr {
			c.preferred = i
			return
		}
	}
}

// Preferred is the master the client tries first: the one that last
// answered, or the one given to Prefer ("" when it knows none).
func (c *Client) Preferred() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.preferred < len(c.masters) {
		return c.masters[c.preferred]
	}
	return ""
}

// Request describes one API call.
type Request struct {
	Method string
	Path   string // "/api/v1/..."
	Query  url.Values
	JSON   any // request body, marshalled
	// Body, if set, opens a fresh request body for every attempt (uploads).
	Body          func() (io.ReadCloser, error)
	ContentLength int64
	Header        http.Header
}

// Do performs req against the masters and decodes a JSON answer into out
// (unless out is nil). It returns *APIError for answers with an error status.
func (c *Client) Do(ctx context.Context, req Request, out any) error {
	resp, err := c.Stream(ctx, req)
	if err != nil {
		return err
	}
	return decodeAnswer(resp, req, "", out)
}

// decodeAnswer decodes resp's JSON body into out (or drains it when out
// is nil) and closes it; from names the master in the error, if not "".
func decodeAnswer(resp *http.Response, req Request, from string, out any) error {
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if from != "" {
			return fmt.Errorf("decode answer of %s %s from %s: %w", req.Method, req.Path, from, err)
		}
		return fmt.Errorf("decode answer of %s %s: %w", req.Method, req.Path, err)
	}
	return nil
}

// DoAt performs req against master addr only, once, and decodes a JSON
// answer into out (unless out is nil). Callers that pick the master
// themselves (a worker that gives the leader longer than the others) use
// it; it returns *APIError for answers with an error status.
func (c *Client) DoAt(ctx context.Context, addr string, req Request, out any) error {
	var body []byte
	if req.JSON != nil {
		b, err := json.Marshal(req.JSON)
		if err != nil {
			return err
		}
		body = b
	}
	resp, err := c.try(ctx, addr, req, body)
	if err != nil {
		return err
	}
	return decodeAnswer(resp, req, addr, out)
}

// Stream performs req and returns the successful response for the caller to
// read and close.
func (c *Client) Stream(ctx context.Context, req Request) (*http.Response, error) {
	var body []byte
	if req.JSON != nil {
		b, err := json.Marshal(req.JSON)
		if err != nil {
			return nil, err
		}
		body = b
	}
	start := time.Now()
	var deadline time.Time
	if c.Retry > 0 {
		deadline = start.Add(c.Retry)
	}
	var errs []string
	backoff := 50 * time.Millisecond
	for {
		masters := c.Masters()
		if len(masters) == 0 {
			return nil, fmt.Errorf("%w: no master address given (set gear.cluster.masters in gear.conf, GEAR_MASTERS or -master host:port)", ErrNoMaster)
		}
		c.mu.Lock()
		first := c.preferred
		c.mu.Unlock()
		errs = errs[:0]
		retry := false
		for i := range masters {
			idx := (first + i) % len(masters)
			addr := masters[idx]
			resp, err := c.try(ctx, addr, req, body)
			if err == nil {
				c.mu.Lock()
				c.preferred = idx
				c.mu.Unlock()
				return resp, nil
			}
			var apiErr *APIError
			if errors.As(err, &apiErr) && apiErr.Status != http.StatusServiceUnavailable && apiErr.Status != http.StatusBadGateway {
				return nil, err // a real answer: do not ask the others
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if Retryable(err) {
				retry = true
			}
			errs = append(errs, addr+" ("+describe(err)+")")
		}
		now := time.Now()
		if !retry || deadline.IsZero() || now.After(deadline) {
			break
		}
		if c.OnWait != nil {
			c.OnWait(now.Sub(start), c.Retry, strings.Join(errs, ", "))
		}
		wait := min(backoff, time.Until(deadline))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(backoff*2, time.Second)
	}
	from := ""
	if c.Source != "" {
		from = " from " + c.Source
	}
	waited := ""
	if d := time.Since(start); d >= time.Second {
		waited = fmt.Sprintf(" after %s", d.Round(100*time.Millisecond))
	}
	return nil, fmt.Errorf("%w%s: tried %s%s", ErrNoMaster, waited, strings.Join(errs, ", "), from)
}

// Retryable reports whether a failed call may succeed if tried again soon:
// a master that answered it has no leader (503, 502) or a timeout. A
// refused connection, an unreachable host and a DNS error are not: they
// do not change within an election.
func Retryable(err error) bool {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Status == http.StatusServiceUnavailable || apiErr.Status == http.StatusBadGateway
	}
	var dnsErr *net.DNSError
	switch {
	case tlsFinal(err):
		return false // a wrong CA or name does not fix itself
	case errors.As(err, &dnsErr),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EADDRNOTAVAIL):
		return false
	}
	return true // timeouts, and connections cut by a master going down
}

// describe says in a few words why a call to one master failed.
func describe(err error) string {
	var apiErr *APIError
	var dnsErr *net.DNSError
	var nerr net.Error
	switch {
	case errors.As(err, &apiErr):
		return fmt.Sprintf("%d: %s", apiErr.Status, apiErr.Message)
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return fmt.Sprintf("no such host %q", dnsErr.Name)
		}
		return "DNS lookup failed: " + dnsErr.Err
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused: is a master running there?"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.As(err, &nerr) && nerr.Timeout():
		return "timed out"
	case tlsFinal(err):
		return err.Error() // with tlsHint's advice
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err.Error()
	}
	return err.Error()
}

func (c *Client) try(ctx context.Context, addr string, req Request, body []byte) (*http.Response, error) {
	u := url.URL{Scheme: c.Scheme(), Host: addr, Path: req.Path, RawQuery: req.Query.Encode()}
	var rd io.Reader
	if req.Body != nil {
		b, err := req.Body()
		if err != nil {
			return nil, err
		}
		rd = b
	} else if body != nil {
		rd = bytes.NewReader(body)
	}
	hreq, err := http.NewRequestWithContext(ctx, req.Method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	for k, v := range req.Header {
		hreq.Header[k] = v
	}
	if req.ContentLength > 0 {
		hreq.ContentLength = req.ContentLength
	}
	if body != nil {
		hreq.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		SetToken(hreq.Header, c.Token)
	}
	resp, err := c.HTTP.Do(hreq)
	if err != nil {
		return nil, tlsHint(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var eb ErrorBody
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		if msg == "" {
			msg = resp.Status
		}
		return nil, &APIError{Status: resp.StatusCode, Message: msg, Master: addr}
	}
	return resp, nil
}

// tlsFinal reports whether err is a TLS error that retrying cannot fix: a
// certificate the client does not trust or that names another host, or a
// master that does not speak TLS.
func tlsFinal(err error) bool {
	var unknown x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var header tls.RecordHeaderError
	return errors.As(err, &unknown) || errors.As(err, &hostErr) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &header) ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// tlsHint adds what to do to the TLS errors an operator meets first.
func tlsHint(err error) error {
	var unknown x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%w (the master's certificate is not signed by the CA given with -ca, GEAR_CA or gear.tls.ca: use the cluster's CA file)", err)
	case errors.As(err, &hostErr):
		return fmt.Errorf("%w (the master's certificate does not name the address dialled: add it as a SAN, or use an address the certificate names)", err)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%w (this master does not speak TLS: drop -ca / GEAR_CA, or set gear.tls on the masters)", err)
	}
	return err
}

// Apps lists every application.
func (c *Client) Apps(ctx context.Context) ([]App, error) {
	var apps []App
	err := c.Do(ctx, Request{Method: "GET", Path: "/api/v1/apps"}, &apps)
	return apps, err
}

// App returns one application.
func (c *Client) App(ctx context.Context, id string) (*App, error) {
	var app App
	if err := c.Do(ctx, Request{Method: "GET", Path: "/api/v1/apps/" + url.PathEscape(id)}, &app); err != nil {
		return nil, err
	}
	return &app, nil
}

// Submit creates an application and returns its id. Retries (Do moves on
// to another master when one fails) carry one RequestID, so a submit is
// applied at most once.
func (c *Client) Submit(ctx context.Context, req SubmitRequest) (string, error) {
	if req.RequestID == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("submit: request id: %w", err)
		}
		req.RequestID = hex.EncodeToString(b[:])
	}
	var out struct {
		ID string `json:"id"`
	}
	err := c.Do(ctx, Request{Method: "POST", Path: "/api/v1/apps", JSON: req}, &out)
	return out.ID, err
}

// Update rolls application id to a new bundle version (gear app update).
func (c *Client) Update(ctx context.Context, id string, req UpdateRequest) (*App, error) {
	var out App
	err := c.Do(ctx, Request{Method: "POST", Path: "/api/v1/apps/" + url.PathEscape(id) + "/update", JSON: req}, &out)
	return &out, err
}

// Rollback rolls application id back to version (0: the one before the
// current).
func (c *Client) Rollback(ctx context.Context, id string, version int) (*App, error) {
	var out App
	err := c.Do(ctx, Request{Method: "POST", Path: "/api/v1/apps/" + url.PathEscape(id) + "/rollback", JSON: RollbackRequest{Version: version}}, &out)
	return &out, err
}

// Kill stops an application.
func (c *Client) Kill(ctx context.Context, id string) error {
	return c.Do(ctx, Request{Method: "POST", Path: "/api/v1/apps/" + url.PathEscape(id) + "/kill"}, nil)
}

// Restart starts a rolling restart of an application.
func (c *Client) Restart(ctx context.Context, id string, env map[string]string) error {
	return c.Do(ctx, Request{Method: "POST", Path: "/api/v1/apps/" + url.PathEscape(id) + "/restart", JSON: RestartRequest{Env: env}}, nil)
}

// Disable takes an application out of rotation (disable = true) or puts
// it back: its executors keep running; their /ecv pages follow the flag.
func (c *Client) Disable(ctx context.Context, id string, disable bool) error {
	verb := "enable"
	if disable {
		verb = "disable"
	}
	return c.Do(ctx, Request{Method: "POST", Path: "/api/v1/apps/" + url.PathEscape(id) + "/" + verb}, nil)
}

// Scale sets the instance count of an application's process group.
func (c *Client) Scale(ctx context.Context, id string, req ScaleRequest) error {
	return c.Do(ctx, Request{Method: "POST", Path: "/api/v1/apps/" + url.PathEscape(id) + "/scale", JSON: req}, nil)
}

// Workers lists the workers.
func (c *Client) Workers(ctx context.Context) ([]Worker, error) {
	var ws []Worker
	err := c.Do(ctx, Request{Method: "GET", Path: "/api/v1/workers"}, &ws)
	return ws, err
}

// RemoveWorker removes a dead worker from the cluster state; its executors
// are placed elsewhere. The masters refuse a worker that heartbeated within
// the failover timeout unless force is set.
func (c *Client) RemoveWorker(ctx context.Context, id string, force bool) (RemoveWorkerResult, error) {
	var out RemoveWorkerResult
	q := url.Values{}
	if force {
		q.Set("force", "true")
	}
	err := c.Do(ctx, Request{Method: "POST", Path: "/api/v1/workers/" + url.PathEscape(id) + "/remove", Query: q}, &out)
	return out, err
}

// DrainWorker marks a worker draining: its executors move elsewhere,
// what remains after deadline is stopped.
func (c *Client) DrainWorker(ctx context.Context, id string, deadline time.Duration) (DrainResult, error) {
	var out DrainResult
	err := c.Do(ctx, Request{Method: "POST", Path: "/api/v1/workers/" + url.PathEscape(id) + "/drain", JSON: DrainRequest{Deadline: deadline}}, &out)
	return out, err
}

// EligibleWorker ends a worker's drain.
func (c *Client) EligibleWorker(ctx context.Context, id string) (DrainResult, error) {
	var out DrainResult
	err := c.Do(ctx, Request{Method: "POST", Path: "/api/v1/workers/" + url.PathEscape(id) + "/eligible"}, &out)
	return out, err
}

// MasterList returns each configured master's state.
func (c *Client) MasterList(ctx context.Context) ([]Master, error) {
	var ms []Master
	err := c.Do(ctx, Request{Method: "GET", Path: "/api/v1/masters"}, &ms)
	return ms, err
}

// AddMaster adds a master to the group as a non-voter; the answer says
// whether it became a voter (caught up) while the call waited.
func (c *Client) AddMaster(ctx context.Context, addr string) (MemberChange, error) {
	var out MemberChange
	err := c.Do(ctx, Request{Method: "POST", Path: "/api/v1/masters/add", JSON: MemberRequest{Addr: addr}}, &out)
	return out, err
}

// RemoveMaster removes a master (also a dead one) from the group.
func (c *Client) RemoveMaster(ctx context.Context, addr string) (MemberChange, error) {
	var out MemberChange
	err := c.Do(ctx, Request{Method: "POST", Path: "/api/v1/masters/remove", JSON: MemberRequest{Addr: addr}}, &out)
	return out, err
}

// SaveSnapshot copies the leader's replicated state (a `gear snapshot
// save` file) to w.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer) error {
	resp, err := c.Stream(ctx, Request{Method: "GET", Path: "/api/v1/snapshot"})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// RestoreSnapshot loads a `gear snapshot save` file into a fresh group.
func (c *Client) RestoreSnapshot(ctx context.Context, size int64, open func() (io.ReadCloser, error)) (RestoreResult, error) {
	var out RestoreResult
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	err := c.Do(ctx, Request{Method: "POST", Path: "/api/v1/snapshot/restore", Body: open, ContentLength: size, Header: h}, &out)
	return out, err
}

// Heartbeat reports a worker's executors and returns its assignments,
// or only that they are still those of digest (see
// AssignmentsDigestHeader; "" sends no digest: always the assignments).
// reports, if not "", is the ReportsDigestHeader.
func (c *Client) Heartbeat(ctx context.Context, hb Heartbeat, digest, reports string) (*HeartbeatReply, error) {
	return c.HeartbeatAt(ctx, "", hb, digest, reports)
}

// HeartbeatAt is Heartbeat sent to master addr only ("" = any, as
// Heartbeat).
func (c *Client) HeartbeatAt(ctx context.Context, addr string, hb Heartbeat, digest, reports string) (*HeartbeatReply, error) {
	var out HeartbeatReply
	h := http.Header{}
	if digest != "" {
		h.Set(AssignmentsDigestHeader, digest)
	}
	if reports != "" {
		h.Set(ReportsDigestHeader, reports)
	}
	req := Request{Method: "POST", Path: "/api/v1/workers/heartbeat", JSON: hb, Header: h}
	var err error
	if addr == "" {
		err = c.Do(ctx, req, &out)
	} else {
		err = c.DoAt(ctx, addr, req, &out)
	}
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// WaitAssignments is a worker's doorbell: the leader answers when worker
// id's assignments change after the ring count seen of leader epoch (or
// after a while, or at once when epoch is not its own).
func (c *Client) WaitAssignments(ctx context.Context, id, epoch string, seen uint64) (Doorbell, error) {
	var out Doorbell
	q := url.Values{"epoch": {epoch}, "seen": {strconv.FormatUint(seen, 10)}}
	err := c.Do(ctx, Request{Method: "GET", Path: "/api/v1/workers/" + url.PathEscape(id) + "/assignments/wait", Query: q}, &out)
	return out, err
}

// UploadBundle streams a bundle to the masters' jar store. open is called
// for every attempt, so an upload cut by a failover is retried from the
// start against the next master.
func (c *Client) UploadBundle(ctx context.Context, name string, size int64, open func() (io.ReadCloser, error)) (Bundle, error) {
	var b Bundle
	err := c.Do(ctx, Request{
		Method: "POST", Path: "/api/v1/bundles", Query: url.Values{"name": {name}},
		Body: open, ContentLength: size,
		Header: http.Header{"Content-Type": {"application/octet-stream"}},
	}, &b)
	return b, err
}

// DigestHeader carries a bundle's digest: on a download, the digest the
// master serves; on an upload (optional), the digest the uploader
// declares, which the master checks (a body that hashes to anything else
// is refused with 400 and not stored).
const DigestHeader = "X-Gear-Digest"

// VerifyHeader, set to VerifyByClient on a bundle download, tells the
// master that the client checks the digest of what it receives itself, so
// the master may send the stored bytes unverified (by sendfile).
const (
	VerifyHeader   = "X-Gear-Verify"
	VerifyByClient = "client"
)

// OpenBundle downloads a bundle by digest. The caller must check that
// what it reads hashes to digest (the master sends the stored bytes
// unverified, see VerifyHeader), as the worker's cache does.
func (c *Client) OpenBundle(ctx context.Context, digest string) (io.ReadCloser, error) {
	resp, err := c.Stream(ctx, Request{Method: "GET", Path: "/api/v1/bundles/" + url.PathEscape(digest),
		Header: http.Header{VerifyHeader: {VerifyByClient}}})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
