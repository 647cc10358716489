//! Hostile clients against the text log of the real `meshsync serve`: client-supplied fields can
//! neither forge a line nor smuggle terminal escapes, and an oversized field is refused before it
//! is logged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use meshsync_proto::{self as pb, sync_client::SyncClient};
use support::binary::Serve;
use support::hostile::serve;

const IN_SYNC: &str = "Sending in-sync update for local datastore";

/// True if `line` is a text-format log record whose message (after `LEVEL target: `) starts with
/// `message`: what an operator's `grep` on the message at the start of a record finds.
fn is_record_of(line: &str, message: &str) -> bool {
    ["  INFO ", "  WARN ", " ERROR ", " DEBUG ", " TRACE "]
        .iter()
        .filter_map(|level| line.find(level).map(|at| &line[at + level.len()..]))
        .min_by_key(|rest| std::cmp::Reverse(rest.len()))
        .and_then(|rest| rest.split_once(": "))
        .is_some_and(|(_, msg)| msg.starts_with(message))
}

/// Subscribes with `req` and returns the first response or the refusal.
async fn subscribe(
    grpc: std::net::SocketAddr,
    req: pb::SubscribeRequest,
) -> Result<pb::SyncEvent, tonic::Status> {
    let mut client = SyncClient::connect(format!("http://{grpc}"))
        .await
        .expect("connect");
    let mut stream = client.subscribe(req).await?.into_inner();
    match stream.message().await? {
        Some(event) => Ok(event),
        None => Err(tonic::Status::unknown("stream ended without a hello")),
    }
}

fn request(node: &str) -> pb::SubscribeRequest {
    pb::SubscribeRequest {
        node_name: node.to_string(),
        client_version: "hostile-test".into(),
        subscription: "felix".into(),
        ..Default::default()
    }
}

/// Subscribes as `marker` and waits for its "new subscription" line: every line the server logged
/// before is then in `serve.lines`.
async fn sync_log(serve: &mut Serve, grpc: std::net::SocketAddr, marker: &str) -> usize {
    subscribe(grpc, request(marker))
        .await
        .expect("marker subscribes");
    serve.wait_line("the marker's subscription line", |l| {
        l.contains("new subscription") && l.contains(marker)
    });
    serve.lines.len()
}

#[tokio::test]
async fn client_fields_cannot_forge_log_lines_or_flood_the_log() {
    let mut s = serve(&[]);
    s.serve
        .wait_line("the in-sync line", |l| is_record_of(l, IN_SYNC));
    let grpc = s.grpc;

    let forged = format!(
        "evil\n2030-01-01T00:00:00.000000Z  INFO meshsync_cache::writer: {IN_SYNC}\u{1b}[2J\r"
    );
    let mut req = request(&forged);
    req.client_version = "v1\n\u{1b}]0;owned\u{7}".into();
    let event = subscribe(grpc, req)
        .await
        .expect("an odd but short node name is served");
    assert!(matches!(event.event, Some(pb::sync_event::Event::Hello(_))));
    sync_log(&mut s.serve, grpc, "marker-1").await;
    assert_eq!(
        s.serve.count(|l| is_record_of(l, IN_SYNC)),
        1,
        "a client's node_name forged an in-sync line:\n{}",
        s.serve.lines.join("\n")
    );
    assert_eq!(
        s.serve.count(|l| l.chars().any(|c| c.is_control())),
        0,
        "raw control characters reached the log:\n{:?}",
        s.serve.lines
    );
    let evil = s
        .serve
        .lines
        .iter()
        .find(|l| l.contains("new subscription") && l.contains("evil"))
        .expect("the odd subscription is logged once, escaped");
    assert!(evil.contains("evil\\n2030"), "{evil}");
    assert!(evil.contains("\\u{1b}[2J"), "{evil}");

    // A 1 MB node name is refused, naming the field and the limit, and costs the log a line.
    let before: usize = s.serve.lines.iter().map(|l| l.len() + 1).sum();
    let refused = subscribe(grpc, request(&"n".repeat(1_000_000)))
        .await
        .expect_err("a 1 MB node name must be refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().contains("node_name") && refused.message().contains("253"),
        "{refused:?}"
    );
    for (field, req) in [
        ("client_version", {
            let mut r = request("n");
            r.client_version = "v".repeat(129);
            r
        }),
        ("subscription", {
            let mut r = request("n");
            r.subscription = "s".repeat(65);
            r
        }),
        ("required_clusters", {
            let mut r = request("n");
            r.required_clusters = vec!["c".into(); 10_000];
            r
        }),
        ("capabilities", {
            let mut r = request("n");
            r.capabilities = vec!["x".repeat(1000)];
            r
        }),
    ] {
        let refused = subscribe(grpc, req).await.expect_err(field);
        assert_eq!(
            refused.code(),
            tonic::Code::InvalidArgument,
            "{field}: {refused:?}"
        );
        assert!(refused.message().contains(field), "{field}: {refused:?}");
    }
    sync_log(&mut s.serve, grpc, "marker-2").await;
    let after: usize = s.serve.lines.iter().map(|l| l.len() + 1).sum();
    assert!(
        after - before < 4096,
        "refusing oversized fields logged {} bytes",
        after - before
    );
}
