//! The Kubernetes writer: every object is written with **server-side apply** as the field manager
//! [`FIELD_MANAGER`], never forced, and deleted with preconditions.
//!
//! * Each write first reads the object from the API server (the mirror may lag). An object that
//!   [`crate::is_managed`] does not call ours is left alone ([`Outcome::Unmanaged`]), whatever the
//!   desired state: the same rule as the etcd and file writers.
//! * Absent: applied (which creates it). An apply cannot require absence, so an object someone
//!   else creates between our read and our apply gets our fields too, unless it already holds
//!   them with other values (then it is a conflict, below): a window of one round trip.
//! * Present and ours: nothing is sent when laying the desired object over it ([`merge`]) changes
//!   nothing; otherwise the desired object is applied with the read `metadata.resourceVersion` in
//!   it, which the API server takes as a precondition, so an object changed since the read (say,
//!   its annotation removed to hand it back to its user) is read again, up to `max_attempts`
//!   times. What we apply is only what we own: the data fields (`subsets`;
//!   `addressType`/`endpoints`/`ports`), our annotation and labels; the server keeps every other
//!   manager's fields, and removes ours that we no longer apply.
//! * No longer wanted and ours: deleted with the read `uid` and `resourceVersion` as
//!   preconditions (a changed object is read again).
//! * A field another manager owns with a different value makes the API answer 409 with one
//!   `FieldManagerConflict` cause per field: that is [`ApplyError::FieldConflict`], naming the
//!   managers and fields, counted as failed and retried later, never forced.
//! * A 401 (a rotated token, a replaced kubeconfig) makes the next reconciliation build the client
//!   again through its [`KubeConnect`], which reads the access configuration anew.
//! * An apply that changes nothing (the server's `resourceVersion` unchanged) is
//!   [`Outcome::Unchanged`]: the API server defaults some fields (ports' `protocol`, …), so the
//!   read object and the desired one can differ while there is nothing to write.

use std::sync::atomic::{AtomicBool, Ordering};

use kube::Client;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    Preconditions,
};
use kube::core::Status;
use serde_json::Value;
use tracing::{debug, info};

use super::{ApplyError, Outcome, PrepareError, check_name};
use crate::controller::merge::{merge, strip};
use crate::controller::plan::Action;
use crate::controller::{FIELD_MANAGER, KubeConnect, LOG_TARGET};
use crate::is_managed;

/// Writes through the Kubernetes API, connecting on the first [`KubeWriter::prepare`].
pub(in crate::controller) struct KubeWriter {
    connect: KubeConnect,
    max_attempts: u32,
    client: Option<Client>,
    /// Set when the API answered 401: the credentials are stale (a rotated token, a replaced
    /// kubeconfig), so the next [`KubeWriter::prepare`] builds the client again.
    unauthorized: AtomicBool,
}

/// The API coordinates of a kind the controller writes.
fn api_resource(kind: &'static str) -> Result<ApiResource, ApplyError> {
    let (group, plural) = match kind {
        "Endpoints" => ("", "endpoints"),
        "EndpointSlice" => ("discovery.k8s.io", "endpointslices"),
        other => return Err(ApplyError::NoLayout(other)),
    };
    Ok(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, "v1", kind),
        plural,
    ))
}

/// What one attempt ended in: done, or read again (the object changed since it was read).
enum Attempt {
    Done(Outcome),
    Modified,
}

impl KubeWriter {
    pub(super) fn new(connect: KubeConnect, max_attempts: u32) -> Self {
        KubeWriter {
            connect,
            max_attempts,
            client: None,
            unauthorized: AtomicBool::new(false),
        }
    }

    /// Builds the client if not built yet, or again after a 401.
    pub(super) async fn prepare(&mut self) -> Result<(), PrepareError> {
        if self.unauthorized.swap(false, Ordering::Relaxed) {
            info!(target: LOG_TARGET, "the Kubernetes API refused our credentials; building the client again");
            self.client = None;
        }
        if self.client.is_none() {
            let client = self
                .connect
                .connect()
                .await
                .map_err(PrepareError::KubeConnect)?;
            self.client = Some(client);
        }
        Ok(())
    }

