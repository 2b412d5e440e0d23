//! The S3 bucket API.

use control_schema::buckets_capnp::bucket_info;

use super::{reply, text, Attempt, Client, ClientError};

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

impl Client {
    /// The project's buckets (every bucket for the cluster administrator).
    pub async fn list_buckets(&mut self) -> Result<Vec<BucketInfo>, ClientError> {
        self.with_session(|caps| async move {
            let api = caps
                .session()
                .buckets_request()
                .send()
                .pipeline
                .get_buckets();
            let reply = api.list_request().send().promise.await?;
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
            let api = caps
                .session()
                .buckets_request()
                .send()
                .pipeline
                .get_buckets();
            let mut call = api.create_request();
            call.get().set_name(name);
            let reply = call.send().promise.await?;
            read_bucket(reply!(reply.get()?).get_bucket()?)
        })
        .await
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&mut self, name: &str) -> Result<(), ClientError> {
        self.with_session(|caps| async move {
            let api = caps
                .session()
                .buckets_request()
                .send()
                .pipeline
                .get_buckets();
            let mut call = api.delete_request();
            call.get().set_name(name);
            let reply = call.send().promise.await?;
            reply!(reply.get()?);
            Ok(())
        })
        .await
    }
}
