package master

// Disaster recovery.
//
//   - `gear snapshot save FILE`: the leader's replicated state, read after a
//     raft barrier (so it holds every entry committed before the call).
//   - `gear snapshot restore FILE`: loads such a file into a fresh group
//     (one without applications) through raft's user restore, which
//     replaces the leader's state and sends it to the followers as a
//     snapshot.
//   - Recover (`gear masters recover`): offline, on a stopped survivor of a
//     group that lost its majority for good, rewrites the membership in
//     its data dir to the voters given, keeping the state it has
//     (raft.RecoverCluster, Consul's peers.json recovery).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/config"
	"github.com/gear-run/gear/pkg/datadir"
	"github.com/gear-run/gear/pkg/logbridge"
)

// snapshotFormat is the version of `gear snapshot save` files.
const snapshotFormat = 1

// maxSnapshotBody bounds a snapshot restore's request body.
const maxSnapshotBody = 1 << 30

// snapshotFile is the content of a `gear snapshot save` file.
type snapshotFile struct {
	Format int             `json:"gear_snapshot"`
	Taken  time.Time       `json:"taken"`
	Leader string          `json:"leader"`
	Index  uint64          `json:"index"`
	Term   uint64          `json:"term"`
	State  json.RawMessage `json:"state"`
}

// handleSnapshotSave answers the replicated state as of now.
func (m *Master) handleSnapshotSave(w http.ResponseWriter, r *http.Request) {
	if err := m.raft.raft.Barrier(10 * time.Second).Error(); err != nil {
		writeError(w, m.raftError(err))
		return
	}
	var b []byte
	var err error
	m.fsm.read(func(s *State) { b, err = json.Marshal(s) })
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, snapshotFile{Format: snapshotFormat, Taken: time.Now().UTC(), Leader: m.self,
		Index: m.raft.raft.AppliedIndex(), Term: m.raft.raft.CurrentTerm(), State: b})
}

// handleSnapshotRestore loads a saved state into a group that has no
// applications yet.
func (m *Master) handleSnapshotRestore(w http.ResponseWriter, r *http.Request) {
	var f snapshotFile
	if err := decodeBody(r, &f); err != nil {
		writeError(w, err)
		return
	}
	if f.Format != snapshotFormat || len(f.State) == 0 {
		writeError(w, fmt.Errorf("%w: not a gear snapshot (want a file written by gear snapshot save, format %d; got format %d)", ErrBadRequest, snapshotFormat, f.Format))
		return
	}
	s := newState()
	if err := json.Unmarshal(f.State, s); err != nil {
		writeError(w, fmt.Errorf("%w: the snapshot's state does not decode: %v", ErrBadRequest, err))
		return
	}
	var apps int
	var storeID string
	m.fsm.read(func(cur *State) { apps, storeID = len(cur.Apps), cur.StoreID })
	if apps > 0 {
		writeError(w, fmt.Errorf("%w: this group has %d application(s); a snapshot is restored into a fresh group only (start the masters with empty data dirs), so that nothing is overwritten", ErrConflict, apps))
		return
	}
	if storeID != "" {
		s.StoreID = storeID // the jar store this group checked its marker of
	}
	b, err := json.Marshal(s)
	if err != nil {
		writeError(w, err)
		return
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: f.Index, Term: f.Term, Size: int64(len(b))}
	if err := m.raft.raft.Restore(meta, bytes.NewReader(b), 30*time.Second); err != nil {
		writeError(w, m.raftError(err))
		return
	}
	m.log.Info("restored a snapshot", "taken", f.Taken, "from", f.Leader, "index", f.Index, "apps", len(s.Apps), "workers", len(s.Workers))
	writeJSON(w, cluster.RestoreResult{Apps: len(s.Apps), Workers: len(s.Workers), Taken: f.Taken, Index: f.Index})
}

