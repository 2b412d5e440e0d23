//! The control plane's Cap'n Proto RPC: a node serves one bootstrap `Node`
//! capability per connection (KV, cluster administration, Raft between
//! peers); clients and peers connect with [`connect`].
//!
//! Everything here runs on the control-plane thread inside a tokio
//! `LocalSet` (`RpcSystem` is `!Send`).
//!
//! Every method of the client API answers its failures in the reply's
//! `error` field ([`crate::api_error::ApiError`]): method bodies return a
//! [`Reply`](crate::api_error::Reply) and [`answer!`] files its error.

/// Runs a server method's body (statements ending in a `Reply<()>`); a
/// failure goes into the reply's `error` field and the call itself
/// succeeds, so clients read a typed error instead of an exception.
macro_rules! answer {
    ($results:ident, $($body:tt)*) => {{
        let outcome: $crate::api_error::Reply = async { $($body)* }.await;
        if let Err(e) = outcome {
            e.write($results.get().init_error());
        }
        Ok(())
    }};
}

mod bucket_service;
mod cluster_service;
pub(crate) mod convert;
mod iam_service;
mod image_service;
pub mod kv_scope;
mod kv_service;
mod lb_service;
mod raft_transport;
pub mod session;
mod vm_service;
mod volume_service;

use crate::api_error::{ApiError, Code, Reply};
use std::net::SocketAddr;

use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::AsyncReadExt;
use photon_schema::raft_capnp::node;
use tokio_util::compat::TokioAsyncReadCompatExt;

pub use crate::now_ms;
pub use crate::proposer::{Proposer, ServiceLimits};
pub use cluster_service::ClusterService;
pub use kv_service::KvService;
pub(crate) use raft_transport::read_log_id as read_optional_log_id;
pub use raft_transport::{PeerLink, RaftNetworkFactoryImpl, RaftService};
pub use session::{Auth, AuthSettings, Session};

/// Largest message a connection accepts, in 8-byte words (64 MiB): bounds
/// what one peer or client can make a node allocate.
pub const MESSAGE_WORDS_MAX: usize = 8 << 20;

/// Opens a connection to the node at `address` and returns its bootstrap
/// capability. The connection lives until every capability from it is dropped.
pub async fn connect(address: SocketAddr) -> std::io::Result<node::Client> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (reader, writer) = stream.compat().split();
    let network = Box::new(twoparty::VatNetwork::new(
        futures::io::BufReader::new(reader),
        futures::io::BufWriter::new(writer),
        Side::Client,
        reader_options(),
    ));
    let mut rpc = RpcSystem::new(network, None);
    let client: node::Client = rpc.bootstrap(Side::Server);
    tokio::task::spawn_local(async move {
        if let Err(e) = rpc.await {
            tracing::debug!(%address, error = %e, "control connection closed");
        }
    });
    Ok(client)
}

fn reader_options() -> capnp::message::ReaderOptions {
    let mut options = capnp::message::ReaderOptions::new();
    options.traversal_limit_in_words(Some(MESSAGE_WORDS_MAX));
    options
}

/// The bootstrap capability of a node: login, authentication, and the
/// peers' way into Raft. One per connection (see `serve`).
#[derive(Clone)]
pub struct NodeService {
    node_id: u64,
    proposer: Proposer,
    auth: std::rc::Rc<Auth>,
    /// Where this connection comes from (login rate limits count per source).
    source: std::net::IpAddr,
    /// Per connection: watches open on it.
    watches: std::rc::Rc<std::cell::Cell<usize>>,
    /// Per connection: set once it authenticated (a token or a peer proof),
    /// so the listener's gate no longer counts it as a stranger.
    mark: photon_core::gate::AuthMark,
    buckets: std::rc::Rc<crate::resource::bucket::BucketSettings>,
    volumes: std::rc::Rc<crate::resource::volume::VolumeSettings>,
    lb: std::rc::Rc<crate::resource::lb::LbSettings>,
    vms: std::rc::Rc<crate::resource::vm::VmSettings>,
    liveness: photon_records::Liveness,
}

