# S3 buckets as the control plane keeps them (records under s3/bucket/ in the
# KV). Reached through an authenticated session (raft.capnp Session.buckets);
# every call acts in the caller's tenant and project and is checked against
# its roles (s3:ListBuckets, s3:CreateBucket, s3:DeleteBucket).
@0xb7c2e4f6a8d01357;

using E = import "error.capnp";

struct BucketInfo {
  name @0 :Text;
  tenant @1 :Text;
  project @2 :Text;
  region @3 :Text;
  createdMs @4 :UInt64;
}

interface Buckets {
  # The caller's project's buckets (every bucket for the cluster admin).
  list @0 () -> (buckets :List(BucketInfo), error :E.Error);
  create @1 (name :Text) -> (bucket :BucketInfo, error :E.Error);
  # Refused while the bucket holds objects or uploads.
  delete @2 (name :Text) -> (error :E.Error);
  # One bucket of the caller's project (s3:HeadBucket on bucket/<name>).
  info @3 (name :Text) -> (bucket :BucketInfo, error :E.Error);
}