    pub(super) async fn apply_one(&self, action: &Action) -> Result<Outcome, ApplyError> {
        let client = self.client.as_ref().ok_or(ApplyError::NotConnected)?;
        check_name(&action.namespace)?;
        check_name(&action.name)?;
        let resource = api_resource(action.kind)?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &action.namespace, &resource);
        let attempts = self.max_attempts.max(1);
        for attempt in 1..=attempts {
            let result = apply_attempt(&api, action).await;
            if let Err(ApplyError::Api(status)) = &result
                && status.code == 401
            {
                self.unauthorized.store(true, Ordering::Relaxed);
            }
            match result? {
                Attempt::Done(outcome) => return Ok(outcome),
                Attempt::Modified => {
                    debug!(target: LOG_TARGET, kind = action.kind, namespace = %action.namespace,
                        name = %action.name, attempt, "changed since read; reading again");
                }
            }
        }
        Err(ApplyError::StillModified(attempts))
    }
}

async fn apply_attempt(api: &Api<DynamicObject>, action: &Action) -> Result<Attempt, ApplyError> {
    let current = api.get_opt(&action.name).await.map_err(api_error)?;
    let Some(current) = current else {
        let Some(want) = &action.desired else {
            return Ok(Attempt::Done(Outcome::Unchanged));
        };
        return apply(api, action, want, None).await;
    };
    let mut existing = serde_json::to_value(&current).map_err(ApplyError::Encode)?;
    if existing.get("kind").is_none()
        && let Some(obj) = existing.as_object_mut()
    {
        // Always sent by the API server; `is_managed` needs it for EndpointSlices.
        obj.insert("kind".into(), Value::from(action.kind));
    }
    if !is_managed(&existing) {
        info!(target: LOG_TARGET, kind = action.kind, namespace = %action.namespace, name = %action.name,
            "object not managed by the federation controller (no selector annotation); leaving it alone");
        return Ok(Attempt::Done(Outcome::Unmanaged));
    }
    let resource_version = current.metadata.resource_version.clone();
    let Some(want) = &action.desired else {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: resource_version.clone(),
                uid: current.metadata.uid.clone(),
            }),
            ..DeleteParams::default()
        };
        return match api.delete(&action.name, &params).await {
            Ok(_) => Ok(Attempt::Done(Outcome::Deleted)),
            Err(kube::Error::Api(status)) if status.is_not_found() => {
                Ok(Attempt::Done(Outcome::Unchanged))
            }
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(Attempt::Modified),
            Err(e) => Err(api_error(e)),
        };
    };
    let Some(merged) = merge(&existing, want) else {
        return Ok(Attempt::Done(Outcome::Unmanaged));
    };
    if comparable(&existing) == comparable(&merged) {
        debug!(target: LOG_TARGET, kind = action.kind, namespace = %action.namespace,
            name = %action.name, "already as desired; nothing sent");
        return Ok(Attempt::Done(Outcome::Unchanged));
    }
    apply(api, action, want, resource_version).await
}

/// Applies `want` (with `resource_version` as a precondition when given); never forced.
async fn apply(
    api: &Api<DynamicObject>,
    action: &Action,
    want: &Value,
    resource_version: Option<String>,
) -> Result<Attempt, ApplyError> {
    let mut body = want.clone();
    if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        // Server-set fields are not ours to apply; the read version is the precondition.
        for field in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
        ] {
            metadata.remove(field);
        }
        if let Some(rv) = &resource_version {
            metadata.insert("resourceVersion".into(), Value::from(rv.as_str()));
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER);
    match api.patch(&action.name, &params, &Patch::Apply(&body)).await {
        Ok(applied) => {
            let same =
                resource_version.is_some() && applied.metadata.resource_version == resource_version;
            if same {
                debug!(target: LOG_TARGET, kind = action.kind, namespace = %action.namespace,
                    name = %action.name, "applied; the API server changed nothing");
            }
            Ok(Attempt::Done(if same {
                Outcome::Unchanged
            } else {
                Outcome::Written
            }))
        }
        Err(kube::Error::Api(status)) if status.is_conflict() => {
            match field_conflict(&status) {
                Some(conflict) => Err(conflict),
                // The resourceVersion precondition failed (or it was created meanwhile).
                None => Ok(Attempt::Modified),
            }
        }
        Err(e) => Err(api_error(e)),
    }
}

