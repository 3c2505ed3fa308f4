//! One request's context: who asked, in which format, for what, and its audit record, which is
//! written exactly once, when the context's [`AuditGuard`] is finished or dropped, whatever path
//! the request took (success, rejection, upstream error, client gone, panic).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::audit::{AuditRecord, AuditSink};
use crate::auth::KeyInfo;
use crate::error::ProxyError;
use crate::translate::{ApiFormat, Codec};
use crate::wire::Endpoint;

/// Status recorded when the client left before an answer was sent.
pub(crate) const CLIENT_CLOSED: i64 = 499;

/// The audit record of one request, written when the guard is finished or dropped.
#[derive(Debug)]
pub(crate) struct AuditGuard {
    sink: AuditSink,
    started: Instant,
    record: AuditRecord,
    written: bool,
}

impl AuditGuard {
    /// Starts the record of a request to `route`.
    pub(crate) fn start(sink: AuditSink, route: String) -> Self {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let record = AuditRecord { request_id: uuid::Uuid::now_v7().to_string(), ts, route, ..AuditRecord::default() };
        Self { sink, started: Instant::now(), record, written: false }
    }

    /// The record, to fill in.
    pub(crate) fn record(&mut self) -> &mut AuditRecord {
        &mut self.record
    }

    /// The request id (also the `x-request-id` header).
    pub(crate) fn request_id(&self) -> &str {
        &self.record.request_id
    }

    /// Records that `error` stopped the request.
    pub(crate) fn reject(&mut self, error: &ProxyError) {
        self.record.status = i64::from(error.status().as_u16());
        self.record.error_code = Some(error.code().to_owned());
    }

    /// Writes the record now.
    pub(crate) fn finish(mut self) {
        self.write();
    }

    fn write(&mut self) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        let mut record = std::mem::take(&mut self.record);
        if record.status == 0 {
            // Dropped before any outcome was recorded: a stage panicked, or the client went away
            // and the request was cancelled.
            let (status, code) =
                if std::thread::panicking() { (500, "internal_error") } else { (CLIENT_CLOSED, "client_disconnected") };
            record.status = status;
            record.error_code = Some(code.to_owned());
        }
        record.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        // The one place a record's text is made safe to store, whatever path the request took.
        crate::audit::sanitise::sanitise(&mut record);
        self.sink.record(record);
    }
}

impl Drop for AuditGuard {
    fn drop(&mut self) {
        self.write();
    }
}

/// Where a request came in: known before anything is read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ingress {
    /// The client's format, chosen by route.
    pub(crate) format: ApiFormat,
    /// Which endpoint.
    pub(crate) endpoint: Endpoint,
}

impl Ingress {
    /// The client format's codec.
    pub(crate) fn codec(self) -> &'static dyn Codec {
        self.format.codec()
    }
}

/// One authenticated request, from the key to the answer's end. Stages read it; the audit guard
/// inside it goes wherever the request's end is (the response body, for streams).
#[derive(Debug)]
pub(crate) struct RequestContext {
    /// Route, format and endpoint.
    pub(crate) ingress: Ingress,
    /// The client's address (after trusted-proxy resolution).
    pub(crate) client_ip: IpAddr,
    /// The key, resolved.
    pub(crate) key: Arc<KeyInfo>,
    /// The model asked for (set by `parse`).
    pub(crate) requested_model: String,
    /// The model that will be routed (differs after a guardrail reroute).
    pub(crate) model: String,
    /// The request's audit record.
    pub(crate) audit: AuditGuard,
}

impl RequestContext {
    /// The context of a request made with `key`; the key and its tenant go into the record.
    pub(crate) fn new(ingress: Ingress, client_ip: IpAddr, key: Arc<KeyInfo>, mut audit: AuditGuard) -> Self {
        let record = audit.record();
        record.key_id = Some(key.key.id.clone());
        record.tenant_id = Some(key.key.tenant_id.clone());
        Self { ingress, client_ip, key, requested_model: String::new(), model: String::new(), audit }
    }

    /// The key's id (never the key).
    pub(crate) fn key_id(&self) -> &str {
        &self.key.key.id
    }

    /// The key's tenant.
    pub(crate) fn tenant_id(&self) -> &str {
        &self.key.key.tenant_id
    }

    /// The route asked, as the audit trail records it.
    pub(crate) fn route(&self) -> &str {
        &self.audit.record.route
    }

    /// The client format's codec.
    pub(crate) fn codec(&self) -> &'static dyn Codec {
        self.ingress.codec()
    }
}

#[cfg(test)]
mod tests;
