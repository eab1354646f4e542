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
