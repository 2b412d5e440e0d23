//! `photon ctl volume`: CoronaFS block volumes of the caller's project.

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::{bail, Context};
use clap::Subcommand;
use control_schema::volumes_capnp::volume_info;
use photon_control::client::Client;
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a thin volume (unwritten ranges read as zeroes and take no space).
    Create {
        name: String,
        /// Size: bytes or with a binary unit (512K, 64M, 10G, 1T).
        #[arg(long, value_parser = parse_size)]
        size: u64,
        /// Smallest I/O unit clients may use (4096 to 65536, a power of two).
        #[arg(long, default_value_t = 4096)]
        block_size: u32,
    },
    /// List the project's volumes and snapshots.
    Ls,
    /// Show one volume or snapshot, with the bytes it holds.
    Info { name: String },
    /// Grow a volume (clients see the new size when they reconnect).
    Resize {
        name: String,
        #[arg(long, value_parser = parse_size)]
        size: u64,
    },
    /// Freeze a volume as the read-only snapshot NAME@SNAPSHOT.
    Snapshot { name: String, snapshot: String },
    /// Create a writable volume from a snapshot (VOLUME@SNAPSHOT), sharing
    /// its unchanged extents.
    Clone { snapshot: String, name: String },
    /// Delete a volume or snapshot (extents a snapshot or clone shares stay).
    Rm { name: String },
    /// Print the nbd:// URI (with an attach token) that QEMU, qemu-img,
    /// qemu-io, nbdinfo and fio accept.
    Attach {
        name: String,
        /// Token lifetime: seconds or with a unit (30m, 12h, 7d); default 24h.
        #[arg(long, value_parser = parse_duration_s)]
        ttl: Option<u32>,
    },
    /// Fill a volume from a raw or qcow2 image (a file or a URL), creating
    /// it with the image's size when it does not exist.
    Import {
        name: String,
        /// The image file.
        #[arg(required_unless_present = "from_url", conflicts_with = "from_url")]
        file: Option<PathBuf>,
        /// Download the image from this URL first (needs curl).
        #[arg(long)]
        from_url: Option<String>,
        /// The image's format (raw, qcow2, ...); detected when omitted.
        #[arg(long)]
        format: Option<String>,
    },
}

/// Parses `4096`, `512K`, `64M`, `10G`, `1T`, `2GiB`, ... (binary units).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (like 64M or 10G)"))?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        _ => return Err(format!("{text:?}: unknown unit (use K, M, G, T or P)")),
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parses `90`, `30s`, `30m`, `12h`, `7d` into seconds.
pub fn parse_duration_s(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let (number, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3600),
        Some('d') => (&t[..t.len() - 1], 86400),
        _ => (t, 1),
    };
    let n: u32 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 30m or 12h)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too long"))
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn info_json(info: volume_info::Reader<'_>) -> capnp::Result<Value> {
    let text = |t: capnp::Result<capnp::text::Reader<'_>>| -> capnp::Result<String> {
        Ok(t?.to_string().unwrap_or_default())
    };
    let parent = text(info.get_parent())?;
    Ok(json!({
        "name": text(info.get_name())?,
        "id": info.get_id().to_string(),
        "kind": text(info.get_kind())?,
        "size": info.get_size(),
        "block_size": info.get_block_size(),
        "parent": if parent.is_empty() { Value::Null } else { Value::String(parent) },
        "tenant": text(info.get_tenant())?,
        "project": text(info.get_project())?,
        "node": info.get_node(),
        "shard": info.get_shard(),
        "created_ms": info.get_created_ms(),
        // null when the node could not say (the owner shard did not answer,
        // or another node serves the volume), never a made-up 0.
        "allocated_bytes": if info.get_allocated_known() {
            json!(info.get_allocated_bytes())
        } else {
            Value::Null
        },
    }))
}

fn print_volume(v: &Value, as_json: bool, verb: &str) {
    if as_json {
        println!("{v}");
    } else {
        println!(
            "{verb} {} {} ({}, block size {})",
            v["kind"].as_str().unwrap_or(""),
            v["name"].as_str().unwrap_or(""),
            human(v["size"].as_u64().unwrap_or(0)),
            v["block_size"].as_u64().unwrap_or(0)
        );
    }
}

async fn create(
    client: &mut Client,
    name: &str,
    size: u64,
    block_size: u32,
) -> anyhow::Result<Value> {
    Ok(client
        .with_volumes(|api| {
            let name = name.to_owned();
            async move {
                let mut call = api.create_request();
                call.get().set_name(&name);
                call.get().set_size(size);
                call.get().set_block_size(block_size);
                let reply = call.send().promise.await?;
                info_json(reply.get()?.get_volume()?)
            }
        })
        .await?)
}

