//! The selection rules and endpoints computation of Calico Enterprise's federated services
//! controller (kube-controllers), as `desired_endpoints` documents them.

use std::collections::{BTreeMap, BTreeSet};

use meshsync_selector::Selector;

use crate::repack::repack_subsets;
use crate::types::{EndpointSubset, EndpointsInfo, ServiceInfo};
use crate::{LOCAL_CLUSTER, NAMESPACE_LABEL, REMOTE_CLUSTER_LABEL, SERVICE_SELECTOR_ANNOTATION};

/// The Endpoints a local federated Service should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredEndpoints {
    pub namespace: String,
    pub name: String,
    /// The raw `federation.tigera.io/serviceSelector` annotation of the federated Service; the
    /// written objects carry it, which is also what marks them as managed.
    pub selector_annotation: String,
    /// Repacked subsets (see [`crate::repack_subsets`]); empty when nothing matches.
    pub subsets: Vec<EndpointSubset>,
}

/// The effective selector text for a federated Service in `namespace` with annotation
/// `annotation`: `projectcalico.org/namespace == '<ns>'`, followed by `&& (<annotation>)` when the
/// annotation is non-empty.
pub fn effective_selector(namespace: &str, annotation: &str) -> String {
    let mut s = format!("{NAMESPACE_LABEL} == '{namespace}'");
    if !annotation.is_empty() {
        s.push_str(" && (");
        s.push_str(annotation);
        s.push(')');
    }
    s
}

fn invalid_selector(annotation: &str, err: impl std::fmt::Display) -> String {
    format!(
        "ServiceSelector expression '{annotation}' in annotation '{SERVICE_SELECTOR_ANNOTATION}' is not valid: {err}"
    )
}

/// Parses the federated Service's selector.
///
/// The annotation is first parsed on its own, so that an annotation which only parses once
/// wrapped — e.g. `a == "x") || (b == "y"`, which would turn the effective selector into
/// `ns && (a == "x") || (b == "y")` and escape the namespace restriction — is rejected. For every
/// annotation that parses alone, the effective selector means exactly "same namespace and the
/// annotation".
fn parse_service_selector(namespace: &str, annotation: &str) -> Result<Selector, String> {
    meshsync_selector::parse(annotation).map_err(|e| invalid_selector(annotation, e))?;
    meshsync_selector::parse(&effective_selector(namespace, annotation))
        .map_err(|e| invalid_selector(annotation, e))
}

fn spec_selector_error(svc: &ServiceInfo) -> String {
    format!(
        "Spec.Selector is specified for a federated service {}/{}: a service with annotation '{SERVICE_SELECTOR_ANNOTATION}' must not have a spec.selector, it will not be included in federation",
        svc.namespace, svc.name
    )
}

/// A backing-service candidate with its selector labels.
struct Candidate<'a> {
    svc: &'a ServiceInfo,
    labels: BTreeMap<String, String>,
}