impl NodeService {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node_id: u64,
        proposer: Proposer,
        auth: std::rc::Rc<Auth>,
        buckets: crate::resource::bucket::BucketSettings,
        volumes: crate::resource::volume::VolumeSettings,
        lb: crate::resource::lb::LbSettings,
        vms: crate::resource::vm::VmSettings,
        liveness: photon_records::Liveness,
    ) -> Self {
        Self {
            node_id,
            proposer,
            auth,
            source: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            watches: std::rc::Rc::default(),
            mark: photon_core::gate::AuthMark::default(),
            buckets: std::rc::Rc::new(buckets),
            volumes: std::rc::Rc::new(volumes),
            lb: std::rc::Rc::new(lb),
            vms: std::rc::Rc::new(vms),
            liveness,
        }
    }
}

/// The uniform answer to a failed login: which part was wrong is not said.
const LOGIN_FAILED: &str =
    "unauthenticated: login failed (unknown tenant or principal, or wrong password)";

impl NodeService {
    /// Whether `secret` is the password or secret of `tenant`/`principal`;
    /// as slow for an unknown principal as for a known one.
    async fn check_secret(&self, tenant: &str, principal: &str, secret: String) -> Reply<bool> {
        let valid_names = photon_iam::model::check_name("tenant", tenant).is_ok()
            && photon_iam::model::check_name("principal", principal).is_ok();
        let record: Option<photon_iam::model::Principal> = if valid_names {
            let key = photon_iam::model::keys::principal(tenant, principal);
            self.proposer
                .state_machine
                .get_local(key.as_bytes())
                .and_then(|kv| serde_json::from_slice(&kv.value).ok())
        } else {
            None
        };
        let hash = record.map(|p| p.secret_hash);
        self.auth
            .hash_work(move || match hash {
                Some(hash) => photon_iam::password::verify_secret(&secret, &hash),
                None => {
                    photon_iam::password::verify_dummy(&secret);
                    false
                }
            })
            .await
    }

    async fn login_inner(
        &self,
        tenant: String,
        principal: String,
        secret: String,
        project: String,
        ttl_seconds: u32,
    ) -> Reply<(String, u64)> {
        let ttl_ms = self.auth.ttl_ms(ttl_seconds)?;
        // Read the principal where the latest password is: the leader (a
        // follower's redirect counts no attempt).
        self.proposer.linearizable().await?;
        let limit_key = format!("{tenant}/{principal}");
        let limited = self.auth.limiter.borrow_mut().attempt(
            &limit_key,
            self.source,
            std::time::Instant::now(),
        );
        if let Err(retry) = limited {
            // Final (not `unavailable`): clients must not retry this on their own.
            return Err(ApiError::new(
                Code::Unauthenticated,
                format!("unauthenticated: {retry}"),
            ));
        }
        let matches = self.check_secret(&tenant, &principal, secret).await?;
        if !matches {
            tracing::info!(%tenant, %principal, source = %self.source, "login refused");
            return Err(ApiError::new(Code::Unauthenticated, LOGIN_FAILED));
        }
        self.auth
            .limiter
            .borrow_mut()
            .refund(&limit_key, self.source, std::time::Instant::now());
        let project = if project.is_empty() {
            photon_iam::model::DEFAULT_PROJECT.to_owned()
        } else {
            project
        };
        let project_key = photon_iam::model::keys::project(&tenant, &project);
        let project_exists = photon_iam::model::check_name("project", &project).is_ok()
            && self
                .proposer
                .state_machine
                .get_local(project_key.as_bytes())
                .is_some();
        if !project_exists {
            return Err(ApiError::new(
                Code::NotFound,
                format!("not found: project {project:?} in tenant {tenant:?}"),
            ));
        }
        let (token, claims) = self
            .auth
            .directory
            .issue_token(&tenant, &principal, &project, now_ms(), ttl_ms)
            .map_err(ApiError::internal)?;
        tracing::info!(%tenant, %principal, %project, token_id = %claims.jti, "login");
        Ok((token, claims.exp))
    }
}

