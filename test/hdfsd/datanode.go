package hdfsd

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/gear-run/gear/test/hdfsd/internal/wire"
	"google.golang.org/protobuf/proto"
)

// Data transfer protocol constants (DataTransferProtocol.java, datatransfer.proto).
const (
	dataTransferVersion = 28
	opWriteBlock        = 80
	opReadBlock         = 81
	opBlockChecksum     = 85

	statusSuccess       = 0
	statusError         = 1
	statusErrorChecksum = 2
	statusErrorInvalid  = 3
	statusUnsupported   = 7

	checksumNull   = 0
	checksumCRC32  = 1
	checksumCRC32C = 2

	stageSetupAppend = 0
	stageSetupCreate = 6

	readPacketSize = 64 << 10
	maxPacketSize  = 16 << 20
	// idleTimeout bounds how long a datanode connection may sit silent, so a
	// vanished client cannot pin a handler goroutine forever.
	idleTimeout = 2 * time.Minute
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crcTable(typ int32) (*crc32.Table, error) {
	switch typ {
	case checksumCRC32:
		return crc32.IEEETable, nil
	case checksumCRC32C:
		return castagnoli, nil
	case checksumNull:
		return nil, nil
	}
	return nil, fmt.Errorf("unsupported checksum type %d", typ)
}

// datanode serves READ_BLOCK, WRITE_BLOCK and BLOCK_CHECKSUM.
type datanode struct {
	srv              *tcpServer
	log              *slog.Logger
	store            *blockStore
	poolID           string
	uuid             string
	bytesPerChecksum int
	readChecksumType int32
	corrupt          atomic.Bool
}

func (dn *datanode) info() *wire.DatanodeInfo {
	return &wire.DatanodeInfo{
		Id: &wire.DatanodeID{
			IpAddr:       proto.String("127.0.0.1"),
			HostName:     proto.String("localhost"),
			DatanodeUuid: proto.String(dn.uuid),
			XferPort:     proto.Uint32(uint32(dn.srv.port())),
			InfoPort:     proto.Uint32(0),
			IpcPort:      proto.Uint32(0),
		},
		Capacity:   proto.Uint64(1 << 40),
		Remaining:  proto.Uint64(1 << 40),
		Location:   proto.String("/default-rack"),
		AdminState: proto.Int32(0),
	}
}

func (dn *datanode) handle(ctx context.Context, conn net.Conn) {
	conn.SetDeadline(time.Now().Add(idleTimeout))
	r := bufio.NewReader(conn)
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if !errors.Is(err, io.EOF) {
			dn.log.Warn("datanode: reading op header", "err", err)
		}
		return
	}
	version := binary.BigEndian.Uint16(hdr[:2])
	if version != dataTransferVersion {
		dn.log.Error("datanode: unsupported data transfer version", "version", version, "want", dataTransferVersion)
		dn.respond(conn, &wire.BlockOpResponse{Status: proto.Int32(statusError),
			Message: proto.String(fmt.Sprintf("Version Mismatch (Expected: %d, Received: %d)", dataTransferVersion, version))})
		return
	}
	var err error
	switch hdr[2] {
	case opReadBlock:
		err = dn.readBlock(conn, r)
	case opWriteBlock:
		err = dn.writeBlock(conn, r)
	case opBlockChecksum:
		err = dn.blockChecksum(conn, r)
	default:
		dn.log.Error("datanode: unknown op", "op", hdr[2])
		dn.respond(conn, &wire.BlockOpResponse{Status: proto.Int32(statusUnsupported),
			Message: proto.String(fmt.Sprintf("hdfsd: unknown data transfer op %d", hdr[2]))})
		return
	}
	if err != nil && ctx.Err() == nil {
		dn.log.Warn("datanode: op failed", "op", hdr[2], "err", err)
	}
}

