// Package bundle defines what a gear application bundle is, reads its
// manifest, and unpacks it safely.
//
// A bundle is either a .jar, run as `java -cp BUNDLE MAIN ARGS` (the main
// class comes from the submit command's -main flag or the jar's
// META-INF/MANIFEST.MF Main-Class, and must exist in the jar), or a
// .tar.gz/.tgz/.zip with a manifest gear-app.conf at its root, written in the
// same HOCON format as gear.conf:
//
//	name = "web"
//	processes {
//	  web {
//	    command   = ["./server", "-port", "${PORT}"]
//	    instances = 2
//	    cpus      = 1            # exclusive cores per instance (0 = not pinned)
//	    shared    = false
//	    restart   = "always"     # always | on-failure | never
//	    env       = { KEY = "v" }
//	    ports     = [8080]
//	    stop-timeout = 10s, pre-stop = ["./drain.sh"]
//	    max-age = 0, max-rss = 0, min-uptime = 5s, max-restarts = 10  # > 10 runs in a row under 5s: FAILED
//	    health { http = "/ecv", port = 8080, interval = 2s, timeout = 1s }
//	  }
//	}
//
// ParseManifest produces cluster.Process values, the one definition of a
// process that the CLI submits, the masters replicate and the workers run;
// cluster.ValidateProcesses is the one check the CLI and the masters apply
// to them. The health block is carried to the workers in their assignments
// but not run yet: the serving-apps work adds the checks.
//
// Inspect validates a bundle file (master side, before it is stored);
// ParseManifest parses gear-app.conf with file:line:col errors; Unpack
// extracts a bundle stream into a directory (worker side), refusing path
// traversal, links leading outside, device files and archive bombs, and
// leaving nothing behind on failure.
//
// What this package is not: it does not store bundles (jarstore does), does
// not expand ${PORT}/${BUNDLE} or start processes (the worker and pkg/procs
// do), and does not decide placement. Manifests cannot include files or read
// the master's environment.
package bundle
