package hdfsd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/gear-run/gear/test/hdfsd/internal/wire"
	"google.golang.org/protobuf/proto"
)

// Hadoop IPC constants (Server.java, RpcHeader.proto).
const (
	ipcVersion          = 9
	authNone            = 0
	callIDConnContext   = -3
	callIDPing          = -4
	rpcOpCloseConn      = 2
	rpcStatusSuccess    = 0
	rpcStatusError      = 1
	rpcStatusFatal      = 2
	errApplication      = 1
	errNoSuchMethod     = 2
	errNoSuchProtocol   = 3
	fatalInvalidHeader  = 12
	fatalVersionMismtch = 14
	maxRPCFrame         = 128 << 20
	clientProtocol      = "org.apache.hadoop.hdfs.protocol.ClientProtocol"
)

// namenode serves ClientNamenodeProtocol over Hadoop RPC against a namespace
// it may share with another namenode (HA).
type namenode struct {
	name    string
	srv     *tcpServer
	log     *slog.Logger
	ns      *namespace
	dn      *datanode
	opts    *Options
	standby atomic.Bool
}

// call is one decoded request with its caller's identity.
type call struct {
	user   string
	method string
	body   []byte
}

func (nn *namenode) handle(ctx context.Context, conn net.Conn) {
	r := bufio.NewReader(conn)
	var pre [7]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return
	}
	if string(pre[:4]) != "hrpc" {
		nn.log.Error("namenode: connection without hrpc preamble", "remote", conn.RemoteAddr())
		return
	}
	if pre[4] != ipcVersion {
		nn.log.Error("namenode: unsupported IPC version", "version", pre[4], "want", ipcVersion)
		nn.fatal(conn, -1, fatalVersionMismtch, "org.apache.hadoop.ipc.RPC$VersionMismatch",
			fmt.Sprintf("Server IPC version %d cannot communicate with client version %d", ipcVersion, pre[4]))
		return
	}
	if pre[6] != authNone {
		nn.log.Error("namenode: only SIMPLE authentication (auth protocol NONE) is supported", "auth", pre[6])
		nn.fatal(conn, -1, fatalInvalidHeader, "org.apache.hadoop.security.AccessControlException",
			"hdfsd: SASL/Kerberos is not supported by this test server; use SIMPLE authentication")
		return
	}
	user := ""
	for {
		frame, err := readFrame(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				nn.log.Debug("namenode: connection ended", "err", err)
			}
			return
		}
		var rh wire.RpcRequestHeader
		rest, err := takeDelimited(frame, &rh)
		if err != nil {
			nn.fatal(conn, -1, fatalInvalidHeader, "java.io.IOException", "bad RpcRequestHeaderProto: "+err.Error())
			return
		}
		switch rh.GetCallId() {
		case callIDConnContext:
			var cc wire.IpcConnectionContext
			if _, err := takeDelimited(rest, &cc); err != nil {
				nn.log.Error("namenode: bad IpcConnectionContextProto", "err", err)
				return
			}
			user = cc.GetUserInfo().GetEffectiveUser()
			if cc.GetProtocol() != "" && cc.GetProtocol() != clientProtocol {
				nn.log.Error("namenode: unsupported protocol", "protocol", cc.GetProtocol())
			}
			continue
		case callIDPing:
			continue
		}
		if rh.GetRpcOp() == rpcOpCloseConn {
			return
		}
		var reqh wire.RequestHeader
		body, err := takeDelimited(rest, &reqh)
		if err != nil {
			nn.fatal(conn, rh.GetCallId(), fatalInvalidHeader, "java.io.IOException", "bad RequestHeaderProto: "+err.Error())
			return
		}
		c := call{user: user, method: reqh.GetMethodName(), body: body}
		var resp proto.Message
		var re *remoteError
		var detail int32
		if p := reqh.GetDeclaringClassProtocolName(); p != clientProtocol {
			nn.log.Error("namenode: call for an unsupported protocol", "protocol", p, "method", c.method)
			re, detail = rerr("org.apache.hadoop.ipc.RpcNoSuchProtocolException", "Unknown protocol: %s", p), errNoSuchProtocol
		} else {
			resp, re, detail = nn.dispatch(c)
		}
		if err := nn.reply(conn, &rh, resp, re, detail); err != nil {
			nn.log.Debug("namenode: write response", "err", err)
			return
		}
	}
}