impl node::Server for NodeService {
    async fn login(
        self: capnp::capability::Rc<Self>,
        params: node::LoginParams,
        mut results: node::LoginResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let text = |r: capnp::text::Reader<'_>| {
                r.to_string().map_err(|_| {
                    ApiError::new(Code::InvalidArgument, "invalid argument: text is not UTF-8")
                })
            };
            let (token, expires) = self
                .login_inner(
                    text(p.get_tenant()?)?,
                    text(p.get_principal()?)?,
                    text(p.get_secret()?)?,
                    text(p.get_project()?)?,
                    p.get_ttl_seconds(),
                )
                .await?;
            let mut r = results.get();
            r.set_token(&token);
            r.set_expires_at_ms(expires);
            Ok(())
        })
    }

    async fn authenticate(
        self: capnp::capability::Rc<Self>,
        params: node::AuthenticateParams,
        mut results: node::AuthenticateResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            // Not UTF-8 is simply a token that does not verify.
            let token = String::from_utf8_lossy(params.get()?.get_token()?.as_bytes()).into_owned();
            let verified = self.auth.verify(&token);
            // The session is returned even for a bad token, so a client may
            // pipeline on it: its every call checks the token again.
            let session = SessionService {
                node_id: self.node_id,
                proposer: self.proposer.clone(),
                session: std::rc::Rc::new(Session::new(self.auth.clone(), token)),
                watches: self.watches.clone(),
                buckets: self.buckets.clone(),
                volumes: self.volumes.clone(),
                lb: self.lb.clone(),
                vms: self.vms.clone(),
                liveness: self.liveness,
            };
            results.get().set_session(capnp_rpc::new_client(session));
            verified?;
            // Only a verified token lets the connection stay past the
            // handshake timeout.
            self.mark.set();
            Ok(())
        })
    }

    async fn peer(
        self: capnp::capability::Rc<Self>,
        params: node::PeerParams,
        mut results: node::PeerResults,
    ) -> Result<(), capnp::Error> {
        let proof = params.get()?.get_proof()?;
        if !self.auth.directory.cluster_key().check_peer_proof(proof) {
            tracing::warn!(source = %self.source, "refused a Raft peer without the cluster key");
            return Err(capnp::Error::failed(
                "unauthenticated: peer proof refused (nodes of one cluster must share iam.cluster_key_file)".into(),
            ));
        }
        self.mark.set();
        results
            .get()
            .set_raft(capnp_rpc::new_client(RaftService::new(
                self.proposer.clone(),
            )));
        Ok(())
    }
}

/// What an authenticated caller holds: capabilities scoped to its token.
pub struct SessionService {
    node_id: u64,
    proposer: Proposer,
    session: std::rc::Rc<Session>,
    watches: std::rc::Rc<std::cell::Cell<usize>>,
    buckets: std::rc::Rc<crate::resource::bucket::BucketSettings>,
    volumes: std::rc::Rc<crate::resource::volume::VolumeSettings>,
    lb: std::rc::Rc<crate::resource::lb::LbSettings>,
    vms: std::rc::Rc<crate::resource::vm::VmSettings>,
    liveness: photon_records::Liveness,
}

impl SessionService {
    fn volume_service(&self) -> volume_service::VolumeService {
        volume_service::VolumeService::new(
            self.proposer.clone(),
            self.session.clone(),
            self.volumes.clone(),
        )
    }
}

impl photon_schema::raft_capnp::session::Server for SessionService {
    async fn vms(
        self: capnp::capability::Rc<Self>,
        _params: photon_schema::raft_capnp::session::VmsParams,
        mut results: photon_schema::raft_capnp::session::VmsResults,
    ) -> Result<(), capnp::Error> {
        let service = vm_service::VmService::new(
            self.proposer.clone(),
            self.session.clone(),
            self.vms.clone(),
            self.volume_service(),
        );
        results.get().set_vms(capnp_rpc::new_client(service));
        Ok(())
    }

    async fn images(
        self: capnp::capability::Rc<Self>,
        _params: photon_schema::raft_capnp::session::ImagesParams,
        mut results: photon_schema::raft_capnp::session::ImagesResults,
    ) -> Result<(), capnp::Error> {
        let service = image_service::ImageService::new(
            self.proposer.clone(),
            self.session.clone(),
            self.volume_service(),
        );
        results.get().set_images(capnp_rpc::new_client(service));
        Ok(())
    }

    async fn lb(
        self: capnp::capability::Rc<Self>,
        _params: photon_schema::raft_capnp::session::LbParams,
        mut results: photon_schema::raft_capnp::session::LbResults,
    ) -> Result<(), capnp::Error> {
        let service = lb_service::LbService::new(
            self.node_id,
            self.proposer.clone(),
            self.session.clone(),
            self.lb.clone(),
        );
        results.get().set_lb(capnp_rpc::new_client(service));
        Ok(())
    }

    async fn volumes(
        self: capnp::capability::Rc<Self>,
        _params: photon_schema::raft_capnp::session::VolumesParams,
        mut results: photon_schema::raft_capnp::session::VolumesResults,
    ) -> Result<(), capnp::Error> {
        let service = self.volume_service();
        results.get().set_volumes(capnp_rpc::new_client(service));
        Ok(())
    }

