package hdfsd

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

// Java exception class names the namenode reports. The client library maps
// some of them to os errors (see its error.go); the rest reach the caller as
// hdfs.Error values whose Exception() is this name.
const (
	excFileNotFound       = "java.io.FileNotFoundException"
	excFileAlreadyExists  = "org.apache.hadoop.fs.FileAlreadyExistsException"
	excAccessControl      = "org.apache.hadoop.security.AccessControlException"
	excParentNotDirectory = "org.apache.hadoop.fs.ParentNotDirectoryException"
	excSafeMode           = "org.apache.hadoop.hdfs.server.namenode.SafeModeException"
	excStandby            = "org.apache.hadoop.ipc.StandbyException"
	excNotEmptyDir        = "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException"
	excAlreadyBeingCreate = "org.apache.hadoop.hdfs.protocol.AlreadyBeingCreatedException"
	excLeaseExpired       = "org.apache.hadoop.hdfs.server.namenode.LeaseExpiredException"
	excInvalidPath        = "org.apache.hadoop.fs.InvalidPathException"
	excIllegalArgument    = "org.apache.hadoop.HadoopIllegalArgumentException"
	excIO                 = "java.io.IOException"
	excNoSuchMethod       = "org.apache.hadoop.ipc.RpcNoSuchMethodException"
)

// remoteError is an exception the namenode sends back to the client.
type remoteError struct {
	class string
	msg   string
}

func (e *remoteError) Error() string { return e.class + ": " + e.msg }

func rerr(class, format string, args ...any) *remoteError {
	return &remoteError{class: class, msg: fmt.Sprintf(format, args...)}
}

// block is the namenode's record of one block of a file.
type block struct {
	id       uint64
	gen      uint64
	numBytes uint64
}

// inode is a file or directory of the namespace.
type inode struct {
	id       uint64
	name     string
	parent   *inode
	dir      bool
	children map[string]*inode // directories only

	perm         uint32
	owner, group string
	mtime, atime uint64 // milliseconds since the epoch

	// Files only.
	blocks      []*block
	blockSize   uint64
	replication uint32
	leaseHolder string // client name while the file is open for writing
}

func (n *inode) length() uint64 {
	var l uint64
	for _, b := range n.blocks {
		l += b.numBytes
	}
	return l
}

func (n *inode) fullPath() string {
	if n.parent == nil {
		return "/"
	}
	var parts []string
	for x := n; x.parent != nil; x = x.parent {
		parts = append(parts, x.name)
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return "/" + strings.Join(parts, "/")
}

// namespace is the file tree and block map shared by every namenode of a
// cluster (an HA pair shares one, as real HA namenodes share an edit log).
// All fields are guarded by mu.
type namespace struct {
	mu       sync.Mutex
	root     *inode
	nextID   uint64 // inode ids
	nextBlk  uint64 // block ids
	gen      uint64 // generation stamps
	poolID   string
	safeMode bool
	denied   map[string]bool // cleaned absolute paths
	now      func() time.Time
}

func newNamespace(now func() time.Time) *namespace {
	ns := &namespace{
		nextID:  16386, // HDFS numbers the root 16385
		nextBlk: 1073741825,
		gen:     1001,
		poolID:  "BP-1-127.0.0.1-gear-hdfsd",
		denied:  map[string]bool{},
		now:     now,
	}
	ns.root = &inode{id: 16385, dir: true, children: map[string]*inode{}, perm: 0o755,
		owner: "hdfs", group: "supergroup", mtime: ns.millis()}
	return ns
}

func (ns *namespace) millis() uint64 { return uint64(ns.now().UnixMilli()) }

// cleanPath validates an RPC path argument: HDFS accepts only absolute paths.
func cleanPath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", rerr(excInvalidPath, "Invalid path name Path is not absolute: %s", p)
	}
	for _, c := range strings.Split(p, "/") {
		if c == "." || c == ".." || strings.Contains(c, ":") {
			return "", rerr(excInvalidPath, "Invalid path name Invalid file name: %s", p)
		}
	}
	return path.Clean(p), nil
}

