// Package wire holds the protobuf messages of the Hadoop IPC and HDFS
// data-transfer protocols used by the hdfsd test server, generated from
// wire.proto. It is internal to the test server and not a general HDFS
// protocol library.
package wire

//go:generate protoc --go_out=. --go_opt=paths=source_relative wire.proto
