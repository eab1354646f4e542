package main

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		in   []time.Duration
		want summary
	}{
		{"empty", nil, summary{}},
		{"one", []time.Duration{ms(7)}, summary{N: 1, Min: ms(7), Median: ms(7), P90: ms(7), Max: ms(7)}},
		{"even count interpolates", []time.Duration{ms(400), ms(100), ms(300), ms(200)},
			summary{N: 4, Min: ms(100), Median: ms(250), P90: ms(370), Max: ms(400)}},
		{"eleven", []time.Duration{ms(10), ms(0), ms(9), ms(1), ms(8), ms(2), ms(7), ms(3), ms(6), ms(4), ms(5)},
			summary{N: 11, Min: 0, Median: ms(5), P90: ms(9), Max: ms(10)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := summarize(tt.in); got != tt.want {
				t.Errorf("summarize(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestChecks(t *testing.T) {
	quiet := []pauseResult{{}, {}}
	tests := []struct {
		name     string
		failover []time.Duration
		misses   int
		pauses   map[time.Duration][]pauseResult
		want     []bool // pass per check, in order
	}{
		{"all pass", []time.Duration{ms(500), ms(600), ms(700)}, 0,
			map[time.Duration][]pauseResult{ms(500): quiet, time.Second: quiet, 2 * time.Second: {{TermBumps: 1}}},
			[]bool{true, true, true, true}},
		{"slow median", []time.Duration{ms(1300), ms(1300), ms(1300)}, 0, nil, []bool{false, true}},
		{"p90 only", []time.Duration{ms(500), ms(500), ms(500), ms(500), ms(2500)}, 0, nil, []bool{true, false}},
		{"a round without failover fails both", []time.Duration{ms(500)}, 1, nil, []bool{false, false}},
		{"no data fails", nil, 0, nil, []bool{false, false}},
		{"election after 1s pause", []time.Duration{ms(500)}, 0,
			map[time.Duration][]pauseResult{ms(500): quiet, time.Second: {{}, {LeaderMoved: true}}},
			[]bool{true, true, true, false}},
		{"term bump without a new leader counts", []time.Duration{ms(500)}, 0,
			map[time.Duration][]pauseResult{ms(500): {{TermBumps: 2}}},
			[]bool{true, true, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checks(tt.failover, tt.misses, tt.pauses)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d checks %+v, want %d", len(got), got, len(tt.want))
			}
			for i, c := range got {
				if c.Pass != tt.want[i] {
					t.Errorf("check %q (measured %s): pass = %v, want %v", c.What, c.Got, c.Pass, tt.want[i])
				}
			}
		})
	}
}

func TestHealthy(t *testing.T) {
	st := func(id, leader string, term uint64) memberStatus {
		return memberStatus{ID: id, Leader: leader, Term: term}
	}
	down := errors.New("connection refused")
	tests := []struct {
		name       string
		sts        [size]memberStatus
		errs       [size]error
		wantLeader int
		wantOK     bool
	}{
		{"all agree", [size]memberStatus{st("a", "b", 3), st("b", "b", 3), st("c", "b", 3)}, [size]error{}, 1, true},
		{"one down", [size]memberStatus{st("a", "b", 3), st("b", "b", 3), {}}, [size]error{2: down}, -1, false},
		{"one without leader", [size]memberStatus{st("a", "b", 3), st("b", "b", 3), st("c", "", 4)}, [size]error{}, -1, false},
		{"disagree", [size]memberStatus{st("a", "a", 3), st("b", "b", 4), st("c", "b", 4)}, [size]error{}, -1, false},
		{"leader not a member", [size]memberStatus{st("a", "x", 3), st("b", "x", 3), st("c", "x", 3)}, [size]error{}, -1, false},
		{"stale leader term", [size]memberStatus{st("a", "a", 3), st("b", "a", 4), st("c", "a", 3)}, [size]error{}, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _, ok := healthy(tt.sts, tt.errs)
			if l != tt.wantLeader || ok != tt.wantOK {
				t.Errorf("healthy = (%d, %v), want (%d, %v)", l, ok, tt.wantLeader, tt.wantOK)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, c config)
	}{
		{"defaults", nil, "", func(t *testing.T, c config) {
			t.Helper()
			if c.rounds != 20 || c.pauseRounds != 5 || len(c.pauses) != 3 || c.pauses[0] != ms(500) {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{"quick", []string{"-quick"}, "", func(t *testing.T, c config) {
			t.Helper()
			if c.rounds != 3 || c.pauseRounds != 1 || c.startups != 1 {
				t.Errorf("quick: %+v", c)
			}
		}},
		{"bad pause", []string{"-pauses", "1s,soon"}, `"soon" is not a positive duration`, nil},
		{"zero rounds", []string{"-rounds", "0"}, "-rounds must be >= 1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseFlags(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}
