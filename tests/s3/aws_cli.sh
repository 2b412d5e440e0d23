#!/usr/bin/env bash
# LightningStor driven by the aws CLI (v1): s3 mb/cp/sync/ls/rm/rb and the
# s3api calls of conditional PUT, ranged GET and multipart upload, refused
# headers (ACLs, server-side encryption), multipart checksums and
# list-buckets paging.
#
# `cargo test --test s3_clients aws_cli` starts a `photon dev` and runs this.
# By hand, against a running `photon dev --data-dir DIR`:
#
#     set -a; . DIR/s3.env; set +a
#     S3_ENDPOINT="$AWS_ENDPOINT_URL" bash tests/s3/aws_cli.sh
#
# Needs S3_ENDPOINT (or AWS_ENDPOINT_URL) and AWS_ACCESS_KEY_ID /
# AWS_SECRET_ACCESS_KEY. Prints each step; on failure exits non-zero naming
# the step.
set -euo pipefail
set -o errtrace

S3_ENDPOINT="${S3_ENDPOINT:-${AWS_ENDPOINT_URL:-}}"
: "${S3_ENDPOINT:?set S3_ENDPOINT (or AWS_ENDPOINT_URL)}"
: "${AWS_ACCESS_KEY_ID:?set AWS_ACCESS_KEY_ID}"
: "${AWS_SECRET_ACCESS_KEY:?set AWS_SECRET_ACCESS_KEY}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL_S3 || true

work="$(mktemp -d)"
bucket="cli-$(date +%s)-$$-${RANDOM}"
STEP="setup"

# Path-style addressing, and no retries: every step sees one answer.
export AWS_CONFIG_FILE="$work/config"
export AWS_SHARED_CREDENTIALS_FILE="$work/credentials"
cat >"$AWS_CONFIG_FILE" <<EOF
[default]
region = $AWS_DEFAULT_REGION
retry_mode = standard
max_attempts = 1
s3 =
    addressing_style = path
EOF
: >"$AWS_SHARED_CREDENTIALS_FILE"

on_error() {
  local rc=$?
  echo "aws_cli.sh: FAILED at step: $STEP (exit $rc)" >&2
  exit "$rc"
}
trap on_error ERR

