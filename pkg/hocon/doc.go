// Package hocon is gear's own parser for the subset of HOCON (Human-Optimized
// Config Object Notation) that Apache Gearpump's gear.conf uses, so that a
// Gearpump user's configuration file loads unchanged.
//
// It is for reading conf/gear.conf and the files it includes into a nested
// map[string]any, remembering where every leaf was set (file:line:col) so
// that callers can report semantic errors precisely. It is not a full HOCON
// implementation and it knows nothing about gear's keys: typed decoding,
// defaults, aliases and validation live in package config.
//
// # Supported syntax
//
//   - objects: `a { b = 1 }`, `a = { ... }`, `a : { ... }`; the root may be
//     braced or not; fields are separated by newlines or commas.
//   - paths: dotted keys `a.b.c = x` (same as nested objects); quoted segments
//     `"akka.remote" = ...` keep the dot inside the key.
//   - separators `=`, `:`, none before `{`, and `+=` (append to a list).
//   - lists `[1, 2]`, multi-line, commas optional between lines, trailing
//     comma allowed.
//   - comments `#` and `//` to the end of the line. Unlike strict HOCON, a
//     `//` inside an unquoted value does not start a comment, so
//     `rootpath = file:///mnt/nfs` works unquoted; `a = x // note` is still
//     a comment because the `//` starts a new piece after a blank.
//   - strings: quoted with JSON escapes, triple-quoted `"""raw, multi-line"""`,
//     unquoted (`info`, `file:///mnt/x`, `a-b_c`).
//   - numbers (int64, or float64 when they have a fraction/exponent or do not
//     fit), `true`/`false` (bool), `null` (nil).
//   - value concatenation on one line: `timeout = 300 s` is the string
//     "300 s"; `${a}/x` is a string; lists concatenate, objects merge.
//   - duplicate keys: objects merge, everything else: the later one wins.
//   - `include "file"`, `include file("file")`, `include required("file")`,
//     relative to the including file's directory; a missing optional include
//     is ignored; a missing required one is an error. url() and classpath()
//     are rejected with an error.
//   - substitutions `${a.b}` (a config path, falling back to the environment
//     variable named "a.b" / ${HOME} style names) and `${?VAR}` (optional:
//     when unset, the field is not set at all). `a = ${a} [x]` and `a += x`
//     refer to the previous value of a.
//
// # Booleans
//
// Only the bare words true and false become bool. on/off/yes/no stay strings
// ("on"), as the HOCON spec says; package config converts them where a key is
// boolean (and treats "off" as "never" for some durations).
//
// # Errors
//
// Syntax errors are collected (up to a limit) and returned together as an
// ErrorList; each *Error names file:line:col, the key being parsed when known,
// what was found and what would have been valid.
package hocon
