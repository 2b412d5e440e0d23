//! `photon ctl volume`: CoronaFS block volumes of the caller's project.

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::{bail, Context};
use clap::Subcommand;
use photon_control::client::{Client, Code, VolumeInfo};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ctl::fetch::{Fetched, Source};
use crate::ctl::output::Output;
use crate::ctl::utc_time;

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
    /// Fill a volume from a raw or qcow2 image (a file, a URL or an S3
    /// object), creating it with the image's size when it does not exist.
    Import {
        name: String,
        /// The image file.
        #[arg(required_unless_present = "from_url", conflicts_with = "from_url")]
        file: Option<PathBuf>,
        /// Download the image first (needs curl): an http(s):// URL, or
        /// s3://BUCKET/KEY with the aws CLI's AWS_* variables.
        #[arg(long, value_parser = Source::parse_remote)]
        from_url: Option<Source>,
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

pub async fn run(client: &mut Client, cmd: VolumeCommand, out: Output) -> anyhow::Result<()> {
    match cmd {
        VolumeCommand::Create {
            name,
            size,
            block_size,
        } => {
            let v = client.create_volume(&name, size, block_size).await?;
            show_volume(&v, out, "created");
        }
        VolumeCommand::Ls => ls(client, out).await?,
        VolumeCommand::Info { name } => info(client, &name, out).await?,
        VolumeCommand::Resize { name, size } => {
            let v = client.resize_volume(&name, size).await?;
            show_volume(&v, out, "resized");
        }
        VolumeCommand::Snapshot { name, snapshot } => {
            let v = client.snapshot_volume(&name, &snapshot).await?;
            show_volume(&v, out, "created");
        }
        VolumeCommand::Clone { snapshot, name } => {
            let v = client.clone_snapshot(&snapshot, &name).await?;
            show_volume(&v, out, "cloned");
        }
        VolumeCommand::Rm { name } => {
            client.delete_volume(&name).await?;
            out.done(json!({"deleted": name}), format!("deleted {name}"));
        }
        VolumeCommand::Attach { name, ttl } => {
            let attachment = client.attach_volume(&name, ttl.unwrap_or(0)).await?;
            out.show(&attachment, |a| a.uri.clone());
        }
        VolumeCommand::Import {
            name,
            file,
            from_url,
            format,
        } => import(client, &name, file, from_url, format, out).await?,
    }
    Ok(())
}

/// A volume a command made or changed: `VERB KIND NAME (SIZE, block size N)`.
fn show_volume(volume: &VolumeInfo, out: Output, verb: &str) {
    out.show(volume, |v| {
        format!(
            "{verb} {} {} ({}, block size {})",
            v.kind,
            v.name,
            human(v.size),
            v.block_size
        )
    });
}

async fn ls(client: &mut Client, out: Output) -> anyhow::Result<()> {
    let volumes = client.list_volumes().await?;
    out.list(
        &volumes,
        ["NAME", "KIND", "SIZE", "PARENT", "CREATED"],
        |v| {
            [
                v.name.clone(),
                v.kind.clone(),
                human(v.size),
                v.parent.clone().unwrap_or_else(|| "-".into()),
                utc_time(v.created_ms),
            ]
        },
    );
    Ok(())
}

async fn info(client: &mut Client, name: &str, out: Output) -> anyhow::Result<()> {
    let volume = client.volume_info(name).await?;
    out.show(&volume, info_text);
    Ok(())
}

/// `volume info` for people: one `key value` line per field.
fn info_text(v: &VolumeInfo) -> String {
    let allocated = match v.allocated_bytes {
        Some(used) => format!("{used} ({})", human(used)),
        None => "unknown".into(),
    };
    let lines = [
        ("name", v.name.clone()),
        ("kind", v.kind.clone()),
        ("id", v.id.to_string()),
        ("parent", v.parent.clone().unwrap_or_else(|| "-".into())),
        ("tenant", v.tenant.clone()),
        ("project", v.project.clone()),
        ("node", v.node.to_string()),
        ("shard", v.shard.to_string()),
        ("block_size", v.block_size.to_string()),
        ("size", format!("{} ({})", v.size, human(v.size))),
        ("allocated_bytes", allocated),
    ];
    lines
        .iter()
        .map(|(key, value)| format!("{key:<16} {value}\n"))
        .collect()
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

/// What `qemu-img info --output=json` says of an image (the fields used).
#[derive(Debug, Deserialize)]
pub struct QemuImageInfo {
    pub format: String,
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    #[serde(rename = "backing-filename", default)]
    pub backing_filename: Option<String>,
    #[serde(rename = "format-specific", default)]
    format_specific: Option<FormatSpecific>,
}

#[derive(Debug, Deserialize)]
struct FormatSpecific {
    #[serde(default)]
    data: Option<FormatData>,
}

#[derive(Debug, Deserialize)]
struct FormatData {
    /// A qcow2 image's external data file.
    #[serde(rename = "data-file", default)]
    data_file: Option<String>,
}

impl QemuImageInfo {
    /// Another file the image reads from: its backing file or data file.
    pub fn external_file(&self) -> Option<&str> {
        let data_file = self
            .format_specific
            .as_ref()
            .and_then(|f| f.data.as_ref()?.data_file.as_deref());
        self.backing_filename.as_deref().or(data_file)
    }
}

/// The image's format and virtual size, as qemu-img sees them.
pub fn qemu_image_info(path: &Path, format: Option<&str>) -> anyhow::Result<QemuImageInfo> {
    let path_text = path.display().to_string();
    let mut args = vec!["info", "--output=json"];
    if let Some(f) = format {
        args.extend(["-f", f]);
    }
    args.push(&path_text);
    serde_json::from_str(&tool("qemu-img", &args)?)
        .context("qemu-img info printed no JSON with a format and a virtual size")
}

/// What `volume import` reports.
#[derive(Debug, Serialize)]
struct Imported {
    imported: String,
    format: String,
    virtual_size: u64,
    volume: VolumeInfo,
}

async fn import(
    client: &mut Client,
    name: &str,
    file: Option<PathBuf>,
    from_url: Option<Source>,
    format: Option<String>,
    out: Output,
) -> anyhow::Result<()> {
    let source = from_url
        .or(file.map(Source::File))
        .context("give an image file or --from-url")?;
    // A download is removed when `fetched` goes, whatever happens.
    let fetched = crate::ctl::fetch::fetch(&source)?;
    import_file(client, name, &fetched, format.as_deref(), out).await
}

/// The volume to import an image of `virtual_size` bytes into: the existing
/// one if large enough, else a new one of that size. True if new.
async fn import_target(
    client: &mut Client,
    name: &str,
    virtual_size: u64,
) -> anyhow::Result<(VolumeInfo, bool)> {
    match client.volume_info(name).await {
        Ok(v) if v.size < virtual_size => bail!(
            "volume {name} holds {} bytes but the image needs {virtual_size}; grow it with `photon ctl volume resize`",
            v.size
        ),
        Ok(v) => Ok((v, false)),
        Err(e) if e.code() == Some(Code::NotFound) => {
            let size = virtual_size.max(1).div_ceil(4096) * 4096;
            Ok((client.create_volume(name, size, 4096).await?, true))
        }
        Err(e) => Err(e.into()),
    }
}

async fn import_file(
    client: &mut Client,
    name: &str,
    source: &Fetched,
    format: Option<&str>,
    out: Output,
) -> anyhow::Result<()> {
    let image = crate::ctl::fetch::image_info(source, format)?;
    let (volume, fresh) = import_target(client, name, image.virtual_size).await?;
    let attachment = client.attach_volume(name, 3600).await?;
    let path_text = source.path().display().to_string();
    let source_text = source.label();
    let mut args = vec![
        "convert",
        "-p",
        "-n",
        "-W",
        "-m",
        "8",
        "-f",
        &image.format,
        "-O",
        "raw",
    ];
    if fresh {
        // A new volume reads as zeroes: zero runs of the image are skipped.
        args.push("--target-is-zero");
    }
    args.push(&path_text);
    args.push(&attachment.uri);
    eprintln!(
        "importing {source_text} ({}, {}) into volume {name}",
        image.format,
        human(image.virtual_size)
    );
    let status = Process::new("qemu-img")
        .args(&args)
        .status()
        .context("cannot run qemu-img (apt-get install qemu-utils)")?;
    if !status.success() {
        bail!("qemu-img convert failed ({status})");
    }
    let report = Imported {
        imported: name.to_owned(),
        format: image.format,
        virtual_size: image.virtual_size,
        volume,
    };
    out.show(&report, |_| {
        format!("imported {source_text} into volume {name}")
    });
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

    #[test]
    fn qemu_img_info_reads_format_and_virtual_size() {
        let text = r#"{"virtual-size": 268435456, "filename": "image.qcow2",
                       "format": "qcow2", "dirty-flag": false}"#;
        let info: QemuImageInfo = serde_json::from_str(text).unwrap();
        assert_eq!(info.format, "qcow2");
        assert_eq!(info.virtual_size, 256 << 20);
        assert_eq!(info.external_file(), None);
        let backed: QemuImageInfo = serde_json::from_str(
            r#"{"virtual-size": 1, "format": "qcow2", "backing-filename": "/etc/base"}"#,
        )
        .unwrap();
        assert_eq!(backed.external_file(), Some("/etc/base"));
        let data: QemuImageInfo = serde_json::from_str(
            r#"{"virtual-size": 1, "format": "qcow2", "format-specific":
                {"type": "qcow2", "data": {"compat": "1.1", "data-file": "d.raw"}}}"#,
        )
        .unwrap();
        assert_eq!(data.external_file(), Some("d.raw"));
    }

    #[test]
    fn info_text_says_when_allocation_is_unknown() {
        let v = VolumeInfo {
            name: "disk1@nightly".into(),
            id: 7,
            kind: "snapshot".into(),
            size: 1 << 30,
            block_size: 4096,
            parent: Some("disk1".into()),
            tenant: "system".into(),
            project: "default".into(),
            node: 1,
            shard: 0,
            created_ms: 0,
            allocated_bytes: None,
        };
        let text = info_text(&v);
        assert!(
            text.starts_with("name             disk1@nightly\n"),
            "{text}"
        );
        assert!(text.contains("parent           disk1\n"), "{text}");
        assert!(
            text.contains("size             1073741824 (1.0 GiB)\n"),
            "{text}"
        );
        assert!(text.ends_with("allocated_bytes  unknown\n"), "{text}");
    }
}
