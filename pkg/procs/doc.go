// Package procs runs and supervises a gear worker's executor processes: OS
// processes started from a command line, pinned to CPU cores, with their
// output captured to rotated log files, a pid file for identity, a graceful
// stop (pre-stop hook, SIGTERM to the process group, timeout, SIGKILL), and a
// restart policy with exponential backoff and crash-loop detection.
//
// It is for one machine and one process at a time. It knows nothing about
// applications, bundles, masters or placement: the worker daemon decides what
// to run and on which cores, builds a Spec and a Policy, and composes one
// Supervisor per executor. Health checks beyond "the process is alive" are not
// here either. The one thing it shares with the process definition is the
// restart policy's type, cluster.RestartPolicy, so the policy is checked in
// one place.
//
// # Layers
//
// Start launches one process (Process); Adopt re-attaches to one that a
// previous incarnation of the worker started, found through its pid file. A
// Supervisor owns one logical executor: it starts the process, waits for it,
// and restarts it according to a Policy until it is stopped or gives up.
//
// The restart decision itself is made by Backoff, a deterministic value with
// no goroutines, clocks or I/O: it is told when a run ended and how long it
// lasted, and answers whether to restart and after which delay. Tests step it
// with made-up times, the way etcd's raft core is tested.
//
// # Restart policy
//
// A run that lasted less than Policy.MinUptime is a crash. After a crash the
// next start waits BackoffMin, doubling for every further consecutive crash up
// to BackoffMax, minus up to 20% jitter (jitter only shortens a delay, so the
// worst case stays computable). The jitter comes from SupervisorOptions.Rand:
// the worker gives every Supervisor its own NewRand (seeded from
// crypto/rand); tests give a fixed seed. Without a Rand there is no jitter. A run that lasted at least MinUptime resets the
// backoff and the crash count, and is restarted at once: the program was
// healthy, so waiting only lengthens the outage, and MinUptime already bounds
// the restart rate.
//
// A crash loop is counted in a row, not within a time window: more than
// MaxRestarts consecutive crashes (the first run and MaxRestarts restarts, all
// shorter than MinUptime) move the executor to FAILED, however long the
// backoff between them, so a slow crash loop gives up as surely as a fast one.
// A FAILED executor is not restarted again, and its Status carries the last
// exit status and the tail of its log. Policy.Window only sets the period of
// Status.RecentRestarts. The count is part of Status (Crashes) so that the
// worker can replicate it and hand it back through
// SupervisorOptions.InitialCrashes after a restart.
//
// A command that cannot be executed at all (no such file, permission denied,
// not a program: ENOENT, EACCES, ENOEXEC from execve, or a bare name not in
// PATH) is FAILED at once, without restarts: Start returns an *ExecError
// (ErrExec) whose message names the command and what to do, and the
// Supervisor puts it in Status.LastError and the executor's log. Other start
// failures (a busy port) count as crashes.
//
// With DefaultPolicy (100ms..5s, min uptime 1s, max-restarts 10) a program
// that exits at once is FAILED after 11 runs and at most 26.3s of backoff; a
// program that fails for 10s and then works crashes at most 8 times and is
// ridden out. backoff_test.go computes both.
//
// # Processes outlive the worker
//
// Executors are put in their own process group and are not given a parent
// death signal, so they survive a worker restart. Cancelling the context given
// to Supervisor.Run detaches: Run returns and the process keeps running with
// its pid file in place, for the next worker to Adopt. Stop stops it.
//
// For the same reason the process writes its output straight into
// LogDir/<ID>.log (O_APPEND) rather than through a pipe the worker would have
// to keep reading. Rotation is copy-then-truncate, done by whoever watches the
// process: output written between the copy and the truncate (microseconds)
// is lost.
//
// # CPU pinning
//
// Pinning applies from the program's first instruction: the starting goroutine
// locks its OS thread, sets that thread's affinity, forks (the child inherits
// the mask), then restores the thread's mask. The Go runtime creates new
// threads from a clean template thread while a goroutine holds a locked
// thread, so no other thread inherits the temporary mask.
package procs
