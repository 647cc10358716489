//! What the reconnect tests (`resume.rs`, `anti_entropy.rs`) read from an agent's events: the
//! hello of the last (re)subscription, the updates after it, and that no digest disagreed.

use meshsync_agent::AgentEvent;
use meshsync_proto as pb;

/// The hello of the last subscription among `events`.
pub fn last_hello(events: &[AgentEvent]) -> &pb::Hello {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            AgentEvent::Connected { hello, .. } => Some(hello),
            _ => None,
        })
        .expect("a Connected event")
}

/// The updates received after the last hello.
pub fn updates_after_hello(events: &[AgentEvent]) -> Vec<&pb::Update> {
    let start = events
        .iter()
        .rposition(|e| matches!(e, AgentEvent::Connected { .. }))
        .unwrap_or(0);
    events[start..]
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Update(u) => Some(u),
            _ => None,
        })
        .collect()
}

pub fn assert_no_mismatch(events: &[AgentEvent]) {
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, AgentEvent::DigestMismatch(_))),
        "digests disagreed: {events:?}"
    );
}
