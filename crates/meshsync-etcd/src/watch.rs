//! A watch: one bidirectional `Watch` stream carrying one watcher.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::auth::AuthedChannel;
use crate::error::EtcdError;
use crate::pb::{self, watch_client::WatchClient};

/// Responses of one created watch. Dropping it closes the request stream, which ends the watch.
pub struct WatchStream {
    responses: tonic::Streaming<pb::WatchResponse>,
    /// Kept open for the watch's lifetime (etcd ends the watch when the request stream closes).
    requests: mpsc::Sender<pb::WatchRequest>,
}

impl WatchStream {
    pub(crate) async fn start(
        mut client: WatchClient<AuthedChannel>,
        create: pb::WatchCreateRequest,
        timeout: Duration,
    ) -> Result<Self, EtcdError> {
        let (tx, rx) = mpsc::channel(4);
        let start_revision = create.start_revision;
        tx.send(pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
        })
        .await
        .map_err(|_| EtcdError::WatchEnded)?;
        let mut responses = tokio::time::timeout(timeout, client.watch(ReceiverStream::new(rx)))
            .await
            .map_err(|_| EtcdError::Timeout(timeout))??
            .into_inner();
        // The first response confirms creation (or says why not, e.g. compaction).
        let first = tokio::time::timeout(timeout, responses.message())
            .await
            .map_err(|_| EtcdError::Timeout(timeout))??
            .ok_or(EtcdError::WatchEnded)?;
        if first.compact_revision != 0 {
            return Err(EtcdError::Compacted {
                requested: start_revision,
                compact_revision: first.compact_revision,
            });
        }
        if first.canceled || !first.created {
            return Err(EtcdError::WatchCanceled(first.cancel_reason));
        }
        Ok(WatchStream {
            responses,
            requests: tx,
        })
    }

    /// The next batch of events. Compaction and cancellation are errors; progress notifications
    /// are returned as responses with no events.
    pub async fn next(&mut self) -> Result<pb::WatchResponse, EtcdError> {
        let response = self
            .responses
            .message()
            .await?
            .ok_or(EtcdError::WatchEnded)?;
        if response.compact_revision != 0 {
            return Err(EtcdError::Compacted {
                requested: 0,
                compact_revision: response.compact_revision,
            });
        }
        if response.canceled {
            return Err(EtcdError::WatchCanceled(response.cancel_reason));
        }
        Ok(response)
    }

    /// Asks etcd for a progress notification (etcd ≥ 3.4): an event-less response with the
    /// current revision, which proves the server and the stream are alive. Returns at once; the
    /// answer arrives through [`WatchStream::next`]. A full request queue (an earlier request not
    /// yet sent) is not an error: that request serves the same purpose.
    pub fn request_progress(&self) -> Result<(), EtcdError> {
        let request = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                pb::WatchProgressRequest {},
            )),
        };
        match self.requests.try_send(request) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(EtcdError::WatchEnded),
        }
    }
}
