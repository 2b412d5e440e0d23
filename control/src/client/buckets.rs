//! The S3 bucket API.

use photon_schema::buckets_capnp::{bucket_info, buckets};

use super::{reply, text, unit_call, Attempt, Caps, Client, ClientError};

/// A bucket as the control plane keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BucketInfo {
    pub name: String,
    pub tenant: String,
    pub project: String,
    pub region: String,
    pub created_ms: u64,
}

fn read_bucket(b: bucket_info::Reader<'_>) -> Attempt<BucketInfo> {
    Ok(BucketInfo {
        name: text(b.get_name())?,
        tenant: text(b.get_tenant())?,
        project: text(b.get_project())?,
        region: text(b.get_region())?,
        created_ms: b.get_created_ms(),
    })
}

/// The bucket API of this connection's session (pipelined: no round trip).
fn api(caps: &Caps) -> buckets::Client {
    caps.session()
        .buckets_request()
        .send()
        .pipeline
        .get_buckets()
}

impl Client {
    /// The project's buckets (every bucket for the cluster administrator).
    pub async fn list_buckets(&mut self) -> Result<Vec<BucketInfo>, ClientError> {
        self.with_session(|caps| async move {
            let reply = api(&caps).list_request().send().promise.await?;
            reply!(reply.get()?)
                .get_buckets()?
                .iter()
                .map(read_bucket)
                .collect()
        })
        .await
    }

    pub async fn create_bucket(&mut self, name: &str) -> Result<BucketInfo, ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).create_request();
            call.get().set_name(name);
            let reply = call.send().promise.await?;
            read_bucket(reply!(reply.get()?).get_bucket()?)
        })
        .await
    }

    /// One bucket of the project.
    pub async fn bucket_info(&mut self, name: &str) -> Result<BucketInfo, ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).info_request();
            call.get().set_name(name);
            let reply = call.send().promise.await?;
            read_bucket(reply!(reply.get()?).get_bucket()?)
        })
        .await
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&mut self, name: &str) -> Result<(), ClientError> {
        unit_call!(self, api, delete_request, |p| {
            p.set_name(name);
        })
    }
}
