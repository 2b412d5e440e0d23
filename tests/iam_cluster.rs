//! IAM on three real `photon node` processes: a revoked token is refused by
//! every node within a second, a signing-key rotation keeps old tokens valid,
//! and a node restarted from its disk still verifies (and still refuses).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{block_on, Cluster};
use photon_control::client::Client;

/// Asks `node` itself (no redirect to the leader) who `token` is.
async fn whoami_on(node: SocketAddr, token: &str) -> Result<String, String> {
    let mut client = Client::with_token(vec![node], token.to_owned())
        .map_err(|e| e.to_string())?
        .pinned();
    client
        .whoami()
        .await
        .map(|identity| identity.token_id)
        .map_err(|e| e.to_string())
}

/// Waits until `node` accepts `token` (it may apply records a moment after
/// the leader), or gives the last refusal once `within` has passed.
async fn accepted_within(node: SocketAddr, token: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        match whoami_on(node, token).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Asserts that every node refuses `revoked` as revoked within a second of
/// `started` (the revoke call).
async fn refused_within_a_second(nodes: &[(u64, SocketAddr)], revoked: &str, started: Instant) {
    for (id, node) in nodes {
        loop {
            match whoami_on(*node, revoked).await {
                Err(e) if e.contains("revoked") => break,
                Err(e) => panic!("node {id}: unexpected refusal {e}"),
                Ok(_) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(1),
                        "node {id} still accepts the revoked token after {:?}",
                        started.elapsed()
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        eprintln!(
            "node {id} refuses the revoked token {:?} after the revoke call",
            started.elapsed()
        );
    }
}

#[test]
fn revocation_rotation_and_restart_on_three_nodes() {
    let mut cluster = Cluster::new("iam3");
    for id in 1..=3 {
        cluster.start(id);
    }
    let endpoints = cluster.endpoints();
    let admin = cluster.admin_token();
    let victim = cluster.admin_token();
    let keeper = cluster.admin_token();
    let nodes: Vec<(u64, SocketAddr)> = (1..=3).map(|id| (id, cluster.addresses[&id])).collect();

    let new_key = block_on(async {
        // Every node verifies every token locally (once it applied the
        // bootstrap records, a moment after the leader).
        for (id, node) in &nodes {
            for token in [&admin, &victim, &keeper] {
                accepted_within(*node, token, Duration::from_secs(5))
                    .await
                    .unwrap_or_else(|e| panic!("node {id} refused a valid token: {e}"));
            }
        }

        // Revoke one token and time until each node refuses it.
        let mut client = Cluster::client(endpoints.clone(), &admin);
        let started = Instant::now();
        client.revoke_token(&victim).await.unwrap();
        refused_within_a_second(&nodes, &victim, started).await;
        for (_, node) in &nodes {
            whoami_on(*node, &keeper).await.unwrap();
        }

        // Rotate the signing key.
        client.rotate_signing_key().await.unwrap()
    });
    // Old tokens keep working everywhere; new tokens are signed by the new
    // key and work everywhere too.
    let fresh = cluster.admin_token();
    block_on(async {
        for (id, node) in &nodes {
            whoami_on(*node, &keeper)
                .await
                .unwrap_or_else(|e| panic!("node {id} refused a pre-rotation token: {e}"));
            // A follower may apply the new key a moment after the leader.
            accepted_within(*node, &fresh, Duration::from_secs(5))
                .await
                .unwrap_or_else(|e| panic!("node {id}: {e}"));
        }
    });

    assert!(!new_key.is_empty());

    // kill -9 a node and restart it from its disk: it still verifies valid
    // tokens and still refuses the revoked one.
    cluster.kill9(2);
    cluster.start(2);
    let node2 = cluster.addresses[&2];
    block_on(async {
        accepted_within(node2, &keeper, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("restarted node: {e}"));
        let refused = whoami_on(node2, &victim).await.unwrap_err();
        assert!(refused.contains("revoked"), "{refused}");
    });
}

#[test]
fn a_node_with_another_cluster_key_cannot_join() {
    let mut cluster = Cluster::new("iamkey");
    for id in 1..=3 {
        cluster.start(id);
    }
    let token = cluster.admin_token();
    // A peer without the cluster key is refused at the Raft bootstrap.
    let refused = block_on(async {
        let node = photon_control::rpc::connect(cluster.addresses[&1])
            .await
            .unwrap();
        let mut request = node.peer_request();
        request.get().set_proof(&[0u8; 32]);
        request
            .send()
            .promise
            .await
            .and_then(|r| r.get()?.get_raft().map(|_| ()))
            .map_err(|e| e.to_string())
    });
    let refused = refused.unwrap_err();
    assert!(refused.contains("unauthenticated"), "{refused}");
    // And an anonymous caller reaches nothing: no session without a token.
    let anonymous = block_on(async {
        let mut client = Cluster::client(cluster.endpoints(), "not-a-token");
        client.whoami().await.map(|_| ()).map_err(|e| e.to_string())
    });
    let anonymous = anonymous.unwrap_err();
    assert!(anonymous.contains("unauthenticated"), "{anonymous}");
    block_on(async {
        Cluster::client(cluster.endpoints(), &token)
            .whoami()
            .await
            .unwrap();
    });
}

/// The library data-plane shards use, fed over the network by a KV watch:
/// access keys appear with their secret, revocations and deletions arrive.
#[test]
fn a_remote_directory_follows_the_cluster() {
    use photon_iam::{Directory, Verifier};
    let mut cluster = Cluster::new("iamfeed");
    for id in 1..=3 {
        cluster.start(id);
    }
    let admin = cluster.admin_token();
    let user_token = cluster.admin_token();
    let key = photon_iam::seal::ClusterKey::load(&cluster.key_file).unwrap();
    let directory = Directory::new(key);
    let endpoints = cluster.endpoints();
    block_on(async {
        let feed_client = Cluster::client(vec![endpoints[2]], &admin);
        tokio::task::spawn_local(photon_control::iam_node::follow_remote(
            feed_client,
            directory.clone(),
        ));
        let mut client = Cluster::client(endpoints.clone(), &admin);
        let key = client.create_access_key("").await.unwrap();
        let (id, secret) = (key.access_key_id, key.secret_access_key);
        let deadline = Instant::now() + Duration::from_secs(5);
        let record = loop {
            if let Some(found) = directory.access_key_secret(&id) {
                break found;
            }
            assert!(
                Instant::now() < deadline,
                "the access key never arrived: {} keys, {} tenants, generation {}",
                directory.snapshot().access_keys.len(),
                directory.snapshot().tenants.len(),
                directory.generation()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(record.1, secret.as_bytes());
        assert_eq!(record.0.principal, "admin");

        let mut verifier = Verifier::new(directory.clone());
        let now = photon_control::rpc::now_ms;
        assert!(verifier.verify(&user_token, now()).is_ok());
        client.revoke_token(&user_token).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while verifier.verify(&user_token, now()).is_ok() {
            assert!(Instant::now() < deadline, "the revocation never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            verifier.verify(&user_token, now()).unwrap_err(),
            photon_iam::token::TokenError::Revoked
        );
        client.delete_access_key(&id).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while directory.access_key_secret(&id).is_some() {
            assert!(Instant::now() < deadline, "the deletion never arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}