func splitPath(p string) []string {
	if p == "/" {
		return nil
	}
	return strings.Split(strings.TrimPrefix(p, "/"), "/")
}

// checkAccess fails with AccessControlException when p or one of its
// ancestors was denied with Cluster.Deny. Callers hold mu.
func (ns *namespace) checkAccess(user, p string) error {
	for q := p; ; q = path.Dir(q) {
		if ns.denied[q] {
			return rerr(excAccessControl, "Permission denied: user=%s, access=ALL, inode=%q:hdfs:supergroup:d---------", user, q)
		}
		if q == "/" {
			return nil
		}
	}
}

func (ns *namespace) checkWritable(src string) error {
	if ns.safeMode {
		return rerr(excSafeMode, "Cannot modify %s. Name node is in safe mode.\nIt was turned on manually. Use \"hdfs dfsadmin -safemode leave\" to turn safe mode off.", src)
	}
	return nil
}

// lookup resolves p. It returns (nil, nil) when p does not exist and
// ParentNotDirectoryException when an ancestor of p is a file. Callers hold mu.
func (ns *namespace) lookup(p string) (*inode, error) {
	n := ns.root
	for _, c := range splitPath(p) {
		if !n.dir {
			return nil, rerr(excParentNotDirectory, "%s (is not a directory)", n.fullPath())
		}
		child, ok := n.children[c]
		if !ok {
			return nil, nil
		}
		n = child
	}
	return n, nil
}

// parentDir resolves the directory that would hold p, failing the way
// HDFS does when it is missing or a file.
func (ns *namespace) parentDir(p string) (*inode, error) {
	parent, err := ns.lookup(path.Dir(p))
	if err != nil {
		return nil, err
	}
	if parent == nil {
		return nil, rerr(excFileNotFound, "Parent directory doesn't exist: %s", path.Dir(p))
	}
	if !parent.dir {
		return nil, rerr(excParentNotDirectory, "Parent path is not a directory: %s", path.Dir(p))
	}
	return parent, nil
}

func (ns *namespace) newInode(parent *inode, name string, dir bool, perm uint32, owner string) *inode {
	n := &inode{id: ns.nextID, name: name, parent: parent, dir: dir, perm: perm & 0o7777,
		owner: owner, group: "supergroup", mtime: ns.millis()}
	n.atime = n.mtime
	ns.nextID++
	if dir {
		n.children = map[string]*inode{}
	}
	parent.children[name] = n
	parent.mtime = n.mtime
	return n
}

func (ns *namespace) mkdirs(user, p string, perm uint32, createParent bool) error {
	if err := ns.checkAccess(user, p); err != nil {
		return err
	}
	if err := ns.checkWritable(p); err != nil {
		return err
	}
	n := ns.root
	parts := splitPath(p)
	for i, c := range parts {
		if !n.dir {
			return rerr(excParentNotDirectory, "%s (is not a directory)", n.fullPath())
		}
		child, ok := n.children[c]
		if !ok {
			if i < len(parts)-1 && !createParent {
				return rerr(excFileNotFound, "Parent directory doesn't exist: %s", path.Dir(p))
			}
			child = ns.newInode(n, c, true, perm|0o300, user)
		}
		n = child
	}
	if !n.dir {
		return rerr(excFileAlreadyExists, "Path is not a directory: %s", p)
	}
	return nil
}