/// Computes the desired federated Endpoints for every **local** federated Service.
///
/// The map key is (namespace, name) of the federated Service. A value is
/// * `Ok(desired)` — the Endpoints to maintain (possibly with zero subsets);
/// * `Err(reason)` — the Service is federated but misconfigured (a `spec.selector` is set, or
///   the selector annotation does not parse). No Endpoints are desired: the caller logs a warning
///   with the service and reason and deletes the Endpoints object if it manages it.
///
/// Services without an entry are not federated (or are remote): their Endpoints are none of the
/// controller's business.
///
/// Rules: a Service is federated when it carries [`SERVICE_SELECTOR_ANNOTATION`]. Backing
/// candidates are all Services, local and remote, *without* that annotation. A candidate's
/// labels are its own labels plus `projectcalico.org/namespace=<ns>` and, for remote ones,
/// `federation.tigera.io/remoteClusterName=<cluster>` (the implicit labels override own labels
/// of the same key). For each backing Service, in (cluster, namespace, name) order — local
/// first — each of its Endpoints subsets keeps the ports whose (name, protocol) is among the
/// federated Service's ports; a subset with kept ports contributes its addresses and not-ready
/// addresses, where a remote address with a non-empty `targetRef.name` gets
/// `targetRef.name = <cluster>/<name>`. The contributions are then repacked.
pub fn desired_endpoints(
    services: &[ServiceInfo],
    endpoints: &[EndpointsInfo],
) -> BTreeMap<(String, String), Result<DesiredEndpoints, String>> {
    // Candidates in a deterministic order: the order decides which copy of a duplicate address
    // (same IP and UID from two backing services) supplies the stored address in the repack.
    let mut candidates: Vec<Candidate<'_>> = services
        .iter()
        .filter(|svc| !svc.annotations.contains_key(SERVICE_SELECTOR_ANNOTATION))
        .map(|svc| {
            let mut labels = svc.labels.clone();
            labels.insert(NAMESPACE_LABEL.to_owned(), svc.namespace.clone());
            if svc.cluster != LOCAL_CLUSTER {
                labels.insert(REMOTE_CLUSTER_LABEL.to_owned(), svc.cluster.clone());
            }
            Candidate { svc, labels }
        })
        .collect();
    candidates.sort_by(|a, b| {
        (&a.svc.cluster, &a.svc.namespace, &a.svc.name).cmp(&(
            &b.svc.cluster,
            &b.svc.namespace,
            &b.svc.name,
        ))
    });

    let mut endpoints_by_service: BTreeMap<(&str, &str, &str), Vec<&EndpointsInfo>> =
        BTreeMap::new();
    for eps in endpoints {
        endpoints_by_service
            .entry((&eps.cluster, &eps.namespace, &eps.name))
            .or_default()
            .push(eps);
    }

    let mut out = BTreeMap::new();
    for svc in services {
        if svc.cluster != LOCAL_CLUSTER {
            continue;
        }
        let Some(annotation) = svc.annotations.get(SERVICE_SELECTOR_ANNOTATION) else {
            continue;
        };
        let key = (svc.namespace.clone(), svc.name.clone());
        let result = if !svc.selector.is_empty() {
            Err(spec_selector_error(svc))
        } else {
            parse_service_selector(&svc.namespace, annotation).map(|selector| {
                compute_one(
                    svc,
                    annotation,
                    &selector,
                    &candidates,
                    &endpoints_by_service,
                )
            })
        };
        if let Err(reason) = &result {
            tracing::debug!(namespace = %svc.namespace, service = %svc.name, %reason,
                "federated service has no desired endpoints");
        }
        out.insert(key, result);
    }
    out
}

fn compute_one(
    federated: &ServiceInfo,
    annotation: &str,
    selector: &Selector,
    candidates: &[Candidate<'_>],
    endpoints_by_service: &BTreeMap<(&str, &str, &str), Vec<&EndpointsInfo>>,
) -> DesiredEndpoints {
    let wanted: BTreeSet<(&str, &str)> = federated
        .ports
        .iter()
        .map(|p| (p.name.as_str(), p.protocol.as_str()))
        .collect();

    let mut contributed: Vec<EndpointSubset> = Vec::new();
    for candidate in candidates {
        // A federated service with a spec.selector is never a candidate: it carries the
        // annotation. Everything else is filtered by the selector alone.
        if !selector.evaluate(&candidate.labels) {
            continue;
        }
        let backing = candidate.svc;
        let Some(eps_list) =
            endpoints_by_service.get(&(&backing.cluster, &backing.namespace, &backing.name))
        else {
            continue;
        };
        let remote = backing.cluster != LOCAL_CLUSTER;
        for eps in eps_list {
            for subset in &eps.subsets {
                let ports: Vec<_> = subset
                    .ports
                    .iter()
                    .filter(|p| wanted.contains(&(p.name_str(), p.protocol.as_str())))
                    .map(|p| {
                        let mut p = p.clone();
                        // "" and absent are the same name on the wire.
                        if p.name.as_deref() == Some("") {
                            p.name = None;
                        }
                        p
                    })
                    .collect();
                if ports.is_empty() {
                    continue;
                }
                let mut kept = EndpointSubset {
                    addresses: subset.addresses.clone(),
                    not_ready_addresses: subset.not_ready_addresses.clone(),
                    ports,
                };
                if remote {
                    for addr in kept
                        .addresses
                        .iter_mut()
                        .chain(kept.not_ready_addresses.iter_mut())
                    {
                        if let Some(name) = addr.target_ref.as_mut().and_then(|r| r.name.as_mut())
                            && !name.is_empty()
                        {
                            *name = format!("{}/{}", backing.cluster, name);
                        }
                    }
                }
                contributed.push(kept);
            }
        }
    }

    DesiredEndpoints {
        namespace: federated.namespace.clone(),
        name: federated.name.clone(),
        selector_annotation: annotation.to_owned(),
        subsets: repack_subsets(&contributed),
    }
}