func (dn *datanode) respond(w io.Writer, resp *wire.BlockOpResponse) error {
	b, err := appendDelimited(nil, resp)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (dn *datanode) fail(w io.Writer, status int32, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	dn.respond(w, &wire.BlockOpResponse{Status: proto.Int32(status), Message: proto.String(msg)})
	return errors.New(msg)
}

// checksums computes one checksum per bpc-sized chunk of data.
func checksums(tab *crc32.Table, data []byte, bpc int) []byte {
	if tab == nil {
		return nil
	}
	out := make([]byte, 0, (len(data)+bpc-1)/bpc*4)
	for off := 0; off < len(data); off += bpc {
		end := min(off+bpc, len(data))
		out = binary.BigEndian.AppendUint32(out, crc32.Checksum(data[off:end], tab))
	}
	return out
}

func writePacket(w io.Writer, hdr *wire.PacketHeader, sums, data []byte) error {
	hb, err := proto.Marshal(hdr)
	if err != nil {
		return err
	}
	buf := make([]byte, 6, 6+len(hb)+len(sums)+len(data))
	binary.BigEndian.PutUint32(buf, uint32(4+len(sums)+len(data)))
	binary.BigEndian.PutUint16(buf[4:], uint16(len(hb)))
	buf = append(buf, hb...)
	buf = append(buf, sums...)
	buf = append(buf, data...)
	_, err = w.Write(buf)
	return err
}

func (dn *datanode) readBlock(conn net.Conn, r *bufio.Reader) error {
	var op wire.OpReadBlock
	if err := readDelimited(r, &op); err != nil {
		return fmt.Errorf("decode OpReadBlockProto: %w", err)
	}
	b := op.GetHeader().GetBaseHeader().GetBlock()
	rep := dn.store.get(b.GetBlockId())
	if rep == nil || b.GetPoolId() != dn.poolID {
		return dn.fail(conn, statusError, "Replica not found for %s:blk_%d_%d", b.GetPoolId(), b.GetBlockId(), b.GetGenerationStamp())
	}
	size, gen, _ := rep.state()
	if b.GetGenerationStamp() > gen {
		return dn.fail(conn, statusError, "Replica blk_%d has generation stamp %d older than requested %d", b.GetBlockId(), gen, b.GetGenerationStamp())
	}
	offset, length := int64(op.GetOffset()), int64(op.GetLen())
	if offset < 0 || offset > size || length < 0 {
		return dn.fail(conn, statusErrorInvalid, "Offset %d and length %d don't match block blk_%d (blockLen %d)", offset, length, b.GetBlockId(), size)
	}
	end := min(offset+length, size)

	typ, bpc := dn.readChecksumType, dn.bytesPerChecksum
	if !op.GetSendChecksums() {
		typ = checksumNull
	}
	tab, err := crcTable(typ)
	if err != nil {
		return dn.fail(conn, statusError, "%v", err)
	}
	chunkOffset := offset - offset%int64(bpc)
	err = dn.respond(conn, &wire.BlockOpResponse{
		Status: proto.Int32(statusSuccess),
		ReadOpChecksumInfo: &wire.ReadOpChecksumInfo{
			Checksum:    &wire.Checksum{Type: proto.Int32(typ), BytesPerChecksum: proto.Uint32(uint32(bpc))},
			ChunkOffset: proto.Uint64(uint64(chunkOffset)),
		},
	})
	if err != nil {
		return err
	}

	w := bufio.NewWriterSize(conn, readPacketSize+4096)
	per := readPacketSize - readPacketSize%bpc
	buf := make([]byte, per)
	var seqno int64
	for pos := chunkOffset; pos < end; pos += int64(per) {
		n := int(min(int64(per), end-pos))
		if _, err := rep.readAt(buf[:n], pos); err != nil {
			return fmt.Errorf("read replica blk_%d at %d: %w", b.GetBlockId(), pos, err)
		}
		data := buf[:n]
		sums := checksums(tab, data, bpc)
		if dn.corrupt.Load() {
			// Damage the bytes after checksumming, as a failing disk would:
			// the client must notice the mismatch.
			data = append([]byte(nil), data...)
			for i := 0; i < len(data); i += bpc {
				data[i] ^= 0x5a
			}
		}
		hdr := &wire.PacketHeader{OffsetInBlock: proto.Int64(pos), Seqno: proto.Int64(seqno),
			LastPacketInBlock: proto.Bool(false), DataLen: proto.Int32(int32(n))}
		conn.SetDeadline(time.Now().Add(idleTimeout))
		if err := writePacket(w, hdr, sums, data); err != nil {
			return err
		}
		seqno++
	}
	hdr := &wire.PacketHeader{OffsetInBlock: proto.Int64(end), Seqno: proto.Int64(seqno),
		LastPacketInBlock: proto.Bool(true), DataLen: proto.Int32(0)}
	if err := writePacket(w, hdr, nil, nil); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	// Java clients answer with ClientReadStatusProto; the Go client just
	// closes the connection. Accept either.
	var status wire.ClientReadStatus
	if err := readDelimited(r, &status); err == nil {
		dn.log.Debug("datanode: client read status", "block", b.GetBlockId(), "status", status.GetStatus())
	}
	return nil
}

func (dn *datanode) writeBlock(conn net.Conn, r *bufio.Reader) error {
	var op wire.OpWriteBlock
	if err := readDelimited(r, &op); err != nil {
		return fmt.Errorf("decode OpWriteBlockProto: %w", err)
	}
	b := op.GetHeader().GetBaseHeader().GetBlock()
	if b.GetPoolId() != dn.poolID {
		return dn.fail(conn, statusError, "unknown block pool %q (this datanode serves %q)", b.GetPoolId(), dn.poolID)
	}
	if len(op.GetTargets()) > 0 {
		return dn.fail(conn, statusError, "hdfsd: write pipelines with more than one datanode are not supported")
	}
	tab, err := crcTable(op.GetRequestedChecksum().GetType())
	if err != nil {
		return dn.fail(conn, statusError, "%v", err)
	}
	bpc := int(op.GetRequestedChecksum().GetBytesPerChecksum())
	if bpc <= 0 {
		return dn.fail(conn, statusErrorInvalid, "invalid bytesPerChecksum %d", bpc)
	}

	var rep *replica
	switch op.GetStage() {
	case stageSetupCreate:
		rep, err = dn.store.open(b.GetBlockId(), b.GetGenerationStamp())
		if err == nil {
			err = rep.truncate(0)
		}
	case stageSetupAppend:
		rep = dn.store.get(b.GetBlockId())
		if rep == nil {
			return dn.fail(conn, statusError, "Cannot append to a non-existent replica blk_%d", b.GetBlockId())
		}
		if size, _, _ := rep.state(); size < int64(b.GetNumBytes()) {
			return dn.fail(conn, statusError, "replica blk_%d has %d bytes, client expects %d", b.GetBlockId(), size, b.GetNumBytes())
		}
		rep, err = dn.store.open(b.GetBlockId(), b.GetGenerationStamp())
		if err == nil {
			err = rep.truncate(int64(b.GetNumBytes()))
		}
	default:
		return dn.fail(conn, statusUnsupported, "hdfsd: block construction stage %d is not supported", op.GetStage())
	}
	if err != nil {
		return dn.fail(conn, statusError, "%v", err)
	}
	if err := dn.respond(conn, &wire.BlockOpResponse{Status: proto.Int32(statusSuccess), FirstBadLink: proto.String("")}); err != nil {
		return err
	}

	ack := func(seqno int64, status int32) error {
		b, err := appendDelimited(nil, &wire.PipelineAck{Seqno: proto.Int64(seqno),
			Reply: []int32{status}, DownstreamAckTimeNanos: proto.Uint64(0)})
		if err != nil {
			return err
		}
		_, err = conn.Write(b)
		return err
	}
	var pre [6]byte
	for {
		conn.SetDeadline(time.Now().Add(idleTimeout))
		if _, err := io.ReadFull(r, pre[:]); err != nil {
			return fmt.Errorf("read packet of blk_%d: %w", b.GetBlockId(), err)
		}
		plen := int(binary.BigEndian.Uint32(pre[:4]))
		hlen := int(binary.BigEndian.Uint16(pre[4:]))
		if plen < 4 || plen > maxPacketSize {
			return fmt.Errorf("bad packet length %d", plen)
		}
		hb := make([]byte, hlen)
		if _, err := io.ReadFull(r, hb); err != nil {
			return err
		}
		var hdr wire.PacketHeader
		if err := proto.Unmarshal(hb, &hdr); err != nil {
			return fmt.Errorf("decode PacketHeaderProto: %w", err)
		}
		body := make([]byte, plen-4)
		if _, err := io.ReadFull(r, body); err != nil {
			return err
		}
		dataLen := int(hdr.GetDataLen())
		if dataLen < 0 || dataLen > len(body) {
			ack(hdr.GetSeqno(), statusErrorInvalid)
			return fmt.Errorf("packet data length %d exceeds packet body %d", dataLen, len(body))
		}
		sums, data := body[:len(body)-dataLen], body[len(body)-dataLen:]
		if hdr.GetSeqno() == -1 { // heartbeat
			if err := ack(-1, statusSuccess); err != nil {
				return err
			}
			continue
		}
		if tab != nil && !equalBytes(sums, checksums(tab, data, bpc)) {
			ack(hdr.GetSeqno(), statusErrorChecksum)
			return fmt.Errorf("checksum error in packet %d of blk_%d", hdr.GetSeqno(), b.GetBlockId())
		}
		if len(data) > 0 {
			if err := rep.writeAt(data, hdr.GetOffsetInBlock()); err != nil {
				ack(hdr.GetSeqno(), statusError)
				return err
			}
		}
		if hdr.GetLastPacketInBlock() {
			rep.finalize(b.GetGenerationStamp())
			size, _, _ := rep.state()
			dn.log.Debug("datanode: block finalized", "block", b.GetBlockId(), "bytes", size)
		}
		if err := ack(hdr.GetSeqno(), statusSuccess); err != nil {
			return err
		}
		if hdr.GetLastPacketInBlock() {
			return nil
		}
	}
}

func (dn *datanode) blockChecksum(conn net.Conn, r *bufio.Reader) error {
	var op wire.OpBlockChecksum
	if err := readDelimited(r, &op); err != nil {
		return fmt.Errorf("decode OpBlockChecksumProto: %w", err)
	}
	b := op.GetHeader().GetBlock()
	rep := dn.store.get(b.GetBlockId())
	if rep == nil {
		return dn.fail(conn, statusError, "Replica not found for blk_%d", b.GetBlockId())
	}
	size, _, _ := rep.state()
	if n := b.GetNumBytes(); n > 0 && int64(n) < size {
		size = int64(n)
	}
	data := make([]byte, size)
	if _, err := rep.readAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		return dn.fail(conn, statusError, "read replica: %v", err)
	}
	sums := checksums(castagnoli, data, dn.bytesPerChecksum)
	sum := md5.Sum(sums)
	return dn.respond(conn, &wire.BlockOpResponse{
		Status: proto.Int32(statusSuccess),
		ChecksumResponse: &wire.OpBlockChecksumResponse{
			BytesPerCrc:   proto.Uint32(uint32(dn.bytesPerChecksum)),
			CrcPerBlock:   proto.Uint64(uint64(len(sums) / 4)),
			BlockChecksum: sum[:],
			CrcType:       proto.Int32(checksumCRC32C),
		},
	})
}

func equalBytes(a, b []byte) bool {
	return string(a) == string(b)
}
