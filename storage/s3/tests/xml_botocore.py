"""botocore's side of storage/s3/tests/xml_botocore.rs.

Two modes, each run by the Rust test with python3.11 (botocore installed):

  requests OUT_DIR
      Serializes CompleteMultipartUpload, DeleteObjects and CreateBucket
      requests two ways: with the bare rest-xml serializer on the "s3"
      service model, and through a full botocore client whose send step is
      intercepted (so the client's own handlers, such as DeleteObjects'
      CR/LF escaping, run too). Writes each
      body to OUT_DIR/<name>.xml and what it should parse to into
      OUT_DIR/expected.tsv.

  responses IN_DIR
      For every line "name, method, status, params JSON" of IN_DIR/cases.tsv,
      calls that method on a full botocore client whose send step answers
      with IN_DIR/<name>.xml and the status. botocore's rest-xml parser and
      its S3 after-call handlers (URL decoding of listings, the
      GetBucketLocation body) run as for a real server. Prints the parsed
      result flattened, one "name TAB path TAB hex(value)" line per leaf;
      errors are the ClientError's response. A case that raises anything
      else prints "name TAB !exception TAB hex(text)".

Values are hex-encoded UTF-8 so any key survives the trip; timestamps are
milliseconds since the epoch, booleans true/false. The parsed dictionaries
are also written as JSON to IN_DIR/parsed.json for people reading failures.
"""

import datetime
import json
import os
import sys

import botocore.awsrequest
import botocore.config
import botocore.exceptions
import botocore.serialize
import botocore.session

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def hexed(text):
    return text.encode("utf-8").hex()


class Intercepted(Exception):
    """Raised from the send step once a request body has been captured."""


class CannedBody:
    """The `raw` of an AWSResponse: botocore only calls stream()."""

    def __init__(self, body):
        self.body = body

    def stream(self, **kwargs):
        yield self.body


def new_client(session, region="us-east-1"):
    return session.create_client(
        "s3",
        region_name=region,
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        config=botocore.config.Config(
            retries={"total_max_attempts": 1},
            s3={"addressing_style": "path"},
        ),
    )


# Requests -----------------------------------------------------------------

TRICKY_KEYS = [
    "plain.txt",
    "a&b<c>\"d\"'e'",
    "  spaced  ",
    "dir/sub dir/é日本😀",
    "tab\there",
    "line\nbreak",
    "cr\rkey",
    "100%+plus",
]

PARTS = [
    {"PartNumber": 1, "ETag": '"0123456789abcdef0123456789abcdef"'},
    {"PartNumber": 3, "ETag": "unquoted-etag"},
    {"PartNumber": 2, "ETag": '"abc-2"', "ChecksumCRC32": "AAAAAA=="},
    {"PartNumber": 10000, "ETag": '"last"'},
]


