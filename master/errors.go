package master

import "errors"

// Errors the API maps to HTTP statuses.
var (
	// ErrNoSuchApp: the application id is unknown.
	ErrNoSuchApp = errors.New("no such application")
	// ErrBadRequest: the request is malformed or asks for something impossible.
	ErrBadRequest = errors.New("bad request")
	// ErrNoLeader: no leader is known, or this master cannot reach a quorum.
	ErrNoLeader = errors.New("no leader")
	// ErrUnauthorized: a mutating call came without the right cluster token.
	ErrUnauthorized = errors.New("unauthorized")
)

// Errors of the master's own storage.
var (
	// ErrDiskFull: the master's data dir has no room for its raft log
	// (HTTP 507). The master resumes by itself once space is freed.
	ErrDiskFull = errors.New("disk full")
	// ErrStorage: the master's raft log failed to write for another reason;
	// the master reopens it by itself (HTTP 503).
	ErrStorage = errors.New("storage failure")
)