// create opens a new file for writing by client.
func (ns *namespace) create(user, client, p string, perm uint32, flag uint32, createParent bool, replication uint32, blockSize uint64) (*inode, []uint64, error) {
	if err := ns.checkAccess(user, p); err != nil {
		return nil, nil, err
	}
	if err := ns.checkWritable(p); err != nil {
		return nil, nil, err
	}
	if blockSize == 0 {
		return nil, nil, rerr(excIO, "Specified block size is less than configured minimum value: 0")
	}
	if p == "/" {
		return nil, nil, rerr(excFileAlreadyExists, "/ already exists as a directory")
	}
	var dropped []uint64
	existing, err := ns.lookup(p)
	if err != nil {
		return nil, nil, err
	}
	if existing != nil {
		switch {
		case existing.dir:
			return nil, nil, rerr(excFileAlreadyExists, "%s already exists as a directory", p)
		case existing.leaseHolder != "" && existing.leaseHolder != client:
			return nil, nil, rerr(excAlreadyBeingCreate, "Failed to CREATE_FILE %s for %s because this file lease is currently owned by %s", p, client, existing.leaseHolder)
		case flag&2 == 0: // no OVERWRITE
			return nil, nil, rerr(excFileAlreadyExists, "%s for client 127.0.0.1 already exists", p)
		}
		dropped = blockIDs(existing)
		delete(existing.parent.children, existing.name)
	}
	if createParent {
		if err := ns.mkdirs(user, path.Dir(p), 0o755, true); err != nil {
			return nil, nil, err
		}
	}
	parent, err := ns.parentDir(p)
	if err != nil {
		return nil, nil, err
	}
	n := ns.newInode(parent, path.Base(p), false, perm, user)
	n.blockSize = blockSize
	n.replication = replication
	n.leaseHolder = client
	return n, dropped, nil
}

// openForWrite finds the file client is writing, as addBlock, complete and
// friends need it.
func (ns *namespace) openForWrite(client, p string, fileID uint64) (*inode, error) {
	n, err := ns.lookup(p)
	if err != nil {
		return nil, err
	}
	if n == nil || n.dir || (fileID != 0 && n.id != fileID) {
		return nil, rerr(excFileNotFound, "File does not exist: %s (inode %d) Holder %s does not have any open files.", p, fileID, client)
	}
	if n.leaseHolder != client {
		return nil, rerr(excLeaseExpired, "No lease on %s (inode %d): File is not open for writing. Holder %s does not have any open files.", p, n.id, client)
	}
	return n, nil
}

// commitLast records the length the client reports for the file's last block.
func commitLast(n *inode, b *block) error {
	if b == nil || len(n.blocks) == 0 {
		return nil
	}
	last := n.blocks[len(n.blocks)-1]
	if last.id != b.id {
		return rerr(excIO, "block %d is not the last block of %s (last is %d)", b.id, n.fullPath(), last.id)
	}
	last.numBytes = b.numBytes
	return nil
}

func (ns *namespace) addBlock(client, p string, fileID uint64, previous *block) (*inode, *block, uint64, error) {
	if err := ns.checkWritable(p); err != nil {
		return nil, nil, 0, err
	}
	n, err := ns.openForWrite(client, p, fileID)
	if err != nil {
		return nil, nil, 0, err
	}
	if err := commitLast(n, previous); err != nil {
		return nil, nil, 0, err
	}
	offset := n.length()
	b := &block{id: ns.nextBlk, gen: ns.gen}
	ns.nextBlk++
	ns.gen++
	n.blocks = append(n.blocks, b)
	n.mtime = ns.millis()
	return n, b, offset, nil
}

func (ns *namespace) abandonBlock(client, p string, fileID uint64, b *block) error {
	n, err := ns.openForWrite(client, p, fileID)
	if err != nil {
		return err
	}
	if len(n.blocks) > 0 && n.blocks[len(n.blocks)-1].id == b.id {
		n.blocks = n.blocks[:len(n.blocks)-1]
	}
	return nil
}

func blockIDs(n *inode) []uint64 {
	var ids []uint64
	var walk func(*inode)
	walk = func(x *inode) {
		for _, b := range x.blocks {
			ids = append(ids, b.id)
		}
		for _, c := range x.children {
			walk(c)
		}
	}
	walk(n)
	return ids
}

