package cli

import (
	"flag"
	"slices"
	"testing"
)

func TestParseFlagsAnywhereAndAfterDashes(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "")
	name := fs.String("name", "", "")
	pos, extra, err := parseFlags(fs, []string{"bundle.jar", "-json", "-name", "x", "--", "-a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if !*asJSON || *name != "x" || !slices.Equal(pos, []string{"bundle.jar"}) || !slices.Equal(extra, []string{"-a", "b"}) {
		t.Fatalf("json %v name %q pos %v extra %v", *asJSON, *name, pos, extra)
	}
}
