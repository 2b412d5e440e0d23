//! The `Lb` API (`photon ctl lb`): FiberLB VIPs and backends of the
//! caller's project, written through [`crate::lb`], and the counters of this
//! node's load-balancer agent.

use crate::api_error::{ApiError, Code, Reply};
use std::net::IpAddr;
use std::rc::Rc as StdRc;

use fiberlb::spec::{
    backend_resource, check_backend_address, check_name, check_port, check_vip_address,
    check_weight, parse_address, vip_resource, BackendRecord, HealthCheck, HealthKind,
    HealthUpdate, Protocol, SpecError, VipRecord, INTERVAL_MS_MAX, INTERVAL_MS_MIN, THRESHOLD_MAX,
    THRESHOLD_MIN, TIMEOUT_MS_MIN,
};
use photon_iam::{Identity, Scope};
use photon_schema::lb_capnp::{backend, health_check, lb as api, vip};

use super::convert::{invalid, refusal, text};
use super::session::Session;
use super::{now_ms, Proposer};
use crate::kv::KeyValue;
use crate::resource::lb::{self, LbSettings, LbWriteError};

pub struct LbService {
    node_id: u64,
    proposer: Proposer,
    session: StdRc<Session>,
    settings: StdRc<LbSettings>,
}

impl LbService {
    pub fn new(
        node_id: u64,
        proposer: Proposer,
        session: StdRc<Session>,
        settings: StdRc<LbSettings>,
    ) -> Self {
        Self {
            node_id,
            proposer,
            session,
            settings,
        }
    }

    /// The caller, allowed `action` on `resource`, once this node has
    /// applied everything committed before the call.
    async fn caller(&self, action: &str, resource: &str) -> Reply<std::sync::Arc<Identity>> {
        let identity = self.session.check(Scope::Project, action, resource)?;
        self.proposer.linearizable().await?;
        Ok(identity)
    }

    /// The caller (allowed `action` on VIP `name`) and the VIP's record.
    async fn existing_vip(
        &self,
        action: &str,
        name: &str,
    ) -> Reply<(std::sync::Arc<Identity>, KeyValue, VipRecord)> {
        check_name("vip", name).map_err(invalid)?;
        let identity = self.caller(action, &vip_resource(name)).await?;
        let (kv, record) = lb::get_vip(
            &self.proposer.state_machine,
            identity.tenant(),
            identity.project(),
            name,
        )
        .ok_or_else(|| refusal(LbWriteError::NoSuchVip(name.to_owned())))?;
        Ok((identity, kv, record))
    }

    /// The record of backend `name` of VIP `vip` (caller allowed `action` on it).
    async fn existing_backend(
        &self,
        action: &str,
        vip: &str,
        name: &str,
    ) -> Reply<(KeyValue, BackendRecord)> {
        check_name("vip", vip).map_err(invalid)?;
        check_name("backend name", name).map_err(invalid)?;
        let identity = self.caller(action, &backend_resource(vip, name)).await?;
        let (tenant, project) = (identity.tenant(), identity.project());
        if lb::get_vip(&self.proposer.state_machine, tenant, project, vip).is_none() {
            return Err(refusal(LbWriteError::NoSuchVip(vip.to_owned())));
        }
        lb::get_backend(&self.proposer.state_machine, tenant, project, vip, name).ok_or_else(|| {
            refusal(LbWriteError::NoSuchBackend {
                vip: vip.to_owned(),
                name: name.to_owned(),
            })
        })
    }
}

/// A wire number that must fit `T`: `None` when unset (-1), refused when it
/// does not fit (the record's own check names the allowed range of values
/// that do).
fn wire_number<T: TryFrom<i64>>(
    value: i64,
    field: &'static str,
    allowed: &str,
) -> Reply<Option<T>> {
    if value == -1 {
        return Ok(None);
    }
    T::try_from(value).map(Some).map_err(|_| {
        invalid(SpecError {
            field,
            reason: format!("{value} is outside {allowed}"),
        })
    })
}

