package master

import (
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// Two masters' verdict books wired to each other: a verdict arrives with
// the receiver's clock, a refresh keeps its Since, a withdrawal removes
// it, a reordered older message is ignored, and a restarted sender (new
// boot id) is heard although its seq starts over.
func TestVerdictSharing(t *testing.T) {
	const l, b, c = "10.0.0.1:3000", "10.0.0.2:3000", "10.0.0.3:3000"
	voters := []string{l, b, c}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	clock := time.Unix(5000, 0)
	now := func() time.Time { return clock }
	vb, vc := newVerdicts(b, "boot-b", quiet), newVerdicts(c, "boot-c", quiet)
	vb.now, vc.now = now, now
	var mu sync.Mutex
	var sent []string // addresses b sent to
	var last []byte
	vb.send = func(addr string, msg []byte) error {
		mu.Lock()
		sent, last = append(sent, addr), msg
		mu.Unlock()
		vc.receive(msg)
		return nil
	}
	vb.judge(l, 4, 1, 10, voters)
	if len(sent) != 1 || sent[0] != c {
		t.Fatalf("b sent to %v, want only c (not itself, not the leader)", sent)
	}
	got := vc.all()
	if len(got) != 1 || got[0].From != b || got[0].Leader != l || got[0].Term != 4 || !got[0].Since.Equal(clock) {
		t.Fatalf("c's book after b's verdict: %+v", got)
	}
	older := append([]byte(nil), last...)
	clock = clock.Add(300 * time.Millisecond)
	vb.judge(l, 4, 1, 10, voters)
	got = vc.all()
	if len(got) != 1 || !got[0].Since.Equal(time.Unix(5000, 0)) || !got[0].At.Equal(clock) {
		t.Fatalf("a refresh must keep Since and move At: %+v", got)
	}
	vb.withdraw(l, 4, voters)
	if got := vc.all(); len(got) != 0 {
		t.Fatalf("c still holds b's verdict after the withdrawal: %+v", got)
	}
	vc.receive(older) // a late duplicate of the first verdict
	if got := vc.all(); len(got) != 0 {
		t.Fatalf("a reordered older verdict revived b's: %+v", got)
	}
	// b restarts: its seq starts over under a new boot id.
	var msg verdictMsg
	_ = json.Unmarshal(older[1:], &msg)
	msg.Boot, msg.Seq = "boot-b2", 1
	raw, _ := json.Marshal(msg)
	vc.receive(append([]byte{verdictKind}, raw...))
	if got := vc.all(); len(got) != 1 || got[0].From != b {
		t.Fatalf("a restarted master's verdict was ignored: %+v", got)
	}
	// Its own verdict is in its own book, for decide to count.
	if got := vb.all(); len(got) != 0 {
		t.Fatalf("b withdrew, but its book holds %+v", got)
	}
	vb.judge(l, 4, 1, 10, voters)
	if got := vb.all(); len(got) != 1 || got[0].From != b {
		t.Fatalf("b's own verdict is missing from its book: %+v", got)
	}
	vc.receive([]byte("x{")) // junk is ignored
}
