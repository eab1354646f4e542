// Package worker is gear's worker daemon (`bin/worker`): it joins the
// gossip pool, heartbeats the leader (through any master) with the state of
// every executor it runs, and runs what the leader assigns it.
//
// Executors are OS processes supervised by pkg/procs: pinned to the cores
// the leader gave them before their first instruction, restarted by their
// restart policy, stopped gracefully (pre-stop hook, SIGTERM, SIGKILL after
// a timeout). A worker that restarts adopts its still-running executors from
// their pid files, so a worker restart or a master failover restarts no
// executor. A worker cut off from every master for longer than
// gear.worker.stop-after-disconnect (default 3/4 of the failover timeout,
// i.e. before the masters reschedule its executors elsewhere) stops its
// executors, so an application never runs twice.
//
// Bundles are fetched by digest from any master, verified against the
// digest and cached in the data dir.
//
// The package never imports master/; the two meet in pkg/cluster.
package worker