/// The change a wire `HealthCheck` asks for (unset fields: `None`).
fn read_health(h: health_check::Reader<'_>) -> Reply<HealthUpdate> {
    let kind = text(h.get_kind()?)?;
    let http_path = text(h.get_http_path()?)?;
    let port = match h.get_port() {
        -1 => None,
        0 => Some(None),
        p => Some(Some(u16::try_from(p).map_err(|_| {
            invalid(SpecError {
                field: "health port",
                reason: format!("{p} is not a port; give 1-65535, or 0 for the VIP's port"),
            })
        })?)),
    };
    let interval = format!("{INTERVAL_MS_MIN}..={INTERVAL_MS_MAX}");
    let threshold = format!("{THRESHOLD_MIN}..={THRESHOLD_MAX}");
    Ok(HealthUpdate {
        kind: (!kind.is_empty()).then_some(kind),
        http_path: (!http_path.is_empty()).then_some(http_path),
        port,
        interval_ms: wire_number(h.get_interval_ms(), "health interval_ms", &interval)?,
        timeout_ms: wire_number(
            h.get_timeout_ms(),
            "health timeout_ms",
            &format!("{TIMEOUT_MS_MIN}..=interval_ms"),
        )?,
        rise: wire_number(i64::from(h.get_rise()), "health rise", &threshold)?,
        fall: wire_number(i64::from(h.get_fall()), "health fall", &threshold)?,
    })
}

fn write_health(mut out: health_check::Builder<'_>, h: &HealthCheck) {
    out.set_kind(h.kind.name());
    if let HealthKind::Http { path } = &h.kind {
        out.set_http_path(path);
    }
    out.set_port(h.port.map_or(0, i32::from));
    out.set_interval_ms(i64::from(h.interval_ms));
    out.set_timeout_ms(i64::from(h.timeout_ms));
    out.set_rise(i32::from(h.rise));
    out.set_fall(i32::from(h.fall));
}

fn write_vip(mut out: vip::Builder<'_>, r: &VipRecord, backends: usize) {
    out.set_name(&r.name);
    out.set_address(r.address.to_string());
    out.set_port(r.port);
    out.set_protocol(r.protocol.as_str());
    write_health(out.reborrow().init_health(), &r.health);
    out.set_tenant(&r.tenant);
    out.set_project(&r.project);
    out.set_created_ms(r.created_ms);
    out.set_backend_count(backends as u32);
}

fn write_backend(mut out: backend::Builder<'_>, r: &BackendRecord) {
    out.set_vip(&r.vip);
    out.set_name(&r.name);
    out.set_address(r.address.to_string());
    out.set_weight(r.weight);
    out.set_tenant(&r.tenant);
    out.set_project(&r.project);
    out.set_created_ms(r.created_ms);
}

fn write_backends(mut out: capnp::struct_list::Builder<'_, backend::Owned>, all: &[BackendRecord]) {
    for (i, record) in all.iter().enumerate() {
        write_backend(out.reborrow().get(i as u32), record);
    }
}

