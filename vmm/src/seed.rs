//! A cloud-init NoCloud seed: a small FAT disk image labelled `cidata` that
//! holds `meta-data`, `user-data` and, for a static address,
//! `network-config` (the v2 format). The VM gets it as a read-only disk;
//! cloud-init in the guest finds it by its label.
//!
//! Every value written into the YAML files is checked first (hostname,
//! instance id, SSH keys) or comes from a typed value (addresses, the MAC),
//! and is written double-quoted, so no input can add a key or a document:
//! validate first, escape only what a valid SSH key line may hold (`"`, `\`).
//! The user's own user-data is written as given, within its limit.

use std::fmt::Write as _;
use std::io::{Cursor, Seek, SeekFrom, Write};
use std::net::IpAddr;

use fatfs::{FileSystem, FormatVolumeOptions, FsOptions};

/// The largest user-data accepted, as given by the user.
pub const USER_DATA_BYTES_MAX: usize = 64 * 1024;
/// SSH keys per seed.
pub const SSH_KEYS_MAX: usize = 32;
/// One SSH key line (options, type, key, comment): a 16384-bit RSA key is
/// under 3 KiB, which leaves room for options.
pub const SSH_KEY_BYTES_MAX: usize = 8 * 1024;
/// cloud-init keeps an instance's state under `/var/lib/cloud/instances/<id>`.
pub const INSTANCE_ID_BYTES_MAX: usize = 128;
/// A DNS name, dots included (RFC 1035).
pub const HOSTNAME_BYTES_MAX: usize = 253;
/// One label of a DNS name (RFC 1123).
pub const HOSTNAME_LABEL_BYTES_MAX: usize = 63;
/// The resolver reads at most three `nameserver` lines (glibc's MAXNS).
pub const DNS_SERVERS_MAX: usize = 3;
/// The smallest image. With the limits above every seed fits in it (at
/// most about 600 KiB of files), so in practice this is the size: FAT12 with
/// 512-byte clusters. Smaller would save nothing worth having (the host
/// keeps a MiB per VM) and nears the sizes where FAT12 geometry fails.
pub const IMAGE_BYTES_MIN: usize = 1 << 20;
/// The largest image, should the limits above ever grow.
pub const IMAGE_BYTES_MAX: usize = 4 << 20;
/// Room in the image beyond the files: boot sector, two FATs, the
/// 512-entry root directory (16 KiB), long file names and the last cluster
/// of each file; 128 KiB is several times what that takes.
const IMAGE_OVERHEAD_BYTES: usize = 128 * 1024;

/// The interface the static address goes to; the guest renames the NIC
/// with the seed's MAC to it.
pub const INTERFACE_NAME: &str = "eth0";

/// What one VM's first boot is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// cloud-init runs its once-per-instance steps again when this changes.
    pub instance_id: String,
    /// A DNS name: labels of letters, digits and inner hyphens.
    pub hostname: String,
    /// Written as given (a `#cloud-config`, a script, MIME multipart, ...);
    /// `None` writes a `#cloud-config` that installs `ssh_keys`.
    pub user_data: Option<Vec<u8>>,
    /// `authorized_keys` lines for the default user; they go to meta-data's
    /// `public-keys` whatever the user-data.
    pub ssh_keys: Vec<String>,
    /// `None`: the image's own network setup (usually DHCP).
    pub network: Option<StaticAddress>,
}

