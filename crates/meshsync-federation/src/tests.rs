//! Scenario tests of the federation rules: the nine end-to-end scenarios Calico Enterprise's
//! functional test walks its federated services controller through (licensing left out), in pure
//! form, and unit-level cases of each rule.

use std::collections::BTreeMap;

use serde_json::json;

use crate::*;

const NS: &str = "ns-1";
const OTHER_NS: &str = "ns-2";
const REMOTE: &str = "my-remote";
const FEDERATED: &str = "federated";
const MATCHING: &str = "federate == 'yes'";

fn sport(name: &str, protocol: &str, port: i32) -> ServicePort {
    ServicePort {
        name: name.into(),
        protocol: protocol.into(),
        port,
        target_port: None,
    }
}

fn eport(name: &str, protocol: &str, port: i32) -> EndpointPort {
    EndpointPort {
        name: Some(name.into()),
        port,
        protocol: protocol.into(),
        app_protocol: None,
    }
}

fn port1() -> EndpointPort {
    eport("port1", "UDP", 1234)
}
fn port2() -> EndpointPort {
    eport("port2", "TCP", 1234)
}
fn port3() -> EndpointPort {
    eport("port3", "TCP", 1200)
}

pub(crate) fn addr(ip: &str) -> EndpointAddress {
    EndpointAddress {
        ip: ip.into(),
        ..Default::default()
    }
}

fn pod_addr(ip: &str, pod: &str) -> EndpointAddress {
    EndpointAddress {
        ip: ip.into(),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(NS.into()),
            name: Some(pod.into()),
            uid: None,
        }),
        ..Default::default()
    }
}

