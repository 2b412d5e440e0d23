//! The `Buckets` API (`photon ctl bucket`): S3 buckets of the caller's
//! project, written through [`crate::buckets`].

use crate::api_error::{ApiError, Code, Reply};
use std::rc::Rc as StdRc;

use photon_iam::Scope;
use photon_records::{check_bucket_name, BucketRecord};
use photon_schema::buckets_capnp::{bucket_info, buckets as api};

use super::convert::{refusal, text};
use super::session::Session;
use super::{now_ms, Proposer};
use crate::resource::bucket::{self, BucketSettings, BucketWriteError};

pub struct BucketService {
    proposer: Proposer,
    session: StdRc<Session>,
    settings: StdRc<BucketSettings>,
}

impl BucketService {
    pub fn new(
        proposer: Proposer,
        session: StdRc<Session>,
        settings: StdRc<BucketSettings>,
    ) -> Self {
        Self {
            proposer,
            session,
            settings,
        }
    }
}

impl BucketService {
    /// Bucket `name`, read linearizably, if the caller may do `action` on
    /// it; another project's bucket is not there for the caller.
    async fn existing(&self, action: &str, name: &str) -> Reply<BucketRecord> {
        let identity = self
            .session
            .check(Scope::Project, action, &format!("bucket/{name}"))?;
        self.proposer.linearizable().await?;
        bucket::get(&self.proposer.state_machine, name)
            .map(|(_, record)| record)
            .filter(|r| identity.cluster_admin || r.owned_by(identity.tenant(), identity.project()))
            .ok_or_else(|| refusal(BucketWriteError::NoSuchBucket))
    }
}

fn write_info(mut info: bucket_info::Builder<'_>, record: &BucketRecord) {
    info.set_name(&record.name);
    info.set_tenant(&record.tenant);
    info.set_project(&record.project);
    info.set_region(&record.region);
    info.set_created_ms(record.created_ms);
}

impl api::Server for BucketService {
    async fn list(
        self: capnp::capability::Rc<Self>,
        _params: api::ListParams,
        mut results: api::ListResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let identity = self
                .session
                .check(Scope::Project, "s3:ListBuckets", "bucket")?;
            self.proposer.linearizable().await?;
            let visible: Vec<BucketRecord> = bucket::list(&self.proposer.state_machine)
                .into_iter()
                .filter(|b| {
                    identity.cluster_admin || b.owned_by(identity.tenant(), identity.project())
                })
                .collect();
            let mut list = results.get().init_buckets(visible.len() as u32);
            for (i, record) in visible.iter().enumerate() {
                write_info(list.reborrow().get(i as u32), record);
            }
            Ok(())
        })
    }

    async fn create(
        self: capnp::capability::Rc<Self>,
        params: api::CreateParams,
        mut results: api::CreateResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let name = text(params.get()?.get_name()?)?;
            check_bucket_name(&name).map_err(|e| {
                ApiError::new(Code::InvalidArgument, format!("invalid argument: {e}"))
            })?;
            let identity =
                self.session
                    .check(Scope::Project, "s3:CreateBucket", &format!("bucket/{name}"))?;
            let record = bucket::create(
                &self.proposer,
                &name,
                identity.tenant(),
                identity.project(),
                &self.settings.region,
                now_ms(),
            )
            .await
            .map_err(refusal)?;
            write_info(results.get().init_bucket(), &record);
            Ok(())
        })
    }

    async fn info(
        self: capnp::capability::Rc<Self>,
        params: api::InfoParams,
        mut results: api::InfoResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let name = text(params.get()?.get_name()?)?;
            let record = self.existing("s3:HeadBucket", &name).await?;
            write_info(results.get().init_bucket(), &record);
            Ok(())
        })
    }

    async fn delete(
        self: capnp::capability::Rc<Self>,
        params: api::DeleteParams,
        mut results: api::DeleteResults,
    ) -> Result<(), capnp::Error> {
        answer!(results, {
            let name = text(params.get()?.get_name()?)?;
            let record = self.existing("s3:DeleteBucket", &name).await?;
            let Some(probe) = &self.settings.empty_probe else {
                return Err(ApiError::with_words(
                    Code::FailedPrecondition,
                    "this node runs no object storage to check the bucket is empty",
                ));
            };
            match probe(record.id).await {
                Some(true) => {}
                Some(false) => return Err(refusal(BucketWriteError::NotEmpty)),
                None => {
                    return Err(ApiError::new(
                        Code::Unavailable,
                        "unavailable: the object storage did not answer",
                    ))
                }
            }
            bucket::delete(&self.proposer, &name, Some(record.id))
                .await
                .map_err(refusal)?;
            Ok(())
        })
    }
}
