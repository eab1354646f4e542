// The cluster commands: masters (list, add, remove, snapshots), workers
// (list, remove, drain), the jar store, and TLS certificates.

package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gear-run/gear/pkg/cluster"
	"github.com/gear-run/gear/pkg/tlsconf"
)

func listMasters(ctx context.Context, cl *cluster.Client, _ *Call) ([]cluster.Master, error) {
	return cl.MasterList(ctx)
}

func listWorkers(ctx context.Context, cl *cluster.Client, _ *Call) ([]cluster.Worker, error) {
	return cl.Workers(ctx)
}

// snapshotSave writes the leader's state to a temporary file next to FILE
// and renames it into place once complete.
func snapshotSave(ctx context.Context, c *Call) error {
	cl, err := c.Client()
	if err != nil {
		return err
	}
	path := c.Args[0]
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := cl.SaveSnapshot(ctx, tmp); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	b, err := os.ReadFile(tmp.Name())
	if err != nil {
		return err
	}
	var head struct {
		Index uint64    `json:"index"`
		Taken time.Time `json:"taken"`
		State struct {
			Apps    map[string]json.RawMessage `json:"apps"`
			Workers map[string]json.RawMessage `json:"workers"`
		} `json:"state"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return fmt.Errorf("the masters' answer is not a snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "saved %d application(s) and %d worker(s) (index %d) to %s\n", len(head.State.Apps), len(head.State.Workers), head.Index, path)
	return nil
}

// memberTable prints the group after a masters add or remove.
func memberTable(w io.Writer, r cluster.MemberChange) {
	switch r.Suffrage {
	case "removed":
		fmt.Fprintf(w, "removed master %s\n", r.Addr)
	case "voter":
		fmt.Fprintf(w, "master %s is a voter\n", r.Addr)
	default:
		fmt.Fprintf(w, "master %s added as a non-voter\n", r.Addr)
	}
	if r.Message != "" {
		fmt.Fprintln(w, r.Message)
	}
	fmt.Fprintf(w, "voters: %s\n", strings.Join(r.Voters, ", "))
	if len(r.Nonvoters) > 0 {
		fmt.Fprintf(w, "non-voters (catching up): %s\n", strings.Join(r.Nonvoters, ", "))
	}
}

func mastersTable(w io.Writer, ms []cluster.Master) {
	fmt.Fprintln(w, "MASTER\tSTATE\tTERM\tLEADER\tLAST CONTACT\tQUORUM\tCOMMIT\tGOSSIP")
	for _, m := range ms {
		lc := "-"
		if !m.LastContact.IsZero() {
			lc = time.Since(m.LastContact).Round(time.Millisecond).String() + " ago"
		}
		commit := "-"
		switch {
		case !m.CommitStalledSince.IsZero():
			commit = fmt.Sprintf("STALLED at %d of %d since %s (%s ago)", m.CommitIndex, m.LastIndex,
				m.CommitStalledSince.Format(time.RFC3339), time.Since(m.CommitStalledSince).Round(time.Second))
		case m.State != "unreachable":
			commit = strconv.FormatUint(m.CommitIndex, 10)
		}
		state := m.State
		if m.Suffrage == "nonvoter" {
			state += " (non-voter, catching up)"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%t\t%s\t%s\n", m.Addr, state, m.Term, m.Leader, lc, m.Quorum, commit, gossipState(m.Gossip, m.GossipSince))
	}
	for _, m := range ms {
		if m.Error != "" && m.State != "unreachable" { // e.g. its disk is full
			fmt.Fprintf(w, "%s: %s\n", m.Addr, m.Error)
		}
	}
}

func workersTable(w io.Writer, ws []cluster.Worker) {
	fmt.Fprintln(w, "WORKER\tADDR\tALIVE\tGOSSIP\tCPUS\tFREE\tEXECUTORS")
	for _, x := range ws {
		id := x.ID
		if x.Draining {
			id += " (draining)"
		}
		fmt.Fprintf(w, "%s\t%s\t%t\t%s\t%s\t%s\t%d\n", id, x.Addr, x.Alive, gossipState(x.Gossip, x.GossipSince), cluster.FormatInts(x.CPUs), cluster.FormatInts(x.FreeCPUs), len(x.Executors))
	}
}

// gossipState shows a member's gossip state and how long it has held it.
func gossipState(state string, since time.Time) string {
	if state == "" {
		return "-"
	}
	if since.IsZero() {
		return state
	}
	return fmt.Sprintf("%s %s", state, time.Since(since).Round(time.Second))
}

func workersRemove(fs *flag.FlagSet) Action {
	force := fs.Bool("force", false, "remove it even if it heartbeated within the failover timeout (its executors may then run twice)")
	return show(func(ctx context.Context, cl *cluster.Client, c *Call) (cluster.RemoveWorkerResult, error) {
		return cl.RemoveWorker(ctx, c.Args[0], *force)
	}, func(w io.Writer, res cluster.RemoveWorkerResult) {
		fmt.Fprintf(w, "removed worker %s; %d executor(s) are placed elsewhere\n", res.ID, len(res.Unplaced))
		for _, e := range res.Unplaced {
			fmt.Fprintln(w, "  "+e)
		}
	})
}

func workersDrain(fs *flag.FlagSet) Action {
	deadline := fs.Duration("deadline", 5*time.Minute, "how long executors may take to move; what remains then is stopped")
	return show(func(ctx context.Context, cl *cluster.Client, c *Call) (cluster.DrainResult, error) {
		return cl.DrainWorker(ctx, c.Args[0], *deadline)
	}, func(w io.Writer, res cluster.DrainResult) {
		fmt.Fprintf(w, "worker %s draining until %s: %d executor(s) move elsewhere\n", res.ID, res.DrainDeadline.Local().Format(time.DateTime), len(res.Executors))
		for _, e := range res.Executors {
			fmt.Fprintln(w, "  "+e)
		}
	})
}

type storedBundle struct {
	Digest  string    `json:"digest"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mod_time"`
	Apps    []string  `json:"apps"`
}

func jarstoreList(ctx context.Context, cl *cluster.Client, _ *Call) ([]storedBundle, error) {
	var out []storedBundle
	err := cl.Do(ctx, cluster.Request{Method: "GET", Path: "/api/v1/bundles"}, &out)
	return out, err
}

func jarstoreTable(w io.Writer, bs []storedBundle) {
	fmt.Fprintln(w, "DIGEST\tSIZE\tSTORED\tAPPS")
	for _, o := range bs {
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", o.Digest, o.Size, o.ModTime.Local().Format(time.DateTime), strings.Join(o.Apps, ","))
	}
}

type gcResult struct {
	Deleted      []string `json:"deleted"`
	TempsDeleted []struct {
		Name string `json:"name"`
		Size int64  `json:"size"`
	} `json:"temps_deleted"`
}

func jarstoreGC(fs *flag.FlagSet) Action {
	grace := fs.String("grace", "", "delete unreferenced bundles, and temporary files of interrupted uploads, older than this `duration` (default: gear.jarstore.gc-grace)")
	return show(func(ctx context.Context, cl *cluster.Client, _ *Call) (gcResult, error) {
		q := map[string][]string{}
		if *grace != "" {
			q["grace"] = []string{*grace}
		}
		var out gcResult
		err := cl.Do(ctx, cluster.Request{Method: "POST", Path: "/api/v1/jarstore/gc", Query: q}, &out)
		return out, err
	}, func(w io.Writer, r gcResult) {
		fmt.Fprintf(w, "deleted %d unreferenced bundle(s)\n", len(r.Deleted))
		for _, d := range r.Deleted {
			fmt.Fprintln(w, "  "+d)
		}
		if n := len(r.TempsDeleted); n > 0 {
			var size int64
			for _, t := range r.TempsDeleted {
				size += t.Size
			}
			fmt.Fprintf(w, "deleted %d temporary file(s) of interrupted uploads (%d bytes)\n", n, size)
		}
	})
}

func tlsGen(fs *flag.FlagSet) Action {
	dir := fs.String("dir", "tls", "write the files into this `dir`")
	days := fs.Int("days", 825, "certificates are valid for `N` days")
	return func(ctx context.Context, c *Call) error {
		if len(c.Args) == 0 {
			return Usagef("name at least one node: NODE[,NAME...], e.g. node1,10.0.0.1")
		}
		if *days < 1 {
			return Usagef("-days %d: want at least 1", *days)
		}
		validity := time.Duration(*days) * 24 * time.Hour
		type node struct {
			name string
			sans []string
		}
		var nodes []node
		for _, a := range c.Args {
			names := splitList(a)
			if len(names) == 0 || names[0] == "ca" || strings.ContainsAny(names[0], "/\\") || strings.HasPrefix(names[0], ".") {
				return Usagef("%q: want NODE[,NAME...] where NODE is a host name used for the file names (not \"ca\", no /)", a)
			}
			nodes = append(nodes, node{names[0], names})
		}
		ca, created, err := tlsconf.OpenOrCreateCA(*dir, "ca", validity)
		if err != nil {
			return err
		}
		verb := "reused"
		if created {
			verb = "created"
		}
		fmt.Fprintf(c.Stdout, "%s CA %s (key %s: keep it off the nodes)\n", verb, ca.File, ca.KeyFile)
		for _, n := range nodes {
			p, err := ca.Issue(*dir, n.name, n.sans, validity)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.Stdout, "%s: %s %s (names %s)\n", n.name, p.Cert, p.Key, strings.Join(n.sans, ", "))
		}
		fmt.Fprintf(c.Stdout, "\non each node, in gear.conf (with that node's files):\n  gear.tls { cert = %q, key = %q, ca = %q }\nfor the CLI: gear -ca %s ... or GEAR_CA=%s\n",
			filepath.Join(*dir, nodes[0].name+".pem"), filepath.Join(*dir, nodes[0].name+"-key.pem"), ca.File, ca.File, ca.File)
		return nil
	}
}
