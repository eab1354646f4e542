package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gear-run/gear/pkg/config"
)

// The wait for a leader is printed once with its reason and bound, then
// once a second.
func TestWaitPrinter(t *testing.T) {
	var b bytes.Buffer
	p := waitPrinter(&b)
	for _, ms := range []int{50, 150, 400, 1100, 1900, 2050} {
		p(time.Duration(ms)*time.Millisecond, 10*time.Second, "a:1 (503: no leader)")
	}
	want := "gear: no leader yet (a:1 (503: no leader)); waiting at most 10s\n" +
		"gear: waiting for a leader… 1 s\n" +
		"gear: waiting for a leader… 2 s\n"
	if b.String() != want {
		t.Fatalf("printed\n%s\nwant\n%s", b.String(), want)
	}
}

// The no-master error says where the master list came from.
func TestMastersSource(t *testing.T) {
	cases := []struct {
		rep  *config.Report
		want string
	}{
		{&config.Report{Origin: map[string]string{"gear.cluster.masters": "env GEAR_MASTERS"}}, "env GEAR_MASTERS"},
		{&config.Report{Origin: map[string]string{"gear.cluster.masters": "/etc/gear.conf:3:9"}}, "gear.cluster.masters at /etc/gear.conf:3:9"},
		{&config.Report{Sources: []string{"/etc/gear.conf"}}, "/etc/gear.conf does not set it"},
		{&config.Report{}, "no /etc/gear.conf"},
	}
	for _, tc := range cases {
		if got := mastersSource(tc.rep, "/etc/gear.conf"); !strings.Contains(got, tc.want) {
			t.Errorf("mastersSource = %q, want it to contain %q", got, tc.want)
		}
	}
}
