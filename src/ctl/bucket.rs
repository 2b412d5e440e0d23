//! `photon ctl bucket`: S3 buckets of the caller's project.

use clap::Subcommand;
use photon_control::client::Client;
use serde_json::json;

use crate::ctl::output::Output;
use crate::ctl::utc_time;

#[derive(Debug, Subcommand)]
pub enum BucketCommand {
    /// Create a bucket in the token's project.
    Create { name: String },
    /// List the project's buckets.
    Ls,
    /// Show one bucket.
    Info { name: String },
    /// Delete an empty bucket.
    Rm { name: String },
}

pub async fn run(client: &mut Client, cmd: BucketCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        BucketCommand::Create { name } => {
            let bucket = client.create_bucket(&name).await?;
            out.show(&bucket, |b| format!("created bucket {}", b.name));
        }
        BucketCommand::Ls => {
            let buckets = client.list_buckets().await?;
            out.list(
                &buckets,
                ["NAME", "TENANT/PROJECT", "REGION", "CREATED"],
                |b| {
                    [
                        b.name.clone(),
                        format!("{}/{}", b.tenant, b.project),
                        b.region.clone(),
                        utc_time(b.created_ms),
                    ]
                },
            );
        }
        BucketCommand::Info { name } => {
            let bucket = client.bucket_info(&name).await?;
            out.show(&bucket, |b| {
                format!(
                    "name     {}\nowner    {}/{}\nregion   {}\ncreated  {}",
                    b.name,
                    b.tenant,
                    b.project,
                    b.region,
                    utc_time(b.created_ms)
                )
            });
        }
        BucketCommand::Rm { name } => {
            client.delete_bucket(&name).await?;
            out.done(json!({"deleted": name}), format!("deleted bucket {name}"));
        }
    }
    Ok(())
}
