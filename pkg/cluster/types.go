// Package cluster holds the types that masters, workers and the CLI exchange:
// the replicated cluster state (applications, executors, workers), the JSON
// shapes of the HTTP API, and a client for that API that fails over between
// masters.
//
// It is the only place where master/ and worker/ meet; it holds no daemon
// logic of its own. The JSON field names are part of gear's user-facing
// contract (`gear app list -json` prints these structs), so they only ever
// grow.
package cluster

import (
	"fmt"
	"time"
)

// ExecutorState is the lifecycle state of one executor.
type ExecutorState string

// Executor states, as documented in DESIGN.md's user-facing contract.
const (
	Pending  ExecutorState = "PENDING"  // desired, not yet placed or not yet started
	Starting ExecutorState = "STARTING" // placed, the worker is fetching or launching it
	Running  ExecutorState = "RUNNING"
	Backoff  ExecutorState = "BACKOFF" // crashed, waiting to restart
	Stopping ExecutorState = "STOPPING"
	Stopped  ExecutorState = "STOPPED"
	Failed   ExecutorState = "FAILED" // crash loop: gave up
	Lost     ExecutorState = "LOST"   // its worker is unreachable
)

// AppState is the state of an application, derived from its executors.
type AppState string

// Application states.
const (
	AppPending AppState = "PENDING"
	AppRunning AppState = "RUNNING"
	AppFailed  AppState = "FAILED"
	AppKilled  AppState = "KILLED"
)

// BundleKind says how a bundle is unpacked and run.
type BundleKind string

// Bundle kinds.
const (
	KindJar   BundleKind = "jar"
	KindTarGz BundleKind = "tar.gz"
	KindZip   BundleKind = "zip"
)

// BundleKinds are the kinds a bundle may have.
var BundleKinds = []BundleKind{KindJar, KindTarGz, KindZip}

// Check refuses a kind other than BundleKinds: a bundle of unknown kind
// must never be run as if it were one of them.
func (k BundleKind) Check() error {
	for _, known := range BundleKinds {
		if k == known {
			return nil
		}
	}
	return fmt.Errorf("bundle kind %q is unknown: want one of %q, %q or %q (a .jar, or a .tar.gz/.tgz/.zip with gear-app.conf at its root)", string(k), KindJar, KindTarGz, KindZip)
}

// Process is one process group of an application, as written in the
// bundle's gear-app.conf (or synthesised for a jar). It is the one
// definition of a process: pkg/bundle's manifest parser produces it, the CLI
// submits it, the masters replicate it, and the worker receives it in each
// Assignment and derives its procs.Spec and procs.Policy from it. Validate
// (ValidateProcesses for a whole app) is the one check. Zero durations and
// limits mean "use the worker's default" (MaxAge, MaxRSS 0: never recycle).
type Process struct {
	Name          string            `json:"name"`
	Command       []string          `json:"command"`
	Instances     int               `json:"instances"`
	CPUs          int               `json:"cpus"`
	Shared        bool              `json:"shared,omitempty"`
	Restart       RestartPolicy     `json:"restart,omitempty"` // "": the worker's default
	Env           map[string]string `json:"env,omitempty"`
	Ports         []int             `json:"ports,omitempty"`
	StopTimeout   time.Duration     `json:"stop_timeout,omitempty"`
	PreStop       []string          `json:"pre_stop,omitempty"`
	MaxAge        time.Duration     `json:"max_age,omitempty"`
	MaxRSS        int64             `json:"max_rss,omitempty"`
	MinUptime     time.Duration     `json:"min_uptime,omitempty"`
	MaxRestarts   int               `json:"max_restarts,omitempty"`
	RestartWindow time.Duration     `json:"restart_window,omitempty"`
	// Health is run by the worker on every instance; see Health.
	Health *Health `json:"health,omitempty"`
	// User runs the group's executors as this user ("name" or
	// "name:group") where the worker's gear.worker.allowed-users lists it.
	User string `json:"user,omitempty"`
	// Listen are ports the worker opens once and passes to every instance
	// on it by socket activation (LISTEN_FDS, fd 3 onwards, in this order);
	// the socket outlives the instances' restarts.
	Listen []int `json:"listen,omitempty"`
	// Memory (bytes, gear-app.conf's memory = 512MiB) and MaxPids
	// (max-pids) limit each instance by cgroup; an instance over its
	// memory is killed and restarted by its policy ("out of memory").
	// Placement counts Memory against the workers' memory. 0: no limit.
	Memory  int64 `json:"memory,omitempty"`
	MaxPids int   `json:"max_pids,omitempty"`
	// Reschedule moves an executor that gave up on one worker to another
	// (nil: DefaultReschedule; see Reschedule).
	Reschedule *Reschedule `json:"reschedule,omitempty"`
}

