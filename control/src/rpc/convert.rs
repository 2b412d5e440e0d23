//! Conversions between the KV wire structs (kv.capnp) and the state
//! machine's types, both ways, shared by the server and the client library.

use photon_schema::kv_capnp::{
    compare, delete_range_request, delete_range_response, event, key_value, put_request,
    put_response, range_request, range_response, request_op, response_op, txn_request,
    txn_response,
};

use crate::kv::{
    limits, Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, Event,
    EventKind, KeyValue, KvError, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseOp, TxnRequest, TxnResponse,
};

/// Depth of nested txns the decoder follows (the state machine enforces the
/// same limit; this one protects the decoder's stack).
const TXN_DEPTH_MAX: usize = limits::TXN_DEPTH_MAX;

pub(crate) use crate::api_error::refusal;
use crate::api_error::{ApiError, Reply};

/// An `invalidArgument` refusal: "invalid argument: {reason}".
pub(crate) fn invalid(reason: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        crate::api_error::Code::InvalidArgument,
        format!("invalid argument: {reason}"),
    )
}

/// A text parameter, refused unless it is UTF-8.
pub(crate) fn text(reader: capnp::text::Reader<'_>) -> Reply<String> {
    reader.to_string().map_err(|_| invalid("text is not UTF-8"))
}

pub(crate) fn kv_error(e: KvError) -> ApiError {
    e.into()
}

pub(crate) fn wrong_response() -> ApiError {
    ApiError::internal("the state machine answered another command")
}

pub(crate) fn bytes(r: capnp::Result<&[u8]>) -> capnp::Result<Vec<u8>> {
    Ok(r?.to_vec())
}

// ---- requests ----

pub(crate) fn read_range(r: range_request::Reader<'_>) -> capnp::Result<RangeRequest> {
    Ok(RangeRequest {
        key: bytes(r.get_key())?,
        range_end: bytes(r.get_range_end())?,
        limit: r.get_limit(),
        keys_only: r.get_keys_only(),
        count_only: r.get_count_only(),
        revision: r.get_revision(),
    })
}

pub(crate) fn read_put(r: put_request::Reader<'_>) -> capnp::Result<PutRequest> {
    Ok(PutRequest {
        key: bytes(r.get_key())?,
        value: bytes(r.get_value())?,
        lease: r.get_lease(),
        prev_kv: r.get_prev_kv(),
        ignore_value: r.get_ignore_value(),
        ignore_lease: r.get_ignore_lease(),
    })
}

pub(crate) fn read_delete(
    r: delete_range_request::Reader<'_>,
) -> capnp::Result<DeleteRangeRequest> {
    Ok(DeleteRangeRequest {
        key: bytes(r.get_key())?,
        range_end: bytes(r.get_range_end())?,
        prev_kv: r.get_prev_kv(),
    })
}

fn read_compare(r: compare::Reader<'_>) -> capnp::Result<Compare> {
    use photon_schema::kv_capnp::CompareResult as Wire;
    let result = match r.get_result()? {
        Wire::Equal => CompareResult::Equal,
        Wire::NotEqual => CompareResult::NotEqual,
        Wire::Greater => CompareResult::Greater,
        Wire::Less => CompareResult::Less,
    };
    let target = match r.get_target().which()? {
        compare::target::Value(v) => CompareTarget::Value(bytes(v)?),
        compare::target::Version(v) => CompareTarget::Version(v),
        compare::target::CreateRevision(v) => CompareTarget::CreateRevision(v),
        compare::target::ModRevision(v) => CompareTarget::ModRevision(v),
        compare::target::Lease(v) => CompareTarget::Lease(v),
    };
    Ok(Compare {
        key: bytes(r.get_key())?,
        range_end: bytes(r.get_range_end())?,
        target,
        result,
    })
}

pub(crate) fn read_txn(r: txn_request::Reader<'_>, depth: usize) -> Reply<TxnRequest> {
    if depth > TXN_DEPTH_MAX {
        return Err(kv_error(KvError::TxnTooDeep {
            depth,
            max: TXN_DEPTH_MAX,
        }));
    }
    let ops = |list: capnp::struct_list::Reader<'_, request_op::Owned>| -> Reply<Vec<RequestOp>> {
        if list.len() as usize > limits::TXN_OPS_MAX {
            return Err(kv_error(KvError::TooManyTxnOps {
                ops: list.len() as usize,
                max: limits::TXN_OPS_MAX,
            }));
        }
        list.iter()
            .map(|op| {
                Ok(match op.which().map_err(capnp::Error::from)? {
                    request_op::Range(r) => RequestOp::Range(read_range(r?)?),
                    request_op::Put(r) => RequestOp::Put(read_put(r?)?),
                    request_op::DeleteRange(r) => RequestOp::DeleteRange(read_delete(r?)?),
                    request_op::Txn(r) => RequestOp::Txn(read_txn(r?, depth + 1)?),
                })
            })
            .collect()
    };
    let compares = r.get_compare()?;
    if compares.len() as usize > limits::TXN_OPS_MAX {
        return Err(kv_error(KvError::TooManyTxnOps {
            ops: compares.len() as usize,
            max: limits::TXN_OPS_MAX,
        }));
    }
    Ok(TxnRequest {
        compare: compares
            .iter()
            .map(read_compare)
            .collect::<capnp::Result<_>>()?,
        success: ops(r.get_success()?)?,
        failure: ops(r.get_failure()?)?,
    })
}

