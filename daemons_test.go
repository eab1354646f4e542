package main

import (
	"slices"
	"testing"

	"github.com/gear-run/gear/pkg/config"
)

func TestMasterPort(t *testing.T) {
	cfg := config.Default()
	cfg.Hostname = "node2"
	cfg.Masters = []string{"node1:3000", "node2:3100"}
	if p := masterPort(&cfg, 0); p != 3100 {
		t.Fatalf("port from this host's entry: %d", p)
	}
	if p := masterPort(&cfg, 4000); p != 4000 {
		t.Fatalf("-port wins: %d", p)
	}
	cfg.Hostname = "elsewhere"
	if p := masterPort(&cfg, 0); p != 3000 {
		t.Fatalf("default: %d", p)
	}
}

func TestCoreShare(t *testing.T) {
	cores := []int{0, 1, 2, 3}
	a, b := coreShare(cores, 0, 2), coreShare(cores, 1, 2)
	if !slices.Equal(a, []int{0, 2}) || !slices.Equal(b, []int{1, 3}) {
		t.Fatalf("split: %v %v", a, b)
	}
	if got := coreShare([]int{0}, 1, 2); !slices.Equal(got, []int{0}) {
		t.Fatalf("fewer cores than workers: %v", got)
	}
}

func TestChannelEnv(t *testing.T) {
	cfg := config.Default()
	if env := channelEnv(&cfg); env != nil {
		t.Fatalf("no channel configured, got %v", env)
	}
	cfg.Channel.Redis = "10.0.0.1:6379"
	cfg.Channel.ClusterAddrs = []string{"a:1", "b:2"}
	env := channelEnv(&cfg)
	if !slices.Contains(env, "GEAR_CHANNEL_REDIS=10.0.0.1:6379") || !slices.Contains(env, "GEAR_CHANNEL_CLUSTER_ADDRS=a:1,b:2") {
		t.Fatalf("env %v", env)
	}
}
