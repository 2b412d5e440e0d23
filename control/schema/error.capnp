# The typed error of the client API. Every method of Node (but `peer`),
# Session's leaf interfaces (Iam, Kv, Cluster, Buckets, Volumes, Lb) answers
# with a reply whose `error` field is set when the call failed; the other
# fields of such a reply are unset. A reply without `error` succeeded.
# Exceptions (Cap'n Proto's own failures) then mean only that the connection
# or the message itself broke.
@0xf5c59b9b7a672b2a;

struct Error {
  code @0 :Code;
  # The same request may be sent again: to `leaderAddress` for notLeader,
  # after a short pause for the others. Nothing was done.
  retryable @1 :Bool;
  # What went wrong, for people; it starts with the code's words
  # ("not found: ...", "invalid argument: ...").
  message @2 :Text;
  # code = notLeader: the leader's node id and control address, when this
  # node knows them (0 and "" while an election runs).
  leaderId @3 :UInt64;
  leaderAddress @4 :Text;

  enum Code {
    internal @0;            # a bug or an unexpected state of the server
    invalidArgument @1;     # the request is malformed or a value is out of range
    notFound @2;            # the named thing does not exist (or is not yours)
    alreadyExists @3;
    failedPrecondition @4;  # the state does not allow it (not empty, compacted, a count
                            # limit that deleting a record makes room under, wrong node)
    permissionDenied @5;    # authenticated, but the roles do not allow it
    unauthenticated @6;     # no valid token, or the login failed
    notLeader @7;           # retryable: ask the leader
    unavailable @8;         # retryable: busy, contended, catching up, shutting down
    resourceExhausted @9;   # the disk is full, or a connection's or the store's limit
                            # (watches per connection, leases)
  }
}