pub(crate) fn subset(
    ready: &[EndpointAddress],
    not_ready: &[EndpointAddress],
    ports: &[EndpointPort],
) -> EndpointSubset {
    EndpointSubset {
        addresses: ready.to_vec(),
        not_ready_addresses: not_ready.to_vec(),
        ports: ports.to_vec(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A backing service as in the FV setup: ports port1/UDP/1234, port2/TCP/1234, port3/TCP/1200.
fn backing(cluster: &str, ns: &str, name: &str, lbls: &[(&str, &str)]) -> ServiceInfo {
    ServiceInfo {
        cluster: cluster.into(),
        namespace: ns.into(),
        name: name.into(),
        labels: labels(lbls),
        annotations: BTreeMap::new(),
        selector: labels(&[("app", name)]),
        ports: vec![
            sport("port1", "UDP", 1234),
            sport("port2", "TCP", 1234),
            sport("port3", "TCP", 1200),
        ],
    }
}

fn federated(annotation: &str) -> ServiceInfo {
    ServiceInfo {
        cluster: LOCAL_CLUSTER.into(),
        namespace: NS.into(),
        name: FEDERATED.into(),
        labels: BTreeMap::new(),
        annotations: labels(&[(SERVICE_SELECTOR_ANNOTATION, annotation)]),
        selector: BTreeMap::new(),
        ports: vec![sport("port1", "UDP", 8080), sport("port2", "TCP", 80)],
    }
}

/// The FV endpoints: port1 {ready 1.0.0.1, notReady 1.0.0.2 → pod1}, port3 {same},
/// port2 {2.0.0.1}, port3 {3.0.0.1}.
fn eps1_subsets() -> Vec<EndpointSubset> {
    let ready = [addr("1.0.0.1")];
    let not_ready = [pod_addr("1.0.0.2", "pod1")];
    vec![
        subset(&ready, &not_ready, &[port1()]),
        subset(&ready, &not_ready, &[port3()]),
        subset(&[addr("2.0.0.1")], &[], &[port2()]),
        subset(&[addr("3.0.0.1")], &[], &[port3()]),
    ]
}

/// The FV "eps2" set: 10.10.10.1 and 10.10.10.2 on port1.
fn eps2_subsets() -> Vec<EndpointSubset> {
    vec![subset(
        &[addr("10.10.10.1"), addr("10.10.10.2")],
        &[],
        &[port1()],
    )]
}

fn eps(cluster: &str, ns: &str, name: &str, subsets: Vec<EndpointSubset>) -> EndpointsInfo {
    EndpointsInfo {
        cluster: cluster.into(),
        namespace: ns.into(),
        name: name.into(),
        subsets,
    }
}

/// The world of the FV test, mutated step by step like the test does.
struct World {
    services: Vec<ServiceInfo>,
    endpoints: Vec<EndpointsInfo>,
}

impl World {
    fn fv_setup() -> World {
        let yes = [("federate", "yes")];
        World {
            services: vec![
                backing(LOCAL_CLUSTER, NS, "backing1", &yes),
                backing(LOCAL_CLUSTER, NS, "backing2", &yes),
                backing(LOCAL_CLUSTER, OTHER_NS, "wrongns", &yes),
                federated(MATCHING),
            ],
            endpoints: vec![
                eps(LOCAL_CLUSTER, NS, "backing1", eps1_subsets()),
                eps(LOCAL_CLUSTER, NS, "backing2", eps1_subsets()),
                eps(LOCAL_CLUSTER, OTHER_NS, "wrongns", eps1_subsets()),
            ],
        }
    }

    fn service_mut(&mut self, cluster: &str, name: &str) -> &mut ServiceInfo {
        self.services
            .iter_mut()
            .find(|s| s.cluster == cluster && s.name == name)
            .expect("service exists")
    }

    fn set_endpoints(&mut self, cluster: &str, name: &str, subsets: Vec<EndpointSubset>) {
        let e = self
            .endpoints
            .iter_mut()
            .find(|e| e.cluster == cluster && e.name == name)
            .expect("endpoints exist");
        e.subsets = subsets;
    }

    fn add_remote_backing1(&mut self) {
        self.services
            .push(backing(REMOTE, NS, "backing1", &[("federate", "yes")]));
        self.endpoints
            .push(eps(REMOTE, NS, "backing1", eps1_subsets()));
    }

    fn remove_cluster(&mut self, cluster: &str) {
        self.services.retain(|s| s.cluster != cluster);
        self.endpoints.retain(|e| e.cluster != cluster);
    }

    fn desired(&self) -> BTreeMap<(String, String), Result<DesiredEndpoints, String>> {
        desired_endpoints(&self.services, &self.endpoints)
    }

    fn federated_result(&self) -> Option<Result<DesiredEndpoints, String>> {
        self.desired()
            .remove(&(NS.to_owned(), FEDERATED.to_owned()))
    }

    fn federated_subsets(&self) -> Vec<EndpointSubset> {
        let d = self
            .federated_result()
            .expect("federated service has an entry")
            .expect("federated service is valid");
        assert_eq!(d.namespace, NS);
        assert_eq!(d.name, FEDERATED);
        d.subsets
    }
}

fn rewritten_remote(a: &EndpointAddress) -> EndpointAddress {
    let mut a = a.clone();
    if let Some(name) = a.target_ref.as_mut().and_then(|r| r.name.as_mut()) {
        *name = format!("{REMOTE}/{name}");
    }
    a
}

/// Scenario 1 expectation: {2.0.0.1 : port2} and {ready 1.0.0.1, notReady 1.0.0.2 → pod1 :
/// port1}. Ports port3 (not in the federated service) and the ns-2 service are excluded, and the
/// duplicates from backing1 and backing2 collapse.
fn scenario1_expected() -> Vec<EndpointSubset> {
    let fv = eps1_subsets();
    vec![
        subset(&fv[0].addresses, &fv[0].not_ready_addresses, &[port1()]),
        subset(&fv[2].addresses, &[], &[port2()]),
    ]
}

#[test]
fn scenario_1_initial_endpoints() {
    let world = World::fv_setup();
    let subsets = world.federated_subsets();
    assert_eq!(subsets, scenario1_expected());
    // Spelled out against the FV description, independently of the helper above.
    assert_eq!(subsets[0].addresses, vec![addr("1.0.0.1")]);
    assert_eq!(
        subsets[0].not_ready_addresses,
        vec![pod_addr("1.0.0.2", "pod1")]
    );
    assert_eq!(subsets[0].ports, vec![port1()]);
    assert_eq!(subsets[1].addresses, vec![addr("2.0.0.1")]);
    assert_eq!(subsets[1].ports, vec![port2()]);
    // Only local federated services get entries.
    assert_eq!(world.desired().len(), 1);
}

#[test]
fn scenario_2_changed_backing_endpoints_merge_into_port1_subset() {
    let mut world = World::fv_setup();
    world.set_endpoints(LOCAL_CLUSTER, "backing2", eps2_subsets());
    let eps2 = eps2_subsets();
    let mut ready = scenario1_expected()[0].addresses.clone();
    ready.extend(eps2[0].addresses.iter().cloned());
    assert_eq!(
        world.federated_subsets(),
        vec![
            subset(&ready, &[pod_addr("1.0.0.2", "pod1")], &[port1()]),
            subset(&[addr("2.0.0.1")], &[], &[port2()]),
        ]
    );
}

fn scenario3_world() -> World {
    let mut world = World::fv_setup();
    world.set_endpoints(LOCAL_CLUSTER, "backing2", eps2_subsets());
    world.service_mut(LOCAL_CLUSTER, "backing1").labels.clear();
    world
}

#[test]
fn scenario_3_unlabelled_backing_drops_out() {
    assert_eq!(scenario3_world().federated_subsets(), eps2_subsets());
}

#[test]
fn scenario_4_annotation_removed_and_restored() {
    let mut world = scenario3_world();
    let before = world.federated_subsets();
    world
        .service_mut(LOCAL_CLUSTER, FEDERATED)
        .annotations
        .remove(SERVICE_SELECTOR_ANNOTATION);
    assert!(world.desired().is_empty(), "no federated service left");
    world
        .service_mut(LOCAL_CLUSTER, FEDERATED)
        .annotations
        .insert(SERVICE_SELECTOR_ANNOTATION.into(), MATCHING.into());
    assert_eq!(world.federated_subsets(), before);
}

#[test]
fn scenario_5_unannotated_endpoints_object_is_not_managed() {
    let world = scenario3_world();
    let desired = world.federated_result().unwrap().unwrap();
    let mut written = desired.to_endpoints_json();
    assert!(is_managed(&written));
    // The user removes the annotation from the Endpoints object: it is no longer ours, so a
    // controller must leave it alone whatever the desired state becomes.
    written["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove(SERVICE_SELECTOR_ANNOTATION);
    assert!(!is_managed(&written));
    // A user object that never had the annotation is not ours either.
    assert!(!is_managed(&json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": FEDERATED, "namespace": NS, "annotations": {"other": "x"}},
    })));
}

#[test]
fn scenario_6_non_matching_selector_gives_zero_subsets_then_restores() {
    let mut world = scenario3_world();
    let before = world.federated_subsets();
    world.service_mut(LOCAL_CLUSTER, FEDERATED).annotations =
        labels(&[(SERVICE_SELECTOR_ANNOTATION, "foo == 'bar'")]);
    let d = world.federated_result().unwrap().unwrap();
    assert!(d.subsets.is_empty());
    assert_eq!(d.selector_annotation, "foo == 'bar'");
    let obj = d.to_endpoints_json();
    assert_eq!(obj["metadata"]["name"], FEDERATED);
    assert!(obj.get("subsets").is_none());
    world.service_mut(LOCAL_CLUSTER, FEDERATED).annotations =
        labels(&[(SERVICE_SELECTOR_ANNOTATION, MATCHING)]);
    assert_eq!(world.federated_subsets(), before);
}

fn scenario7_world() -> World {
    let mut world = scenario3_world();
    world.add_remote_backing1();
    world
}

/// Remote backing1's contribution: port1 {ready 1.0.0.1, notReady 1.0.0.2 → my-remote/pod1},
/// port2 {2.0.0.1}, with target names rewritten.
fn remote_backing1_contribution() -> (Vec<EndpointAddress>, Vec<EndpointAddress>) {
    let fv = eps1_subsets();
    (
        fv[0].addresses.iter().map(rewritten_remote).collect(),
        fv[0]
            .not_ready_addresses
            .iter()
            .map(rewritten_remote)
            .collect(),
    )
}

/// The federated subsets when remote backing1 is the only contribution.
fn remote_backing1_subsets() -> Vec<EndpointSubset> {
    let (ready, not_ready) = remote_backing1_contribution();
    vec![
        subset(&ready, &not_ready, &[port1()]),
        subset(&[addr("2.0.0.1")], &[], &[port2()]),
    ]
}

#[test]
fn scenario_7_remote_backing_service_contributes_with_rewritten_target() {
    let world = scenario7_world();
    let (remote_ready, remote_not_ready) = remote_backing1_contribution();
    assert_eq!(
        remote_not_ready[0]
            .target_ref
            .as_ref()
            .unwrap()
            .name
            .as_deref(),
        Some("my-remote/pod1")
    );
    let mut ready = remote_ready.clone();
    ready.extend(eps2_subsets()[0].addresses.iter().cloned());
    assert_eq!(
        world.federated_subsets(),
        vec![
            subset(&ready, &remote_not_ready, &[port1()]),
            subset(&[addr("2.0.0.1")], &[], &[port2()]),
        ]
    );
}

/// Scenario 8's world: scenario 7's with every local backing service and Endpoints deleted.
fn scenario8_world() -> World {
    let mut world = scenario7_world();
    world
        .services
        .retain(|s| s.cluster != LOCAL_CLUSTER || s.name == FEDERATED);
    world.endpoints.retain(|e| e.cluster != LOCAL_CLUSTER);
    world
}

#[test]
fn scenario_8_only_remote_contribution_after_deleting_local_services() {
    let world = scenario8_world();
    assert_eq!(world.federated_subsets(), remote_backing1_subsets());
}

#[test]
fn scenario_9_removed_remote_cluster_leaves_zero_subsets() {
    let mut world = scenario8_world();
    world.remove_cluster(REMOTE);
    let d = world.federated_result().unwrap().unwrap();
    assert!(d.subsets.is_empty());
    assert!(d.to_endpoint_slices_json().is_empty());
}

// ---- unit-level cases ----

#[test]
fn federated_service_with_spec_selector_is_an_error_and_never_backs() {
    let mut world = World::fv_setup();
    // A second federated service selecting everything in the namespace.
    let mut all = federated("");
    all.name = "all".into();
    world.services.push(all);
    // Make `federated` invalid by giving it a spec.selector, and give it endpoints and labels.
    let f = world.service_mut(LOCAL_CLUSTER, FEDERATED);
    f.selector = labels(&[("app", "x")]);
    f.labels = labels(&[("federate", "yes")]);
    world.endpoints.push(eps(
        LOCAL_CLUSTER,
        NS,
        FEDERATED,
        vec![subset(&[addr("9.9.9.9")], &[], &[port1()])],
    ));
    let desired = world.desired();
    let err = desired[&(NS.to_owned(), FEDERATED.to_owned())]
        .as_ref()
        .unwrap_err();
    assert!(
        err.starts_with("Spec.Selector is specified for a federated service"),
        "{err}"
    );
    let all = desired[&(NS.to_owned(), "all".to_owned())]
        .as_ref()
        .unwrap();
    assert_eq!(all.subsets, scenario1_expected(), "9.9.9.9 is not included");
}

#[test]
fn invalid_selector_is_an_error_with_the_calico_message() {
    let mut world = World::fv_setup();
    let bad = "federate == ";
    world.service_mut(LOCAL_CLUSTER, FEDERATED).annotations =
        labels(&[(SERVICE_SELECTOR_ANNOTATION, bad)]);
    let err = world.federated_result().unwrap().unwrap_err();
    let parse_err = meshsync_selector::parse(bad).unwrap_err();
    assert_eq!(
        err,
        format!(
            "ServiceSelector expression '{bad}' in annotation '{SERVICE_SELECTOR_ANNOTATION}' is not valid: {parse_err}"
        )
    );
}

#[test]
fn selector_that_only_parses_when_wrapped_is_rejected() {
    // `ns == 'ns-1' && (federate == 'yes') || (has(federate))` would parse and select ns-2.
    let mut world = World::fv_setup();
    let sneaky = "federate == 'yes') || (has(federate)";
    world.service_mut(LOCAL_CLUSTER, FEDERATED).annotations =
        labels(&[(SERVICE_SELECTOR_ANNOTATION, sneaky)]);
    assert!(world.federated_result().unwrap().is_err());
}

#[test]
fn invalid_selector_fixed_later() {
    let mut world = World::fv_setup();
    world.service_mut(LOCAL_CLUSTER, FEDERATED).annotations =
        labels(&[(SERVICE_SELECTOR_ANNOTATION, "federate = 'yes'")]);
    assert!(world.federated_result().unwrap().is_err());
    world.service_mut(LOCAL_CLUSTER, FEDERATED).annotations =
        labels(&[(SERVICE_SELECTOR_ANNOTATION, MATCHING)]);
    assert_eq!(world.federated_subsets(), scenario1_expected());
}

#[test]
fn whitespace_only_annotation_is_invalid_like_calico() {
    // The effective selector becomes `... && (  )`, and `()` does not parse.
    let mut world = World::fv_setup();
    world.service_mut(LOCAL_CLUSTER, FEDERATED).annotations =
        labels(&[(SERVICE_SELECTOR_ANNOTATION, "  ")]);
    assert!(world.federated_result().unwrap().is_err());
}

#[test]
fn empty_annotation_matches_every_service_in_the_namespace_only() {
    let mut world = World::fv_setup();
    world
        .services
        .push(backing(LOCAL_CLUSTER, NS, "unlabelled", &[]));
    world.endpoints.push(eps(
        LOCAL_CLUSTER,
        NS,
        "unlabelled",
        vec![subset(&[addr("7.0.0.1")], &[], &[port2()])],
    ));
    world.service_mut(LOCAL_CLUSTER, FEDERATED).annotations =
        labels(&[(SERVICE_SELECTOR_ANNOTATION, "")]);
    let mut expected = scenario1_expected();
    expected[1].addresses.push(addr("7.0.0.1"));
    assert_eq!(world.federated_subsets(), expected);
}

#[test]
fn remote_service_gaining_the_annotation_drops_out() {
    for annotation in ["federate == 'yes'", "not a selector ("] {
        let mut world = scenario7_world();
        world
            .service_mut(REMOTE, "backing1")
            .annotations
            .insert(SERVICE_SELECTOR_ANNOTATION.into(), annotation.into());
        assert_eq!(world.federated_subsets(), eps2_subsets(), "{annotation}");
        // Remote federated services get no entry of their own.
        assert_eq!(world.desired().len(), 1);
    }
}

#[test]
fn implicit_labels_select_by_remote_cluster() {
    let mut world = scenario7_world();
    world.service_mut(LOCAL_CLUSTER, FEDERATED).annotations = labels(&[(
        SERVICE_SELECTOR_ANNOTATION,
        "has(federation.tigera.io/remoteClusterName)",
    )]);
    assert_eq!(world.federated_subsets(), remote_backing1_subsets());
    world.service_mut(LOCAL_CLUSTER, FEDERATED).annotations = labels(&[(
        SERVICE_SELECTOR_ANNOTATION,
        "federation.tigera.io/remoteClusterName == 'other'",
    )]);
    assert!(world.federated_subsets().is_empty());
    // The implicit namespace label overrides a service's own label of that key: wrongns (ns-2)
    // cannot claim to be in ns-1.
    world.service_mut(LOCAL_CLUSTER, FEDERATED).annotations =
        labels(&[(SERVICE_SELECTOR_ANNOTATION, MATCHING)]);
    let before = world.federated_subsets();
    world
        .service_mut(LOCAL_CLUSTER, "wrongns")
        .labels
        .insert(NAMESPACE_LABEL.into(), NS.into());
    assert_eq!(world.federated_subsets(), before);
}

#[test]
fn toggling_between_federated_and_backing_roles() {
    let mut world = World::fv_setup();
    // backing2 becomes federated: it stops backing and gets its own (valid once spec.selector
    // is gone) entry.
    let b2 = world.service_mut(LOCAL_CLUSTER, "backing2");
    b2.annotations.insert(
        SERVICE_SELECTOR_ANNOTATION.into(),
        "federate == 'nothing'".into(),
    );
    b2.selector.clear();
    // backing1 alone gives the same result as before (the duplicates collapsed anyway), so give
    // backing2 distinct endpoints to see it drop out.
    world.set_endpoints(LOCAL_CLUSTER, "backing2", eps2_subsets());
    let desired = world.desired();
    assert_eq!(desired.len(), 2);
    assert_eq!(
        desired[&(NS.to_owned(), FEDERATED.to_owned())]
            .as_ref()
            .unwrap()
            .subsets,
        scenario1_expected()
    );
    assert!(
        desired[&(NS.to_owned(), "backing2".to_owned())]
            .as_ref()
            .unwrap()
            .subsets
            .is_empty()
    );
    // And back: backing2 is a backing service again and contributes eps2.
    world
        .service_mut(LOCAL_CLUSTER, "backing2")
        .annotations
        .clear();
    let mut ready = scenario1_expected()[0].addresses.clone();
    ready.extend(eps2_subsets()[0].addresses.iter().cloned());
    assert_eq!(world.desired().len(), 1);
    assert_eq!(world.federated_subsets()[0].addresses, ready);
}

#[test]
fn port_mismatch_yields_no_subset() {
    let mut world = World::fv_setup();
    // Same names, other protocols; and a name no backing port has.
    world.service_mut(LOCAL_CLUSTER, FEDERATED).ports = vec![
        sport("port1", "TCP", 1234),
        sport("port2", "UDP", 1234),
        sport("port9", "TCP", 1200),
    ];
    assert!(world.federated_subsets().is_empty());
    // Port numbers do not matter, only (name, protocol).
    world.service_mut(LOCAL_CLUSTER, FEDERATED).ports = vec![sport("port3", "TCP", 1)];
    let fv = eps1_subsets();
    let mut ready = fv[1].addresses.clone();
    ready.extend(fv[3].addresses.iter().cloned());
    assert_eq!(
        world.federated_subsets(),
        vec![subset(&ready, &fv[1].not_ready_addresses, &[port3()])]
    );
}

#[test]
fn deleting_the_federated_service_clears_the_desired_state() {
    let mut world = World::fv_setup();
    world.services.retain(|s| s.name != FEDERATED);
    assert!(world.desired().is_empty());
}

#[test]
fn remote_addresses_without_target_name_are_unchanged() {
    let mut world = World::fv_setup();
    world.remove_cluster(LOCAL_CLUSTER);
    world.services.push(federated(MATCHING));
    world
        .services
        .push(backing(REMOTE, NS, "backing1", &[("federate", "yes")]));
    let mut empty_name = pod_addr("5.0.0.2", "");
    empty_name.target_ref.as_mut().unwrap().uid = Some("u".into());
    let plain = addr("5.0.0.1");
    world.endpoints.push(eps(
        REMOTE,
        NS,
        "backing1",
        vec![subset(
            &[plain.clone(), empty_name.clone()],
            &[],
            &[port1()],
        )],
    ));
    assert_eq!(
        world.federated_subsets(),
        vec![subset(&[plain, empty_name], &[], &[port1()])]
    );
}

// ---- parsing ----

#[test]
fn parses_kubernetes_service_and_endpoints_json() {
    let svc = ServiceInfo::from_json(
        REMOTE,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "b", "namespace": NS, "labels": {"run": "my-app"},
                         "annotations": {"x": "y"}},
            "spec": {"selector": {"run": "my-app"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "web"},
                               {"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 5353}]}
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(svc.cluster, REMOTE);
    assert_eq!((svc.namespace.as_str(), svc.name.as_str()), (NS, "b"));
    assert_eq!(svc.labels, labels(&[("run", "my-app")]));
    assert_eq!(svc.annotations, labels(&[("x", "y")]));
    assert_eq!(svc.selector, labels(&[("run", "my-app")]));
    assert_eq!(
        svc.ports,
        vec![
            ServicePort {
                target_port: Some(json!("web")),
                ..sport("http", "TCP", 80)
            },
            ServicePort {
                target_port: Some(json!(5353)),
                ..sport("dns", "UDP", 53)
            },
        ]
    );

    let e = EndpointsInfo::from_json(
        LOCAL_CLUSTER,
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "b", "namespace": NS},
            "subsets": [{
                "addresses": [{"ip": "1.0.0.1", "nodeName": "n1", "hostname": "h",
                               "targetRef": {"kind": "Pod", "namespace": NS, "name": "p", "uid": "u1",
                                             "resourceVersion": "5"}}],
                "notReadyAddresses": [{"ip": "1.0.0.2"}],
                "ports": [{"name": "http", "port": 8080}, {"port": 53, "protocol": "UDP", "appProtocol": "dns"}]
            }]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(e.subsets.len(), 1);
    let s = &e.subsets[0];
    assert_eq!(s.addresses[0].node_name.as_deref(), Some("n1"));
    assert_eq!(s.addresses[0].hostname.as_deref(), Some("h"));
    assert_eq!(s.addresses[0].uid(), "u1");
    assert_eq!(s.not_ready_addresses, vec![addr("1.0.0.2")]);
    assert_eq!(s.ports[0], eport("http", "TCP", 8080));
    assert_eq!(s.ports[1].name, None);
    assert_eq!(s.ports[1].app_protocol.as_deref(), Some("dns"));

    // Missing optional parts read as empty; missing identity is an error.
    let bare = ServiceInfo::from_json("", br#"{"metadata":{"name":"a","namespace":"n"}}"#).unwrap();
    assert!(bare.ports.is_empty() && bare.selector.is_empty());
    let bare = EndpointsInfo::from_json(
        "",
        br#"{"metadata":{"name":"a","namespace":"n"},"subsets":null}"#,
    )
    .unwrap();
    assert!(bare.subsets.is_empty());
    assert!(ServiceInfo::from_json("", br#"{"metadata":{"namespace":"n"}}"#).is_err());
    assert!(EndpointsInfo::from_json("", br#"{"metadata":{"name":"a"}}"#).is_err());
    assert!(ServiceInfo::from_json("", b"not json").is_err());
}

#[test]
fn json_round_trip_through_desired_endpoints() {
    // Build the FV world from JSON the way a controller would receive it.
    let world = World::fv_setup();
    let to_json_svc = |s: &ServiceInfo| {
        json!({
            "metadata": {"name": s.name, "namespace": s.namespace,
                         "labels": s.labels, "annotations": s.annotations},
            "spec": {"selector": s.selector, "ports": s.ports},
        })
        .to_string()
    };
    let services: Vec<ServiceInfo> = world
        .services
        .iter()
        .map(|s| ServiceInfo::from_json(&s.cluster, to_json_svc(s).as_bytes()).unwrap())
        .collect();
    assert_eq!(services, world.services);
    let endpoints: Vec<EndpointsInfo> = world
        .endpoints
        .iter()
        .map(|e| {
            let v = json!({"metadata": {"name": e.name, "namespace": e.namespace}, "subsets": e.subsets});
            EndpointsInfo::from_json(&e.cluster, v.to_string().as_bytes()).unwrap()
        })
        .collect();
    assert_eq!(endpoints, world.endpoints);
    assert_eq!(desired_endpoints(&services, &endpoints), world.desired());
}

// ---- output objects ----

#[test]
fn endpoints_object_json() {
    let d = World::fv_setup().federated_result().unwrap().unwrap();
    let obj = d.to_endpoints_json();
    assert_eq!(obj["apiVersion"], "v1");
    assert_eq!(obj["kind"], "Endpoints");
    assert_eq!(obj["metadata"]["name"], FEDERATED);
    assert_eq!(obj["metadata"]["namespace"], NS);
    assert_eq!(
        obj["metadata"]["annotations"][SERVICE_SELECTOR_ANNOTATION],
        MATCHING
    );
    let parsed: Vec<EndpointSubset> = serde_json::from_value(obj["subsets"].clone()).unwrap();
    assert_eq!(parsed, d.subsets);
    assert_eq!(
        obj["subsets"][0]["notReadyAddresses"][0]["targetRef"]["name"],
        "pod1"
    );
    assert_eq!(obj["subsets"][0]["ports"][0]["protocol"], "UDP");
}

#[test]
fn endpoint_slices_split_by_family_and_port_set() {
    let v6_ready = EndpointAddress {
        node_name: Some("node-a".into()),
        hostname: Some("h6".into()),
        ..addr("fd00::1")
    };
    let v4_pod = pod_addr("1.0.0.2", "my-remote/pod1");
    let d = DesiredEndpoints {
        namespace: NS.into(),
        name: FEDERATED.into(),
        selector_annotation: MATCHING.into(),
        subsets: vec![
            subset(
                &[addr("1.0.0.1"), v6_ready.clone()],
                std::slice::from_ref(&v4_pod),
                &[port1()],
            ),
            subset(&[addr("2.0.0.1")], &[], &[port1(), port2()]),
        ],
    };
    let slices = d.to_endpoint_slices_json();
    let names: Vec<&str> = slices
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    // IPv4 has two port sets ([port1] < [port1, port2]), IPv6 one.
    assert_eq!(
        names,
        vec![
            "federated-federated-ipv4-1",
            "federated-federated-ipv4-2",
            "federated-federated-ipv6"
        ]
    );
    for s in &slices {
        assert_eq!(s["apiVersion"], "discovery.k8s.io/v1");
        assert_eq!(s["kind"], "EndpointSlice");
        assert_eq!(s["metadata"]["namespace"], NS);
        assert_eq!(s["metadata"]["labels"][SERVICE_NAME_LABEL], FEDERATED);
        assert_eq!(s["metadata"]["labels"][MANAGED_BY_LABEL], MANAGED_BY_VALUE);
        assert!(is_managed(s));
    }
    assert_eq!(slices[0]["addressType"], "IPv4");
    assert_eq!(
        slices[0]["endpoints"],
        json!([
            {"addresses": ["1.0.0.1"], "conditions": {"ready": true}},
            {"addresses": ["1.0.0.2"], "conditions": {"ready": false}, "targetRef": v4_pod.target_ref},
        ])
    );
    assert_eq!(slices[0]["ports"], json!([port1()]));
    assert_eq!(
        slices[1]["endpoints"],
        json!([{"addresses": ["2.0.0.1"], "conditions": {"ready": true}}])
    );
    assert_eq!(slices[1]["ports"], json!([port1(), port2()]));
    assert_eq!(slices[2]["addressType"], "IPv6");
    assert_eq!(
        slices[2]["endpoints"],
        json!([{"addresses": ["fd00::1"], "conditions": {"ready": true},
                "hostname": "h6", "nodeName": "node-a"}])
    );
    assert_eq!(
        slices[2]["ports"],
        json!([{"name": "port1", "port": 1234, "protocol": "UDP"}])
    );

    // A slice without our managed-by label is not ours even with the annotation.
    let mut foreign = slices[0].clone();
    foreign["metadata"]["labels"][MANAGED_BY_LABEL] = json!("endpointslice-controller.k8s.io");
    assert!(!is_managed(&foreign));
}

#[test]
fn single_port_set_slice_has_no_suffix() {
    let d = World::fv_setup().federated_result().unwrap().unwrap();
    // Scenario 1 has two subsets with different port sets, both IPv4: two suffixed slices.
    let slices = d.to_endpoint_slices_json();
    assert_eq!(slices.len(), d.subsets.len());
    let d3 = scenario3_world().federated_result().unwrap().unwrap();
    let slices = d3.to_endpoint_slices_json();
    assert_eq!(slices.len(), 1);
    assert_eq!(slices[0]["metadata"]["name"], "federated-federated-ipv4");
    assert_eq!(slices[0]["endpoints"].as_array().unwrap().len(), 2);
}