// ---- state machine -> wire ----

pub(crate) fn write_kv(mut b: key_value::Builder<'_>, kv: &KeyValue) {
    b.set_key(&kv.key);
    b.set_value(&kv.value);
    b.set_create_revision(kv.create_revision);
    b.set_mod_revision(kv.mod_revision);
    b.set_version(kv.version);
    b.set_lease(kv.lease);
}

pub(crate) fn write_range(mut b: range_response::Builder<'_>, r: &RangeResponse) {
    b.set_count(r.count);
    b.set_more(r.more);
    b.set_revision(r.revision);
    let mut list = b.init_kvs(r.kvs.len() as u32);
    for (i, kv) in r.kvs.iter().enumerate() {
        write_kv(list.reborrow().get(i as u32), kv);
    }
}

pub(crate) fn write_put(mut b: put_response::Builder<'_>, r: &PutResponse) {
    b.set_revision(r.revision);
    if let Some(prev) = &r.prev_kv {
        b.set_has_prev_kv(true);
        write_kv(b.init_prev_kv(), prev);
    }
}

pub(crate) fn write_delete(mut b: delete_range_response::Builder<'_>, r: &DeleteRangeResponse) {
    b.set_revision(r.revision);
    b.set_deleted(r.deleted);
    let mut list = b.init_prev_kvs(r.prev_kvs.len() as u32);
    for (i, kv) in r.prev_kvs.iter().enumerate() {
        write_kv(list.reborrow().get(i as u32), kv);
    }
}

pub(crate) fn write_txn(mut b: txn_response::Builder<'_>, r: &TxnResponse) {
    b.set_succeeded(r.succeeded);
    b.set_revision(r.revision);
    let mut list = b.init_responses(r.responses.len() as u32);
    for (i, op) in r.responses.iter().enumerate() {
        let o = list.reborrow().get(i as u32);
        match op {
            ResponseOp::Range(x) => write_range(o.init_range(), x),
            ResponseOp::Put(x) => write_put(o.init_put(), x),
            ResponseOp::DeleteRange(x) => write_delete(o.init_delete_range(), x),
            ResponseOp::Txn(x) => write_txn(o.init_txn(), x),
        }
    }
}

pub(crate) fn write_event(mut b: event::Builder<'_>, e: &Event) {
    b.set_kind(match e.kind {
        EventKind::Put => event::Kind::Put,
        EventKind::Delete => event::Kind::Delete,
    });
    write_kv(b.reborrow().init_kv(), &e.kv);
    if let Some(prev) = &e.prev_kv {
        b.set_has_prev_kv(true);
        write_kv(b.init_prev_kv(), prev);
    }
}

// ---- the other direction: requests to the wire, responses from it ----

pub(crate) fn write_range_request(
    mut b: range_request::Builder<'_>,
    r: &RangeRequest,
    serializable: bool,
) {
    b.set_key(&r.key);
    b.set_range_end(&r.range_end);
    b.set_limit(r.limit);
    b.set_keys_only(r.keys_only);
    b.set_count_only(r.count_only);
    b.set_revision(r.revision);
    b.set_serializable(serializable);
}

pub(crate) fn write_put_request(mut b: put_request::Builder<'_>, r: &PutRequest) {
    b.set_key(&r.key);
    b.set_value(&r.value);
    b.set_lease(r.lease);
    b.set_prev_kv(r.prev_kv);
    b.set_ignore_value(r.ignore_value);
    b.set_ignore_lease(r.ignore_lease);
}

pub(crate) fn write_delete_request(
    mut b: delete_range_request::Builder<'_>,
    r: &DeleteRangeRequest,
) {
    b.set_key(&r.key);
    b.set_range_end(&r.range_end);
    b.set_prev_kv(r.prev_kv);
}