async fn info(client: &mut Client, name: &str) -> anyhow::Result<Value> {
    Ok(client
        .with_volumes(|api| {
            let name = name.to_owned();
            async move {
                let mut call = api.info_request();
                call.get().set_name(&name);
                let reply = call.send().promise.await?;
                info_json(reply.get()?.get_volume()?)
            }
        })
        .await?)
}

async fn attach(client: &mut Client, name: &str, ttl: u32) -> anyhow::Result<(String, u64)> {
    Ok(client
        .with_volumes(|api| {
            let name = name.to_owned();
            async move {
                let mut call = api.attach_request();
                call.get().set_name(&name);
                call.get().set_ttl_seconds(ttl);
                let reply = call.send().promise.await?;
                let r = reply.get()?;
                Ok((
                    r.get_uri()?.to_string().unwrap_or_default(),
                    r.get_expires_at_ms(),
                ))
            }
        })
        .await?)
}

pub async fn run(client: &mut Client, cmd: VolumeCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        VolumeCommand::Create {
            name,
            size,
            block_size,
        } => {
            let v = create(client, &name, size, block_size).await?;
            print_volume(&v, as_json, "created");
        }
        VolumeCommand::Ls => {
            let all = client
                .with_volumes(|api| async move {
                    let reply = api.list_request().send().promise.await?;
                    reply
                        .get()?
                        .get_volumes()?
                        .iter()
                        .map(info_json)
                        .collect::<capnp::Result<Vec<_>>>()
                })
                .await?;
            if as_json {
                println!("{}", Value::Array(all));
            } else {
                println!(
                    "{:<40} {:<9} {:>12} {:<30} CREATED",
                    "NAME", "KIND", "SIZE", "PARENT"
                );
                for v in all {
                    println!(
                        "{:<40} {:<9} {:>12} {:<30} {}",
                        v["name"].as_str().unwrap_or(""),
                        v["kind"].as_str().unwrap_or(""),
                        human(v["size"].as_u64().unwrap_or(0)),
                        v["parent"].as_str().unwrap_or("-"),
                        crate::ctl::utc_time(v["created_ms"].as_u64().unwrap_or(0))
                    );
                }
            }
        }
        VolumeCommand::Info { name } => {
            let v = info(client, &name).await?;
            if as_json {
                println!("{v}");
            } else {
                for key in [
                    "name",
                    "kind",
                    "id",
                    "parent",
                    "tenant",
                    "project",
                    "node",
                    "shard",
                    "block_size",
                ] {
                    println!("{key:<16} {}", v[key]);
                }
                println!(
                    "{:<16} {} ({})",
                    "size",
                    v["size"],
                    human(v["size"].as_u64().unwrap_or(0))
                );
                match v["allocated_bytes"].as_u64() {
                    Some(used) => println!("{:<16} {used} ({})", "allocated_bytes", human(used)),
                    None => println!("{:<16} unknown", "allocated_bytes"),
                }
            }
        }
        VolumeCommand::Resize { name, size } => {
            let v = client
                .with_volumes(|api| {
                    let name = name.clone();
                    async move {
                        let mut call = api.resize_request();
                        call.get().set_name(&name);
                        call.get().set_size(size);
                        let reply = call.send().promise.await?;
                        info_json(reply.get()?.get_volume()?)
                    }
                })
                .await?;
            print_volume(&v, as_json, "resized");
        }
        VolumeCommand::Snapshot { name, snapshot } => {
            let v = client
                .with_volumes(|api| {
                    let (name, snapshot) = (name.clone(), snapshot.clone());
                    async move {
                        let mut call = api.snapshot_request();
                        call.get().set_name(&name);
                        call.get().set_snapshot(&snapshot);
                        let reply = call.send().promise.await?;
                        info_json(reply.get()?.get_volume()?)
                    }
                })
                .await?;
            print_volume(&v, as_json, "created");
        }
        VolumeCommand::Clone { snapshot, name } => {
            let v = client
                .with_volumes(|api| {
                    let (name, snapshot) = (name.clone(), snapshot.clone());
                    async move {
                        let mut call = api.clone_snapshot_request();
                        call.get().set_snapshot(&snapshot);
                        call.get().set_name(&name);
                        let reply = call.send().promise.await?;
                        info_json(reply.get()?.get_volume()?)
                    }
                })
                .await?;
            print_volume(&v, as_json, "cloned");
        }
        VolumeCommand::Rm { name } => {
            client
                .with_volumes(|api| {
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
                println!("deleted {name}");
            }
        }
        VolumeCommand::Attach { name, ttl } => {
            let (uri, expires) = attach(client, &name, ttl.unwrap_or(0)).await?;
            if as_json {
                println!("{}", json!({"uri": uri, "expires_at_ms": expires}));
            } else {
                println!("{uri}");
            }
        }
        VolumeCommand::Import {
            name,
            file,
            from_url,
            format,
        } => import(client, &name, file, from_url, format, as_json).await?,
    }
    Ok(())
}

