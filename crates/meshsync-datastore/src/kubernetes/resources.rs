//! Which API resources a Kubernetes source watches, and how each one's objects become meshsync's
//! kinds: found once per connection by discovery, from the kinds registry.
//!
//! Why discovery: a cluster may run Calico's `crd.projectcalico.org/v1` CRDs (the classic KDD
//! layout: v3 fields in `spec`), the `projectcalico.org/v3` CRDs of newer Calico (objects already in
//! v3 layout), or neither for some kinds (a CRD not installed); a watch on a resource the server
//! does not serve fails forever. So a source asks the server which resources exist and watches
//! exactly those of the kinds it wants, one watch per resource. When both groups are served, the v1
//! CRDs are Calico's datastore (the v3 group is then Calico's aggregated API server in front of
//! them) and v1 wins.

use std::collections::{BTreeMap, HashSet};

use kube::core::{ApiResource, GroupVersionKind};
use meshsync_model::kinds::{self, KINDS, KubeApi};

/// How objects of one watched resource become meshsync resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// A `crd.projectcalico.org/v1` object of Calico kind `kind`: v3 fields in `spec`, v3
    /// metadata in the `projectcalico.org/metadata` annotation.
    CalicoV1 { kind: &'static str },
    /// A `projectcalico.org/v3` CRD object: already in v3 layout.
    CalicoV3 { kind: &'static str },
    /// Pod → WorkloadEndpoint.
    Pod,
    /// Namespace → Profile `kns.<ns>` (and the synthetic `projectcalico-default-allow`).
    Namespace,
    /// ServiceAccount → Profile `ksa.<ns>.<sa>`.
    ServiceAccount,
    /// Node → Calico Node.
    Node,
    /// networking.k8s.io NetworkPolicy → KubernetesNetworkPolicy.
    NetworkPolicy,
    /// A built-in object served as it is (`builtin`: Service, Endpoints, EndpointSlice), and/or
    /// the Calico kind derived from it (`derived`: KubernetesService, KubernetesEndpointSlice).
    Builtin {
        builtin: Option<&'static str>,
        derived: Option<&'static str>,
    },
}

/// One watched API resource.
#[derive(Clone, Debug)]
pub struct WatchedResource {
    pub api: ApiResource,
    pub namespaced: bool,
    pub conversion: Conversion,
}

impl WatchedResource {
    /// `plural.group` (or `plural` for the core group), as in RBAC and in log lines.
    pub fn name(&self) -> String {
        if self.api.group.is_empty() {
            self.api.plural.clone()
        } else {
            format!("{}.{}", self.api.plural, self.api.group)
        }
    }

    /// The meshsync kinds this resource produces.
    pub fn kinds(&self) -> Vec<&'static str> {
        match &self.conversion {
            Conversion::CalicoV1 { kind } | Conversion::CalicoV3 { kind } => vec![kind],
            Conversion::Pod => vec![kinds::WORKLOAD_ENDPOINT],
            Conversion::Namespace | Conversion::ServiceAccount => vec![kinds::PROFILE],
            Conversion::Node => vec!["Node"],
            Conversion::NetworkPolicy => vec!["KubernetesNetworkPolicy"],
            Conversion::Builtin { builtin, derived } => {
                builtin.iter().chain(derived.iter()).copied().collect()
            }
        }
    }
}

/// The Calico CRD groups.
pub const CALICO_V1_GROUP: &str = "crd.projectcalico.org";
pub const CALICO_V3_GROUP: &str = "projectcalico.org";

/// Which Calico CRD layout a cluster serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalicoMode {
    V1,
    V3,
    /// Neither group is served: only the kinds derived from core objects exist.
    None,
}

/// The kinds one built-in resource yields: (served as it is, derived Calico kind).
type BuiltinKinds = (Option<&'static str>, Option<&'static str>);

/// What discovery found: per group/version, the plurals served and whether each is namespaced.
pub type Served = BTreeMap<String, BTreeMap<String, bool>>;

