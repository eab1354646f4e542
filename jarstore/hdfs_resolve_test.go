package jarstore_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/colinmarc/hdfs/v2/hadoopconf"

	"github.com/gear-run/gear/jarstore"
)

func TestResolveHDFS(t *testing.T) {
	ha := hadoopconf.HadoopConf{
		"fs.defaultFS":                           "hdfs://mycluster",
		"dfs.nameservices":                       "other,mycluster",
		"dfs.ha.namenodes.mycluster":             "nn1, nn2",
		"dfs.namenode.rpc-address.mycluster.nn1": "10.0.0.1:8020",
		"dfs.namenode.rpc-address.mycluster.nn2": "nn2.example",
		"dfs.ha.namenodes.other":                 "a",
		"dfs.nameservices.broken":                "",
		"dfs.ha.namenodes.half":                  "x,y",
		"dfs.namenode.rpc-address.half.x":        "h:1",
	}
	t.Setenv("HADOOP_USER_NAME", "gearuser")
	cases := []struct {
		root    string
		conf    hadoopconf.HadoopConf
		want    []string
		ns, dir string
		user    string
		err     string
	}{
		{root: "hdfs://127.0.0.1:9000/gear/", want: []string{"127.0.0.1:9000"}, dir: "/gear", user: "gearuser"},
		{root: "hdfs://alice@nn:9000/a/b/../c", want: []string{"nn:9000"}, dir: "/a/c", user: "alice"},
		{root: "hdfs://mycluster/gear/jars/", conf: ha, want: []string{"10.0.0.1:8020", "nn2.example:8020"}, ns: "mycluster", dir: "/gear/jars", user: "gearuser"},
		{root: "hdfs://namenode/jars", conf: ha, want: []string{"namenode:8020"}, dir: "/jars", user: "gearuser"},
		{root: "hdfs://namenode/jars", want: []string{"namenode:8020"}, dir: "/jars", user: "gearuser"},
		{root: "hdfs://other/x", conf: ha, err: "has no dfs.namenode.rpc-address.other.a"},
		{root: "hdfs://half/x", conf: ha, err: "dfs.namenode.rpc-address.half.y"},
		{root: "hdfs://declared/x", conf: hadoopconf.HadoopConf{"dfs.nameservices": "declared"}, err: "has no dfs.ha.namenodes.declared"},
		{root: "hdfs:///x", err: "names no namenode"},
		{root: "file:///x", err: "is not an hdfs:// URI"},
	}
	for _, c := range cases {
		got, err := jarstore.ResolveHDFS(c.root, c.conf, "/etc/hadoop")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ResolveHDFS(%q) = %+v, %v; want error containing %q", c.root, got, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ResolveHDFS(%q): %v", c.root, err)
			continue
		}
		if !slices.Equal(got.Namenodes, c.want) || got.Nameservice != c.ns || got.Dir != c.dir || got.User != c.user {
			t.Errorf("ResolveHDFS(%q) = %+v, want namenodes %v ns %q dir %q user %q", c.root, got, c.want, c.ns, c.dir, c.user)
		}
	}
}

// TestOpenHDFSUnreachable checks the error a master prints when no namenode
// answers: it names the addresses and, for a host without a port, says that
// it was not found as a nameservice. 127.0.0.1:1 refuses connections.
func TestOpenHDFSUnreachable(t *testing.T) {
	dir := t.TempDir()
	conf := `<?xml version="1.0"?><configuration>
<property><name>dfs.nameservices</name><value>mycluster</value></property>
<property><name>dfs.ha.namenodes.mycluster</name><value>nn1,nn2</value></property>
<property><name>dfs.namenode.rpc-address.mycluster.nn1</name><value>127.0.0.1:1</value></property>
<property><name>dfs.namenode.rpc-address.mycluster.nn2</name><value>127.0.0.2:1</value></property>
</configuration>`
	if err := os.WriteFile(filepath.Join(dir, "hdfs-site.xml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HADOOP_CONF_DIR", dir)
	_, err := jarstore.Open(context.Background(), "hdfs://mycluster/gear/", "", nil)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1,127.0.0.2:1") {
		t.Fatalf("Open(unreachable HA) = %v, want an error naming both namenodes", err)
	}
	_, err = jarstore.Open(context.Background(), "hdfs://127.0.0.1:1/gear/", "", nil)
	if err == nil || !strings.Contains(err.Error(), "check the namenodes are up") {
		t.Fatalf("Open(unreachable) = %v", err)
	}
}
