package master

import (
	"encoding/json"
	"log/slog"
	"sync"
	"time"
)

// verdicts is how the masters share what they judge of the leader (see
// detector.go): each follower that finds the leader silent tells the other
// voters through the gossip pool, refreshes that while the silence lasts,
// and withdraws it when it hears from the leader again. A verdict that is
// not refreshed expires (decide's TTL), so a lost withdrawal or a master
// that died mid-verdict cannot keep one alive.
//
// Messages are memberlist user messages (best-effort UDP, encrypted with
// the gossip key when one is set): they arrive in well under a millisecond
// on a LAN, and a lost one is replaced by the next refresh.
type verdicts struct {
	self string
	boot string
	log  *slog.Logger
	now  func() time.Time
	// send delivers a message to one master; set once the pool runs.
	send func(addr string, msg []byte) error

	mu   sync.Mutex
	seq  uint64
	book map[string]bookEntry // by voter address
}

type bookEntry struct {
	verdict
	boot string
	seq  uint64
}

// verdictMsg is the wire form of a verdict or its withdrawal.
type verdictMsg struct {
	From   string `json:"from"`
	Boot   string `json:"boot"` // the sender's boot id: its seq restarts with it
	Seq    uint64 `json:"seq"`  // orders one sender's messages
	Leader string `json:"leader"`
	Term   uint64 `json:"term"`
	Silent bool   `json:"silent"` // false withdraws
	// The sender's last log entry, for the campaign order (see decide).
	LogTerm  uint64 `json:"log_term,omitempty"`
	LogIndex uint64 `json:"log_index,omitempty"`
	// SilentMS is how long the sender has found the leader silent, for
	// the logs; freshness is judged on the receiver's clock.
	SilentMS int64 `json:"silent_ms,omitempty"`
}

// verdictKind prefixes verdict messages among the pool's user messages.
const verdictKind = 'v'

func newVerdicts(self, boot string, log *slog.Logger) *verdicts {
	return &verdicts{self: self, boot: boot, log: log, now: time.Now, book: map[string]bookEntry{}}
}

// judge records this master's verdict that leader is silent in term and
// tells the other voters.
func (v *verdicts) judge(leader string, term, logTerm, logIndex uint64, voters []string) {
	v.mu.Lock()
	v.seq++
	msg := verdictMsg{From: v.self, Boot: v.boot, Seq: v.seq, Leader: leader, Term: term, Silent: true, LogTerm: logTerm, LogIndex: logIndex}
	now := v.now()
	e, ok := v.book[v.self]
	if !ok || e.Leader != leader || e.Term != term {
		e = bookEntry{verdict: verdict{From: v.self, Leader: leader, Term: term, Since: now}}
	}
	e.At, e.boot, e.seq = now, v.boot, v.seq
	e.LogTerm, e.LogIndex = logTerm, logIndex
	v.book[v.self] = e
	msg.SilentMS = now.Sub(e.Since).Milliseconds()
	v.mu.Unlock()
	v.tell(msg, leader, voters)
}

// withdraw takes back this master's verdict: it hears the leader again, or
// follows another one.
func (v *verdicts) withdraw(leader string, term uint64, voters []string) {
	v.mu.Lock()
	v.seq++
	msg := verdictMsg{From: v.self, Boot: v.boot, Seq: v.seq, Leader: leader, Term: term}
	delete(v.book, v.self)
	v.mu.Unlock()
	v.tell(msg, leader, voters)
}

func (v *verdicts) tell(msg verdictMsg, leader string, voters []string) {
	if v.send == nil {
		return
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return
	}
	b = append([]byte{verdictKind}, b...)
	for _, to := range voters {
		if to == v.self || to == leader {
			continue
		}
		if err := v.send(to, b); err != nil {
			v.log.Debug("could not send the leader verdict", "to", to, "err", err)
		}
	}
}

// receive takes a verdict message from another master.
func (v *verdicts) receive(b []byte) {
	if len(b) < 2 || b[0] != verdictKind {
		return
	}
	var msg verdictMsg
	if err := json.Unmarshal(b[1:], &msg); err != nil {
		v.log.Debug("ignoring a malformed leader verdict", "err", err)
		return
	}
	if msg.From == v.self || msg.From == "" {
		return
	}
	now := v.now()
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.book[msg.From]
	if ok && e.boot == msg.Boot && msg.Seq <= e.seq {
		return // reordered: an older message
	}
	if !msg.Silent {
		if ok {
			v.log.Debug("a master hears the leader again", "from", msg.From, "leader", msg.Leader)
		}
		// Keep the seq so that an older "silent" arriving late is ignored.
		v.book[msg.From] = bookEntry{boot: msg.Boot, seq: msg.Seq}
		return
	}
	if !ok || e.Leader != msg.Leader || e.Term != msg.Term || e.At.IsZero() {
		e = bookEntry{verdict: verdict{From: msg.From, Leader: msg.Leader, Term: msg.Term, Since: now}}
		v.log.Info("a master finds the leader silent", "from", msg.From, "leader", msg.Leader, "term", msg.Term, "silent_ms", msg.SilentMS)
	}
	e.At, e.boot, e.seq = now, msg.Boot, msg.Seq
	e.LogTerm, e.LogIndex = msg.LogTerm, msg.LogIndex
	v.book[msg.From] = e
}

// all returns the verdicts known, this master's own included.
func (v *verdicts) all() []verdict {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]verdict, 0, len(v.book))
	for _, e := range v.book {
		if !e.At.IsZero() {
			out = append(out, e.verdict)
		}
	}
	return out
}
