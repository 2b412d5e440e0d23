//! Bucket APIs: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
//! GetBucketLocation, GetBucketVersioning. Bucket records live in the
//! control-plane KV; shards ask the control-plane thread to change them.

use std::time::{Duration, UNIX_EPOCH};

use http::StatusCode;
use photon_records::check_bucket_name;
use photon_s3::error::{S3Error, S3ErrorCode};
use photon_s3::xml::{self, BucketEntry, Owner};

use crate::api::{internal, Api, S3Request, S3Result};
use crate::body::{read_small, BodyReader};
use crate::catalog::{BucketOp, BucketOpError, BucketRecord, BucketRequest};
use crate::response::{self, empty, with_status};

/// How long a shard waits for the control plane to commit a bucket change.
const BUCKET_COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest `max-buckets` S3 accepts (and the page size without it).
const LIST_BUCKETS_MAX: usize = 10_000;

pub async fn list_buckets(api: &Api, r: &mut S3Request) -> S3Result {
    let max = match r.query.get("max-buckets") {
        None => LIST_BUCKETS_MAX,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=LIST_BUCKETS_MAX).contains(n))
            .ok_or_else(|| {
                S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    format!("max-buckets must be an integer between 1 and {LIST_BUCKETS_MAX}"),
                )
                .with_extra("ArgumentName", "max-buckets")
            })?,
    };
    // The token is the last bucket name of the previous page; bucket names
    // are URL-safe, so it is opaque enough and needs no state.
    let after = r.query.get("continuation-token").map(str::to_owned);
    let prefix = r.query.get("prefix").map(str::to_owned);
    let region = r.query.get("bucket-region").map(str::to_owned);
    let catalog = api.service.catalog.all();
    let caller = &r.caller;
    let mut owned: Vec<_> = catalog
        .iter()
        .filter(|b| b.owned_by(caller.tenant(), caller.project()))
        .filter(|b| prefix.as_deref().is_none_or(|p| b.name.starts_with(p)))
        .filter(|b| region.as_deref().is_none_or(|g| b.region == g))
        .filter(|b| after.as_deref().is_none_or(|a| b.name.as_str() > a))
        .collect();
    owned.sort_by(|a, b| a.name.cmp(&b.name));
    let truncated = owned.len() > max;
    owned.truncate(max);
    let next = truncated
        .then(|| owned.last().map(|b| b.name.clone()))
        .flatten();
    let entries: Vec<BucketEntry<'_>> = owned
        .iter()
        .map(|b| BucketEntry {
            name: &b.name,
            creation_date: UNIX_EPOCH + Duration::from_millis(b.created_ms),
            region: &b.region,
        })
        .collect();
    let owner_id = caller.owner_id();
    let owner = Owner {
        id: &owner_id,
        display_name: Some(caller.principal()),
    };
    Ok(response::xml(xml::list_all_my_buckets_result(
        owner,
        &entries,
        next.as_deref(),
        prefix.as_deref(),
    )))
}

pub async fn create_bucket(api: &Api, r: &mut S3Request) -> S3Result {
    let name = r.bucket_name().to_owned();
    check_bucket_name(&name).map_err(|e| {
        S3Error::with_message(S3ErrorCode::InvalidBucketName, e.to_string())
            .with_extra("BucketName", name.clone())
    })?;
    let reader = BodyReader::new(r, api.limits().xml_body_bytes_max)?;
    let document = read_small(reader).await?;
    let configuration =
        xml::parse_create_bucket_configuration(&document).map_err(|e| e.to_s3_error())?;
    if let Some(region) = &configuration.location_constraint {
        // S3 refuses naming us-east-1, its default, explicitly.
        if region == "us-east-1" && api.region() == "us-east-1" {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidLocationConstraint,
                "the specified location-constraint is not valid: us-east-1 is the default and must not be named",
            ));
        }
        if region != api.region() {
            return Err(S3Error::with_message(
                S3ErrorCode::IllegalLocationConstraintException,
                format!("the {region} location constraint is incompatible with this endpoint's region {}", api.region()),
            ));
        }
    }
    let op = BucketOp::Create {
        name: name.clone(),
        tenant: r.caller.tenant().to_owned(),
        project: r.caller.project().to_owned(),
        region: api.region().to_owned(),
    };
    match bucket_request(api, op).await {
        Ok(_) => {
            let mut response = with_status(StatusCode::OK, empty());
            response::set_header(&mut response, "location", &format!("/{name}"));
            Ok(response)
        }
        Err(BucketOpError::Exists {
            owner_tenant,
            owner_project,
        }) if owner_tenant == r.caller.tenant() && owner_project == r.caller.project() => {
            Err(S3Error::new(S3ErrorCode::BucketAlreadyOwnedByYou).with_extra("BucketName", name))
        }
        Err(BucketOpError::Exists { .. }) => {
            Err(S3Error::new(S3ErrorCode::BucketAlreadyExists).with_extra("BucketName", name))
        }
        Err(e) => Err(unavailable(e)),
    }
}

