package master

import "errors"

// Errors the API maps to HTTP statuses.
var (
	// ErrNoSuchApp: the application id is unknown.
	ErrNoSuchApp = errors.New("no such application")
	// ErrNoSuchWorker: the worker id is unknown.
	ErrNoSuchWorker = errors.New("no such worker")
	// ErrBadRequest: the request is malformed or asks for something impossible.
	ErrBadRequest = errors.New("bad request")
	// ErrNoLeader: no leader is known, or this master cannot reach a quorum.
	ErrNoLeader = errors.New("no leader")
	// ErrUnauthorized: a call came without the right cluster token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the caller is authenticated but may not act as who it
	// claims to be (a heartbeat under a worker id with another secret).
	ErrForbidden = errors.New("forbidden")
	// ErrConflict: the request contradicts the cluster's current state
	// (removing a worker that still heartbeats).
	ErrConflict = errors.New("conflict")
	// ErrTooLarge: a request body is over the API's limit for its route.
	ErrTooLarge = errors.New("request body too large")
)

// Errors of the master's own storage.
var (
	// ErrDiskFull: the master's data dir has no room for its raft log
	// (HTTP 507). The master resumes by itself once space is freed.
	ErrDiskFull = errors.New("disk full")
	// ErrStorage: the master's raft log failed to write for another reason;
	// the master reopens it by itself (HTTP 503).
	ErrStorage = errors.New("storage failure")
	// ErrStoreUnavailable: the jar store could not answer (unreachable,
	// an I/O error), as opposed to answering that a bundle is missing
	// (HTTP 503: the client retries).
	ErrStoreUnavailable = errors.New("jar store unavailable")
)
