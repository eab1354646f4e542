package channel

import (
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestParseEntry(t *testing.T) {
	full := map[string]any{"id": "p1", "channel": "room", "members": `["a","b\/c"]`, "data": "hi"}
	without := func(k string) map[string]any {
		m := map[string]any{}
		for kk, v := range full {
			if kk != k {
				m[kk] = v
			}
		}
		return m
	}
	tests := []struct {
		name    string
		values  map[string]any
		members []string
		wantErr bool
	}{
		{"full (cjson escapes slashes)", full, []string{"a", "b/c"}, false},
		{"no id", without("id"), nil, true},
		{"no channel", without("channel"), nil, true},
		{"no data", without("data"), nil, true},
		{"no members", without("members"), nil, true},
		{"bad members", map[string]any{"id": "p", "channel": "c", "data": "", "members": "{"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseEntry(redis.XMessage{ID: "1-0", Values: tt.values})
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseEntry error = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && (!slices.Equal(d.Members, tt.members) || d.PushID != "p1" || d.Channel != "room" || string(d.Data) != "hi" || d.EntryID != "1-0") {
				t.Fatalf("parseEntry = %+v", d)
			}
		})
	}
}

func TestRecent(t *testing.T) {
	r := newRecent(3)
	steps := []struct {
		id   string
		want bool
	}{
		{"a", true}, {"a", false}, {"b", true}, {"c", true}, {"b", false},
		{"d", true}, // evicts a
		{"a", true}, // a was forgotten; evicts b
		{"c", false}, {"b", true},
	}
	for i, s := range steps {
		if got := r.add(s.id); got != s.want {
			t.Fatalf("step %d add(%q) = %v, want %v", i, s.id, got, s.want)
		}
	}
}
