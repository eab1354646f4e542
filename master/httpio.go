// Request and answer plumbing of the API: body limits (413 before anything
// is forwarded), strict JSON decoding, and the JSON error answers with the
// status each error calls for.

package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/gear-run/gear/jarstore"
	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/config"
)

// maxJSONBody bounds the body of every JSON request.
const maxJSONBody = 8 << 20

// bodyLimit is one route's bound on request bodies and how to name it in
// the refusal.
type bodyLimit struct {
	max  int64 // <= 0: unbounded
	what string
	// streamed: the leader's handler enforces the limit itself (with a
	// message that names the bundle), so only a body that is forwarded to
	// the leader is checked here.
	streamed bool
	leading  func() bool
}

func (m *Master) jsonLimit() bodyLimit {
	return bodyLimit{max: maxJSONBody, what: "the API's limit for JSON requests"}
}

// bundleLimit bounds uploads by gear.jarstore.max-bundle-size. The leader's
// jar store enforces it again while streaming (with its own message).
func (m *Master) bundleLimit() bodyLimit {
	return bodyLimit{max: m.opts.MaxBundleSize, what: "gear.jarstore.max-bundle-size", streamed: true, leading: m.isLeader}
}

// tooLargeError is a body over its route's limit. It reads as the limit
// and what sets it, and matches ErrTooLarge.
type tooLargeError struct{ msg string }

func (e *tooLargeError) Error() string { return e.msg }

func (e *tooLargeError) Is(target error) bool { return target == ErrTooLarge }

func (l bodyLimit) err() error {
	return &tooLargeError{fmt.Sprintf("request body over %s (%s)", config.FormatSize(l.max), l.what)}
}

// wrap refuses a body that declares a length over the limit at once, on
// whichever master receives it, and cuts off one that grows past it while
// it is read (by a handler or by the proxy to the leader).
func (l bodyLimit) wrap(h http.HandlerFunc) http.HandlerFunc {
	if l.max <= 0 {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if l.streamed && l.leading() {
			h(w, r)
			return
		}
		if r.ContentLength > l.max {
			// The body stays unread: the server closes the connection
			// after this answer instead of draining it.
			w.Header().Set("Connection", "close")
			writeError(w, l.err())
			return
		}
		r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, l.max), limit: l}
		h(w, r)
	}
}

// limitedBody turns http.MaxBytesReader's error into the route's own.
type limitedBody struct {
	io.ReadCloser
	limit bodyLimit
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = b.limit.err()
	}
	return n, err
}

// writeJSON answers v with status 200.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeCompactJSON is writeJSON without the indentation, for the replies
// only programs read and that are sent often (heartbeats): indenting them
// took most of the leader's CPU spent on heartbeats.
func writeCompactJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers err with the status its kind calls for.
func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNoSuchApp), errors.Is(err, ErrNoSuchWorker), errors.Is(err, ErrNoSuchMaster), errors.Is(err, jarstore.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrTooLarge), errors.Is(err, jarstore.ErrTooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrBadRequest), errors.Is(err, jarstore.ErrDigestMismatch), errors.Is(err, jarstore.ErrInvalidDigest), errors.Is(err, jarstore.ErrShortUpload):
		status = http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized):
		status = http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, ErrNoLeader):
		status = http.StatusServiceUnavailable
	case errors.Is(err, jarstore.ErrNoSpace), errors.Is(err, ErrDiskFull):
		status = http.StatusInsufficientStorage
	case errors.Is(err, ErrStorage), errors.Is(err, ErrStoreUnavailable), errors.Is(err, ErrStoreMarker):
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(cluster.ErrorBody{Error: err.Error()})
}

func getJSON(ctx context.Context, c *http.Client, u, token string, out any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	cluster.SetToken(req.Header, token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func writeEncoded(w http.ResponseWriter, b []byte, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}

// decodeBody decodes exactly one JSON value into v: unknown fields and
// anything after the value are refused. Routes bound the body with
// bodyLimit.wrap; a body over it is ErrTooLarge.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	var extra json.RawMessage
	switch err := dec.Decode(&extra); {
	case err == io.EOF:
		return nil
	case err == nil:
		return fmt.Errorf("%w: request body: more than one JSON value (send exactly one JSON object)", ErrBadRequest)
	default:
		if errors.Is(err, ErrTooLarge) {
			return err
		}
		return fmt.Errorf("%w: request body: unexpected data after the JSON value (send exactly one JSON object): %v", ErrBadRequest, err)
	}
}

func bodyError(err error) error {
	if errors.Is(err, ErrTooLarge) {
		return err
	}
	return fmt.Errorf("%w: request body: %v", ErrBadRequest, err)
}