pub async fn head_bucket(api: &Api, r: &mut S3Request) -> S3Result {
    api.bucket(&r.caller, r.bucket_name())?;
    let mut response = with_status(StatusCode::OK, empty());
    response::set_header(&mut response, "x-amz-bucket-region", api.region());
    Ok(response)
}

pub async fn delete_bucket(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    let not_empty =
        || S3Error::new(S3ErrorCode::BucketNotEmpty).with_extra("BucketName", bucket.name.clone());
    if !crate::service::bucket_has_no_objects(&api.ctx, bucket.id).await {
        return Err(not_empty());
    }
    // As S3: uploads in progress do not keep a bucket alive; they are
    // aborted with it. An upload created meanwhile still makes it non-empty.
    crate::multipart::abort_all(api, bucket.id).await?;
    if !crate::service::bucket_is_empty(&api.ctx, bucket.id).await {
        return Err(not_empty());
    }
    let op = BucketOp::Delete {
        name: bucket.name.clone(),
        id: bucket.id,
    };
    match bucket_request(api, op).await {
        Ok(_) => Ok(with_status(StatusCode::NO_CONTENT, empty())),
        Err(BucketOpError::NoSuchBucket) => Err(crate::api::no_such_bucket(&bucket.name)),
        Err(e) => Err(unavailable(e)),
    }
}

pub async fn get_bucket_location(api: &Api, r: &mut S3Request) -> S3Result {
    let bucket = api.bucket(&r.caller, r.bucket_name())?;
    // S3 answers an empty constraint for us-east-1.
    let region = if bucket.region == "us-east-1" {
        ""
    } else {
        &bucket.region
    };
    Ok(response::xml(xml::location_constraint(region)))
}

pub async fn get_bucket_versioning(api: &Api, r: &mut S3Request) -> S3Result {
    api.bucket(&r.caller, r.bucket_name())?;
    Ok(response::xml(xml::versioning_configuration(None)))
}

async fn bucket_request(api: &Api, op: BucketOp) -> Result<BucketRecord, BucketOpError> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    api.service
        .to_control
        .try_send(BucketRequest { op, reply })
        .map_err(|(e, _)| BucketOpError::Unavailable(e.to_string()))?;
    let answer = futures_lite::future::or(
        async {
            answer
                .await
                .map_err(|_| BucketOpError::Unavailable("the control plane went away".into()))?
        },
        async {
            glommio::timer::sleep(BUCKET_COMMIT_TIMEOUT).await;
            Err(BucketOpError::Unavailable(
                "the control plane did not answer in time".into(),
            ))
        },
    )
    .await?;
    // Wait until this node's catalog shows the change, so the caller's next
    // request sees it (read-your-writes).
    let catalog = &api.service.catalog;
    for _ in 0..200 {
        let visible = catalog.get(&answer.name);
        let done = match &visible {
            Some(b) => b.id == answer.id,
            None => answer.id == 0,
        };
        if done {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    Ok(answer)
}

fn unavailable(e: BucketOpError) -> S3Error {
    match e {
        BucketOpError::Unavailable(reason) => {
            tracing::warn!(%reason, "bucket change not committed");
            S3Error::with_message(
                S3ErrorCode::ServiceUnavailable,
                "the control plane cannot commit now; retry",
            )
        }
        other => internal(other),
    }
}