func readFrame(r *bufio.Reader) ([]byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n > maxRPCFrame {
		return nil, fmt.Errorf("rpc frame of %d bytes is too large", n)
	}
	buf := make([]byte, n)
	_, err := io.ReadFull(r, buf)
	return buf, err
}

func (nn *namenode) reply(w io.Writer, rh *wire.RpcRequestHeader, resp proto.Message, e *remoteError, detail int32) error {
	h := &wire.RpcResponseHeader{
		CallId:              proto.Uint32(uint32(rh.GetCallId())),
		Status:              proto.Int32(rpcStatusSuccess),
		ServerIpcVersionNum: proto.Uint32(ipcVersion),
		ClientId:            rh.GetClientId(),
		RetryCount:          proto.Int32(rh.GetRetryCount()),
	}
	if e != nil {
		h.Status = proto.Int32(rpcStatusError)
		h.ExceptionClassName = proto.String(e.class)
		h.ErrorMsg = proto.String(e.msg)
		h.ErrorDetail = proto.Int32(detail)
		resp = nil
	}
	payload, err := appendDelimited(nil, h)
	if err != nil {
		return err
	}
	if resp != nil {
		if payload, err = appendDelimited(payload, resp); err != nil {
			return err
		}
	}
	frame := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(payload)), uint32(len(payload)))
	_, err = w.Write(append(frame, payload...))
	return err
}

// fatal answers a connection-level failure with a FATAL response header;
// the caller closes the connection.
func (nn *namenode) fatal(w io.Writer, callID int32, detail int32, class, msg string) {
	h := &wire.RpcResponseHeader{
		CallId: proto.Uint32(uint32(callID)), Status: proto.Int32(rpcStatusFatal),
		ServerIpcVersionNum: proto.Uint32(ipcVersion), ExceptionClassName: proto.String(class),
		ErrorMsg: proto.String(msg), ErrorDetail: proto.Int32(detail),
	}
	payload, err := appendDelimited(nil, h)
	if err != nil {
		return
	}
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	w.Write(append(frame, payload...))
}

// handler decodes a request body, runs it with the namespace locked and
// returns the response message.
type handler func(nn *namenode, c call) (proto.Message, error)

var handlers = map[string]handler{
	"getServerDefaults":      (*namenode).getServerDefaults,
	"getFileInfo":            (*namenode).getFileInfo,
	"getListing":             (*namenode).getListing,
	"mkdirs":                 (*namenode).mkdirs,
	"create":                 (*namenode).create,
	"append":                 (*namenode).append,
	"addBlock":               (*namenode).addBlock,
	"abandonBlock":           (*namenode).abandonBlock,
	"updateBlockForPipeline": (*namenode).updateBlockForPipeline,
	"complete":               (*namenode).complete,
	"fsync":                  (*namenode).fsync,
	"getBlockLocations":      (*namenode).getBlockLocations,
	"rename":                 (*namenode).rename1,
	"rename2":                (*namenode).rename2,
	"delete":                 (*namenode).delete,
	"renewLease":             (*namenode).renewLease,
	"setPermission":          (*namenode).setPermission,
	"setOwner":               (*namenode).setOwner,
	"setTimes":               (*namenode).setTimes,
	"getFsStats":             (*namenode).getFsStats,
	"getContentSummary":      (*namenode).getContentSummary,
}

func (nn *namenode) dispatch(c call) (proto.Message, *remoteError, int32) {
	if nn.standby.Load() {
		nn.log.Debug("namenode: standby refuses call", "method", c.method)
		return nil, rerr(excStandby, "Operation category %s is not supported in state standby. Visit https://s.apache.org/sbnn-error", category(c.method)), errApplication
	}
	h, ok := handlers[c.method]
	if !ok {
		nn.log.Error("namenode: unimplemented ClientProtocol method; add it to test/hdfsd if the client needs it", "method", c.method)
		return nil, rerr(excNoSuchMethod, "Unknown method %s called on %s protocol.", c.method, clientProtocol), errNoSuchMethod
	}
	resp, err := h(nn, c)
	if err != nil {
		var re *remoteError
		if !errors.As(err, &re) {
			re = rerr(excIO, "%v", err)
		}
		nn.log.Debug("namenode: call failed", "method", c.method, "exception", re.class, "msg", re.msg)
		return nil, re, errApplication
	}
	nn.log.Debug("namenode: call", "method", c.method)
	return resp, nil, 0
}

