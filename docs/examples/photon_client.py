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
"""

import argparse
import asyncio
import json
import os
import re
import sys
import tomllib

import capnp

# "not the leader: leader 2 at 127.0.1.2:9500" (connect there and retry) or
# "not the leader: no leader is known yet; retry" (wait and retry).
NOT_LEADER = re.compile(r"not the leader: leader (\d+) at (\S+)")
ATTEMPTS_MAX = 10
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
    """Follows redirects: every call runs through `call`, which reconnects
    to the leader a follower names and retries `overloaded` answers."""

    def __init__(self, raft, address):
        self.raft = raft
        self.conn = Node(raft, address)
        self.token = None
        self.session = None

    async def start(self):
        await self.conn.connect()

    async def call(self, what, step):
        """Runs `step()` (a coroutine function using self.conn / self.session)
        until it succeeds, following redirects; raises on final errors."""
        for _ in range(ATTEMPTS_MAX):
            try:
                return await step()
            except capnp.KjException as e:
                kind = str(e.type)
                # pycapnp puts "remote exception: " before the server's text.
                text = e.description.removeprefix("remote exception: ")
                redirect = NOT_LEADER.search(text)
                if redirect:
                    leader = redirect.group(2)
                    print(f"{what}: redirected to leader {redirect.group(1)} at {leader}")
                    self.conn = Node(self.raft, leader)
                    await self.conn.connect()
                    if self.token is not None:
                        # A session lives on its connection: authenticate again there.
                        self.session = (await self.conn.node.authenticate(self.token)).session
                    continue
                if "OVERLOADED" in kind or text.startswith("not the leader"):
                    # Overloaded: send the same request again. No leader yet: wait for one.
                    await asyncio.sleep(RETRY_DELAY_S)
                    continue
                raise
        raise RuntimeError(f"{what}: no answer after {ATTEMPTS_MAX} attempts")

    async def login(self, tenant, principal, password, project):
        async def step():
            return await self.conn.node.login(tenant, principal, password, project, 0)

        reply = await self.call("login", step)
        self.token = reply.token
        return reply.expiresAtMs

    async def authenticate(self, token):
        self.token = token

        async def step():
            self.session = (await self.conn.node.authenticate(token)).session

        await self.call("authenticate", step)


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

    async def put():
        kv_cap = (await client.session.kv()).kv
        request = kv.PutRequest.new_message(key=key, value=value)
        return (await kv_cap.put(request)).response

    put_reply = await client.call("put", put)
    print(f"put {args.key} (revision {put_reply.revision})")

    async def get():
        kv_cap = (await client.session.kv()).kv
        request = kv.RangeRequest.new_message(key=key)
        return (await kv_cap.range(request)).response

    got = await client.call("get", get)
    if len(got.kvs) != 1:
        raise RuntimeError(f"get {args.key}: {len(got.kvs)} keys, expected 1")
    read = bytes(got.kvs[0].value).decode()
    print(f"get {args.key} = {read} (revision {got.kvs[0].modRevision})")
    if read != args.value:
        raise RuntimeError(f"get {args.key}: read {read!r}, put {args.value!r}")

    async def whoami():
        return (await client.session.whoami()).identity

    me = await client.call("whoami", whoami)
    print(
        f"whoami: tenant {me.tenant}, principal {me.principal}, project {me.project}, "
        f"kind {me.kind}, cluster admin {me.clusterAdmin}, expires at {me.expiresAtMs} ms"
    )

    # Renewal: a new token for the same principal and project, while the
    # current one is still valid; a session keeps the token it was opened
    # with, so authenticate again with the new one.
    async def refresh():
        iam = (await client.session.iam()).iam
        return await iam.refresh(0)

    renewed = await client.call("refresh", refresh)
    await client.authenticate(renewed.token)
    me = await client.call("whoami", whoami)
    print(f"refreshed: token {me.tokenId} expires at {renewed.expiresAtMs} ms")


def main():
    args = parse_args()
    try:
        asyncio.run(capnp.run(run(args)))
    except capnp.KjException as e:
        print(f"error ({e.type}): {e.description}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001: any failure is this script's failure
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
