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