/// The API's answers as [`ApplyError::Api`] (readable: code, reason, message), the rest as they
/// are.
fn api_error(e: kube::Error) -> ApplyError {
    match e {
        kube::Error::Api(status) => ApplyError::Api(status),
        other => ApplyError::Kube(other),
    }
}

/// The API's answer to an apply that would take fields other managers own: `FieldManagerConflict`
/// causes, each `conflict with "MANAGER"[ using VERSION]` on a field. `None` for any other 409.
fn field_conflict(status: &Status) -> Option<ApplyError> {
    let causes: Vec<_> = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .filter(|c| c.reason == "FieldManagerConflict")
        .collect();
    let from_message = managers_in(&status.message);
    if causes.is_empty() && from_message.is_empty() {
        return None;
    }
    let mut managers: Vec<String> = causes
        .iter()
        .flat_map(|c| managers_in(&c.message))
        .chain(from_message)
        .collect();
    managers.sort();
    managers.dedup();
    let mut fields: Vec<String> = causes.iter().map(|c| c.field.clone()).collect();
    fields.sort();
    fields.dedup();
    Some(ApplyError::FieldConflict {
        managers: managers.join(", "),
        fields: fields.join(", "),
        message: status.message.clone(),
    })
}

/// The quoted names after `conflict with ` or `conflicts with ` (one manager, several fields) in
/// an API message.
fn managers_in(message: &str) -> Vec<String> {
    message
        .replace("conflicts with \"", "conflict with \"")
        .split("conflict with \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An object without what the API server maintains itself, for deciding whether to write.
fn comparable(value: &Value) -> Value {
    let mut v = strip(value);
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in ["managedFields", "generation", "selfLink"] {
            m.remove(f);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use kube::core::response::{StatusCause, StatusDetails};

    use super::*;

    /// The 409 a kube-apiserver answers when another manager owns `.subsets` with another value.
    #[test]
    fn field_conflicts_name_the_managers_and_fields() {
        let message = "Apply failed with 1 conflict: conflict with \"other\" using v1: .subsets";
        let status = Status::failure(message, "Conflict")
            .with_code(409)
            .with_details(StatusDetails {
                causes: vec![StatusCause {
                    reason: "FieldManagerConflict".into(),
                    message: "conflict with \"other\" using v1".into(),
                    field: ".subsets".into(),
                }],
                name: "x".into(),
                group: String::new(),
                kind: "endpoints".into(),
                uid: String::new(),
                retry_after_seconds: 0,
            });
        match field_conflict(&status) {
            Some(ApplyError::FieldConflict {
                managers, fields, ..
            }) => {
                assert_eq!(managers, "other");
                assert_eq!(fields, ".subsets");
            }
            other => panic!("{other:?}"),
        }
        // A precondition failure is a 409 too, but no field conflict: read again.
        let modified = Status::failure(
            "Operation cannot be fulfilled on endpoints \"x\": the object has been modified",
            "Conflict",
        )
        .with_code(409);
        assert!(field_conflict(&modified).is_none());
        assert_eq!(
            managers_in(r#"conflicts with "a" using v1: .x, conflict with "b": .y"#),
            ["a", "b"]
        );
    }

    #[test]
    fn server_fields_are_ignored_when_comparing() {
        let a = serde_json::json!({"metadata": {"name": "x", "resourceVersion": "5",
            "managedFields": [{"manager": "m"}], "generation": 2}});
        let b = serde_json::json!({"metadata": {"name": "x"}});
        assert_eq!(comparable(&a), comparable(&b));
    }
}
