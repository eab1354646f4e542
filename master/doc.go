// Package master is gear's master daemon: the highly available control
// plane that operators start with `bin/master -ip node1 -port 3000` on every
// host listed in gear.cluster.masters.
//
// The masters form a raft group (github.com/hashicorp/raft, logs in
// raft-wal under the data dir) whose voters are the configured masters; the
// replicated State holds every application, its desired executors, bundle
// digests, restart counts, worker assignments and id counters, so a restart
// of every master at once loses nothing. One leader serves: it places
// executors on workers, answers their heartbeats with their assignments and
// reschedules the executors of a worker that stayed unreachable past the
// failover timeout. Any master accepts API calls and forwards them to the
// leader; a master without quorum refuses writes with an error that says
// which masters it can and cannot reach.
//
// Scheduling decisions are pure functions: schedule (schedule.go) takes the
// replicated State and a ClusterView (which workers the leader heard from,
// which are in the gossip pool) and returns the commands to replicate;
// placement.go is its policy. The leader's loop (scheduler.go) builds the
// view and applies the commands. Every command and snapshot carries a
// format version, and a master refuses newer ones rather than misapplying
// them (version.go). docs/ARCHITECTURE.md maps the files.
//
// Every log entry is at most MaxEntrySize (1 MiB): commands are encoded in
// one place (encodeCommand), which refuses larger ones; lists that grow with
// the cluster (placements, lost executors, status reports) go in batches;
// and submits and scales are bounded by gear.limits.*. A log that does not
// read back stops the master with the recovery step (walcheck.go), and a
// commit index that stands still is reported by `gear masters` (stall.go).
//
// Losing the leader: raft's timers (a quarter of the failover timeout) are
// the fallback. A follower that misses a heartbeat probes the leader's port
// (watchLeader, raft.go): a refused port means the process is gone and a
// survivor campaigns at once; a silent one (a lost or cut-off machine) is a
// verdict the follower shares with the other masters through gossip
// (verdicts.go), and a survivor campaigns when a majority agrees (the pure
// decision in detector.go). The leader keeps confirming its quorum and
// tells workers how long ago it last did (quorum.go), so that fencing holds
// after such a fast failover.
//
// Everything runs on the one port the operator typed: HTTP (API, /ecv,
// /metrics), raft and gossip streams are told apart by netmux, and gossip
// packets use UDP on the same port number.
//
// The package does not run processes (that is worker/) and never imports
// worker/; the two meet in pkg/cluster.
package master
