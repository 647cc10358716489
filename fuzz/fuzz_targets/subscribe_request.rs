//! A `SubscribeRequest` as the server receives it: protobuf decoding, the request limits and the
//! subscription lookup never panic, and the limits' error never echoes more than its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = meshsync_proto::SubscribeRequest::decode(data) else {
        return;
    };
    match meshsync_server::check_subscribe_request(&request) {
        Ok(()) => {
            let _ = meshsync_model::Subscription::by_name(&request.subscription);
        }
        Err(status) => assert!(status.message().len() < 512, "the refusal echoes too much"),
    }
});
