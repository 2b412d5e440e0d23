//! `photon ctl bucket`: S3 buckets of the caller's project.

use clap::Subcommand;
use control_schema::buckets_capnp::bucket_info;
use photon_control::client::Client;
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum BucketCommand {
    /// Create a bucket in the token's project.
    Create { name: String },
    /// List the project's buckets.
    Ls,
    /// Delete an empty bucket.
    Rm { name: String },
}

fn info_json(info: bucket_info::Reader<'_>) -> capnp::Result<Value> {
    let text = |t: capnp::Result<capnp::text::Reader<'_>>| -> capnp::Result<String> {
        Ok(t?.to_string().unwrap_or_default())
    };
    Ok(json!({
        "name": text(info.get_name())?,
        "tenant": text(info.get_tenant())?,
        "project": text(info.get_project())?,
        "region": text(info.get_region())?,
        "created_ms": info.get_created_ms(),
    }))
}

pub async fn run(client: &mut Client, cmd: BucketCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        BucketCommand::Create { name } => {
            let bucket = client
                .with_buckets(|api| {
                    let name = name.clone();
                    async move {
                        let mut call = api.create_request();
                        call.get().set_name(&name);
                        let reply = call.send().promise.await?;
                        info_json(reply.get()?.get_bucket()?)
                    }
                })
                .await?;
            if as_json {
                println!("{bucket}");
            } else {
                println!("created bucket {name}");
            }
        }
        BucketCommand::Ls => {
            let buckets = client
                .with_buckets(|api| async move {
                    let reply = api.list_request().send().promise.await?;
                    reply
                        .get()?
                        .get_buckets()?
                        .iter()
                        .map(info_json)
                        .collect::<capnp::Result<Vec<_>>>()
                })
                .await?;
            if as_json {
                println!("{}", Value::Array(buckets));
            } else {
                println!(
                    "{:<40} {:<24} {:<12} CREATED",
                    "NAME", "TENANT/PROJECT", "REGION"
                );
                for b in buckets {
                    let created = crate::ctl::utc_time(b["created_ms"].as_u64().unwrap_or(0));
                    println!(
                        "{:<40} {:<24} {:<12} {}",
                        b["name"].as_str().unwrap_or(""),
                        format!(
                            "{}/{}",
                            b["tenant"].as_str().unwrap_or(""),
                            b["project"].as_str().unwrap_or("")
                        ),
                        b["region"].as_str().unwrap_or(""),
                        created
                    );
                }
            }
        }
        BucketCommand::Rm { name } => {
            client
                .with_buckets(|api| {
                    let name = name.clone();
                    async move {
                        let mut call = api.delete_request();
                        call.get().set_name(&name);
                        call.send().promise.await?;
                        Ok(())
                    }
                })
                .await?;
            if as_json {
                println!("{}", json!({"deleted": name}));
            } else {
                println!("deleted bucket {name}");
            }
        }
    }
    Ok(())
}