/// A static address for the NIC with `mac`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticAddress {
    pub mac: [u8; 6],
    pub address: IpAddr,
    pub prefix_len: u8,
    /// The default route's next hop, inside `address/prefix_len`.
    pub gateway: IpAddr,
    /// At most [`DNS_SERVERS_MAX`]; empty leaves the resolver as it is.
    pub dns: Vec<IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(
        "instance id {0:?}: 1 to {INSTANCE_ID_BYTES_MAX} letters, digits, \
         '.', '_', ':' or '-', not starting with '.'"
    )]
    InstanceId(String),
    #[error(
        "hostname {0:?}: labels of 1 to {HOSTNAME_LABEL_BYTES_MAX} letters, digits \
         and inner hyphens, joined by dots, {HOSTNAME_BYTES_MAX} bytes at most"
    )]
    Hostname(String),
    #[error("user-data of {0} bytes, over the limit of {USER_DATA_BYTES_MAX}")]
    UserDataTooLarge(usize),
    #[error("{0} SSH keys, over the limit of {SSH_KEYS_MAX}")]
    TooManySshKeys(usize),
    #[error("SSH key {index}: {reason}")]
    SshKey { index: usize, reason: &'static str },
    #[error("static address: {0}")]
    Network(&'static str),
    #[error("the seed's files need {0} bytes, over the image limit of {IMAGE_BYTES_MAX}")]
    ImageTooLarge(usize),
    #[error("writing the FAT image")]
    Image(#[source] std::io::Error),
}

/// The seed's disk image (raw, a whole number of MiB).
pub fn build(seed: &Seed) -> Result<Vec<u8>, SeedError> {
    check_instance_id(&seed.instance_id)?;
    check_hostname(&seed.hostname)?;
    if seed.ssh_keys.len() > SSH_KEYS_MAX {
        return Err(SeedError::TooManySshKeys(seed.ssh_keys.len()));
    }
    for (index, key) in seed.ssh_keys.iter().enumerate() {
        check_ssh_key(key).map_err(|reason| SeedError::SshKey { index, reason })?;
    }
    if let Some(user_data) = &seed.user_data {
        if user_data.len() > USER_DATA_BYTES_MAX {
            return Err(SeedError::UserDataTooLarge(user_data.len()));
        }
    }
    if let Some(network) = &seed.network {
        check_network(network).map_err(SeedError::Network)?;
    }

    let meta_data = meta_data(seed);
    let user_data = match &seed.user_data {
        Some(given) => given.clone(),
        None => default_user_data(&seed.ssh_keys),
    };
    let mut files = vec![
        ("meta-data", meta_data.into_bytes()),
        ("user-data", user_data),
    ];
    if let Some(network) = &seed.network {
        files.push(("network-config", network_config(network).into_bytes()));
    }
    image(&files, volume_id(&seed.instance_id))
}

fn check_instance_id(id: &str) -> Result<(), SeedError> {
    let allowed = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-');
    let valid = !id.is_empty()
        && id.len() <= INSTANCE_ID_BYTES_MAX
        && !id.starts_with('.')
        && id.bytes().all(allowed);
    if valid {
        Ok(())
    } else {
        Err(SeedError::InstanceId(shortened(id)))
    }
}

/// RFC 1123 host names: each label 1 to 63 letters, digits and hyphens,
/// neither starting nor ending with a hyphen.
fn check_hostname(hostname: &str) -> Result<(), SeedError> {
    let label_valid = |label: &str| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= HOSTNAME_LABEL_BYTES_MAX
            && bytes
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || c == b'-')
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-')
    };
    // All digits would read as an IPv4 address's last part, or a number.
    let valid = hostname.len() <= HOSTNAME_BYTES_MAX
        && hostname.split('.').all(label_valid)
        && !hostname.bytes().all(|c| c.is_ascii_digit() || c == b'.');
    if valid {
        Ok(())
    } else {
        Err(SeedError::Hostname(shortened(hostname)))
    }
}

/// One `authorized_keys` line: printable ASCII (no newline can end the YAML
/// string early, no Unicode line separator), at least a type and a key.
fn check_ssh_key(key: &str) -> Result<(), &'static str> {
    if key.len() > SSH_KEY_BYTES_MAX {
        return Err("longer than the limit of 8 KiB");
    }
    if !key.bytes().all(|c| (b' '..=b'~').contains(&c)) {
        return Err("holds a character that is not printable ASCII (a newline?)");
    }
    if key.split(' ').filter(|field| !field.is_empty()).count() < 2 {
        return Err("is not a key type followed by a key");
    }
    Ok(())
}

