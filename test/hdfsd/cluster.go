package hdfsd

import (
	"fmt"
	"html"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Options configure a test cluster. The zero value is usable.
type Options struct {
	// BlockSize is the default block size getServerDefaults reports (the
	// client's Create uses it). Default 1 MiB. Keep it small in tests to get
	// multi-block files; the client may still ask for another size per file.
	BlockSize int64
	// BytesPerChecksum is the chunk size of read checksums. Default 512.
	BytesPerChecksum int
	// ReadChecksumCRC32 makes the datanode checksum reads with CRC32 instead
	// of CRC32C (HDFS' default). Writes are verified with whatever the client
	// requested.
	ReadChecksumCRC32 bool
	// ListLimit is how many entries one getListing call returns (HDFS'
	// dfs.ls.limit). Default 1000; set it low to exercise paging.
	ListLimit int
	// Dir stores blocks as files in this directory; "" keeps them in memory.
	Dir string
	// Logger receives the servers' logs; nil discards them. Unknown RPC
	// methods are logged at Error level.
	Logger *slog.Logger
	// Now is the clock for modification times; nil means time.Now.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.BlockSize <= 0 {
		o.BlockSize = 1 << 20
	}
	if o.BytesPerChecksum <= 0 {
		o.BytesPerChecksum = 512
	}
	if o.ListLimit <= 0 {
		o.ListLimit = 1000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Cluster is a running test HDFS: one datanode and one or more namenodes
// sharing one namespace, all on 127.0.0.1.
type Cluster struct {
	opts Options
	log  *slog.Logger
	ns   *namespace
	dn   *datanode
	nns  []*namenode
}

// Start runs one namenode and one datanode on 127.0.0.1 ephemeral ports.
// Connect the client to NameNodeAddr(). Close stops both.
func Start(opts Options) (*Cluster, error) {
	return start(opts, 1)
}

func start(opts Options, namenodes int) (c *Cluster, err error) {
	opts.setDefaults()
	c = &Cluster{opts: opts, log: opts.Logger, ns: newNamespace(opts.Now)}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	store, err := newBlockStore(opts.Dir)
	if err != nil {
		return nil, err
	}
	c.dn = &datanode{log: opts.Logger, store: store, poolID: c.ns.poolID,
		bytesPerChecksum: opts.BytesPerChecksum, readChecksumType: checksumCRC32C}
	if opts.ReadChecksumCRC32 {
		c.dn.readChecksumType = checksumCRC32
	}
	if c.dn.srv, err = listen("datanode", opts.Logger, c.dn.handle); err != nil {
		return nil, err
	}
	c.dn.uuid = fmt.Sprintf("hdfsd-dn-%d", c.dn.srv.port())
	for i := range namenodes {
		nn := &namenode{name: fmt.Sprintf("nn%d", i+1), log: opts.Logger, ns: c.ns, dn: c.dn, opts: &c.opts}
		if nn.srv, err = listen(nn.name, opts.Logger, nn.handle); err != nil {
			return nil, err
		}
		c.nns = append(c.nns, nn)
	}
	c.log.Info("hdfsd started", "datanode", c.dn.srv.addr(), "namenodes", c.addrs(), "blockSize", opts.BlockSize)
	return c, nil
}

func (c *Cluster) addrs() []string {
	out := make([]string, len(c.nns))
	for i, nn := range c.nns {
		out[i] = nn.srv.addr()
	}
	return out
}

// NameNodeAddr is host:port of the active namenode.
func (c *Cluster) NameNodeAddr() string {
	for _, nn := range c.nns {
		if !nn.standby.Load() {
			return nn.srv.addr()
		}
	}
	return c.nns[0].srv.addr()
}

// DataNodeAddr is host:port of the datanode's data transfer port.
func (c *Cluster) DataNodeAddr() string { return c.dn.srv.addr() }

// BlockSize is the default block size the cluster reports.
func (c *Cluster) BlockSize() int64 { return c.opts.BlockSize }

// Close stops every server and waits for their goroutines.
func (c *Cluster) Close() error {
	for _, nn := range c.nns {
		if nn.srv != nil {
			nn.srv.close()
		}
	}
	if c.dn != nil {
		if c.dn.srv != nil {
			c.dn.srv.close()
		}
		if c.dn.store != nil {
			c.dn.store.close()
		}
	}
	return nil
}

// SetSafeMode turns safe mode on or off: while on, every namespace change
// fails with SafeModeException; reads still work.
func (c *Cluster) SetSafeMode(on bool) {
	c.ns.mu.Lock()
	defer c.ns.mu.Unlock()
	c.ns.safeMode = on
}

// Deny makes every operation on p or anything below it fail with
// AccessControlException (the client reports os.ErrPermission). p is an
// absolute HDFS path; it need not exist yet.
func (c *Cluster) Deny(p string) {
	c.ns.mu.Lock()
	defer c.ns.mu.Unlock()
	c.ns.denied[path.Clean("/"+p)] = true
}

// Allow undoes Deny(p).
func (c *Cluster) Allow(p string) {
	c.ns.mu.Lock()
	defer c.ns.mu.Unlock()
	delete(c.ns.denied, path.Clean("/"+p))
}

// CorruptReads makes the datanode damage the block data it sends (after
// computing the checksums), so clients must detect the mismatch.
func (c *Cluster) CorruptReads(on bool) { c.dn.corrupt.Store(on) }

// StoredBlocks is how many block replicas the datanode holds, and their
// total size. Deleting or overwriting files releases their blocks.
func (c *Cluster) StoredBlocks() (count int, bytes int64) { return c.dn.store.stats() }

// HACluster is a Cluster with two namenodes over one namespace, of which
// exactly one is active; the standby answers every call with
// org.apache.hadoop.ipc.StandbyException, as a real standby namenode does.
type HACluster struct {
	*Cluster
}

// StartHA runs two namenodes and one datanode. Addrs()[0] starts as the
// standby and Addrs()[1] as the active one, so a client that lists the
// addresses in order must fail over on its first call.
func StartHA(opts Options) (*HACluster, error) {
	c, err := start(opts, 2)
	if err != nil {
		return nil, err
	}
	c.nns[0].standby.Store(true)
	return &HACluster{Cluster: c}, nil
}

// Addrs lists both namenodes' host:port in a fixed order.
func (h *HACluster) Addrs() []string { return h.addrs() }

// Active is the index in Addrs of the active namenode.
func (h *HACluster) Active() int {
	if h.nns[0].standby.Load() {
		return 1
	}
	return 0
}

// SetActive makes namenode i (an index in Addrs) active and the other
// standby.
func (h *HACluster) SetActive(i int) {
	h.nns[i].standby.Store(false)
	h.nns[1-i].standby.Store(true)
	h.log.Info("hdfsd: namenode failover", "active", h.nns[i].srv.addr(), "standby", h.nns[1-i].srv.addr())
}

// SwapActive makes the standby namenode active and the active one standby.
func (h *HACluster) SwapActive() { h.SetActive(1 - h.Active()) }

// WriteHadoopConf writes core-site.xml and hdfs-site.xml into dir describing
// an HA nameservice whose namenodes are addrs (host:port), so that clients
// reading HADOOP_CONF_DIR=dir resolve hdfs://nameservice/.
func WriteHadoopConf(dir, nameservice string, addrs []string) error {
	if nameservice == "" || strings.ContainsAny(nameservice, ":/ ") {
		return fmt.Errorf("hdfsd: nameservice %q must be a bare name such as \"mycluster\"", nameservice)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("hdfsd: nameservice %q needs at least one namenode address", nameservice)
	}
	prop := func(b *strings.Builder, name, value string) {
		fmt.Fprintf(b, "  <property>\n    <name>%s</name>\n    <value>%s</value>\n  </property>\n",
			html.EscapeString(name), html.EscapeString(value))
	}
	header := "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<configuration>\n"
	var core strings.Builder
	core.WriteString(header)
	prop(&core, "fs.defaultFS", "hdfs://"+nameservice)
	core.WriteString("</configuration>\n")

	var site strings.Builder
	site.WriteString(header)
	prop(&site, "dfs.nameservices", nameservice)
	ids := make([]string, len(addrs))
	for i := range addrs {
		ids[i] = fmt.Sprintf("nn%d", i+1)
	}
	prop(&site, "dfs.ha.namenodes."+nameservice, strings.Join(ids, ","))
	for i, a := range addrs {
		prop(&site, "dfs.namenode.rpc-address."+nameservice+"."+ids[i], a)
	}
	prop(&site, "dfs.client.failover.proxy.provider."+nameservice,
		"org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider")
	site.WriteString("</configuration>\n")

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("hdfsd: create HADOOP_CONF_DIR %s: %w", dir, err)
	}
	for name, body := range map[string]string{"core-site.xml": core.String(), "hdfs-site.xml": site.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return fmt.Errorf("hdfsd: write %s: %w", name, err)
		}
	}
	return nil
}
