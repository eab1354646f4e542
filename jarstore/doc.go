// Package jarstore keeps application bundles ("jars") for the gear masters in a
// store that outlives any single master.
//
// Two layers live here:
//
//   - Store is a small, flat, name -> bytes interface with one backend per URI
//     scheme: a local directory (the master's data dir; not highly available),
//     file:// (a directory on a shared mount such as NFS), hdfs:// (a single
//     namenode host:port or an HA nameservice resolved from HADOOP_CONF_DIR) and
//     mem:// (in memory, for unit tests). Every backend writes atomically: a Put
//     streams into a temporary object and renames it into place only when the
//     whole stream arrived, so a reader never sees half an object and a failed
//     Put leaves nothing visible.
//   - Blobs adds content addressing on top of any Store: objects are named by
//     the SHA-256 of their content ("sha256:<hex>" digests), uploads are hashed
//     while they stream (memory stays bounded whatever the size), every read
//     is verified against the digest, and GC removes blobs that no application
//     references any more.
//
// What this package is not: it does not serve bundles over the network (the
// master's HTTP API does that), does not know what a bundle contains
// (pkg/bundle does), and does not decide which digests are referenced (the
// replicated application state does; GC takes that set as an argument).
//
// Every backend must pass the conformance suite in jarstore/storetest.
//
// Errors are reported with the sentinels below wrapped with %w and a message
// saying what to do; test them with errors.Is.
package jarstore