func category(method string) string {
	switch method {
	case "getFileInfo", "getListing", "getBlockLocations", "getServerDefaults", "getFsStats", "getContentSummary":
		return "READ"
	}
	return "WRITE"
}

func decode(c call, m proto.Message) error {
	// The request follows the headers as one more varint-delimited message.
	if len(c.body) == 0 {
		return nil
	}
	if _, err := takeDelimited(c.body, m); err != nil {
		return rerr(excIO, "cannot decode %s request: %v", c.method, err)
	}
	return nil
}

// src decodes and validates a path argument and checks Deny rules.
func (nn *namenode) src(user, p string) (string, error) {
	clean, err := cleanPath(p)
	if err != nil {
		return "", err
	}
	if err := nn.ns.checkAccess(user, clean); err != nil {
		return "", err
	}
	return clean, nil
}

func (nn *namenode) getServerDefaults(c call) (proto.Message, error) {
	return &wire.GetServerDefaultsResponse{ServerDefaults: &wire.FsServerDefaults{
		BlockSize:           proto.Uint64(uint64(nn.opts.BlockSize)),
		BytesPerChecksum:    proto.Uint32(uint32(nn.opts.BytesPerChecksum)),
		WritePacketSize:     proto.Uint32(64 << 10),
		Replication:         proto.Uint32(1),
		FileBufferSize:      proto.Uint32(4096),
		EncryptDataTransfer: proto.Bool(false),
		TrashInterval:       proto.Uint64(0),
		ChecksumType:        proto.Int32(checksumCRC32C),
		PolicyId:            proto.Uint32(0),
	}}, nil
}

// status renders an inode as HdfsFileStatusProto. Callers hold ns.mu.
func (nn *namenode) status(n *inode, name string) *wire.HdfsFileStatus {
	st := &wire.HdfsFileStatus{
		Path:             []byte(name),
		Permission:       &wire.FsPermission{Perm: proto.Uint32(n.perm)},
		Owner:            proto.String(n.owner),
		Group:            proto.String(n.group),
		ModificationTime: proto.Uint64(n.mtime),
		FileId:           proto.Uint64(n.id),
		StoragePolicy:    proto.Uint32(0),
		Flags:            proto.Uint32(0),
	}
	if n.dir {
		st.FileType = proto.Int32(1)
		st.Length = proto.Uint64(0)
		st.AccessTime = proto.Uint64(0)
		st.ChildrenNum = proto.Int32(int32(len(n.children)))
		st.BlockReplication = proto.Uint32(0)
		st.Blocksize = proto.Uint64(0)
	} else {
		st.FileType = proto.Int32(2)
		st.Length = proto.Uint64(n.length())
		st.AccessTime = proto.Uint64(n.atime)
		st.ChildrenNum = proto.Int32(0)
		st.BlockReplication = proto.Uint32(n.replication)
		st.Blocksize = proto.Uint64(n.blockSize)
	}
	return st
}

func (nn *namenode) locatedBlock(b *block, offset uint64) *wire.LocatedBlock {
	return &wire.LocatedBlock{
		B: &wire.ExtendedBlock{PoolId: proto.String(nn.ns.poolID), BlockId: proto.Uint64(b.id),
			GenerationStamp: proto.Uint64(b.gen), NumBytes: proto.Uint64(b.numBytes)},
		Offset:  proto.Uint64(offset),
		Locs:    []*wire.DatanodeInfo{nn.dn.info()},
		Corrupt: proto.Bool(false),
		BlockToken: &wire.Token{Identifier: []byte{}, Password: []byte{},
			Kind: proto.String(""), Service: proto.String("")},
		IsCached:     []bool{false},
		StorageTypes: []int32{1},
		StorageIds:   []string{"DS-" + nn.dn.uuid},
	}
}

func (nn *namenode) getFileInfo(c call) (proto.Message, error) {
	var req wire.PathRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	p, err := nn.src(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	n, err := nn.ns.lookup(p)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return &wire.GetFileInfoResponse{}, nil
	}
	return &wire.GetFileInfoResponse{Fs: nn.status(n, "")}, nil
}