// RecoverReport says what Recover kept.
type RecoverReport struct {
	DataDir   string
	Voters    []string
	OldVoters []string // the membership the data dir held
	LastIndex uint64   // the last entry this survivor has
	LastTerm  uint64
	Apps      int // applications in the recovered state
	Workers   int
}

// Recover rewrites the membership in a stopped master's data dir to voters,
// keeping the state the dir holds. Entries the old group committed but never
// replicated to this master are lost; entries it has but were never
// committed become committed.
func Recover(dataDir string, voters []string, log *slog.Logger) (RecoverReport, error) {
	rep := RecoverReport{DataDir: dataDir, Voters: slices.Clone(voters)}
	if len(voters) == 0 {
		return rep, fmt.Errorf("no voters given (want -voters host:port[,host:port...]: the survivors that form the new group, this one included)")
	}
	for _, v := range voters {
		if _, _, err := config.ParseHostPort(v); err != nil {
			return rep, fmt.Errorf("-voters: %w", err)
		}
	}
	dir := filepath.Join(dataDir, "raft")
	if _, err := os.Stat(filepath.Join(dir, "wal")); err != nil {
		return rep, fmt.Errorf("%s holds no master's raft state (%v): give the -datadir of a master", dataDir, err)
	}
	lock, err := datadir.Lock(dataDir)
	if err != nil {
		return rep, fmt.Errorf("%w (stop the master that uses it first: recovery runs offline)", err)
	}
	defer lock.Close()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: &logbridge.Writer{Log: log, From: "raft"}})
	wal, err := openLogStore(filepath.Join(dir, "wal"), config.Default().Raft.SegmentSize, log)
	if err != nil {
		return rep, err
	}
	defer wal.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 3, hlog)
	if err != nil {
		return rep, fmt.Errorf("open raft snapshots in %s: %w", dir, err)
	}
	if ok, err := raft.HasExistingState(wal, wal, snaps); err != nil || !ok {
		return rep, fmt.Errorf("%s holds no raft state to recover (%v)", dataDir, err)
	}
	rep.LastIndex, _ = wal.LastIndex()
	var last raft.Log
	if err := wal.GetLog(rep.LastIndex, &last); err == nil {
		rep.LastTerm = last.Term
	}
	rep.OldVoters = storedVoters(wal, snaps)
	if snapList, _ := snaps.List(); len(snapList) > 0 && snapList[0].Index > rep.LastIndex {
		rep.LastIndex, rep.LastTerm = snapList[0].Index, snapList[0].Term
	}
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(voters[0])
	cfg.Logger = hlog
	var servers []raft.Server
	for _, v := range voters {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(v), Address: raft.ServerAddress(v)})
	}
	_, trans := raft.NewInmemTransport(raft.ServerAddress(voters[0]))
	f := &fsm{state: newState()}
	if err := raft.RecoverCluster(cfg, f, wal, wal, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
		return rep, fmt.Errorf("recover %s: %w", dataDir, err)
	}
	f.read(func(s *State) { rep.Apps, rep.Workers = len(s.Apps), len(s.Workers) })
	return rep, nil
}

// storedVoters reads the last membership in a data dir: the newest
// configuration entry of the log, else the newest snapshot's.
func storedVoters(logs raft.LogStore, snaps raft.SnapshotStore) []string {
	first, _ := logs.FirstIndex()
	last, _ := logs.LastIndex()
	var out []string
	voters := func(c raft.Configuration) []string {
		var vs []string
		for _, s := range c.Servers {
			if s.Suffrage == raft.Voter {
				vs = append(vs, string(s.Address))
			}
		}
		slices.Sort(vs)
		return vs
	}
	for i := last; i >= first && i > 0; i-- {
		var l raft.Log
		if logs.GetLog(i, &l) != nil {
			break
		}
		if l.Type == raft.LogConfiguration {
			return voters(raft.DecodeConfiguration(l.Data))
		}
	}
	if list, _ := snaps.List(); len(list) > 0 {
		out = voters(list[0].Configuration)
	}
	return out
}
