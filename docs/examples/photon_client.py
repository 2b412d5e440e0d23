#!/usr/bin/env python3
"""A small PhotonCloud control-plane client in Python, written from the
Cap'n Proto schemas alone (see docs/api.md).

It needs pycapnp (`python3 -m pip install pycapnp`) and the schemas that
`photon api schemas --out DIR` writes. It connects to a node's control
endpoint, logs in, authenticates, puts and gets one key, asks who it is,
renews its token, and follows "not the leader" redirects on the way.

    photon api schemas --out schemas
    python3 docs/examples/photon_client.py --schemas schemas   # against ./photon-data

Without --user it logs in as the cluster administrator `photon dev`
created (DATA_DIR/control/admin.credentials); with --user it reads the
password from the PHOTON_PASSWORD environment variable or, failing that,
one line of stdin. It prints what it did and exits 1 on any failure.

Every reply of the API carries an optional `error` (error.capnp): set, the
call failed and the reply's other fields are unset. A Cap'n Proto exception
only means the connection or a message broke.
"""

import argparse
import asyncio
import json
import os
import sys
import tomllib

import capnp

# How often one call is sent at most (redirects and retryable errors
# included), and the pause before a retry: about 10 s, a few elections.
ATTEMPTS_MAX = 50
RETRY_DELAY_S = 0.2


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schemas", required=True, help="the directory `photon api schemas --out` wrote")
    parser.add_argument("--data-dir", default="photon-data", help="photon dev's data directory (default: photon-data)")
    parser.add_argument("--endpoint", help="HOST:PORT of a control endpoint (default: from DATA_DIR/endpoints.json)")
    parser.add_argument("--tenant", default="system")
    parser.add_argument("--user", help="principal to log in as (default: the dev administrator)")
    parser.add_argument("--project", default="", help='project (default: "" = default)')
    parser.add_argument("--key", default="python/hello")
    parser.add_argument("--value", default="hello from python")
    return parser.parse_args()


def credentials(args):
    """(tenant, principal, password) to log in with."""
    if args.user:
        password = os.environ.get("PHOTON_PASSWORD")
        if password is None:
            password = sys.stdin.readline().rstrip("\r\n")
        return args.tenant, args.user, password
    path = os.path.join(args.data_dir, "control", "admin.credentials")
    with open(path, "rb") as f:
        admin = tomllib.load(f)
    return admin["tenant"], admin["principal"], admin["password"]


def endpoint(args):
    if args.endpoint:
        return args.endpoint
    with open(os.path.join(args.data_dir, "endpoints.json")) as f:
        return json.load(f)["endpoints"]["control"]


