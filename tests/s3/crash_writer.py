"""Writes objects to LightningStor until killed, acknowledging each one.

Half of the kill -9 test (`cargo test --test s3_clients crash`): objects
`crash/obj-<n>` whose bytes follow from n alone (sizes 0..3 MiB, and every
ninth one 12 MiB so that chunked objects are in flight too). After each
PutObject answered 200 with the right ETag, the line `<n> <md5>` is appended
to the ack file and fsynced. Then `crash_verify.py` checks the store against
the acks after the server was killed and restarted.

By hand, against a running `photon dev --data-dir DIR`:

    set -a; . DIR/s3.env; set +a
    export S3_ENDPOINT="$AWS_ENDPOINT_URL" S3_ACCESS_KEY="$AWS_ACCESS_KEY_ID" \
           S3_SECRET_KEY="$AWS_SECRET_ACCESS_KEY"
    python3.11 tests/s3/crash_writer.py --bucket crash --ack /tmp/acks &
    sleep 4; kill -9 <photon's pid>; kill -9 %1
    # restart photon dev on DIR, source the new s3.env, then:
    python3.11 tests/s3/crash_verify.py /tmp/acks --bucket crash
"""

import argparse
import hashlib
import itertools
import os
import random
import sys
import threading
import time

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

MIB = 1024 * 1024
PREFIX = "crash/obj-"


def size_of(n):
    if n % 9 == 4:
        return 12 * MIB + (n * 7919) % MIB
    return (n * 2654435761) % (3 * MIB + 1)


def content(n):
    """The bytes of object n: the same in the writer and the verifier."""
    return random.Random(n).randbytes(size_of(n))


def key_of(n):
    return f"{PREFIX}{n}"


def client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ["S3_ENDPOINT"],
        aws_access_key_id=os.environ["S3_ACCESS_KEY"],
        aws_secret_access_key=os.environ["S3_SECRET_KEY"],
        region_name="us-east-1",
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1},
            connect_timeout=5,
            read_timeout=30,
        ),
    )


def ensure_bucket(s3, bucket):
    deadline = time.monotonic() + 30
    while True:
        try:
            s3.create_bucket(Bucket=bucket)
            return
        except ClientError as error:
            if error.response["Error"]["Code"] == "BucketAlreadyOwnedByYou":
                return
            # A key that was just created may take a moment to reach the node.
            if time.monotonic() > deadline:
                raise
        except BotoCoreError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--ack", required=True, help="file to append '<n> <md5>' lines to")
    parser.add_argument("--threads", type=int, default=3)
    args = parser.parse_args()

    ensure_bucket(client(), args.bucket)
    numbers = itertools.count()
    lock = threading.Lock()
    ack = open(args.ack, "a", encoding="ascii")

    def writer():
        s3 = client()
        while True:
            with lock:
                n = next(numbers)
            data = content(n)
            digest = hashlib.md5(data).hexdigest()
            try:
                response = s3.put_object(Bucket=args.bucket, Key=key_of(n), Body=data)
            except (ClientError, BotoCoreError) as error:
                # Expected once the server is gone: keep trying new objects.
                print(f"put {n}: {error}", file=sys.stderr, flush=True)
                time.sleep(0.05)
                continue
            if response["ETag"] != f'"{digest}"':
                print(f"put {n}: ETag {response['ETag']}, expected {digest}", file=sys.stderr,
                      flush=True)
                continue
            with lock:
                ack.write(f"{n} {digest}\n")
                ack.flush()
                os.fsync(ack.fileno())

    threads = [threading.Thread(target=writer, daemon=True) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    print("writing", flush=True)
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