/// Runs a tool, failing with its stderr.
fn tool(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Process::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The image's format and virtual size, as qemu-img sees them.
fn image_info(path: &Path, format: Option<&str>) -> anyhow::Result<(String, u64)> {
    let path_text = path.display().to_string();
    let mut args = vec!["info", "--output=json"];
    if let Some(f) = format {
        args.extend(["-f", f]);
    }
    args.push(&path_text);
    let info: Value =
        serde_json::from_str(&tool("qemu-img", &args)?).context("qemu-img info printed no JSON")?;
    let format = info["format"]
        .as_str()
        .context("qemu-img info gave no format")?
        .to_owned();
    let size = info["virtual-size"]
        .as_u64()
        .context("qemu-img info gave no virtual size")?;
    Ok((format, size))
}

async fn import(
    client: &mut Client,
    name: &str,
    file: Option<PathBuf>,
    from_url: Option<String>,
    format: Option<String>,
    as_json: bool,
) -> anyhow::Result<()> {
    let download = match &from_url {
        Some(url) => {
            let path =
                std::env::temp_dir().join(format!("photon-import-{}-{}", std::process::id(), name));
            eprintln!("downloading {url}");
            let status = Process::new("curl")
                .args(["-fL", "--progress-bar", "-o"])
                .arg(&path)
                .arg(url)
                .status()
                .context("cannot run curl (apt-get install curl)")?;
            if !status.success() {
                let _ = std::fs::remove_file(&path);
                bail!("download of {url} failed ({status})");
            }
            Some(path)
        }
        None => None,
    };
    let source = download
        .clone()
        .or(file)
        .context("give an image file or --from-url")?;
    let result = import_file(client, name, &source, format.as_deref(), as_json).await;
    if let Some(path) = download {
        let _ = std::fs::remove_file(path);
    }
    result
}

async fn import_file(
    client: &mut Client,
    name: &str,
    source: &Path,
    format: Option<&str>,
    as_json: bool,
) -> anyhow::Result<()> {
    let (format, virtual_size) = image_info(source, format)?;
    let existing = info(client, name).await.ok();
    let fresh = existing.is_none();
    let volume = match existing {
        Some(v) => {
            let size = v["size"].as_u64().unwrap_or(0);
            if size < virtual_size {
                bail!("volume {name} holds {size} bytes but the image needs {virtual_size}; grow it with `photon ctl volume resize`");
            }
            v
        }
        None => {
            let size = virtual_size.max(1).div_ceil(4096) * 4096;
            create(client, name, size, 4096).await?
        }
    };
    let (uri, _) = attach(client, name, 3600).await?;
    let source_text = source.display().to_string();
    let mut args = vec![
        "convert", "-p", "-n", "-W", "-m", "8", "-f", &format, "-O", "raw",
    ];
    if fresh {
        // A new volume reads as zeroes: zero runs of the image are skipped.
        args.push("--target-is-zero");
    }
    args.push(&source_text);
    args.push(&uri);
    eprintln!(
        "importing {} ({format}, {}) into volume {name}",
        source.display(),
        human(virtual_size)
    );
    let status = Process::new("qemu-img")
        .args(&args)
        .status()
        .context("cannot run qemu-img (apt-get install qemu-utils)")?;
    if !status.success() {
        bail!("qemu-img convert failed ({status})");
    }
    if as_json {
        println!(
            "{}",
            json!({"imported": name, "format": format, "virtual_size": virtual_size, "volume": volume})
        );
    } else {
        println!("imported {} into volume {name}", source.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999P").is_err());
        assert_eq!(parse_duration_s("90"), Ok(90));
        assert_eq!(parse_duration_s("30m"), Ok(1800));
        assert_eq!(parse_duration_s("7d"), Ok(7 * 86400));
        assert!(parse_duration_s("h").is_err());
    }
}