fn check_network(network: &StaticAddress) -> Result<(), &'static str> {
    let StaticAddress {
        mac,
        address,
        prefix_len,
        gateway,
        dns,
    } = network;
    if mac[0] & 1 != 0 || *mac == [0; 6] {
        return Err("the MAC is not a unicast address");
    }
    let usable = |ip: &IpAddr| !(ip.is_unspecified() || ip.is_multicast() || ip.is_loopback());
    if !usable(address) || !usable(gateway) {
        return Err("the address and the gateway must be unicast, not loopback");
    }
    let bits = match (address, gateway) {
        (IpAddr::V4(_), IpAddr::V4(_)) => 32,
        (IpAddr::V6(_), IpAddr::V6(_)) => 128,
        _ => return Err("the address and the gateway are of different families"),
    };
    if *prefix_len == 0 || u32::from(*prefix_len) > bits {
        return Err("the prefix length is out of range for the address");
    }
    if address == gateway || network_of(address, *prefix_len) != network_of(gateway, *prefix_len) {
        return Err("the gateway must be another address of the same subnet");
    }
    if dns.len() > DNS_SERVERS_MAX {
        return Err("more DNS servers than the resolver reads (3)");
    }
    if !dns
        .iter()
        .all(|server| !server.is_unspecified() && !server.is_multicast())
    {
        return Err("a DNS server is not a unicast address");
    }
    Ok(())
}

/// `ip` with its host bits cleared, as a 128-bit number.
fn network_of(ip: &IpAddr, prefix_len: u8) -> u128 {
    let (value, bits) = match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(*v4)), 32),
        IpAddr::V6(v6) => (u128::from(*v6), 128),
    };
    let host_bits = bits - u32::from(prefix_len);
    value.checked_shr(host_bits).unwrap_or(0)
}

/// A YAML double-quoted scalar. The callers' values are printable ASCII
/// (checked above); only `"` and `\` need escaping.
fn quoted(value: &str) -> String {
    debug_assert!(value.bytes().all(|c| (b' '..=b'~').contains(&c)));
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn meta_data(seed: &Seed) -> String {
    let mut out = format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        quoted(&seed.instance_id),
        quoted(&seed.hostname)
    );
    if !seed.ssh_keys.is_empty() {
        out.push_str("public-keys:\n");
        for key in &seed.ssh_keys {
            let _ = writeln!(out, "  - {}", quoted(key));
        }
    }
    out
}

fn default_user_data(ssh_keys: &[String]) -> Vec<u8> {
    let mut out = String::from("#cloud-config\n");
    if ssh_keys.is_empty() {
        out.push_str("{}\n");
    } else {
        out.push_str("ssh_authorized_keys:\n");
        for key in ssh_keys {
            let _ = writeln!(out, "  - {}", quoted(key));
        }
    }
    out.into_bytes()
}