func (ns *namespace) delete(user, p string, recursive bool) (bool, []uint64, error) {
	if err := ns.checkAccess(user, p); err != nil {
		return false, nil, err
	}
	if err := ns.checkWritable(p); err != nil {
		return false, nil, err
	}
	n, err := ns.lookup(p)
	if err != nil || n == nil {
		return false, nil, err
	}
	if n.parent == nil {
		return false, nil, rerr(excIO, "Cannot delete /")
	}
	if n.dir && len(n.children) > 0 && !recursive {
		return false, nil, rerr(excNotEmptyDir, "`%s is non empty': Directory is not empty", p)
	}
	delete(n.parent.children, n.name)
	n.parent.mtime = ns.millis()
	return true, blockIDs(n), nil
}

// rename moves src to dst. With v2 (rename2) failures are exceptions and
// overwrite replaces an existing file or empty directory; without it
// (rename) failures return false and an existing directory dst receives src.
func (ns *namespace) rename(user, src, dst string, v2, overwrite bool) (bool, []uint64, error) {
	for _, p := range []string{src, dst} {
		if err := ns.checkAccess(user, p); err != nil {
			return false, nil, err
		}
	}
	if err := ns.checkWritable(src); err != nil {
		return false, nil, err
	}
	fail := func(e *remoteError) (bool, []uint64, error) {
		if v2 {
			return false, nil, e
		}
		return false, nil, nil
	}
	s, err := ns.lookup(src)
	if err != nil {
		return false, nil, err
	}
	if s == nil {
		return fail(rerr(excFileNotFound, "rename source %s is not found.", src))
	}
	if s.parent == nil {
		return fail(rerr(excIO, "rename source cannot be the root"))
	}
	if src == dst {
		if v2 {
			return fail(rerr(excFileAlreadyExists, "The source %s and destination %s are the same", src, dst))
		}
		return true, nil, nil
	}
	if strings.HasPrefix(dst, src+"/") {
		return fail(rerr(excIO, "Rename destination %s is a directory or file under source %s", dst, src))
	}
	d, err := ns.lookup(dst)
	if err != nil {
		return false, nil, err
	}
	var dropped []uint64
	if d != nil {
		switch {
		case !v2 && d.dir:
			dst = path.Join(dst, s.name)
			if d.children[s.name] != nil {
				return false, nil, nil
			}
		case !v2:
			return false, nil, nil
		case !overwrite:
			return fail(rerr(excFileAlreadyExists, "rename destination %s already exists", dst))
		case d.dir != s.dir:
			return fail(rerr(excIO, "Source %s and destination %s must both be directories or files", src, dst))
		case d.dir && len(d.children) > 0:
			return fail(rerr(excIO, "rename destination directory is not empty: %s", dst))
		case d.parent == nil:
			return fail(rerr(excIO, "rename destination cannot be the root"))
		default:
			dropped = blockIDs(d)
			delete(d.parent.children, d.name)
		}
	}
	parent, err := ns.lookup(path.Dir(dst))
	if err != nil {
		return false, nil, err
	}
	if parent == nil {
		return fail(rerr(excFileNotFound, "rename destination parent %s not found.", path.Dir(dst)))
	}
	if !parent.dir {
		return fail(rerr(excParentNotDirectory, "rename destination parent %s is a file.", path.Dir(dst)))
	}
	delete(s.parent.children, s.name)
	s.parent.mtime = ns.millis()
	s.name = path.Base(dst)
	s.parent = parent
	parent.children[s.name] = s
	parent.mtime = ns.millis()
	return true, dropped, nil
}

// sortedChildren lists a directory in HDFS order (byte-wise by name).
func sortedChildren(n *inode) []*inode {
	out := make([]*inode, 0, len(n.children))
	for _, c := range n.children {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