// Bundle names an uploaded artifact in the jar store.
type Bundle struct {
	Digest string     `json:"digest"` // "sha256:<hex>"
	Size   int64      `json:"size"`
	Kind   BundleKind `json:"kind"`
	Name   string     `json:"name"` // file name as submitted
}

// App is an application as the masters replicate it.
type App struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	State     AppState   `json:"state"`
	Bundle    Bundle     `json:"bundle"`
	Processes []Process  `json:"processes"`
	Executors []Executor `json:"executors"`
	Submitted time.Time  `json:"submitted"`
	Killed    time.Time  `json:"killed,omitzero"`
	// Generation increases with every `app restart`; executors whose
	// generation is lower are replaced one at a time.
	Generation int               `json:"generation"`
	RestartEnv map[string]string `json:"restart_env,omitempty"`
	Args       []string          `json:"args,omitempty"`
	// Version is the bundle version the app runs or rolls to (1 = as
	// submitted; 0 for apps submitted before versions), Versions every
	// version it had, oldest first (gear app update, history, rollback).
	Version  int          `json:"version,omitempty"`
	Versions []AppVersion `json:"versions,omitempty"`
	// Disabled: out of rotation (`gear app disable`): the executors keep
	// running and their /ecv/{executor} pages on the workers say
	// UNAVAILABLE, so load balancers stop sending them traffic.
	Disabled bool `json:"disabled,omitempty"`
	// RequestID is the submit's SubmitRequest.RequestID ("" if none).
	RequestID string `json:"request_id,omitempty"`
}

// AppVersion is one bundle version of an app.
type AppVersion struct {
	Version   int       `json:"version"`
	Bundle    Bundle    `json:"bundle"`
	Processes []Process `json:"processes"`
	Created   time.Time `json:"created"`
	// RolledBack is when the version was rolled back automatically
	// because its new instances failed, with Reason; zero otherwise.
	RolledBack time.Time `json:"rolled_back,omitzero"`
	Reason     string    `json:"reason,omitempty"`
}

// UpdateRequest is the body of POST /api/v1/apps/{id}/update: the new
// bundle and its process groups, as a submit sends them.
type UpdateRequest = SubmitRequest

// RollbackRequest is the body of POST /api/v1/apps/{id}/rollback.
type RollbackRequest struct {
	Version int `json:"version,omitempty"` // 0: the version before the current one
}