    async fn buckets(
        self: capnp::capability::Rc<Self>,
        _params: photon_schema::raft_capnp::session::BucketsParams,
        mut results: photon_schema::raft_capnp::session::BucketsResults,
    ) -> Result<(), capnp::Error> {
        let service = bucket_service::BucketService::new(
            self.proposer.clone(),
            self.session.clone(),
            self.buckets.clone(),
        );
        results.get().set_buckets(capnp_rpc::new_client(service));
        Ok(())
    }

    async fn whoami(
        self: capnp::capability::Rc<Self>,
        _params: photon_schema::raft_capnp::session::WhoamiParams,
        mut results: photon_schema::raft_capnp::session::WhoamiResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            iam_service::whoami(
                &self.session,
                &self.proposer.state_machine,
                results.get().init_identity(),
            )
        })
    }

    async fn iam(
        self: capnp::capability::Rc<Self>,
        _params: photon_schema::raft_capnp::session::IamParams,
        mut results: photon_schema::raft_capnp::session::IamResults,
    ) -> Result<(), capnp::Error> {
        let iam = iam_service::IamService::new(self.proposer.clone(), self.session.clone());
        results.get().set_iam(capnp_rpc::new_client(iam));
        Ok(())
    }

    async fn kv(
        self: capnp::capability::Rc<Self>,
        _params: photon_schema::raft_capnp::session::KvParams,
        mut results: photon_schema::raft_capnp::session::KvResults,
    ) -> Result<(), capnp::Error> {
        let kv = KvService::new(
            self.proposer.clone(),
            self.session.clone(),
            self.watches.clone(),
        );
        results.get().set_kv(capnp_rpc::new_client(kv));
        Ok(())
    }

    async fn cluster(
        self: capnp::capability::Rc<Self>,
        _params: photon_schema::raft_capnp::session::ClusterParams,
        mut results: photon_schema::raft_capnp::session::ClusterResults,
    ) -> Result<(), capnp::Error> {
        let cluster = ClusterService::new(
            self.node_id,
            self.proposer.clone(),
            self.liveness,
            self.session.clone(),
        );
        results.get().set_cluster(capnp_rpc::new_client(cluster));
        Ok(())
    }
}

/// Accepts connections on `listener` until it fails or the task is dropped;
/// a bad connection affects only itself. Admission goes through a gate of
/// `limits` (docs/running.md): a connection that has not authenticated (a
/// token or a Raft peer proof) within the handshake timeout is closed, and
/// a flood of strangers only ever evicts its own oldest members.
/// Authenticated sessions may idle (watches wait for changes).
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: NodeService,
    limits: photon_core::gate::ConnectionLimits,
) {
    let gate = photon_core::gate::Gate::new(limits);
    loop {
        gate.room().await;
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "control listener accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(ticket) = gate.admit(peer.ip()) else {
            tracing::debug!(%peer, "refused: too many unauthenticated connections from this source");
            continue; // dropping the stream closes it
        };
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.compat().split();
        let network = twoparty::VatNetwork::new(
            futures::io::BufReader::new(reader),
            futures::io::BufWriter::new(writer),
            Side::Server,
            reader_options(),
        );
        // One bootstrap per connection, so per-connection limits count
        // that connection only.
        let bootstrap: node::Client = capnp_rpc::new_client(NodeService {
            watches: std::rc::Rc::default(),
            source: peer.ip(),
            mark: ticket.mark().clone(),
            ..service.clone()
        });
        let rpc = RpcSystem::new(Box::new(network), Some(bootstrap.client));
        tokio::task::spawn_local(async move {
            let ticket = ticket;
            let handshake = ticket.limits().handshake_timeout;
            let outcome = futures::future::select(
                Box::pin(rpc),
                Box::pin(async {
                    futures::future::select(
                        Box::pin(ticket.evicted()),
                        Box::pin(async {
                            tokio::time::sleep(handshake).await;
                            if ticket.is_authenticated() {
                                std::future::pending::<()>().await;
                            }
                        }),
                    )
                    .await;
                }),
            )
            .await;
            let ended = match outcome {
                futures::future::Either::Left((result, _)) => result.err(),
                futures::future::Either::Right(_) => {
                    tracing::debug!(%peer, "closed an unauthenticated control connection (timeout or eviction)");
                    None
                }
            };
            if let Some(e) = ended {
                tracing::debug!(%peer, error = %e, "control connection ended");
            }
        });
    }
}
