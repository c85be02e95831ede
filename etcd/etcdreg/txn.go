package etcdreg

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// The transactions of Lock and Unlock are built as etcd's own requests
// (etcdserverpb) and sent on the client's connection as clientv3's Txn
// sends them (the same interceptors: auth, retries of what was not sent;
// the same call option: wait for the connection to be ready), without
// clientv3's Txn builder, which copies every comparison through reflection
// (proto.Clone) and every operation through an intermediate form: the
// client's share of an uncontended Lock+Unlock.

// txn sends req as clientv3's Txn.Commit does.
func (r *Registry) txn(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	resp, err := r.kv.Txn(ctx, req, grpc.WaitForReady(true))
	if err != nil {
		return nil, clientv3.ContextError(ctx, err)
	}
	return resp, nil
}

// putReq is a put of value at key, bound to lease (0: none); prevKV asks
// for the key's previous value.
func putReq(key, value []byte, lease clientv3.LeaseID, prevKV bool) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{
		Key: key, Value: value, Lease: int64(lease), PrevKv: prevKV}}}
}

// deleteReq is a delete of key.
func deleteReq(key []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: key}}}
}

// txnReq is a transaction nested in another.
func txnReq(cmps []*pb.Compare, then, els []*pb.RequestOp) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Compare: cmps, Success: then, Failure: els}}}
}

// createdAt compares key's create revision with rev (0: the key does not
// exist); with a range end, every key of the range.
func createdAt(key, rangeEnd []byte, rev int64) *pb.Compare {
	return &pb.Compare{Result: pb.Compare_EQUAL, Target: pb.Compare_CREATE, Key: key, RangeEnd: rangeEnd,
		TargetUnion: &pb.Compare_CreateRevision{CreateRevision: rev}}
}

// modifiedAt compares key's mod revision with rev.
func modifiedAt(key []byte, rev int64) *pb.Compare {
	return &pb.Compare{Result: pb.Compare_EQUAL, Target: pb.Compare_MOD, Key: key,
		TargetUnion: &pb.Compare_ModRevision{ModRevision: rev}}
}

// prefixEnd is the range end of the keys under prefix.
func prefixEnd(prefix string) []byte { return []byte(clientv3.GetPrefixRangeEnd(prefix)) }