func (nn *namenode) getListing(c call) (proto.Message, error) {
	var req wire.GetListingRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	p, err := nn.src(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	n, err := nn.ns.lookup(p)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return &wire.GetListingResponse{}, nil
	}
	if !n.dir {
		return &wire.GetListingResponse{DirList: &wire.DirectoryListing{
			PartialListing: []*wire.HdfsFileStatus{nn.status(n, "")}, RemainingEntries: proto.Uint32(0)}}, nil
	}
	after := string(req.GetStartAfter())
	var list []*wire.HdfsFileStatus
	remaining := 0
	for _, ch := range sortedChildren(n) {
		if ch.name <= after {
			continue
		}
		if len(list) >= nn.opts.ListLimit {
			remaining++
			continue
		}
		list = append(list, nn.status(ch, ch.name))
	}
	return &wire.GetListingResponse{DirList: &wire.DirectoryListing{
		PartialListing: list, RemainingEntries: proto.Uint32(uint32(remaining))}}, nil
}

func (nn *namenode) mkdirs(c call) (proto.Message, error) {
	var req wire.MkdirsRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	p, err := nn.src(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	if err := nn.ns.mkdirs(c.user, p, req.GetMasked().GetPerm(), req.GetCreateParent()); err != nil {
		return nil, err
	}
	return &wire.BoolResult{Result: proto.Bool(true)}, nil
}

func (nn *namenode) create(c call) (proto.Message, error) {
	var req wire.CreateRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	p, err := nn.src(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	perm := uint32(0o644)
	if req.GetMasked() != nil {
		perm = req.GetMasked().GetPerm()
	}
	n, dropped, err := nn.ns.create(c.user, req.GetClientName(), p, perm, req.GetCreateFlag(),
		req.GetCreateParent(), req.GetReplication(), req.GetBlockSize())
	if err != nil {
		return nil, err
	}
	nn.dn.store.remove(dropped)
	return &wire.CreateResponse{Fs: nn.status(n, "")}, nil
}

func (nn *namenode) append(c call) (proto.Message, error) {
	var req wire.AppendRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	p, err := nn.src(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	if err := nn.ns.checkWritable(p); err != nil {
		return nil, err
	}
	n, err := nn.ns.lookup(p)
	if err != nil {
		return nil, err
	}
	switch {
	case n == nil:
		return nil, rerr(excFileNotFound, "Failed to append to non-existent file %s for client 127.0.0.1", p)
	case n.dir:
		return nil, rerr(excFileNotFound, "Failed to append to non-existent file %s: it is a directory", p)
	case n.leaseHolder != "":
		return nil, rerr(excAlreadyBeingCreate, "Failed to APPEND_FILE %s for %s because this file lease is currently owned by %s", p, req.GetClientName(), n.leaseHolder)
	}
	n.leaseHolder = req.GetClientName()
	resp := &wire.AppendResponse{Stat: nn.status(n, "")}
	if k := len(n.blocks); k > 0 && n.blocks[k-1].numBytes < n.blockSize {
		last := n.blocks[k-1]
		resp.Block = nn.locatedBlock(last, n.length()-last.numBytes)
	}
	return resp, nil
}

func extBlock(b *wire.ExtendedBlock) *block {
	if b == nil {
		return nil
	}
	return &block{id: b.GetBlockId(), gen: b.GetGenerationStamp(), numBytes: b.GetNumBytes()}
}

func (nn *namenode) addBlock(c call) (proto.Message, error) {
	var req wire.AddBlockRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	p, err := nn.src(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	_, b, offset, err := nn.ns.addBlock(req.GetClientName(), p, req.GetFileId(), extBlock(req.GetPrevious()))
	if err != nil {
		return nil, err
	}
	return &wire.LocatedBlockResponse{Block: nn.locatedBlock(b, offset)}, nil
}

func (nn *namenode) abandonBlock(c call) (proto.Message, error) {
	var req wire.AbandonBlockRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	p, err := nn.src(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	b := extBlock(req.GetB())
	if b == nil {
		return nil, rerr(excIO, "abandonBlock without a block")
	}
	if err := nn.ns.abandonBlock(req.GetHolder(), p, req.GetFileId(), b); err != nil {
		return nil, err
	}
	nn.dn.store.remove([]uint64{b.id})
	return &wire.Empty{}, nil
}

func (nn *namenode) updateBlockForPipeline(c call) (proto.Message, error) {
	var req wire.UpdateBlockForPipelineRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	want := extBlock(req.GetBlock())
	if want == nil {
		return nil, rerr(excIO, "updateBlockForPipeline without a block")
	}
	// Find the open file holding the block.
	var found *inode
	var offset uint64
	var walk func(*inode)
	walk = func(n *inode) {
		if found != nil {
			return
		}
		var off uint64
		for _, b := range n.blocks {
			if b.id == want.id {
				found, offset = n, off
				return
			}
			off += b.numBytes
		}
		for _, ch := range n.children {
			walk(ch)
		}
	}
	walk(nn.ns.root)
	if found == nil {
		return nil, rerr(excIO, "BP-%s:blk_%d does not exist or is not under construction", nn.ns.poolID, want.id)
	}
	if found.leaseHolder != req.GetClientName() {
		return nil, rerr(excLeaseExpired, "No lease on %s: client %s does not hold it", found.fullPath(), req.GetClientName())
	}
	for _, b := range found.blocks {
		if b.id == want.id {
			b.numBytes = want.numBytes
			return &wire.LocatedBlockResponse{Block: nn.locatedBlock(b, offset)}, nil
		}
	}
	return nil, rerr(excIO, "block %d vanished", want.id)
}

func (nn *namenode) complete(c call) (proto.Message, error) {
	var req wire.CompleteRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	p, err := nn.src(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	if err := nn.ns.checkWritable(p); err != nil {
		return nil, err
	}
	n, err := nn.ns.openForWrite(req.GetClientName(), p, req.GetFileId())
	if err != nil {
		return nil, err
	}
	if err := commitLast(n, extBlock(req.GetLast())); err != nil {
		return nil, err
	}
	// As a real namenode, refuse to close the file until the datanode holds
	// every block at its committed length; the client retries.
	for _, b := range n.blocks {
		rep := nn.dn.store.get(b.id)
		if rep == nil {
			return &wire.BoolResult{Result: proto.Bool(false)}, nil
		}
		size, _, finalized := rep.state()
		if !finalized || uint64(size) != b.numBytes {
			nn.log.Warn("namenode: complete before block is finalized", "path", p, "block", b.id,
				"finalized", finalized, "stored", size, "committed", b.numBytes)
			return &wire.BoolResult{Result: proto.Bool(false)}, nil
		}
	}
	n.leaseHolder = ""
	n.mtime = nn.ns.millis()
	return &wire.BoolResult{Result: proto.Bool(true)}, nil
}

func (nn *namenode) fsync(c call) (proto.Message, error) {
	var req wire.FsyncRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	p, err := nn.src(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	n, err := nn.ns.openForWrite(req.GetClient(), p, req.GetFileId())
	if err != nil {
		return nil, err
	}
	if l := req.GetLastBlockLength(); l >= 0 && len(n.blocks) > 0 && req.LastBlockLength != nil {
		n.blocks[len(n.blocks)-1].numBytes = uint64(l)
	}
	return &wire.Empty{}, nil
}

func (nn *namenode) getBlockLocations(c call) (proto.Message, error) {
	var req wire.GetBlockLocationsRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	p, err := nn.src(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	n, err := nn.ns.lookup(p)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, rerr(excFileNotFound, "File does not exist: %s", p)
	}
	if n.dir {
		return nil, rerr(excFileNotFound, "Path is not a file: %s", p)
	}
	n.atime = nn.ns.millis()
	start, end := req.GetOffset(), req.GetOffset()+req.GetLength()
	lbs := &wire.LocatedBlocks{
		FileLength:          proto.Uint64(n.length()),
		UnderConstruction:   proto.Bool(n.leaseHolder != ""),
		IsLastBlockComplete: proto.Bool(n.leaseHolder == ""),
	}
	var off uint64
	for i, b := range n.blocks {
		lb := nn.locatedBlock(b, off)
		if off+b.numBytes > start && off < end || (b.numBytes == 0 && off == start) {
			lbs.Blocks = append(lbs.Blocks, lb)
		}
		if i == len(n.blocks)-1 {
			lbs.LastBlock = lb
		}
		off += b.numBytes
	}
	return &wire.GetBlockLocationsResponse{Locations: lbs}, nil
}

func (nn *namenode) renameCall(c call, v2 bool) (proto.Message, error) {
	var req wire.RenameRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	src, err := nn.src(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	dst, err := nn.src(c.user, req.GetDst())
	if err != nil {
		return nil, err
	}
	ok, dropped, err := nn.ns.rename(c.user, src, dst, v2, req.GetOverwriteDest())
	if err != nil {
		return nil, err
	}
	nn.dn.store.remove(dropped)
	if v2 {
		return &wire.Empty{}, nil
	}
	return &wire.BoolResult{Result: proto.Bool(ok)}, nil
}

func (nn *namenode) rename1(c call) (proto.Message, error) { return nn.renameCall(c, false) }
func (nn *namenode) rename2(c call) (proto.Message, error) { return nn.renameCall(c, true) }

func (nn *namenode) delete(c call) (proto.Message, error) {
	var req wire.DeleteRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	p, err := nn.src(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	ok, dropped, err := nn.ns.delete(c.user, p, req.GetRecursive())
	if err != nil {
		return nil, err
	}
	nn.dn.store.remove(dropped)
	return &wire.BoolResult{Result: proto.Bool(ok)}, nil
}

func (nn *namenode) renewLease(c call) (proto.Message, error) {
	return &wire.Empty{}, nil
}

// existing resolves a path that must exist, for the attribute setters.
func (nn *namenode) existing(user, src string) (*inode, error) {
	p, err := nn.src(user, src)
	if err != nil {
		return nil, err
	}
	if err := nn.ns.checkWritable(p); err != nil {
		return nil, err
	}
	n, err := nn.ns.lookup(p)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, rerr(excFileNotFound, "File does not exist: %s", p)
	}
	return n, nil
}

func (nn *namenode) setPermission(c call) (proto.Message, error) {
	var req wire.SetPermissionRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	n, err := nn.existing(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	n.perm = req.GetPermission().GetPerm() & 0o7777
	return &wire.Empty{}, nil
}

func (nn *namenode) setOwner(c call) (proto.Message, error) {
	var req wire.SetOwnerRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	n, err := nn.existing(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	if req.Username != nil {
		n.owner = req.GetUsername()
	}
	if req.Groupname != nil {
		n.group = req.GetGroupname()
	}
	return &wire.Empty{}, nil
}

func (nn *namenode) setTimes(c call) (proto.Message, error) {
	var req wire.SetTimesRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	n, err := nn.existing(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	// -1 (as uint64) means "leave unchanged".
	if m := req.GetMtime(); m != ^uint64(0) {
		n.mtime = m
	}
	if a := req.GetAtime(); a != ^uint64(0) {
		n.atime = a
	}
	return &wire.Empty{}, nil
}

func (nn *namenode) getFsStats(c call) (proto.Message, error) {
	_, used := nn.dn.store.stats()
	const capacity = 1 << 40
	return &wire.GetFsStatsResponse{
		Capacity: proto.Uint64(capacity), Used: proto.Uint64(uint64(used)),
		Remaining: proto.Uint64(capacity - uint64(used)), UnderReplicated: proto.Uint64(0),
		CorruptBlocks: proto.Uint64(0), MissingBlocks: proto.Uint64(0),
	}, nil
}

func (nn *namenode) getContentSummary(c call) (proto.Message, error) {
	var req wire.PathRequest
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	nn.ns.mu.Lock()
	defer nn.ns.mu.Unlock()
	p, err := nn.src(c.user, req.GetSrc())
	if err != nil {
		return nil, err
	}
	n, err := nn.ns.lookup(p)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, rerr(excFileNotFound, "File does not exist: %s", p)
	}
	var length, files, dirs uint64
	var walk func(*inode)
	walk = func(x *inode) {
		if x.dir {
			dirs++
			for _, ch := range x.children {
				walk(ch)
			}
			return
		}
		files++
		length += x.length()
	}
	walk(n)
	return &wire.GetContentSummaryResponse{Summary: &wire.ContentSummary{
		Length: proto.Uint64(length), FileCount: proto.Uint64(files), DirectoryCount: proto.Uint64(dirs),
		Quota: proto.Uint64(^uint64(0)), SpaceConsumed: proto.Uint64(length), SpaceQuota: proto.Uint64(^uint64(0)),
	}}, nil
}