cleanup() {
  aws s3 rb --force "s3://$bucket" >/dev/null 2>&1 || true
  aws s3 rb --force "s3://$bucket-b" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

aws() { command aws --endpoint-url "$S3_ENDPOINT" "$@"; }
step() {
  STEP="$*"
  echo "== $STEP"
}
fail() {
  echo "aws_cli.sh: FAILED at step: $STEP: $*" >&2
  exit 1
}
# The ETag of an object, without its quotes.
etag_of() {
  aws s3api head-object --bucket "$bucket" --key "$1" --query ETag --output text | tr -d '"'
}
md5_of() { md5sum "$1" | cut -d' ' -f1; }

cd "$work"
head -c 1000 /dev/urandom >small.bin
head -c $((20 * 1024 * 1024 + 123)) /dev/urandom >big.bin

step "s3 mb"
aws s3 mb "s3://$bucket"
grep -q " $bucket\$" <<<"$(aws s3 ls)" || fail "s3 ls does not list $bucket"

step "s3 mb of an existing bucket fails"
if aws s3 mb "s3://$bucket" 2>err.txt; then fail "second mb succeeded"; fi
grep -q "BucketAlreadyOwnedByYou" err.txt || fail "$(cat err.txt)"

step "s3 cp up and down: small file"
aws s3 cp --no-progress small.bin "s3://$bucket/small.bin"
aws s3 cp --no-progress "s3://$bucket/small.bin" small.out
cmp small.bin small.out
[ "$(etag_of small.bin)" = "$(md5_of small.bin)" ] || fail "ETag is not the MD5"

step "s3 cp up and down: 20 MiB file (multipart, 8 MiB parts)"
aws s3 cp --no-progress big.bin "s3://$bucket/dir/big.bin"
etag="$(etag_of dir/big.bin)"
[[ "$etag" == *-3 ]] || fail "expected a 3-part multipart ETag, got $etag"
aws s3 cp --no-progress "s3://$bucket/dir/big.bin" big.out
cmp big.bin big.out

step "s3 cp to stdout and from stdin"
aws s3 cp --no-progress "s3://$bucket/small.bin" - >stdout.bin
cmp stdout.bin small.bin
aws s3 cp --no-progress - "s3://$bucket/piped.bin" <small.bin
aws s3 cp --no-progress "s3://$bucket/piped.bin" piped.out
cmp piped.out small.bin

step "s3 sync up"
mkdir -p src/sub/deeper "src/with space"
echo "alpha" >src/a.txt
head -c 300000 /dev/urandom >src/sub/b.bin
echo "gamma" >src/sub/deeper/c.txt
echo "spaced" >"src/with space/d e.txt"
echo "plus" >"src/sub/p+q.txt"
: >src/empty.txt
aws s3 sync --no-progress src "s3://$bucket/tree/"
[ "$(aws s3 ls --recursive "s3://$bucket/tree/" | wc -l)" -eq 6 ] || fail "expected 6 objects under tree/"

step "s3 sync down and compare"
aws s3 sync --no-progress "s3://$bucket/tree/" dst
diff -r src dst

step "s3 sync of a change, with --delete, both ways"
echo "alpha, changed" >src/a.txt
rm src/sub/deeper/c.txt
echo "new" >src/new.txt
aws s3 sync --no-progress --delete src "s3://$bucket/tree/"
if aws s3 ls "s3://$bucket/tree/sub/deeper/c.txt" >/dev/null 2>&1; then
  fail "c.txt survived sync --delete"
fi
aws s3 sync --no-progress --delete "s3://$bucket/tree/" dst
diff -r src dst

step "s3 ls of the bucket, a prefix, and --recursive"
listing="$(aws s3 ls "s3://$bucket/")"
echo "$listing"
grep -q "PRE dir/" <<<"$listing" || fail "no dir/ prefix"
grep -q "PRE tree/" <<<"$listing" || fail "no tree/ prefix"
grep -q " small.bin\$" <<<"$listing" || fail "no small.bin"
listing="$(aws s3 ls "s3://$bucket/tree/sub/")"
grep -q " b.bin\$" <<<"$listing" || fail "no b.bin under tree/sub/"
grep -q " p+q.txt\$" <<<"$listing" || fail "no p+q.txt under tree/sub/"
[ "$(aws s3 ls --recursive "s3://$bucket/" | wc -l)" -eq 9 ] || fail "expected 9 objects in the bucket"

step "s3api put-object --if-none-match '*' (new key)"
aws s3api put-object --bucket "$bucket" --key once.bin --body small.bin --if-none-match '*' >/dev/null

step "s3api put-object --if-none-match '*' (existing key: PreconditionFailed)"
if aws s3api put-object --bucket "$bucket" --key once.bin --body big.bin --if-none-match '*' \
  >/dev/null 2>err.txt; then
  fail "the second conditional put succeeded"
fi
grep -q "PreconditionFailed" err.txt || fail "$(cat err.txt)"
[ "$(etag_of once.bin)" = "$(md5_of small.bin)" ] || fail "once.bin was overwritten"

step "s3api get-object --range, compared with dd"
for range in 100-1099 8388000-8389000 20971000-; do
  first="${range%-*}"
  last="${range#*-}"
  aws s3api get-object --bucket "$bucket" --key dir/big.bin --range "bytes=$range" part.out >/dev/null
  if [ -n "$last" ]; then
    dd if=big.bin of=part.expected iflag=skip_bytes,count_bytes skip="$first" \
      count=$((last - first + 1)) status=none
  else
    dd if=big.bin of=part.expected iflag=skip_bytes skip="$first" status=none
  fi
  cmp part.expected part.out || fail "range $range differs"
done

step "s3api multipart: create-multipart-upload"
head -c $((11 * 1024 * 1024 + 5)) /dev/urandom >mp.bin
dd if=mp.bin of=part1 bs=1M count=5 status=none
dd if=mp.bin of=part2 bs=1M skip=5 count=5 status=none
dd if=mp.bin of=part3 bs=1M skip=10 status=none
upload_id="$(aws s3api create-multipart-upload --bucket "$bucket" --key mp.bin \
  --query UploadId --output text)"
[ -n "$upload_id" ] || fail "no UploadId"

step "s3api multipart: upload-part x3"
parts_json=""
for n in 1 2 3; do
  etag="$(aws s3api upload-part --bucket "$bucket" --key mp.bin --upload-id "$upload_id" \
    --part-number "$n" --body "part$n" --query ETag --output text | tr -d '"')"
  [ "$etag" = "$(md5_of "part$n")" ] || fail "part $n ETag $etag is not its MD5"
  parts_json+="${parts_json:+,}{\"PartNumber\":$n,\"ETag\":\"\\\"$etag\\\"\"}"
done
echo "{\"Parts\":[$parts_json]}" >parts.json

step "s3api multipart: list-parts"
listed="$(aws s3api list-parts --bucket "$bucket" --key mp.bin --upload-id "$upload_id" \
  --query 'Parts[].[PartNumber,Size]' --output text | tr -s '\t\n' '  ')"
[ "$listed" = "1 5242880 2 5242880 3 1048581 " ] || fail "list-parts says: $listed"
uploads="$(aws s3api list-multipart-uploads --bucket "$bucket" --query 'Uploads[].UploadId' \
  --output text)"
grep -q -- "$upload_id" <<<"$uploads" || fail "list-multipart-uploads lacks the upload"

step "s3api multipart: complete-multipart-upload"
aws s3api complete-multipart-upload --bucket "$bucket" --key mp.bin --upload-id "$upload_id" \
  --multipart-upload file://parts.json >/dev/null
# The MD5 of the parts' binary MD5s, then "-3".
hex="$(for n in 1 2 3; do md5sum "part$n" | cut -d' ' -f1; done | tr -d '\n' | sed 's/../\\x&/g')"
expected_etag="$(printf '%b' "$hex" | md5sum | cut -d' ' -f1)-3"
[ "$(etag_of mp.bin)" = "$expected_etag" ] || fail "ETag $(etag_of mp.bin), expected $expected_etag"
aws s3 cp --no-progress "s3://$bucket/mp.bin" mp.out
cmp mp.bin mp.out

step "s3api multipart: abort-multipart-upload"
upload_id="$(aws s3api create-multipart-upload --bucket "$bucket" --key aborted.bin \
  --query UploadId --output text)"
aws s3api upload-part --bucket "$bucket" --key aborted.bin --upload-id "$upload_id" \
  --part-number 1 --body part3 >/dev/null
aws s3api abort-multipart-upload --bucket "$bucket" --key aborted.bin --upload-id "$upload_id"
if aws s3api list-parts --bucket "$bucket" --key aborted.bin --upload-id "$upload_id" \
  >/dev/null 2>err.txt; then
  fail "list-parts of an aborted upload succeeded"
fi
grep -q "NoSuchUpload" err.txt || fail "$(cat err.txt)"
[ -z "$(aws s3api list-multipart-uploads --bucket "$bucket" --query 'Uploads[].UploadId' \
  --output text | grep -v '^None$' || true)" ] || fail "uploads left after abort"
if aws s3api head-object --bucket "$bucket" --key aborted.bin >/dev/null 2>&1; then
  fail "the aborted upload left an object"
fi

step "s3api put-object --acl public-read is refused (NotImplemented) and stores nothing"
if aws s3api put-object --bucket "$bucket" --key acl.bin --body small.bin --acl public-read \
  >/dev/null 2>err.txt; then
  fail "put-object --acl public-read succeeded"
fi
grep -q "NotImplemented" err.txt || fail "$(cat err.txt)"
if aws s3api head-object --bucket "$bucket" --key acl.bin >/dev/null 2>&1; then
  fail "the refused put-object stored acl.bin"
fi

step "s3api put-object --server-side-encryption AES256 is refused and stores nothing"
if aws s3api put-object --bucket "$bucket" --key sse.bin --body small.bin \
  --server-side-encryption AES256 >/dev/null 2>err.txt; then
  fail "put-object --server-side-encryption AES256 succeeded"
fi
grep -q "NotImplemented" err.txt || fail "$(cat err.txt)"
if aws s3api head-object --bucket "$bucket" --key sse.bin >/dev/null 2>&1; then
  fail "the refused put-object stored sse.bin"
fi

step "s3 cp with 5 MiB parts, then head-object --checksum-mode ENABLED: COMPOSITE CRC32 -3"
# A config of its own, so that the other steps keep the default 8 MiB parts.
cp "$AWS_CONFIG_FILE" config-5mib
printf '    multipart_threshold = 5MB\n    multipart_chunksize = 5MB\n' >>config-5mib
head -c $((12 * 1024 * 1024 + 7)) /dev/urandom >mid.bin
AWS_CONFIG_FILE="$work/config-5mib" aws s3 cp --no-progress mid.bin "s3://$bucket/mid.bin"
etag="$(etag_of mid.bin)"
[[ "$etag" == *-3 ]] || fail "expected a 3-part multipart ETag, got $etag"
checksum="$(aws s3api head-object --bucket "$bucket" --key mid.bin --checksum-mode ENABLED \
  --query ChecksumCRC32 --output text)"
[[ "$checksum" =~ ^[A-Za-z0-9+/]{6}==-3$ ]] ||
  fail "expected a composite ChecksumCRC32 (base64 of 4 bytes, then -3), got $checksum"
kind="$(aws s3api head-object --bucket "$bucket" --key mid.bin --checksum-mode ENABLED \
  --query ChecksumType --output text)"
[ "$kind" = "COMPOSITE" ] || fail "expected ChecksumType COMPOSITE, got $kind"
aws s3 cp --no-progress "s3://$bucket/mid.bin" mid.out
cmp mid.bin mid.out

step "s3api list-buckets paging: --page-size 1 --max-items 1, then --starting-token"
aws s3api create-bucket --bucket "$bucket-b" >/dev/null
names="$(aws s3api list-buckets --prefix "$bucket" --page-size 1 --query 'Buckets[].Name' \
  --output text | tr -s '\t\n' '  ')"
[ "$names" = "$bucket $bucket-b " ] || fail "list-buckets --page-size 1 says: $names"
# (JSON: the text output of a truncated listing adds a line per page.)
first="$(aws s3api list-buckets --prefix "$bucket" --page-size 1 --max-items 1 \
  --query 'Buckets[].Name' --output json | tr -d '[]" \n')"
[ "$first" = "$bucket" ] || fail "first page: $first"
token="$(aws s3api list-buckets --prefix "$bucket" --page-size 1 --max-items 1 \
  --query NextToken --output json | tr -d '" \n')"
[ -n "$token" ] && [ "$token" != "null" ] || fail "no NextToken after one of two buckets"
second="$(aws s3api list-buckets --prefix "$bucket" --page-size 1 --max-items 1 \
  --starting-token "$token" --query 'Buckets[].Name' --output json | tr -d '[]" \n')"
[ "$second" = "$bucket-b" ] || fail "second page: $second"

step "s3api list-buckets with MaxBuckets 1: one bucket and a ContinuationToken from the server"
page="$(aws s3api list-buckets --no-paginate \
  --cli-input-json "{\"MaxBuckets\": 1, \"Prefix\": \"$bucket\"}" \
  --query '[length(Buckets), ContinuationToken]' --output text)"
count="${page%%[[:space:]]*}"
continuation="${page#*[[:space:]]}"
[ "$count" = "1" ] || fail "MaxBuckets 1 listed $count buckets ($page)"
[ -n "$continuation" ] && [ "$continuation" != "None" ] || fail "no ContinuationToken ($page)"
rest="$(aws s3api list-buckets --no-paginate --cli-input-json \
  "{\"MaxBuckets\": 1, \"Prefix\": \"$bucket\", \"ContinuationToken\": \"$continuation\"}" \
  --query 'Buckets[].Name' --output text)"
[ "$rest" = "$bucket-b" ] || fail "the page after the ContinuationToken says: $rest"
aws s3api delete-bucket --bucket "$bucket-b"

step "s3 rb of a non-empty bucket fails"
if aws s3 rb "s3://$bucket" 2>err.txt; then fail "rb of a non-empty bucket succeeded"; fi
grep -q "BucketNotEmpty" err.txt || fail "$(cat err.txt)"

step "s3 rm --recursive of a prefix"
aws s3 rm --recursive "s3://$bucket/tree/"
[ -z "$(aws s3 ls --recursive "s3://$bucket/tree/" || true)" ] || fail "tree/ is not empty"
aws s3 ls "s3://$bucket/small.bin" >/dev/null || fail "rm of tree/ took small.bin along"

step "s3 rm --recursive of the bucket"
aws s3 rm --recursive "s3://$bucket"
[ -z "$(aws s3 ls --recursive "s3://$bucket" || true)" ] || fail "the bucket is not empty"

step "s3 rb"
aws s3 rb "s3://$bucket"
if grep -q " $bucket\$" <<<"$(aws s3 ls)"; then fail "s3 ls still lists $bucket"; fi
if aws s3 ls "s3://$bucket" >/dev/null 2>err.txt; then fail "listing a deleted bucket succeeded"; fi
grep -q "NoSuchBucket" err.txt || fail "$(cat err.txt)"

STEP="done"
echo "aws_cli.sh: all steps passed"