fn write_compare(mut b: compare::Builder<'_>, c: &Compare) {
    use photon_schema::kv_capnp::CompareResult as Wire;
    b.set_key(&c.key);
    b.set_range_end(&c.range_end);
    b.set_result(match c.result {
        CompareResult::Equal => Wire::Equal,
        CompareResult::NotEqual => Wire::NotEqual,
        CompareResult::Greater => Wire::Greater,
        CompareResult::Less => Wire::Less,
    });
    let mut t = b.init_target();
    match &c.target {
        CompareTarget::Value(v) => t.set_value(v),
        CompareTarget::Version(v) => t.set_version(*v),
        CompareTarget::CreateRevision(v) => t.set_create_revision(*v),
        CompareTarget::ModRevision(v) => t.set_mod_revision(*v),
        CompareTarget::Lease(v) => t.set_lease(*v),
    }
}

pub(crate) fn write_txn_request(mut b: txn_request::Builder<'_>, r: &TxnRequest) {
    let mut compares = b.reborrow().init_compare(r.compare.len() as u32);
    for (i, c) in r.compare.iter().enumerate() {
        write_compare(compares.reborrow().get(i as u32), c);
    }
    let ops = |mut list: capnp::struct_list::Builder<'_, request_op::Owned>, ops: &[RequestOp]| {
        for (i, op) in ops.iter().enumerate() {
            let o = list.reborrow().get(i as u32);
            match op {
                RequestOp::Range(x) => write_range_request(o.init_range(), x, false),
                RequestOp::Put(x) => write_put_request(o.init_put(), x),
                RequestOp::DeleteRange(x) => write_delete_request(o.init_delete_range(), x),
                RequestOp::Txn(x) => write_txn_request(o.init_txn(), x),
            }
        }
    };
    ops(
        b.reborrow().init_success(r.success.len() as u32),
        &r.success,
    );
    ops(b.init_failure(r.failure.len() as u32), &r.failure);
}

pub(crate) fn read_kv(r: key_value::Reader<'_>) -> capnp::Result<KeyValue> {
    Ok(KeyValue {
        key: bytes(r.get_key())?,
        value: bytes(r.get_value())?,
        create_revision: r.get_create_revision(),
        mod_revision: r.get_mod_revision(),
        version: r.get_version(),
        lease: r.get_lease(),
    })
}

pub(crate) fn read_range_response(r: range_response::Reader<'_>) -> capnp::Result<RangeResponse> {
    Ok(RangeResponse {
        kvs: r
            .get_kvs()?
            .iter()
            .map(read_kv)
            .collect::<capnp::Result<_>>()?,
        count: r.get_count(),
        more: r.get_more(),
        revision: r.get_revision(),
    })
}

pub(crate) fn read_put_response(r: put_response::Reader<'_>) -> capnp::Result<PutResponse> {
    Ok(PutResponse {
        revision: r.get_revision(),
        prev_kv: if r.get_has_prev_kv() {
            Some(read_kv(r.get_prev_kv()?)?)
        } else {
            None
        },
    })
}

pub(crate) fn read_delete_response(
    r: delete_range_response::Reader<'_>,
) -> capnp::Result<DeleteRangeResponse> {
    Ok(DeleteRangeResponse {
        revision: r.get_revision(),
        deleted: r.get_deleted(),
        prev_kvs: r
            .get_prev_kvs()?
            .iter()
            .map(read_kv)
            .collect::<capnp::Result<_>>()?,
    })
}

pub(crate) fn read_txn_response(r: txn_response::Reader<'_>) -> capnp::Result<TxnResponse> {
    let responses = r
        .get_responses()?
        .iter()
        .map(|op| {
            Ok(match op.which()? {
                response_op::Range(x) => ResponseOp::Range(read_range_response(x?)?),
                response_op::Put(x) => ResponseOp::Put(read_put_response(x?)?),
                response_op::DeleteRange(x) => ResponseOp::DeleteRange(read_delete_response(x?)?),
                response_op::Txn(x) => ResponseOp::Txn(read_txn_response(x?)?),
            })
        })
        .collect::<capnp::Result<_>>()?;
    Ok(TxnResponse {
        succeeded: r.get_succeeded(),
        responses,
        revision: r.get_revision(),
    })
}

pub(crate) fn read_event(r: event::Reader<'_>) -> capnp::Result<Event> {
    Ok(Event {
        kind: match r.get_kind()? {
            event::Kind::Put => EventKind::Put,
            event::Kind::Delete => EventKind::Delete,
        },
        kv: read_kv(r.get_kv()?)?,
        prev_kv: if r.get_has_prev_kv() {
            Some(read_kv(r.get_prev_kv()?)?)
        } else {
            None
        },
    })
}