// Executor is one instance of one process group, and where it runs.
type Executor struct {
	ID         string        `json:"id"` // "<app>.<process>.<index>"
	App        string        `json:"app"`
	Process    string        `json:"process"`
	Index      int           `json:"index"`
	Worker     string        `json:"worker"` // worker id, "" while unplaced
	WorkerAddr string        `json:"worker_addr,omitempty"`
	PID        int           `json:"pid"`
	State      ExecutorState `json:"state"`
	CPUs       []int         `json:"cpus"`
	Ports      []int         `json:"ports,omitempty"`
	Restarts   int           `json:"restarts"`
	Crashes    int           `json:"crashes"` // crash-loop count: runs in a row shorter than min-uptime, kept across worker restarts
	LastExit   string        `json:"last_exit,omitempty"`
	LastError  string        `json:"last_error,omitempty"`
	LogTail    []string      `json:"log_tail,omitempty"`
	Generation int           `json:"generation"`
	// Observed is the generation the worker last reported running.
	Observed  int       `json:"observed_generation"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// Reschedules lists the times this executor was moved to another
	// worker after it gave up (its process group's reschedule policy),
	// oldest first.
	Reschedules []RescheduleAttempt `json:"reschedules,omitempty"`
	// Version is the app version (App.Versions) the executor runs, or
	// is moved to.
	Version int `json:"version,omitempty"`
	// Replacement is this executor's copy being started on another worker
	// while its own worker drains: it takes the executor's place once it is
	// ready, and the old one is stopped then (nil when none).
	Replacement *Executor `json:"replacement,omitempty"`
	// RescheduleDue is set while the executor is FAILED on its worker
	// and its reschedule policy has an attempt left: the leader moves it
	// to another worker, and its app is not FAILED meanwhile.
	RescheduleDue bool `json:"reschedule_due,omitempty"`
	// Health is passing, failing or unknown (no check, in its start grace,
	// or not checked yet), as the worker last reported.
	Health HealthStatus `json:"health,omitempty"`
}

// RescheduleAttempt is one move of a failed executor to another worker.
type RescheduleAttempt struct {
	Time   time.Time `json:"time"`   // when the leader decided it
	From   string    `json:"from"`   // the worker it failed on
	Reason string    `json:"reason"` // why it failed there
	// NotBefore is when it may start again: Time plus the policy's delay.
	NotBefore time.Time `json:"not_before"`
}

// Worker is a worker as the masters know it.
type Worker struct {
	ID       string    `json:"id"`
	Addr     string    `json:"addr"` // host:port of the worker's own HTTP API (logs)
	CPUs     []int     `json:"cpus"` // cores it may hand out
	Alive    bool      `json:"alive"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	BootID   string    `json:"boot_id"`
	// Memory is the memory (bytes) the worker hands out to executors
	// with a memory limit; 0: not counted.
	Memory int64 `json:"memory,omitempty"`
	// Draining is set by `gear workers drain`: nothing new is placed on
	// the worker, its executors move elsewhere, and what remains at
	// DrainDeadline is stopped. `gear workers eligible` clears it.
	Draining      bool      `json:"draining,omitempty"`
	DrainDeadline time.Time `json:"drain_deadline,omitzero"`
	// Executors, FreeCPUs and Gossip are filled in by the API, not
	// replicated.
	Executors []string `json:"executors"`
	FreeCPUs  []int    `json:"free_cpus"`
	// Gossip is the worker's state in the gossip pool as the answering
	// master sees it (alive | suspect | dead | left; empty if unknown),
	// since GossipSince. Shown, never acted on alone: Alive (heartbeats
	// within the failover timeout) decides rescheduling.
	Gossip      string    `json:"gossip,omitempty"`
	GossipSince time.Time `json:"gossip_since,omitzero"`
}

// Master is one configured master, as seen by the master answering.
type Master struct {
	Addr        string    `json:"addr"`
	State       string    `json:"state"` // leader | follower | candidate | unreachable
	Term        uint64    `json:"term"`
	LastContact time.Time `json:"last_contact,omitzero"`
	Quorum      bool      `json:"quorum"`
	Leader      string    `json:"leader"`
	CommitIndex uint64    `json:"commit_index,omitempty"`
	Error       string    `json:"error,omitempty"`
	LastIndex   uint64    `json:"last_index,omitempty"`
	// CommitStalledSince is set while this master's commit index stands
	// still behind its last log index for a quarter of the failover
	// timeout: writes hang although a leader is elected.
	CommitStalledSince time.Time `json:"commit_stalled_since,omitzero"`
	// Gossip is the master's state in the gossip pool as the answering
	// master sees it (alive | suspect | dead | left; empty if unknown),
	// since GossipSince.
	Gossip      string    `json:"gossip,omitempty"`
	GossipSince time.Time `json:"gossip_since,omitzero"`
	// Suffrage is "voter", or "nonvoter" for a master that is catching up
	// (added, not yet promoted).
	Suffrage     string `json:"suffrage"`
	AppliedIndex uint64 `json:"applied_index,omitempty"`
}

// RestoreResult is what `gear snapshot restore` loaded.
type RestoreResult struct {
	Apps    int       `json:"apps"`
	Workers int       `json:"workers"`
	Taken   time.Time `json:"taken"`
	Index   uint64    `json:"index"`
}

// MemberRequest asks to add or remove a master (gear masters add|remove).
type MemberRequest struct {
	Addr string `json:"addr"`
}

// MemberChange is the masters' configuration after an add or a remove.
type MemberChange struct {
	Addr      string   `json:"addr"`
	Suffrage  string   `json:"suffrage"` // voter | nonvoter | removed
	Voters    []string `json:"voters"`
	Nonvoters []string `json:"nonvoters"`
	Message   string   `json:"message,omitempty"`
}