fn network_config(network: &StaticAddress) -> String {
    let mac = network
        .mac
        .iter()
        .map(|octet| format!("{octet:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let default_route = match network.address {
        IpAddr::V4(_) => "0.0.0.0/0",
        IpAddr::V6(_) => "::/0",
    };
    let mut out = String::from("version: 2\nethernets:\n");
    let _ = write!(
        out,
        "  {INTERFACE_NAME}:\n    match:\n      macaddress: {mac}\n    set-name: {name}\n    \
         dhcp4: false\n    dhcp6: false\n    addresses:\n      - {address}\n    \
         routes:\n      - to: {to}\n        via: {via}\n",
        mac = quoted(&mac),
        name = quoted(INTERFACE_NAME),
        address = quoted(&format!("{}/{}", network.address, network.prefix_len)),
        to = quoted(default_route),
        via = quoted(&network.gateway.to_string()),
    );
    if !network.dns.is_empty() {
        out.push_str("    nameservers:\n      addresses:\n");
        for server in &network.dns {
            let _ = writeln!(out, "        - {}", quoted(&server.to_string()));
        }
    }
    out
}

/// The image's size: the files and [`IMAGE_OVERHEAD_BYTES`], rounded up to
/// a MiB, at least [`IMAGE_BYTES_MIN`].
fn image_bytes(files: &[(&str, Vec<u8>)]) -> Result<usize, SeedError> {
    let files_bytes: usize = files.iter().map(|(_, content)| content.len()).sum();
    let needed = files_bytes + IMAGE_OVERHEAD_BYTES;
    if needed > IMAGE_BYTES_MAX {
        return Err(SeedError::ImageTooLarge(needed));
    }
    Ok((needed.div_ceil(1 << 20) << 20).max(IMAGE_BYTES_MIN))
}

/// A FAT volume id per instance (what `blkid` shows as the UUID), so that
/// two seeds never look like one disk; FNV-1a of the instance id.
fn volume_id(instance_id: &str) -> u32 {
    instance_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The label cloud-init looks for (it accepts `cidata` and `CIDATA`). It
/// goes into the boot sector, where `blkid` reads it when the root
/// directory has no label entry (fatfs writes none).
const LABEL: [u8; 11] = *b"cidata     ";

/// Files get this fixed date, 1980-01-01, the first a FAT date can hold:
/// the same seed always makes the same image.
#[derive(Debug)]
struct FixedTime;

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

static FIXED_TIME: FixedTime = FixedTime;

fn image(files: &[(&str, Vec<u8>)], volume_id: u32) -> Result<Vec<u8>, SeedError> {
    let mut disk = Cursor::new(vec![0u8; image_bytes(files)?]);
    let options = FormatVolumeOptions::new()
        .volume_label(LABEL)
        .volume_id(volume_id);
    fatfs::format_volume(&mut disk, options).map_err(SeedError::Image)?;
    disk.seek(SeekFrom::Start(0)).map_err(SeedError::Image)?;
    let fs = FileSystem::new(&mut disk, FsOptions::new().time_provider(&FIXED_TIME))
        .map_err(SeedError::Image)?;
    {
        let root = fs.root_dir();
        for (name, content) in files {
            let mut file = root.create_file(name).map_err(SeedError::Image)?;
            file.write_all(content).map_err(SeedError::Image)?;
            file.flush().map_err(SeedError::Image)?;
        }
    }
    fs.unmount().map_err(SeedError::Image)?;
    Ok(disk.into_inner())
}

/// `value` for an error message: at most 64 characters of it.
fn shortened(value: &str) -> String {
    value.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0m2yFh8r3Xz6gS1o6yZ2bq0xS2b0wJ8mYk1b8q7aQ ops@example";

    fn seed() -> Seed {
        Seed {
            instance_id: "i-0123456789abcdef".into(),
            hostname: "web-1".into(),
            user_data: None,
            ssh_keys: vec![KEY.into()],
            network: Some(StaticAddress {
                mac: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
                address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
                prefix_len: 24,
                gateway: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                dns: vec![IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))],
            }),
        }
    }

    /// The image's label and its files, read back with fatfs.
    fn read_back(image: Vec<u8>) -> (String, Vec<(String, String)>) {
        let fs = FileSystem::new(Cursor::new(image), FsOptions::new()).unwrap();
        let label = fs.volume_label();
        let mut files = Vec::new();
        for entry in fs.root_dir().iter() {
            let entry = entry.unwrap();
            let mut content = String::new();
            entry.to_file().read_to_string(&mut content).unwrap();
            files.push((entry.file_name(), content));
        }
        files.sort();
        (label, files)
    }

    #[test]
    fn a_seed_reads_back_with_its_label_and_files() {
        let image = build(&seed()).unwrap();
        assert_eq!(image.len(), IMAGE_BYTES_MIN);
        let (label, files) = read_back(image);
        assert_eq!(label, "cidata");
        let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["meta-data", "network-config", "user-data"]);
        assert_eq!(
            files[0].1,
            format!(
                "instance-id: \"i-0123456789abcdef\"\nlocal-hostname: \"web-1\"\n\
                 public-keys:\n  - \"{KEY}\"\n"
            )
        );
        assert_eq!(
            files[1].1,
            "version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: \"52:54:00:12:34:56\"\n    \
             set-name: \"eth0\"\n    dhcp4: false\n    dhcp6: false\n    addresses:\n      - \"10.0.0.5/24\"\n    \
             routes:\n      - to: \"0.0.0.0/0\"\n        via: \"10.0.0.1\"\n    \
             nameservers:\n      addresses:\n        - \"10.0.0.2\"\n"
        );
        assert_eq!(
            files[2].1,
            format!("#cloud-config\nssh_authorized_keys:\n  - \"{KEY}\"\n")
        );
    }

    #[test]
    fn given_user_data_is_written_as_is_and_no_network_writes_no_network_config() {
        let mut seed = seed();
        seed.user_data = Some(b"#!/bin/sh\necho \"hello\"\n".to_vec());
        seed.network = None;
        seed.ssh_keys.clear();
        let (_, files) = read_back(build(&seed).unwrap());
        assert_eq!(files.len(), 2);
        assert_eq!(
            files[1],
            ("user-data".into(), "#!/bin/sh\necho \"hello\"\n".into())
        );
        assert!(!files[0].1.contains("public-keys"));

        seed.user_data = None;
        let (_, files) = read_back(build(&seed).unwrap());
        assert_eq!(files[1].1, "#cloud-config\n{}\n");
    }

    #[test]
    fn the_same_seed_makes_the_same_image() {
        assert_eq!(build(&seed()).unwrap(), build(&seed()).unwrap());
        let mut other = seed();
        other.instance_id = "i-other".into();
        assert_ne!(build(&seed()).unwrap(), build(&other).unwrap());
    }

    #[test]
    fn ipv6_addresses_route_through_their_gateway() {
        let mut seed = seed();
        seed.network = Some(StaticAddress {
            mac: [0x02, 0, 0, 0, 0, 1],
            address: IpAddr::V6("fd00::5".parse::<Ipv6Addr>().unwrap()),
            prefix_len: 64,
            gateway: IpAddr::V6("fd00::1".parse::<Ipv6Addr>().unwrap()),
            dns: Vec::new(),
        });
        let (_, files) = read_back(build(&seed).unwrap());
        let config = &files[1].1;
        assert!(config.contains("      - \"fd00::5/64\"\n"), "{config}");
        assert!(
            config.contains("to: \"::/0\"\n        via: \"fd00::1\"\n"),
            "{config}"
        );
        assert!(!config.contains("nameservers"), "{config}");
    }

    #[test]
    fn keys_with_quotes_and_backslashes_stay_one_yaml_string() {
        let key = r#"command="echo \"hi\" \\",no-pty ssh-ed25519 AAAAC3Nza ops"#;
        assert_eq!(
            quoted(key),
            r#""command=\"echo \\\"hi\\\" \\\\\",no-pty ssh-ed25519 AAAAC3Nza ops""#
        );
        let mut seed = seed();
        seed.ssh_keys = vec![key.into()];
        build(&seed).unwrap();
    }

    #[test]
    fn the_largest_seed_fits() {
        let mut seed = seed();
        seed.instance_id = "i".repeat(INSTANCE_ID_BYTES_MAX);
        let key = format!("ssh-rsa {}", "A".repeat(SSH_KEY_BYTES_MAX - 8));
        seed.ssh_keys = vec![key; SSH_KEYS_MAX];
        let image = build(&seed).unwrap();
        assert_eq!(image.len(), IMAGE_BYTES_MIN);
        let (_, files) = read_back(image);
        assert!(files[2].1.len() > SSH_KEYS_MAX * SSH_KEY_BYTES_MAX);

        seed.user_data = Some(vec![b'#'; USER_DATA_BYTES_MAX]);
        let (_, files) = read_back(build(&seed).unwrap());
        assert_eq!(files[2].1.len(), USER_DATA_BYTES_MAX);
    }

    #[test]
    fn every_image_size_up_to_the_limit_formats() {
        for mib in 1..=IMAGE_BYTES_MAX >> 20 {
            let files = vec![("user-data", vec![b'x'; (mib << 20) - IMAGE_OVERHEAD_BYTES])];
            assert_eq!(image_bytes(&files).unwrap(), mib << 20);
            let (label, read) = read_back(image(&files, 1).unwrap());
            assert_eq!(label, "cidata");
            assert_eq!(read[0].1.len(), (mib << 20) - IMAGE_OVERHEAD_BYTES);
        }
        let files = vec![("user-data", vec![b'x'; IMAGE_BYTES_MAX])];
        assert!(matches!(
            image_bytes(&files),
            Err(SeedError::ImageTooLarge(_))
        ));
    }

    #[test]
    fn limits_and_bad_values_are_refused() {
        let refused = |change: fn(&mut Seed)| {
            let mut seed = seed();
            change(&mut seed);
            build(&seed).unwrap_err()
        };
        let error = refused(|s| s.user_data = Some(vec![0; USER_DATA_BYTES_MAX + 1]));
        assert!(matches!(error, SeedError::UserDataTooLarge(n) if n == USER_DATA_BYTES_MAX + 1));
        let error = refused(|s| s.ssh_keys = vec![KEY.into(); SSH_KEYS_MAX + 1]);
        assert!(matches!(error, SeedError::TooManySshKeys(_)));

        for bad in [
            "", "-web", "web-", "we_b", "web 1", "a..b", "web\n1", "1.2.3.4", "web.", "wéb",
        ] {
            let mut seed = seed();
            seed.hostname = bad.into();
            assert!(
                matches!(build(&seed), Err(SeedError::Hostname(_))),
                "{bad:?}"
            );
        }
        let mut long_label = seed();
        long_label.hostname = "a".repeat(HOSTNAME_LABEL_BYTES_MAX + 1);
        assert!(matches!(build(&long_label), Err(SeedError::Hostname(_))));
        let mut long_name = seed();
        long_name.hostname = vec!["a".repeat(63); 4].join(".");
        assert_eq!(long_name.hostname.len(), 255);
        assert!(matches!(build(&long_name), Err(SeedError::Hostname(_))));
        let mut fqdn = seed();
        fqdn.hostname = "web-1.eu-west.example.com".into();
        build(&fqdn).unwrap();

        for bad in [
            "",
            ".hidden",
            "i/../../etc",
            "i-1\"\n",
            &"i".repeat(INSTANCE_ID_BYTES_MAX + 1),
        ] {
            let mut seed = seed();
            seed.instance_id = bad.into();
            assert!(
                matches!(build(&seed), Err(SeedError::InstanceId(_))),
                "{bad:?}"
            );
        }

        let long_key = format!("ssh-rsa {}", "A".repeat(SSH_KEY_BYTES_MAX));
        for bad in [
            format!("{KEY}\nssh-rsa AAAA injected"),
            format!("{KEY}\r"),
            format!("{KEY}\u{2028}"),
            "ssh-ed25519".into(),
            long_key,
        ] {
            let mut seed = seed();
            seed.ssh_keys = vec![KEY.into(), bad.clone()];
            assert!(
                matches!(build(&seed), Err(SeedError::SshKey { index: 1, .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_static_addresses_are_refused() {
        let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        let changes: [fn(&mut StaticAddress); 10] = [
            |n| n.mac = [0x01, 0, 0, 0, 0, 1],
            |n| n.mac = [0; 6],
            |n| n.prefix_len = 0,
            |n| n.prefix_len = 33,
            |n| n.gateway = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
            |n| n.gateway = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1)),
            |n| n.gateway = n.address,
            |n| n.address = IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            |n| n.dns = vec![IpAddr::V4(Ipv4Addr::new(9, 9, 9, 9)); DNS_SERVERS_MAX + 1],
            |n| n.dns = vec![IpAddr::V4(Ipv4Addr::new(224, 0, 0, 1))],
        ];
        for (index, change) in changes.into_iter().enumerate() {
            let mut seed = seed();
            change(seed.network.as_mut().unwrap());
            assert!(
                matches!(build(&seed), Err(SeedError::Network(_))),
                "change {index}"
            );
        }
        // A /31's other address and a /32 with no room for a gateway.
        let mut seed = seed();
        let network = seed.network.as_mut().unwrap();
        network.prefix_len = 31;
        network.address = v4(10, 0, 0, 0);
        network.gateway = v4(10, 0, 0, 1);
        build(&seed).unwrap();
        seed.network.as_mut().unwrap().prefix_len = 32;
        assert!(matches!(build(&seed), Err(SeedError::Network(_))));
    }
}
