package bundle

import (
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
)

func TestParseManifestReschedule(t *testing.T) {
	m, err := ParseManifest([]byte(`name = a
processes {
  full { command = [x], reschedule { attempts = 5, interval = 30m, delay = 1s, delay-function = constant, max-delay = 10s } }
  partial { command = [x], reschedule { attempts = 0 } }
  none { command = [x] }
}`), "app.conf")
	if err != nil {
		t.Fatal(err)
	}
	full, _ := m.Process("full")
	if want := (cluster.Reschedule{Attempts: 5, Interval: 30 * time.Minute, Delay: time.Second, DelayFunction: "constant", MaxDelay: 10 * time.Second}); *full.Reschedule != want {
		t.Errorf("full: %+v, want %+v", *full.Reschedule, want)
	}
	partial, _ := m.Process("partial")
	want := cluster.DefaultReschedule
	want.Attempts = 0
	if *partial.Reschedule != want {
		t.Errorf("partial: %+v, want the defaults but attempts %+v", *partial.Reschedule, want)
	}
	none, _ := m.Process("none")
	if none.Reschedule != nil || none.ReschedulePolicy() != cluster.DefaultReschedule {
		t.Errorf("none: %+v", none.Reschedule)
	}
	for _, p := range m.Processes {
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
	}

	for conf, want := range map[string]string{
		"reschedule = 3":                             "processes.p.reschedule: must be an object",
		"reschedule { attempts = -1 }":               "processes.p.reschedule.attempts: must not be negative",
		"reschedule { delay-function = linear }":     `processes.p.reschedule.delay-function: must be "exponential" or "constant"`,
		"reschedule { delay = 1m, max-delay = 10s }": "processes.p.reschedule.max-delay: 10s is shorter than delay 1m0s",
		"reschedule { atempts = 1 }":                 `processes.p.reschedule.atempts: unknown key (did you mean "attempts"?)`,
		"reschedule { interval = 5 }":                "processes.p.reschedule.interval: 5 has no unit",
	} {
		_, err := ParseManifest([]byte("name = a\nprocesses.p { command = [x], "+conf+" }"), "app.conf")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", conf, err, want)
		}
	}
}

func TestParseManifestLimits(t *testing.T) {
	m, err := ParseManifest([]byte("name = a\nprocesses.p { command = [x], memory = 512MiB, max-pids = 64 }"), "app.conf")
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Processes[0]; p.Memory != 512<<20 || p.MaxPids != 64 || p.Validate() != nil {
		t.Fatalf("%+v", p)
	}
	for conf, want := range map[string]string{
		"memory = 1KiB":   "processes.p.memory: 1024 bytes is below the 4MiB minimum",
		"memory = lots":   `processes.p.memory: "lots" is not a size`,
		"max-pids = 0":    "processes.p.max-pids",
		"max-pids = many": "processes.p.max-pids: must be a whole number",
	} {
		_, err := ParseManifest([]byte("name = a\nprocesses.p { command = [x], "+conf+" }"), "app.conf")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", conf, err, want)
		}
	}
}