// Assignment is what the leader tells a worker to run.
type Assignment struct {
	Executor   Executor          `json:"executor"`
	Process    Process           `json:"process"`
	Bundle     Bundle            `json:"bundle"`
	Args       []string          `json:"args,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	Generation int               `json:"generation"`
	// Disabled: the app is out of rotation (`gear app disable`): its
	// executors keep running, their /ecv/{executor} pages say UNAVAILABLE.
	Disabled bool `json:"disabled,omitempty"`
}

// Heartbeat is what a worker sends the leader every heartbeat interval.
type Heartbeat struct {
	Worker Worker `json:"worker"`
	// Secret proves the worker is the one that registered Worker.ID: the
	// worker creates it at its first start and keeps it in its data dir;
	// the masters replicate only its hash.
	Secret    string           `json:"secret"`
	Executors []ExecutorReport `json:"executors"`
	// ReportsBase, when set, makes Executors a delta: only the reports
	// that changed since the reports the leader acknowledged under this
	// digest (HeartbeatReply.ReportsDigest), with Removed naming the
	// executors no longer reported; the ReportsDigestHeader names the
	// digest of the whole list they make. The leader applies them onto
	// the reports it holds for ReportsBase; when it holds none (a new
	// leader, a restart) it reads no reports from the heartbeat and
	// acknowledges none, and the worker lists them all in its next.
	// Workers send deltas only to a leader that said it takes them
	// (HeartbeatReply.ReportsDelta). Should one reach an older master
	// anyway (a failover to it), that master refuses the body (400: it
	// decodes strictly and does not know these fields) instead of taking
	// the partial list for the whole, and the worker sends the list.
	ReportsBase string   `json:"reports_base,omitempty"`
	Removed     []string `json:"removed_executors,omitempty"`
}

// ExecutorReport is a worker's view of one executor it runs.
type ExecutorReport struct {
	ID         string        `json:"id"`
	PID        int           `json:"pid"`
	State      ExecutorState `json:"state"`
	CPUs       []int         `json:"cpus"`
	Restarts   int           `json:"restarts"`
	Crashes    int           `json:"crashes"` // consecutive runs shorter than min-uptime
	LastExit   string        `json:"last_exit,omitempty"`
	LastError  string        `json:"last_error,omitempty"`
	LogTail    []string      `json:"log_tail,omitempty"`
	Generation int           `json:"generation"`
	StartedAt  time.Time     `json:"started_at,omitzero"`
	// Health is the last health check verdict ("" from older workers).
	Health HealthStatus `json:"health,omitempty"`
}

// AssignmentsDigestHeader carries, on a heartbeat, the AssignmentsDigest of
// the assignments the worker holds ("-" for none yet): the leader leaves
// them out of its reply when they are unchanged. Masters that do not know
// it ignore it and always send the assignments.
const AssignmentsDigestHeader = "Gear-Assignments-Digest"

// ReportsDigestHeader carries, on a heartbeat, the digest of the worker's
// executor reports: "<digest>" when the heartbeat lists them (all of
// them, or with Heartbeat.ReportsBase set only those changed since that
// acknowledged digest), and "same:<digest>" when it leaves them out
// because the leader acknowledged that digest (HeartbeatReply.ReportsDigest).
// Masters that do not know it ignore it, and acknowledge nothing, so the
// worker always lists them.
const ReportsDigestHeader = "Gear-Reports-Digest"

// Doorbell answers a worker's waiting GET /api/v1/workers/{id}/assignments/wait:
// the leader's count of changes to that worker's assignments. When it
// differs from the count the worker last saw, under the same Epoch (the
// leader process), the worker sends a heartbeat at once for them.
type Doorbell struct {
	Epoch string `json:"epoch"`
	Rings uint64 `json:"rings"`
}

// HeartbeatReply carries the worker's desired executors and the masters the
// leader knows, so workers follow membership changes.
type HeartbeatReply struct {
	Leader      string       `json:"leader"`
	Masters     []string     `json:"masters"`
	Assignments []Assignment `json:"assignments"`
	// Gossip is the worker's state in the leader's gossip pool ("" = not
	// known there); a worker that is not alive there rejoins the pool.
	Gossip string `json:"gossip,omitempty"`
	// QuorumAgeMS is how long before answering the leader last confirmed
	// that a quorum of masters still follows it. A worker's fencing clock
	// runs from then, not from the answer: a leader cut off from the
	// other masters may answer until its lease runs out, while a new
	// leader already times the workers from its election.
	QuorumAgeMS int64 `json:"quorum_age_ms,omitempty"`
	// Draining says the worker is being drained (gear workers drain): its
	// /ecv takes it out of rotation.
	Draining bool `json:"draining,omitempty"`
	// AssignmentsDigest identifies Assignments, for a worker that sent
	// the AssignmentsDigestHeader. AssignmentsUnchanged says they are the
	// ones of the digest the worker sent, left out of this reply (steady
	// heartbeats then carry no assignments).
	AssignmentsDigest    string `json:"assignments_digest,omitempty"`
	AssignmentsUnchanged bool   `json:"assignments_unchanged,omitempty"`
	// ReportsDigest acknowledges the ReportsDigestHeader of the heartbeat:
	// the leader holds the reports of that digest, and the worker may
	// leave them out while they stay the same ("" when it does not).
	ReportsDigest string `json:"reports_digest,omitempty"`
	// ReportsDelta says the leader takes heartbeats that list only the
	// reports changed since an acknowledged digest (Heartbeat.ReportsBase).
	ReportsDelta bool `json:"reports_delta,omitempty"`
}

// DrainRequest is the body of POST /api/v1/workers/{id}/drain.
type DrainRequest struct {
	// Deadline is how long executors may take to move; what is still on
	// the worker then is stopped. 0: the master's default.
	Deadline time.Duration `json:"deadline,omitempty"`
}

// DrainResult is the answer of POST /api/v1/workers/{id}/drain and
// /eligible.
type DrainResult struct {
	ID            string    `json:"id"`
	Draining      bool      `json:"draining"`
	DrainDeadline time.Time `json:"drain_deadline,omitzero"`
	// Executors lists the executors on the worker when it was asked.
	Executors []string `json:"executors"`
}

// SubmitRequest is the body of POST /api/v1/apps.
type SubmitRequest struct {
	// RequestID makes a submit idempotent: a retry of a call whose answer
	// was lost (the leader applied it, then the connection or the
	// leadership went) carries the same id and gets the app the first
	// attempt created instead of a second one. Client.Submit sets it.
	RequestID string    `json:"request_id,omitempty"`
	Name      string    `json:"name"`
	Bundle    Bundle    `json:"bundle"`
	Processes []Process `json:"processes"`
	Args      []string  `json:"args,omitempty"`
}

// ScaleRequest is the body of POST /api/v1/apps/{id}/scale.
type ScaleRequest struct {
	Process   string `json:"process,omitempty"` // "" = the only (or every) process group
	Instances int    `json:"instances"`
}

// RemoveWorkerResult is the answer of POST /api/v1/workers/{id}/remove.
type RemoveWorkerResult struct {
	ID string `json:"id"`
	// Unplaced lists the executors the worker held; they are placed again
	// elsewhere.
	Unplaced []string `json:"unplaced"`
}

// RestartRequest is the body of POST /api/v1/apps/{id}/restart.
type RestartRequest struct {
	Env map[string]string `json:"env,omitempty"`
}

// DeriveState computes an application's state from its executors. An app
// scaled to no executors at all is RUNNING: all of its zero executors run.
func (a *App) DeriveState() AppState {
	if a.State == AppKilled {
		return AppKilled
	}
	running := 0
	for _, e := range a.Executors {
		switch e.State {
		case Failed:
			if e.RescheduleDue {
				continue // moved to another worker next: not given up yet
			}
			return AppFailed
		case Running:
			running++
		}
	}
	if running == len(a.Executors) {
		return AppRunning
	}
	return AppPending
}

// Event is one thing that happened in the cluster, as GET /api/v1/events
// and `gear events -json` stream it (one JSON object per line).
//
// Replicated events come from the raft log: every master derives the same
// events, with the same ids, from the same entry, so a client that
// resumes on another master with ?since=ID neither misses nor repeats one.
// Local events (leader changes, gossip membership) are what the answering
// master saw; they carry the index it had applied, with a sequence number
// after that entry's replicated events.
type Event struct {
	ID         string    `json:"id"`    // "INDEX.SEQ"; resume after it with ?since=ID
	Index      uint64    `json:"index"` // raft log index
	Seq        int       `json:"seq"`   // position among the events of that index
	Time       time.Time `json:"time"`  // the leader's stamp (replicated) or this master's clock (local)
	Type       string    `json:"type"`  // submit, kill, scale, restart, update, rollback, executor, worker, leader, member, gap
	Replicated bool      `json:"replicated"`
	Master     string    `json:"master,omitempty"` // the master that saw a local event
	App        string    `json:"app,omitempty"`
	Executor   string    `json:"executor,omitempty"`
	Worker     string    `json:"worker,omitempty"`
	Node       string    `json:"node,omitempty"` // gossip member name (member events)
	From       string    `json:"from,omitempty"` // previous state
	State      string    `json:"state,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message"` // one line for people
}