/// The resources to watch for the kinds in `wanted` (`None`: every kind), given what the server
/// serves. Kinds the server cannot provide are returned separately (logged by the caller).
pub fn plan(
    served: &Served,
    wanted: Option<&HashSet<String>>,
) -> (CalicoMode, Vec<WatchedResource>, Vec<&'static str>) {
    let want = |kind: &str| wanted.is_none_or(|w| w.contains(kind));
    let mut plan = Planner {
        served,
        mode: calico_mode(served),
        out: Vec::new(),
        missing: Vec::new(),
        builtin: BTreeMap::new(),
    };
    for info in KINDS.iter().filter(|k| want(k.name)) {
        match info.kube {
            KubeApi::CalicoCrd { plural } => plan.calico_crd(info.name, plural),
            KubeApi::DerivedFrom {
                api_version,
                plural,
            } => plan.derived(info.name, api_version, plural),
            KubeApi::Builtin {
                api_version,
                plural,
            } => {
                // Secrets are watched by name, for the RCCs that name them (never all of them).
                if info.name != kinds::SECRET {
                    plan.builtin.entry((api_version, plural)).or_default().0 = Some(info.name);
                }
            }
            KubeApi::None => plan.missing.push(info.name),
        }
    }
    plan.watch_builtins();
    (plan.mode, plan.out, plan.missing)
}

/// The Calico CRD layout of a cluster, from the groups it serves.
fn calico_mode(served: &Served) -> CalicoMode {
    let v1 = served.get(&format!("{CALICO_V1_GROUP}/v1"));
    let v3 = served.get(&format!("{CALICO_V3_GROUP}/v3"));
    // v1 mode when the v1 group holds Calico's own kinds: meshsync's RCC CRD alone (installed
    // beside native v3 CRDs) does not make a cluster v1.
    let v1_calico = v1.is_some_and(|r| r.keys().any(|p| p != "remoteclusterconfigurations"));
    match (v1_calico, v3.is_some()) {
        (true, _) => CalicoMode::V1,
        (false, true) => CalicoMode::V3,
        (false, false) if v1.is_some() => CalicoMode::V1,
        (false, false) => CalicoMode::None,
    }
}

/// The plan under construction: the watches chosen so far and the kinds found missing.
struct Planner<'a> {
    served: &'a Served,
    mode: CalicoMode,
    out: Vec<WatchedResource>,
    missing: Vec<&'static str>,
    /// Built-in resources may carry two kinds (Service and KubernetesService): one watch each,
    /// made by [`Planner::watch_builtins`] once every kind is known.
    builtin: BTreeMap<(&'static str, &'static str), BuiltinKinds>,
}

