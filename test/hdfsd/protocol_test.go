package hdfsd

import (
	"bufio"
	"encoding/binary"
	"hash/crc32"
	"net"
	"testing"
	"time"

	"github.com/gear-run/gear/test/hdfsd/internal/wire"
	"google.golang.org/protobuf/proto"
)

// These tests speak the wire protocols directly, for the paths the Go client
// never takes (bad checksums, heartbeats, version mismatches).

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	return conn, bufio.NewReader(conn)
}

func send(t *testing.T, conn net.Conn, b []byte) {
	t.Helper()
	if _, err := conn.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func delimited(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := appendDelimited(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func packet(t *testing.T, seqno, offset int64, last bool, sums, data []byte) []byte {
	t.Helper()
	hb, err := proto.Marshal(&wire.PacketHeader{OffsetInBlock: proto.Int64(offset), Seqno: proto.Int64(seqno),
		LastPacketInBlock: proto.Bool(last), DataLen: proto.Int32(int32(len(data)))})
	if err != nil {
		t.Fatal(err)
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(4+len(sums)+len(data)))
	b = binary.BigEndian.AppendUint16(b, uint16(len(hb)))
	b = append(b, hb...)
	b = append(b, sums...)
	return append(b, data...)
}

func TestDatanodeWriteProtocol(t *testing.T) {
	c := startCluster(t, Options{})
	block := &wire.ExtendedBlock{PoolId: proto.String(c.ns.poolID), BlockId: proto.Uint64(77),
		GenerationStamp: proto.Uint64(5), NumBytes: proto.Uint64(0)}
	writeOp := func(t *testing.T) (net.Conn, *bufio.Reader) {
		t.Helper()
		conn, r := dial(t, c.DataNodeAddr())
		req := append([]byte{0, dataTransferVersion, opWriteBlock}, delimited(t, &wire.OpWriteBlock{
			Header: &wire.ClientOperationHeader{BaseHeader: &wire.BaseHeader{Block: block}, ClientName: proto.String("raw")},
			Stage:  proto.Int32(stageSetupCreate), PipelineSize: proto.Uint32(0),
			MinBytesRcvd: proto.Uint64(0), MaxBytesRcvd: proto.Uint64(0), LatestGenerationStamp: proto.Uint64(5),
			RequestedChecksum: &wire.Checksum{Type: proto.Int32(checksumCRC32C), BytesPerChecksum: proto.Uint32(512)},
		})...)
		send(t, conn, req)
		var resp wire.BlockOpResponse
		if err := readDelimited(r, &resp); err != nil || resp.GetStatus() != statusSuccess {
			t.Fatalf("WRITE_BLOCK response %v, %v; want SUCCESS", &resp, err)
		}
		return conn, r
	}
	readAck := func(t *testing.T, r *bufio.Reader) *wire.PipelineAck {
		t.Helper()
		var ack wire.PipelineAck
		if err := readDelimited(r, &ack); err != nil {
			t.Fatalf("read ack: %v", err)
		}
		return &ack
	}
	data := []byte("hello, datanode")
	good := binary.BigEndian.AppendUint32(nil, crc32.Checksum(data, castagnoli))

	t.Run("heartbeat, data, last packet", func(t *testing.T) {
		conn, r := writeOp(t)
		send(t, conn, packet(t, -1, 0, false, nil, nil))
		if ack := readAck(t, r); ack.GetSeqno() != -1 || ack.GetReply()[0] != statusSuccess {
			t.Fatalf("heartbeat ack = %v", ack)
		}
		send(t, conn, packet(t, 1, 0, false, good, data))
		if ack := readAck(t, r); ack.GetSeqno() != 1 || ack.GetReply()[0] != statusSuccess {
			t.Fatalf("data ack = %v", ack)
		}
		send(t, conn, packet(t, 2, int64(len(data)), true, nil, nil))
		if ack := readAck(t, r); ack.GetSeqno() != 2 || ack.GetReply()[0] != statusSuccess {
			t.Fatalf("last packet ack = %v", ack)
		}
		size, gen, finalized := c.dn.store.get(77).state()
		if size != int64(len(data)) || gen != 5 || !finalized {
			t.Fatalf("replica = %d bytes gen %d finalized %v", size, gen, finalized)
		}
	})
	t.Run("bad checksum", func(t *testing.T) {
		conn, r := writeOp(t)
		bad := append([]byte(nil), good...)
		bad[0] ^= 1
		send(t, conn, packet(t, 1, 0, false, bad, data))
		if ack := readAck(t, r); ack.GetReply()[0] != statusErrorChecksum {
			t.Fatalf("ack for a corrupt packet = %v, want ERROR_CHECKSUM", ack)
		}
	})
	t.Run("read unknown block", func(t *testing.T) {
		conn, r := dial(t, c.DataNodeAddr())
		missing := proto.Clone(block).(*wire.ExtendedBlock)
		missing.BlockId = proto.Uint64(999)
		send(t, conn, append([]byte{0, dataTransferVersion, opReadBlock}, delimited(t, &wire.OpReadBlock{
			Header: &wire.ClientOperationHeader{BaseHeader: &wire.BaseHeader{Block: missing}, ClientName: proto.String("raw")},
			Offset: proto.Uint64(0), Len: proto.Uint64(1),
		})...))
		var resp wire.BlockOpResponse
		if err := readDelimited(r, &resp); err != nil || resp.GetStatus() != statusError {
			t.Fatalf("READ_BLOCK of a missing block = %v, %v; want ERROR", &resp, err)
		}
	})
	t.Run("wrong version", func(t *testing.T) {
		conn, r := dial(t, c.DataNodeAddr())
		send(t, conn, []byte{0, 27, opReadBlock})
		var resp wire.BlockOpResponse
		if err := readDelimited(r, &resp); err != nil || resp.GetStatus() != statusError {
			t.Fatalf("response to version 27 = %v, %v; want ERROR", &resp, err)
		}
	})
}

func TestNamenodeRPCProtocol(t *testing.T) {
	c := startCluster(t, Options{})
	readResponse := func(t *testing.T, r *bufio.Reader, resp proto.Message) *wire.RpcResponseHeader {
		t.Helper()
		frame, err := readFrame(r)
		if err != nil {
			t.Fatalf("read response frame: %v", err)
		}
		var h wire.RpcResponseHeader
		rest, err := takeDelimited(frame, &h)
		if err != nil {
			t.Fatalf("decode RpcResponseHeaderProto: %v", err)
		}
		if resp != nil && len(rest) > 0 {
			if _, err := takeDelimited(rest, resp); err != nil {
				t.Fatalf("decode response: %v", err)
			}
		}
		return &h
	}

	t.Run("wrong IPC version is fatal", func(t *testing.T) {
		conn, r := dial(t, c.NameNodeAddr())
		send(t, conn, []byte{'h', 'r', 'p', 'c', 8, 0, 0})
		if h := readResponse(t, r, nil); h.GetStatus() != rpcStatusFatal || h.GetErrorDetail() != fatalVersionMismtch {
			t.Fatalf("response header = %v, want FATAL version mismatch", h)
		}
	})
	t.Run("call ids and client id are echoed", func(t *testing.T) {
		conn, r := dial(t, c.NameNodeAddr())
		clientID := []byte("0123456789abcdef")
		frame := func(msgs ...proto.Message) []byte {
			var payload []byte
			for _, m := range msgs {
				payload = append(payload, delimited(t, m)...)
			}
			return append(binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload...)
		}
		hs := []byte{'h', 'r', 'p', 'c', ipcVersion, 0, authNone}
		hs = append(hs, frame(&wire.RpcRequestHeader{CallId: proto.Int32(callIDConnContext), ClientId: clientID},
			&wire.IpcConnectionContext{UserInfo: &wire.UserInformation{EffectiveUser: proto.String("raw")},
				Protocol: proto.String(clientProtocol)})...)
		send(t, conn, hs)
		for _, id := range []int32{7, 8} {
			send(t, conn, frame(&wire.RpcRequestHeader{CallId: proto.Int32(id), ClientId: clientID, RpcKind: proto.Int32(2)},
				&wire.RequestHeader{MethodName: proto.String("mkdirs"), DeclaringClassProtocolName: proto.String(clientProtocol),
					ClientProtocolVersion: proto.Uint64(1)},
				&wire.MkdirsRequest{Src: proto.String("/raw/dir"), Masked: &wire.FsPermission{Perm: proto.Uint32(0o755)},
					CreateParent: proto.Bool(true)}))
			var resp wire.BoolResult
			h := readResponse(t, r, &resp)
			if h.GetCallId() != uint32(id) || string(h.GetClientId()) != string(clientID) || h.GetStatus() != rpcStatusSuccess || !resp.GetResult() {
				t.Fatalf("call %d: header %v result %v", id, h, resp.GetResult())
			}
		}
		c.ns.mu.Lock()
		n, _ := c.ns.lookup("/raw/dir")
		c.ns.mu.Unlock()
		if n == nil || n.owner != "raw" {
			t.Fatalf("mkdirs did not create /raw/dir owned by the connection's user: %+v", n)
		}
	})
}