def request_cases():
    """(name, operation, parameters, expected lines) for every request."""
    delete_objects = [{"Key": key} for key in TRICKY_KEYS]
    delete_objects[1]["VersionId"] = "null"
    expected_delete = [
        ("object", hexed(item["Key"]), hexed(item.get("VersionId", "")) or "-")
        for item in delete_objects
    ]
    cases = [
        (
            "complete",
            "CompleteMultipartUpload",
            {"Bucket": "bucket", "Key": "key", "UploadId": "upload", "MultipartUpload": {"Parts": PARTS}},
            [("part", str(part["PartNumber"]), hexed(part["ETag"])) for part in PARTS],
        ),
        (
            "delete_quiet",
            "DeleteObjects",
            {"Bucket": "bucket", "Delete": {"Objects": delete_objects, "Quiet": True}},
            expected_delete + [("quiet", "true")],
        ),
        (
            "delete_loud",
            "DeleteObjects",
            {"Bucket": "bucket", "Delete": {"Objects": [{"Key": "one"}], "Quiet": False}},
            [("object", hexed("one"), "-"), ("quiet", "false")],
        ),
        (
            "delete_default",
            "DeleteObjects",
            {"Bucket": "bucket", "Delete": {"Objects": [{"Key": "one"}]}},
            [("object", hexed("one"), "-"), ("quiet", "false")],
        ),
        (
            "create_bucket",
            "CreateBucket",
            {"Bucket": "bucket", "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}},
            [("location", hexed("eu-west-1"))],
        ),
        ("create_bucket_empty", "CreateBucket", {"Bucket": "bucket"}, [("location", "-")]),
    ]
    many_parts = [{"PartNumber": number, "ETag": '"%032x"' % number} for number in range(1, 10001)]
    cases.append(
        (
            "complete_10000",
            "CompleteMultipartUpload",
            {"Bucket": "bucket", "Key": "key", "UploadId": "upload", "MultipartUpload": {"Parts": many_parts}},
            [("count", "10000")],
        )
    )
    many_objects = [{"Key": "key-%d" % index} for index in range(1001)]
    cases.append(
        ("delete_1001", "DeleteObjects", {"Bucket": "bucket", "Delete": {"Objects": many_objects}}, [("refused", "MalformedXML")])
    )
    return cases


def client_method(operation):
    return {
        "CompleteMultipartUpload": "complete_multipart_upload",
        "DeleteObjects": "delete_objects",
        "CreateBucket": "create_bucket",
    }[operation]


def capture_with_client(session, operation, parameters, region="us-east-1"):
    """The body a full botocore client sends for this call."""
    client = new_client(session, region)
    captured = {}

    def capture(request, **kwargs):
        captured["body"] = request.body or b""
        raise Intercepted()

    client.meta.events.register("before-send.s3.%s" % operation, capture)
    try:
        getattr(client, client_method(operation))(**parameters)
    except Intercepted:
        pass
    body = captured["body"]
    return body if isinstance(body, bytes) else body.encode("utf-8")


def write_requests(out_dir):
    session = botocore.session.get_session()
    model = session.get_service_model("s3")
    serializer = botocore.serialize.create_serializer("rest-xml")
    expected = []
    for name, operation, parameters, lines in request_cases():
        request = serializer.serialize_to_request(parameters, model.operation_model(operation))
        bodies = {name: request["body"], name + "_client": capture_with_client(session, operation, parameters)}
        for body_name, body in bodies.items():
            with open(os.path.join(out_dir, body_name + ".xml"), "wb") as file:
                file.write(body)
            expected.extend("\t".join((body_name,) + line) for line in lines)
    # botocore does not fill LocationConstraint in from the client's region:
    # a client outside us-east-1 sends no body unless the caller gives one.
    body = capture_with_client(session, "CreateBucket", {"Bucket": "bucket"}, region="ap-northeast-2")
    with open(os.path.join(out_dir, "create_bucket_other_region_client.xml"), "wb") as file:
        file.write(body)
    expected.append("\t".join(("create_bucket_other_region_client", "location", "-")))
    with open(os.path.join(out_dir, "expected.tsv"), "w") as file:
        file.write("\n".join(expected) + "\n")


# Responses ----------------------------------------------------------------


def flatten(value, path, out):
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "ResponseMetadata" and path == "":
                # Only the IDs matter; headers and retry counts are ours.
                for field in ("RequestId", "HostId", "HTTPStatusCode"):
                    if field in item:
                        flatten(item[field], "ResponseMetadata." + field, out)
                continue
            flatten(item, "%s.%s" % (path, key) if path else key, out)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            flatten(item, "%s[%d]" % (path, index), out)
    elif isinstance(value, bool):
        out.append((path, "true" if value else "false"))
    elif isinstance(value, datetime.datetime):
        out.append((path, str((value - EPOCH) // datetime.timedelta(milliseconds=1))))
    elif value is None:
        out.append((path, "None"))
    elif hasattr(value, "read"):
        out.append((path, "<stream>"))
    else:
        out.append((path, str(value)))


def answer_with(client, operation, status, body):
    def send(request, **kwargs):
        # botocore takes the IDs from these headers only; it drops the
        # <RequestId> and <HostId> of an error body.
        headers = {
            "Content-Type": "application/xml",
            "x-amz-request-id": "HEADER-REQUEST-ID",
            "x-amz-id-2": "HEADER-HOST-ID",
        }
        return botocore.awsrequest.AWSResponse(request.url, status, headers, CannedBody(body))

    client.meta.events.register("before-send.s3.%s" % operation, send)
    return send


def read_responses(in_dir):
    client = new_client(botocore.session.get_session())
    dumped = {}
    with open(os.path.join(in_dir, "cases.tsv")) as file:
        cases = [line.rstrip("\n").split("\t") for line in file if line.strip()]
    for name, method, status, parameters in cases:
        with open(os.path.join(in_dir, name + ".xml"), "rb") as file:
            body = file.read()
        operation = client.meta.method_to_api_mapping[method]
        handler = answer_with(client, operation, int(status), body)
        try:
            result = getattr(client, method)(**json.loads(parameters))
        except botocore.exceptions.ClientError as error:
            result = error.response
        except Exception as error:  # noqa: BLE001 - reported to the Rust side
            result = None
            print("\t".join((name, "!exception", hexed("%s: %s" % (type(error).__name__, error)))))
        finally:
            client.meta.events.unregister("before-send.s3.%s" % operation, handler)
        if result is not None:
            dumped[name] = result
            leaves = []
            flatten(result, "", leaves)
            for path, value in leaves:
                print("\t".join((name, path, hexed(value))))
    with open(os.path.join(in_dir, "parsed.json"), "w") as file:
        json.dump(dumped, file, indent=1, default=str, ensure_ascii=False)


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("requests", "responses"):
        sys.exit("usage: xml_botocore.py requests|responses DIRECTORY")
    if sys.argv[1] == "requests":
        write_requests(sys.argv[2])
    else:
        read_responses(sys.argv[2])


if __name__ == "__main__":
    main()
