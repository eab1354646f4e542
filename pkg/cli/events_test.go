package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// events -f resumes on the next master after the last event it printed
// when its master's stream ends.
func TestEventsFollowResumesOnAnotherMaster(t *testing.T) {
	write := func(w http.ResponseWriter, evs ...cluster.Event) {
		for _, e := range evs {
			b, _ := json.Marshal(e)
			_, _ = w.Write(append(b, '\n'))
		}
		w.(http.Flusher).Flush()
	}
	var mu sync.Mutex
	var asked []string // "a since" / "b since"
	note := func(who string, r *http.Request) {
		mu.Lock()
		asked = append(asked, who+" since="+r.URL.Query().Get("since")+" follow="+r.URL.Query().Get("follow"))
		mu.Unlock()
	}
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		note("a", r)
		write(w, cluster.Event{ID: "1.0", Index: 1, Type: "submit", Message: "app 1 submitted", Replicated: true},
			cluster.Event{ID: "2.0", Index: 2, Type: "kill", Message: "app 1 killed", Replicated: true})
		// and the master dies: the stream ends
	}))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		note("b", r)
		write(w, cluster.Event{ID: "3.0", Index: 3, Type: "scale", Message: "app 2 scaled", Replicated: true})
		<-r.Context().Done()
	}))
	defer b.Close()

	var out, errb lockedBuffer
	env := Env{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }, Environ: func() []string { return nil }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	masters := strings.TrimPrefix(a.URL, "http://") + "," + strings.TrimPrefix(b.URL, "http://")
	go func() { done <- Run(ctx, env, Commands(), []string{"-master", masters, "events", "-f"}) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "app 2 scaled") {
		if time.Now().After(deadline) {
			t.Fatalf("no resumed event after 10s; stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("events -f ended with %v after the interrupt", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "1.0") || !strings.Contains(lines[1], "2.0") || !strings.Contains(lines[2], "3.0") {
		t.Fatalf("printed:\n%s\nwant events 1.0, 2.0, 3.0 once each", out.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) < 2 || asked[0] != "a since= follow=1" || asked[1] != "b since=2.0 follow=1" {
		t.Fatalf("requests %q: want a from the start, then b after 2.0", asked)
	}
	if !strings.Contains(errb.String(), "resuming after event 2.0") {
		t.Errorf("stderr %q does not say where it resumes", errb.String())
	}
}
