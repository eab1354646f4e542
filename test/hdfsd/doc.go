// Package hdfsd is a test-only HDFS: an in-process namenode and datanode that
// speak the real wire protocols, so gear's hdfs:// jar store can be tested
// with the real github.com/colinmarc/hdfs/v2 client where no Hadoop can be
// installed.
//
// What it speaks:
//
//   - Hadoop RPC (connection preamble "hrpc", IPC version 9, auth protocol
//     NONE, i.e. SIMPLE authentication without SASL; IpcConnectionContextProto;
//     length-prefixed frames of varint-delimited RpcRequestHeaderProto,
//     RequestHeaderProto and the request; RpcResponseHeaderProto with
//     exception class and message on failure) with the ClientNamenodeProtocol
//     calls the Go client makes: getServerDefaults, getFileInfo, getListing,
//     mkdirs, create, append, addBlock, abandonBlock, updateBlockForPipeline,
//     complete, fsync, getBlockLocations, rename, rename2, delete,
//     renewLease, setPermission, setOwner, setTimes, getFsStats and
//     getContentSummary. Any other method is answered with
//     RpcNoSuchMethodException and logged at Error level.
//   - The data transfer protocol, version 28: READ_BLOCK, WRITE_BLOCK (create
//     and append pipelines of one datanode) and BLOCK_CHECKSUM, with packets,
//     CRC32C or CRC32 chunk checksums, pipeline acks and the optional
//     ClientReadStatusProto.
//
// Failures a test can provoke: missing paths (FileNotFoundException),
// existing paths (FileAlreadyExistsException), Deny(path)
// (AccessControlException), paths through a file
// (ParentNotDirectoryException), SetSafeMode (SafeModeException), a standby
// namenode (StandbyException; see StartHA and HACluster.SwapActive) and
// CorruptReads (bad data with good checksums).
//
// What it is not: a storage system. It has one datanode, replication 1, no
// security (Kerberos, SASL, block tokens, encryption), no quotas, snapshots,
// xattrs, ACLs, symlinks or erasure coding, no lease expiry, no edit log: its
// namespace lives in memory and is gone when the Cluster closes. Permissions
// are stored and reported but only Deny is enforced. Do not use it outside
// tests.
//
// The wire messages are declared in internal/wire/wire.proto from the field
// numbers documented in Apache Hadoop's public .proto files.
package hdfsd