impl Planner<'_> {
    /// Whether `plural` of `api_version` is namespaced; `None` when the server does not serve it.
    fn namespaced(&self, api_version: &str, plural: &str) -> Option<bool> {
        self.served
            .get(api_version)
            .and_then(|r| r.get(plural))
            .copied()
    }

    /// A Calico kind stored in a Calico CRD, from the group of the cluster's mode.
    fn calico_crd(&mut self, kind: &'static str, plural: &str) {
        let v1_group = format!("{CALICO_V1_GROUP}/v1");
        // IPAMConfig is stored in `ipamconfigs` in v1 mode, IPAMConfiguration in
        // `ipamconfigurations` in v3 mode (Calico's two CRD layouts differ here only).
        let (group_version, conversion) = match self.mode {
            CalicoMode::V1 => (v1_group.clone(), Conversion::CalicoV1 { kind }),
            CalicoMode::V3 => (
                format!("{CALICO_V3_GROUP}/v3"),
                Conversion::CalicoV3 { kind },
            ),
            CalicoMode::None => {
                self.missing.push(kind);
                return;
            }
        };
        match self.namespaced(&group_version, plural) {
            Some(namespaced) => self.out.push(WatchedResource {
                api: api_resource(&group_version, plural, kind),
                namespaced,
                conversion,
            }),
            // In v3 mode, RCCs may still come from meshsync's v1 CRD.
            None => match self.namespaced(&v1_group, plural) {
                Some(namespaced) if self.mode == CalicoMode::V3 => self.out.push(WatchedResource {
                    api: api_resource(&v1_group, plural, kind),
                    namespaced,
                    conversion: Conversion::CalicoV1 { kind },
                }),
                _ => self.missing.push(kind),
            },
        }
    }

    /// A Calico kind that Calico's Kubernetes datastore derives from a built-in resource.
    fn derived(&mut self, kind: &'static str, api_version: &'static str, plural: &'static str) {
        let conversion = match (api_version, plural) {
            ("v1", "pods") => Conversion::Pod,
            ("v1", "namespaces") => Conversion::Namespace,
            ("v1", "nodes") => Conversion::Node,
            ("networking.k8s.io/v1", "networkpolicies") => Conversion::NetworkPolicy,
            ("v1", "services") | ("discovery.k8s.io/v1", "endpointslices") => {
                self.builtin.entry((api_version, plural)).or_default().1 = Some(kind);
                return;
            }
            _ => {
                // Optional sources (AdminNetworkPolicy, KubeVirt): not converted yet.
                self.missing.push(kind);
                return;
            }
        };
        let Some(namespaced) = self.namespaced(api_version, plural) else {
            self.missing.push(kind);
            return;
        };
        self.out.push(WatchedResource {
            api: api_resource(api_version, plural, kind),
            namespaced,
            conversion: conversion.clone(),
        });
        // Profiles come from Namespaces and from ServiceAccounts.
        if conversion == Conversion::Namespace
            && self
                .served
                .get("v1")
                .is_some_and(|r| r.contains_key("serviceaccounts"))
        {
            self.out.push(WatchedResource {
                api: api_resource("v1", "serviceaccounts", "ServiceAccount"),
                namespaced: true,
                conversion: Conversion::ServiceAccount,
            });
        }
    }

    /// One watch per built-in resource, carrying its built-in and/or derived kind.
    fn watch_builtins(&mut self) {
        for ((api_version, plural), (b, d)) in std::mem::take(&mut self.builtin) {
            let Some(namespaced) = self.namespaced(api_version, plural) else {
                self.missing.extend(b.into_iter().chain(d));
                continue;
            };
            let kind = b.or(d).unwrap_or_default();
            self.out.push(WatchedResource {
                api: api_resource(api_version, plural, builtin_kind(plural, kind)),
                namespaced,
                conversion: Conversion::Builtin {
                    builtin: b,
                    derived: d,
                },
            });
        }
    }
}

/// The Kubernetes kind of a built-in plural (the registry's kinds may be derived ones).
fn builtin_kind<'a>(plural: &str, fallback: &'a str) -> &'a str {
    match plural {
        "services" => "Service",
        "endpoints" => "Endpoints",
        "endpointslices" => "EndpointSlice",
        _ => fallback,
    }
}

/// The `ApiResource` of `plural` in `api_version` (`group/version`, or `v1` for core).
pub fn api_resource(api_version: &str, plural: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let mut ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    // The Kubernetes kind of the objects (the registry's kind for Calico CRDs, the core kind for
    // derived ones) matters only to kube's typing; the conversion decides the output kind.
    ar.kind = match plural {
        "pods" => "Pod".into(),
        "namespaces" => "Namespace".into(),
        "nodes" => "Node".into(),
        "networkpolicies" if group == "networking.k8s.io" => "NetworkPolicy".into(),
        _ => kind.into(),
    };
    ar
}

