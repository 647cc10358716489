//! What the Kubernetes source makes of a watcher's errors.
//!
//! Users read these messages in the cluster's status (`pods is forbidden: User … cannot watch …`),
//! so they carry the API's own words, not the client library's wrapping. Two errors are not
//! failures at all and are told apart here: `410 Gone` (the watch outlived the server's history:
//! the watcher relists) and a refused streaming list (the source lists in pages instead). Pure
//! functions over the error values, tested on their own.

use kube::runtime::watcher;
use meshsync_model::error_chain;

/// The API's own message for an error (`pods is forbidden: …`), else the error chain.
pub(super) fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let mut text = status.message.clone();
            if status.code != 0 {
                text.push_str(&format!(" ({} {})", status.code, status.reason));
            }
            text
        }
        other => error_chain(other),
    }
}

/// A watcher's error as the cluster's status says it: which step failed, in the API's words.
pub(super) fn watcher_message(error: &watcher::Error) -> String {
    match error {
        watcher::Error::InitialListFailed(e) => format!("list failed: {}", api_message(e)),
        watcher::Error::WatchStartFailed(e) => format!("watch failed: {}", api_message(e)),
        watcher::Error::WatchFailed(e) => format!("watch broke: {}", api_message(e)),
        watcher::Error::WatchError(status) => {
            format!(
                "watch error: {} ({} {})",
                status.message, status.code, status.reason
            )
        }
        other => error_chain(other),
    }
}

/// The watch's resourceVersion is older than the server's history (`410 Gone`, "too old resource
/// version"): the watcher relists.
pub(super) fn is_gone(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchError(s) => s.code == 410,
        watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s.code == 410,
        _ => false,
    }
}

/// The server refused the streaming list: `sendInitialEvents` unknown or forbidden (400/422, the
/// WatchList feature off), or its storage cannot serve one (500 "a watch stream was requested by
/// the client but the required storage feature RequestWatchProgress is disabled", seen with etcd
/// 3.4 under the API server).
pub(super) fn refuses_streaming(error: &watcher::Error) -> bool {
    let status = match error {
        watcher::Error::WatchStartFailed(kube::Error::Api(s))
        | watcher::Error::InitialListFailed(kube::Error::Api(s)) => s.as_ref(),
        watcher::Error::WatchError(s) => s.as_ref(),
        _ => return false,
    };
    matches!(status.code, 400 | 422)
        || status.message.contains("sendInitialEvents")
        || status.message.contains("watch stream was requested")
        || status.message.contains("RequestWatchProgress")
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> Box<Status> {
        Box::new(Status {
            code,
            reason: reason.to_string(),
            message: message.to_string(),
            ..Status::default()
        })
    }

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(status(code, reason, message))
    }

    #[test]
    fn messages_carry_the_apis_own_words() {
        let forbidden = "pods is forbidden: User \"x\" cannot watch resource \"pods\"";
        let error = watcher::Error::WatchStartFailed(api(403, "Forbidden", forbidden));
        assert_eq!(
            watcher_message(&error),
            format!("watch failed: {forbidden} (403 Forbidden)")
        );
        let error = watcher::Error::InitialListFailed(api(0, "", "no code"));
        assert_eq!(watcher_message(&error), "list failed: no code");
        let error = watcher::Error::WatchError(status(500, "InternalError", "boom"));
        assert_eq!(
            watcher_message(&error),
            "watch error: boom (500 InternalError)"
        );
        let error = watcher::Error::NoResourceVersion;
        assert!(watcher_message(&error).contains("resourceVersion"));
    }

    #[test]
    fn gone_is_a_relist_not_a_failure() {
        let too_old = "too old resource version: 1 (5)";
        assert!(is_gone(&watcher::Error::WatchError(status(
            410, "Expired", too_old
        ))));
        assert!(is_gone(&watcher::Error::WatchStartFailed(api(
            410, "Gone", too_old
        ))));
        // A failed list is a failure even with 410: there is nothing to resume.
        assert!(!is_gone(&watcher::Error::InitialListFailed(api(
            410, "Gone", too_old
        ))));
        assert!(!is_gone(&watcher::Error::WatchStartFailed(api(
            403,
            "Forbidden",
            "forbidden"
        ))));
    }

    #[test]
    fn refused_streaming_lists_are_recognised() {
        let refused = [
            watcher::Error::WatchStartFailed(api(422, "Invalid", "sendInitialEvents: forbidden")),
            watcher::Error::InitialListFailed(api(400, "BadRequest", "unknown parameter")),
            watcher::Error::WatchError(status(
                500,
                "InternalError",
                "a watch stream was requested by the client but the required storage feature RequestWatchProgress is disabled",
            )),
        ];
        for error in &refused {
            assert!(refuses_streaming(error), "{error}");
        }
        let failures = [
            watcher::Error::WatchStartFailed(api(403, "Forbidden", "pods is forbidden")),
            watcher::Error::WatchError(status(410, "Expired", "too old resource version")),
            watcher::Error::NoResourceVersion,
        ];
        for error in &failures {
            assert!(!refuses_streaming(error), "{error}");
        }
    }
}