/// The backends of a VIP in name order.
fn sorted_backends(proposer: &Proposer, vip: &VipRecord) -> Vec<BackendRecord> {
    let mut all = lb::list_backends(
        &proposer.state_machine,
        &vip.tenant,
        &vip.project,
        &vip.name,
    );
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

/// A backend is reached by tunnelling the VIP's own packets to it, so it
/// must be of the VIP's address family and not the VIP itself.
fn check_backend_for(vip: &VipRecord, address: IpAddr) -> Reply<()> {
    check_backend_address(address).map_err(invalid)?;
    if address.is_ipv4() != vip.address.is_ipv4() {
        let family = |a: IpAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
        return Err(invalid(format!(
            "backend address: {address} is {} but vip {} ({}) is {}; a backend has the VIP's address family",
            family(address),
            vip.name,
            vip.address,
            family(vip.address)
        )));
    }
    if address == vip.address {
        return Err(invalid(format!(
            "backend address: {address} is the VIP's own address; give the backend server's address"
        )));
    }
    Ok(())
}

impl api::Server for LbService {
    async fn list_vips(
        self: capnp::capability::Rc<Self>,
        _params: api::ListVipsParams,
        mut results: api::ListVipsResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let identity = self.caller("lb:ListVips", "lb/vip").await?;
            let mut all = lb::list_vips(
                &self.proposer.state_machine,
                identity.tenant(),
                identity.project(),
            );
            all.sort_by(|a, b| a.name.cmp(&b.name));
            let mut list = results.get().init_vips(all.len() as u32);
            for (i, record) in all.iter().enumerate() {
                let backends = lb::list_backends(
                    &self.proposer.state_machine,
                    &record.tenant,
                    &record.project,
                    &record.name,
                )
                .len();
                write_vip(list.reborrow().get(i as u32), record, backends);
            }
            Ok(())
        })
    }

    async fn create_vip(
        self: capnp::capability::Rc<Self>,
        params: api::CreateVipParams,
        mut results: api::CreateVipResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let name = text(p.get_name()?)?;
            check_name("name", &name).map_err(invalid)?;
            let address = parse_address("address", &text(p.get_address()?)?).map_err(invalid)?;
            check_vip_address(address).map_err(invalid)?;
            let port = p.get_port();
            check_port("port", port).map_err(invalid)?;
            let protocol = match text(p.get_protocol()?)?.as_str() {
                "" => Protocol::Tcp,
                other => Protocol::parse("protocol", other).map_err(invalid)?,
            };
            let health = if p.has_health() {
                read_health(p.get_health()?)?
                    .apply(&HealthCheck::default())
                    .map_err(invalid)?
            } else {
                HealthCheck::default()
            };
            let identity = self.caller("lb:CreateVip", &vip_resource(&name)).await?;
            let record = VipRecord {
                tenant: identity.tenant().to_owned(),
                project: identity.project().to_owned(),
                name,
                address,
                port,
                protocol,
                health,
                created_ms: now_ms(),
            };
            record.check().map_err(invalid)?;
            lb::insert_vip(&self.proposer, &record)
                .await
                .map_err(refusal)?;
            write_vip(results.get().init_vip(), &record, 0);
            Ok(())
        })
    }

    async fn vip_info(
        self: capnp::capability::Rc<Self>,
        params: api::VipInfoParams,
        mut results: api::VipInfoResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let name = text(params.get()?.get_name()?)?;
            let (_, _, record) = self.existing_vip("lb:GetVip", &name).await?;
            let backends = sorted_backends(&self.proposer, &record);
            let mut r = results.get();
            write_vip(r.reborrow().init_vip(), &record, backends.len());
            write_backends(r.init_backends(backends.len() as u32), &backends);
            Ok(())
        })
    }

    async fn set_health(
        self: capnp::capability::Rc<Self>,
        params: api::SetHealthParams,
        mut results: api::SetHealthResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let name = text(p.get_name()?)?;
            let update = read_health(p.get_health()?)?;
            let (identity, _, _) = self.existing_vip("lb:SetHealth", &name).await?;
            let record = lb::update_vip(
                &self.proposer,
                identity.tenant(),
                identity.project(),
                &name,
                |record| {
                    record.health = update
                        .apply(&record.health)
                        .map_err(|e| LbWriteError::Invalid(e.to_string()))?;
                    Ok(())
                },
            )
            .await
            .map_err(refusal)?;
            let backends = lb::list_backends(
                &self.proposer.state_machine,
                &record.tenant,
                &record.project,
                &name,
            );
            write_vip(results.get().init_vip(), &record, backends.len());
            Ok(())
        })
    }

    async fn delete_vip(
        self: capnp::capability::Rc<Self>,
        params: api::DeleteVipParams,
        mut results: api::DeleteVipResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let name = text(params.get()?.get_name()?)?;
            let (_, kv, record) = self.existing_vip("lb:DeleteVip", &name).await?;
            lb::remove_vip(&self.proposer, &kv, &record)
                .await
                .map_err(refusal)
        })
    }

    async fn add_backend(
        self: capnp::capability::Rc<Self>,
        params: api::AddBackendParams,
        mut results: api::AddBackendResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let vip = text(p.get_vip()?)?;
            let name = text(p.get_name()?)?;
            let weight = p.get_weight();
            check_name("vip", &vip).map_err(invalid)?;
            check_name("backend name", &name).map_err(invalid)?;
            let address =
                parse_address("backend address", &text(p.get_address()?)?).map_err(invalid)?;
            check_weight(weight).map_err(invalid)?;
            let identity = self
                .caller("lb:AddBackend", &backend_resource(&vip, &name))
                .await?;
            let (vip_kv, vip_record) = lb::get_vip(
                &self.proposer.state_machine,
                identity.tenant(),
                identity.project(),
                &vip,
            )
            .ok_or_else(|| refusal(LbWriteError::NoSuchVip(vip.clone())))?;
            check_backend_for(&vip_record, address)?;
            let record = BackendRecord {
                tenant: vip_record.tenant.clone(),
                project: vip_record.project.clone(),
                vip,
                name,
                address,
                weight,
                created_ms: now_ms(),
            };
            record.check().map_err(invalid)?;
            lb::insert_backend(&self.proposer, &vip_kv, &record)
                .await
                .map_err(refusal)?;
            write_backend(results.get().init_backend(), &record);
            Ok(())
        })
    }

    async fn list_backends(
        self: capnp::capability::Rc<Self>,
        params: api::ListBackendsParams,
        mut results: api::ListBackendsResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let name = text(params.get()?.get_vip()?)?;
            let (_, _, record) = self.existing_vip("lb:ListBackends", &name).await?;
            let backends = sorted_backends(&self.proposer, &record);
            write_backends(
                results.get().init_backends(backends.len() as u32),
                &backends,
            );
            Ok(())
        })
    }

    async fn set_weight(
        self: capnp::capability::Rc<Self>,
        params: api::SetWeightParams,
        mut results: api::SetWeightResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let vip = text(p.get_vip()?)?;
            let name = text(p.get_name()?)?;
            let weight = p.get_weight();
            check_weight(weight).map_err(invalid)?;
            let (_, found) = self.existing_backend("lb:SetWeight", &vip, &name).await?;
            let record = lb::update_backend(
                &self.proposer,
                &found.tenant,
                &found.project,
                &vip,
                &name,
                |record| record.weight = weight,
            )
            .await
            .map_err(refusal)?;
            write_backend(results.get().init_backend(), &record);
            Ok(())
        })
    }

    async fn remove_backend(
        self: capnp::capability::Rc<Self>,
        params: api::RemoveBackendParams,
        mut results: api::RemoveBackendResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let p = params.get()?;
            let vip = text(p.get_vip()?)?;
            let name = text(p.get_name()?)?;
            let (kv, record) = self
                .existing_backend("lb:RemoveBackend", &vip, &name)
                .await?;
            lb::remove_backend(&self.proposer, &kv, &record)
                .await
                .map_err(refusal)
        })
    }

    async fn stats(
        self: capnp::capability::Rc<Self>,
        _params: api::StatsParams,
        mut results: api::StatsResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            // Counters are this node's own: no linearizable read needed.
            let identity = self
                .session
                .check(Scope::Project, "lb:GetStats", "lb/stats")?;
            let snapshot = self
                .settings
                .stats
                .lock()
                .map_err(|_| {
                    ApiError::new(
                        Code::Unavailable,
                        "unavailable: the load-balancer agent failed",
                    )
                })?
                .as_ref()
                .map(|s| {
                    s.for_project(
                        identity.tenant(),
                        identity.project(),
                        identity.cluster_admin,
                    )
                });
            let mut r = results.get();
            r.set_node(self.node_id);
            match snapshot {
                Some(s) => {
                    let json = serde_json::to_string(&s).map_err(|e| {
                        ApiError::new(
                            Code::Internal,
                            format!("internal: cannot encode the counters: {e}"),
                        )
                    })?;
                    r.set_running(true);
                    r.set_snapshot_json(json);
                }
                None => {
                    r.set_running(false);
                    r.set_reason(format!(
                        "node {} runs no load balancer (FiberLB agent): VIPs are stored, but this node forwards none of them",
                        self.node_id
                    ));
                }
            }
            Ok(())
        })
    }
}