/// The group/versions a source asks discovery about.
pub fn discovery_group_versions() -> Vec<String> {
    let mut out: Vec<String> = vec![
        format!("{CALICO_V1_GROUP}/v1"),
        format!("{CALICO_V3_GROUP}/v3"),
    ];
    for info in KINDS {
        if let KubeApi::DerivedFrom { api_version, .. } | KubeApi::Builtin { api_version, .. } =
            info.kube
            && !out.iter().any(|g| g == api_version)
        {
            out.push(api_version.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served(entries: &[(&str, &[(&str, bool)])]) -> Served {
        entries
            .iter()
            .map(|(gv, rs)| {
                (
                    gv.to_string(),
                    rs.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
                )
            })
            .collect()
    }

    fn core() -> Vec<(&'static str, &'static [(&'static str, bool)])> {
        vec![
            (
                "v1",
                &[
                    ("pods", true),
                    ("namespaces", false),
                    ("serviceaccounts", true),
                    ("nodes", false),
                    ("services", true),
                    ("endpoints", true),
                    ("secrets", true),
                ],
            ),
            ("discovery.k8s.io/v1", &[("endpointslices", true)]),
            ("networking.k8s.io/v1", &[("networkpolicies", true)]),
        ]
    }

    #[test]
    fn v1_crds_win_and_core_objects_are_converted() {
        let mut entries = core();
        entries.push((
            "crd.projectcalico.org/v1",
            &[("ippools", false), ("hostendpoints", false)],
        ));
        entries.push(("projectcalico.org/v3", &[("ippools", false)]));
        let (mode, resources, missing) = plan(&served(&entries), None);
        assert_eq!(mode, CalicoMode::V1);
        let names: Vec<String> = resources.iter().map(WatchedResource::name).collect();
        for n in [
            "ippools.crd.projectcalico.org",
            "hostendpoints.crd.projectcalico.org",
            "pods",
            "namespaces",
            "serviceaccounts",
            "nodes",
            "networkpolicies.networking.k8s.io",
            "services",
            "endpoints",
            "endpointslices.discovery.k8s.io",
        ] {
            assert!(names.contains(&n.to_string()), "{n} not in {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("secrets")), "{names:?}");
        // One watch per resource, even where it yields two kinds.
        assert_eq!(names.iter().filter(|n| *n == "services").count(), 1);
        let services = resources.iter().find(|r| r.name() == "services").unwrap();
        assert_eq!(services.kinds(), vec!["Service", "KubernetesService"]);
        assert!(missing.contains(&"BGPPeer"));
    }

    #[test]
    fn native_v3_crds_with_meshsyncs_rcc_crd_are_v3_mode() {
        let mut entries = core();
        entries.push((
            "projectcalico.org/v3",
            &[("ippools", false), ("ipamconfigurations", false)],
        ));
        entries.push((
            "crd.projectcalico.org/v1",
            &[("remoteclusterconfigurations", false)],
        ));
        let (mode, resources, _) = plan(&served(&entries), None);
        assert_eq!(mode, CalicoMode::V3);
        let find = |n: &str| {
            resources
                .iter()
                .find(|r| r.name() == n)
                .map(|r| r.conversion.clone())
        };
        assert_eq!(
            find("ippools.projectcalico.org"),
            Some(Conversion::CalicoV3 { kind: "IPPool" })
        );
        assert_eq!(
            find("ipamconfigurations.projectcalico.org"),
            Some(Conversion::CalicoV3 {
                kind: "IPAMConfiguration"
            })
        );
        assert_eq!(
            find("remoteclusterconfigurations.crd.projectcalico.org"),
            Some(Conversion::CalicoV1 {
                kind: "RemoteClusterConfiguration"
            })
        );
    }

    #[test]
    fn wanted_kinds_limit_the_watches() {
        let mut entries = core();
        entries.push((
            "projectcalico.org/v3",
            &[("ippools", false), ("hostendpoints", false)],
        ));
        let wanted: HashSet<String> = ["WorkloadEndpoint", "HostEndpoint", "Profile"]
            .map(String::from)
            .into();
        let (mode, resources, _) = plan(&served(&entries), Some(&wanted));
        assert_eq!(mode, CalicoMode::V3);
        let mut names: Vec<String> = resources.iter().map(WatchedResource::name).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "hostendpoints.projectcalico.org",
                "namespaces",
                "pods",
                "serviceaccounts"
            ]
        );
    }
}
