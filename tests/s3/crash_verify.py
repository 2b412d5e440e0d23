"""Checks LightningStor after a kill -9 against crash_writer.py's acks.

Usage: crash_verify.py ACKFILE --bucket BUCKET (with S3_ENDPOINT,
S3_ACCESS_KEY and S3_SECRET_KEY set as for crash_writer.py, whose top says
how to run the pair by hand).

* Every acknowledged object reads back whole and right (length and MD5),
  and is listed.
* Every other object under crash/ is either absent or whole and right:
  never partial, never another object's bytes.
* Listing and reads agree: no object can be read that is not listed.
* The restarted server takes and returns a new object.

Prints the counts; exits 1 listing every violation.
"""

import argparse
import hashlib
import os
import sys
import time

from botocore.exceptions import BotoCoreError, ClientError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from crash_writer import PREFIX, client, content, key_of, size_of  # noqa: E402


def read_acks(path):
    acks = {}
    with open(path, encoding="ascii", errors="replace") as file:
        lines = file.read().split("\n")
    # The writer was killed too: a last line without its newline is torn.
    for line in lines[:-1]:
        n, digest = line.split()
        acks[int(n)] = digest
    return acks


def wait_until_ready(s3, bucket):
    deadline = time.monotonic() + 60
    while True:
        try:
            s3.head_bucket(Bucket=bucket)
            return
        except (ClientError, BotoCoreError) as error:
            if time.monotonic() > deadline:
                raise SystemExit(f"the restarted server does not answer: {error}")
            time.sleep(0.2)


def fetch(s3, bucket, n):
    """The object's bytes, or None if it does not exist."""
    try:
        return s3.get_object(Bucket=bucket, Key=key_of(n))["Body"].read()
    except ClientError as error:
        if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("ack")
    parser.add_argument("--bucket", required=True)
    args = parser.parse_args()

    acks = read_acks(args.ack)
    s3 = client()
    wait_until_ready(s3, args.bucket)
    problems = []

    listed = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args.bucket, Prefix=PREFIX):
        for item in page.get("Contents", []):
            suffix = item["Key"][len(PREFIX):]
            if not suffix.isdigit():
                problems.append(f"unexpected key {item['Key']!r}")
                continue
            listed[int(suffix)] = item

    highest = max([*acks, *listed, 0])
    counts = {"acked": len(acks), "listed": len(listed), "acked and intact": 0,
              "unacked but complete": 0, "unacked and absent": 0}
    # Past the highest seen number too: an object the listing lost.
    for n in range(highest + 50):
        got = fetch(s3, args.bucket, n)
        if got is None:
            if n in acks:
                problems.append(f"acked object {n} ({size_of(n)} bytes) is gone")
            elif n in listed:
                problems.append(f"object {n} is listed but cannot be read")
            else:
                counts["unacked and absent"] += 1
            continue
        expected = content(n)
        digest = hashlib.md5(got).hexdigest()
        if got != expected:
            problems.append(
                f"object {n}: {len(got)} bytes with MD5 {digest}, expected {len(expected)} "
                f"bytes with MD5 {hashlib.md5(expected).hexdigest()}"
                + (" (acked)" if n in acks else " (not acked: must be absent or whole)")
            )
            continue
        if n in acks and acks[n] != digest:
            problems.append(f"object {n}: acked with MD5 {acks[n]}, reads {digest}")
        if n not in listed:
            problems.append(f"object {n} can be read but is not listed")
        else:
            item = listed[n]
            if item["Size"] != len(got) or item["ETag"] != f'"{digest}"':
                problems.append(f"object {n}: listed as {item['Size']} bytes {item['ETag']}")
        if n in acks:
            counts["acked and intact"] += 1
        else:
            counts["unacked but complete"] += 1

    # The store still takes writes after recovery.
    try:
        s3.put_object(Bucket=args.bucket, Key="after-restart", Body=b"still writable")
        body = s3.get_object(Bucket=args.bucket, Key="after-restart")["Body"].read()
        if body != b"still writable":
            problems.append(f"a write after the restart reads back as {body[:40]!r}")
    except (ClientError, BotoCoreError) as error:
        problems.append(f"a write after the restart failed: {error}")

    big = sum(1 for n in acks if size_of(n) > 8 * 1024 * 1024)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()) + f" (acked over 8 MiB: {big})")
    if not acks:
        problems.append("the writer acknowledged nothing: the test proved nothing")
    for problem in problems:
        print(f"VIOLATION: {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
