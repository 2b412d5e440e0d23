//! The CoronaFS block volume API.

use photon_schema::volumes_capnp::{volume_info, volumes};

use super::{reply, text, unit_call, Attempt, Caps, Client, ClientError};

/// A volume or snapshot as the control plane keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VolumeInfo {
    /// `vol`, or `vol@snap` for a snapshot.
    pub name: String,
    /// Printed as a string in JSON (it does not fit a double).
    #[serde(serialize_with = "as_string")]
    pub id: u64,
    /// `volume` or `snapshot`.
    pub kind: String,
    /// Bytes.
    pub size: u64,
    pub block_size: u32,
    /// The snapshot a clone started from, or the volume a snapshot froze.
    pub parent: Option<String>,
    pub tenant: String,
    pub project: String,
    pub node: u64,
    pub shard: u32,
    pub created_ms: u64,
    /// Bytes of data the volume's extents hold; None when the node could
    /// not say (the owner shard did not answer, or another node serves the
    /// volume), never a made-up 0.
    pub allocated_bytes: Option<u64>,
}

/// An attach token for a volume, and the `nbd://` URI that carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attachment {
    pub uri: String,
    /// The URI's export name; not serialized (the URI carries it).
    #[serde(skip_serializing)]
    pub token: String,
    pub expires_at_ms: u64,
}

fn as_string<S: serde::Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn read_volume(v: volume_info::Reader<'_>) -> Attempt<VolumeInfo> {
    let parent = text(v.get_parent())?;
    Ok(VolumeInfo {
        name: text(v.get_name())?,
        id: v.get_id(),
        kind: text(v.get_kind())?,
        size: v.get_size(),
        block_size: v.get_block_size(),
        parent: (!parent.is_empty()).then_some(parent),
        tenant: text(v.get_tenant())?,
        project: text(v.get_project())?,
        node: v.get_node(),
        shard: v.get_shard(),
        created_ms: v.get_created_ms(),
        allocated_bytes: v.get_allocated_known().then(|| v.get_allocated_bytes()),
    })
}

/// The session's `Volumes` capability (pipelined: no extra round trip).
fn api(caps: &Caps) -> volumes::Client {
    caps.session()
        .volumes_request()
        .send()
        .pipeline
        .get_volumes()
}

impl Client {
    /// The project's volumes and snapshots.
    pub async fn list_volumes(&mut self) -> Result<Vec<VolumeInfo>, ClientError> {
        self.with_session(|caps| async move {
            let reply = api(&caps).list_request().send().promise.await?;
            reply!(reply.get()?)
                .get_volumes()?
                .iter()
                .map(read_volume)
                .collect()
        })
        .await
    }

    /// Creates a thin volume of `size` bytes.
    pub async fn create_volume(
        &mut self,
        name: &str,
        size: u64,
        block_size: u32,
    ) -> Result<VolumeInfo, ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).create_request();
            {
                let mut p = call.get();
                p.set_name(name);
                p.set_size(size);
                p.set_block_size(block_size);
            }
            let reply = call.send().promise.await?;
            read_volume(reply!(reply.get()?).get_volume()?)
        })
        .await
    }

    /// One volume or snapshot, with the bytes it holds.
    pub async fn volume_info(&mut self, name: &str) -> Result<VolumeInfo, ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).info_request();
            call.get().set_name(name);
            let reply = call.send().promise.await?;
            read_volume(reply!(reply.get()?).get_volume()?)
        })
        .await
    }

    /// Grows a volume to `size` bytes (never shrinks); connected clients
    /// see the new size when they reconnect.
    pub async fn resize_volume(
        &mut self,
        name: &str,
        size: u64,
    ) -> Result<VolumeInfo, ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).resize_request();
            call.get().set_name(name);
            call.get().set_size(size);
            let reply = call.send().promise.await?;
            read_volume(reply!(reply.get()?).get_volume()?)
        })
        .await
    }

    /// Freezes volume `name` as the read-only `name@snapshot`.
    pub async fn snapshot_volume(
        &mut self,
        name: &str,
        snapshot: &str,
    ) -> Result<VolumeInfo, ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).snapshot_request();
            call.get().set_name(name);
            call.get().set_snapshot(snapshot);
            let reply = call.send().promise.await?;
            read_volume(reply!(reply.get()?).get_volume()?)
        })
        .await
    }

    /// A new writable volume `name` sharing the extents of `snapshot`
    /// (`vol@snap`).
    pub async fn clone_snapshot(
        &mut self,
        snapshot: &str,
        name: &str,
    ) -> Result<VolumeInfo, ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).clone_snapshot_request();
            call.get().set_snapshot(snapshot);
            call.get().set_name(name);
            let reply = call.send().promise.await?;
            read_volume(reply!(reply.get()?).get_volume()?)
        })
        .await
    }

    /// Deletes a volume or snapshot (extents a snapshot or clone shares stay).
    pub async fn delete_volume(&mut self, name: &str) -> Result<(), ClientError> {
        unit_call!(self, api, delete_request, |p| {
            p.set_name(name);
        })
    }

    /// An attach token for the volume, valid `ttl_seconds` (0: the server's
    /// default), and the `nbd://` URI that carries it.
    pub async fn attach_volume(
        &mut self,
        name: &str,
        ttl_seconds: u32,
    ) -> Result<Attachment, ClientError> {
        self.with_session(|caps| async move {
            let mut call = api(&caps).attach_request();
            call.get().set_name(name);
            call.get().set_ttl_seconds(ttl_seconds);
            let reply = call.send().promise.await?;
            let r = reply!(reply.get()?);
            Ok(Attachment {
                uri: text(r.get_uri())?,
                token: text(r.get_token())?,
                expires_at_ms: r.get_expires_at_ms(),
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_json_keeps_the_cli_keys_and_types() {
        let v = VolumeInfo {
            name: "test1".into(),
            id: 2086477676410336649,
            kind: "volume".into(),
            size: 1 << 30,
            block_size: 4096,
            parent: None,
            tenant: "system".into(),
            project: "default".into(),
            node: 1,
            shard: 0,
            created_ms: 5,
            allocated_bytes: None,
        };
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "test1", "id": "2086477676410336649", "kind": "volume",
                "size": 1u64 << 30, "block_size": 4096, "parent": null,
                "tenant": "system", "project": "default", "node": 1, "shard": 0,
                "created_ms": 5, "allocated_bytes": null,
            })
        );
        let a = Attachment {
            uri: "nbd://h:1/t".into(),
            token: "t".into(),
            expires_at_ms: 9,
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({"uri": "nbd://h:1/t", "expires_at_ms": 9})
        );
    }
}