def split_address(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class ApiError(Exception):
    """A call the server refused: the reply's `error` (error.capnp)."""

    def __init__(self, what, error):
        self.code = str(error.code)  # the enum's name: "notFound", "notLeader", ...
        self.retryable = error.retryable
        self.message = error.message
        super().__init__(f"{what}: {self.message} (code {self.code})")


class Node:
    """One connection to one node, and its bootstrap capability `Node`."""

    def __init__(self, raft, address):
        self.raft = raft
        self.address = address
        self.client = None
        self.node = None

    async def connect(self):
        host, port = split_address(self.address)
        stream = await capnp.AsyncIoStream.create_connection(host=host, port=port)
        self.client = capnp.TwoPartyClient(stream)
        self.node = self.client.bootstrap().cast_as(self.raft.Node)


class Client:
    """Every call runs through `call`, which reads the reply's `error`:
    notLeader reconnects to the leader it names, other retryable codes are
    sent again after a pause, the rest fail."""

    def __init__(self, raft, address):
        self.raft = raft
        self.conn = Node(raft, address)
        self.token = None
        self.session = None

    async def start(self):
        await self.conn.connect()

    async def reconnect(self, address):
        """A new connection; a session lives on its connection, so the next
        call authenticates again there."""
        self.conn = Node(self.raft, address)
        self.session = None
        await self.conn.connect()

    async def call(self, what, step, needs_session=True):
        """Sends `step()` (a coroutine function using self.conn / self.session
        that returns a reply) until its reply has no `error`; returns that
        reply or raises ApiError on a final error."""
        transport_failures = 0
        for _ in range(ATTEMPTS_MAX):
            try:
                if needs_session and self.session is None:
                    reply = await self.conn.node.authenticate(self.token)
                    if reply._has("error"):
                        await self.refused(what, reply.error)
                        continue
                    self.session = reply.session
                reply = await step()
            except capnp.KjException as e:
                # Not an answer of the server: the connection (or a message)
                # broke. Reconnect and send once more. (A write sent before
                # the break may have applied: sending it again is harmless
                # for a put, not for every request.)
                transport_failures += 1
                if transport_failures > 1:
                    raise
                print(f"{what}: {e.type} exception (the connection or a message broke); reconnecting to {self.conn.address}")
                await self.reconnect(self.conn.address)
                continue
            if not reply._has("error"):
                return reply
            await self.refused(what, reply.error)
        raise RuntimeError(f"{what}: no answer after {ATTEMPTS_MAX} attempts")

    async def refused(self, what, error):
        """Prepares the next attempt after an `error`, or raises it."""
        code = str(error.code)
        if code == "notLeader" and error.leaderAddress:
            # Only the leader serves this: go there, authenticate, retry.
            print(f"{what}: redirected to leader {error.leaderId} at {error.leaderAddress}")
            await self.reconnect(error.leaderAddress)
        elif error.retryable:
            # notLeader while an election runs (no leader known yet), or
            # unavailable (busy, catching up, contended): nothing was done,
            # send the same request again after a pause.
            await asyncio.sleep(RETRY_DELAY_S)
        else:
            raise ApiError(what, error)

    async def login(self, tenant, principal, password, project):
        async def step():
            return await self.conn.node.login(tenant, principal, password, project, 0)

        reply = await self.call("login", step, needs_session=False)
        self.token = reply.token
        return reply.expiresAtMs

    async def authenticate(self, token):
        """Opens a session for `token` on the current connection. (`call`
        also does this by itself on a new connection.)"""
        self.token = token
        self.session = None

        async def step():
            return await self.conn.node.authenticate(token)

        reply = await self.call("authenticate", step, needs_session=False)
        self.session = reply.session


async def run(args):
    # The schemas import each other by relative path; `-> stream` in kv.capnp
    # also needs the standard /capnp/stream.capnp, which pycapnp ships in its
    # package directory (SITE/capnp/stream.capnp): put SITE on the import path.
    standard = os.path.dirname(os.path.dirname(capnp.__file__))
    raft = capnp.load(os.path.join(args.schemas, "raft.capnp"), imports=[standard])
    kv = capnp.load(os.path.join(args.schemas, "kv.capnp"), imports=[standard])
    tenant, principal, password = credentials(args)
    address = endpoint(args)
    print(f"control endpoint {address}")

    client = Client(raft, address)
    await client.start()
    expires_at_ms = await client.login(tenant, principal, password, args.project)
    print(f"logged in as {tenant}/{principal}, token expires at {expires_at_ms} ms")
    await client.authenticate(client.token)

    key = args.key.encode()
    value = args.value.encode()

    # The session's getters (kv, iam, ...) never fail: use what they return
    # without waiting for them (pipelining, no extra round trip). Every call
    # on it checks the token again.
    async def put():
        kv_cap = client.session.kv().kv
        return await kv_cap.put(kv.PutRequest.new_message(key=key, value=value))

    put_reply = (await client.call("put", put)).response
    print(f"put {args.key} (revision {put_reply.revision})")

    async def get():
        kv_cap = client.session.kv().kv
        return await kv_cap.range(kv.RangeRequest.new_message(key=key))

    got = (await client.call("get", get)).response
    if len(got.kvs) != 1:
        raise RuntimeError(f"get {args.key}: {len(got.kvs)} keys, expected 1")
    read = bytes(got.kvs[0].value).decode()
    print(f"get {args.key} = {read} (revision {got.kvs[0].modRevision})")
    if read != args.value:
        raise RuntimeError(f"get {args.key}: read {read!r}, put {args.value!r}")

    async def whoami():
        return await client.session.whoami()

    me = (await client.call("whoami", whoami)).identity
    print(
        f"whoami: tenant {me.tenant}, principal {me.principal}, project {me.project}, "
        f"kind {me.kind}, cluster admin {me.clusterAdmin}, expires at {me.expiresAtMs} ms"
    )

    # Renewal: a new token for the same principal and project, while the
    # current one is still valid; a session keeps the token it was opened
    # with, so authenticate again with the new one.
    async def refresh():
        return await client.session.iam().iam.refresh(0)

    renewed = await client.call("refresh", refresh)
    await client.authenticate(renewed.token)
    me = (await client.call("whoami", whoami)).identity
    print(f"refreshed: token {me.tokenId} expires at {renewed.expiresAtMs} ms")


def main():
    args = parse_args()
    try:
        asyncio.run(capnp.run(run(args)))
    except ApiError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except capnp.KjException as e:
        print(f"error: {e.type} exception (the connection or a message broke): {e.description}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001: any failure is this script's failure
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
