"""The client side of the FiberLB end-to-end test, run in the client
namespace. Reads commands on stdin, answers one JSON line each:

  spread N   N new TCP connections to the VIP, one GET each (Connection:
             close): {"counts": {backend: n}, "errors": [...]}
  open K     K keep-alive connections, one GET each: {"backends": [...]}
  reuse      one more GET on each kept connection: {"backends": [...]}
             (an entry is "error: ..." when that connection failed)
"""
import http.client
import json
import sys

VIP, PORT = sys.argv[1], int(sys.argv[2])
TIMEOUT = 3.0
kept = []


def get(conn, close):
    headers = {"Connection": "close"} if close else {}
    conn.request("GET", "/", headers=headers)
    resp = conn.getresponse()
    body = resp.read().decode().strip()
    if resp.status != 200:
        raise RuntimeError(f"status {resp.status}")
    return body


for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == "spread":
        counts, errors = {}, []
        for _ in range(int(cmd[1])):
            conn = http.client.HTTPConnection(VIP, PORT, timeout=TIMEOUT)
            try:
                name = get(conn, True)
                counts[name] = counts.get(name, 0) + 1
            except Exception as e:  # noqa: BLE001 - reported to the test
                errors.append(repr(e))
            finally:
                conn.close()
        out = {"counts": counts, "errors": errors}
    elif cmd[0] == "open":
        names = []
        for _ in range(int(cmd[1])):
            conn = http.client.HTTPConnection(VIP, PORT, timeout=TIMEOUT)
            kept.append(conn)
            try:
                names.append(get(conn, False))
            except Exception as e:  # noqa: BLE001
                names.append(f"error: {e!r}")
        out = {"backends": names}
    elif cmd[0] == "reuse":
        names = []
        for conn in kept:
            try:
                names.append(get(conn, False))
            except Exception as e:  # noqa: BLE001
                names.append(f"error: {e!r}")
        out = {"backends": names}
    else:
        out = {"error": f"unknown command {cmd[0]}"}
    print(json.dumps(out), flush=True)
