//! `jobboard.v1.EventFeedService`: read access to the event log, over the store.
//!
//! Who may read: the feed serves the whole log, every organisation's events, so only roles that
//! see everything may call it — `service` (internal services), `auditor`, `ops` and `operator`.
//! `employer` and `agency` get PERMISSION_DENIED; feeds scoped to an organisation come later.
//!
//! Subscribe is pull-driven: the next event is read from the store only when the client's HTTP/2
//! flow-control window has room for it, so a slow client holds at most one store page (1,000
//! events) and one window of messages, never an unbounded queue. It ends with UNAVAILABLE when
//! the server shuts down and is dropped at once when the client goes away.

use std::pin::Pin;

use futures::{Stream, StreamExt as _};
use jobboard_eventstore::{Checkpoint, EventStore, StreamId, StreamRange};
use jobboard_proto::v1 as pb;
use jobboard_proto::v1::event_feed_service_server::EventFeedService;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::auth::{Role, caller_of};
use crate::convert;
use crate::metered::observe_stream;
use crate::status::{Failure, to_status};

/// Most events in one ReadAll page.
pub const MAX_PAGE: u32 = 1000;

/// The event feed over one store.
#[derive(Clone, Debug)]
pub struct EventFeed {
    store: EventStore,
    stopping: CancellationToken,
}

impl EventFeed {
    /// A feed reading `store`; its subscriptions end when `stopping` is cancelled.
    pub fn new(store: EventStore, stopping: CancellationToken) -> Self {
        Self { store, stopping }
    }
}

/// Whether `role` may read the whole log through the feed.
pub fn may_read_whole_log(role: Role) -> bool {
    match role {
        Role::Service | Role::Auditor | Role::Ops | Role::Operator => true,
        Role::Employer | Role::Agency => false,
    }
}

fn authorize<T>(request: &Request<T>) -> Result<(), Status> {
    let caller = caller_of(request)?;
    if may_read_whole_log(caller.role) {
        Ok(())
    } else {
        Err(to_status(Failure::PermissionDenied(format!(
            "role {} may not read the event feed",
            caller.role
        ))))
    }
}

/// The responses of one Subscribe call.
pub type SubscribeStream =
    Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl EventFeedService for EventFeed {
    async fn read_stream(
        &self,
        request: Request<pb::ReadStreamRequest>,
    ) -> Result<Response<pb::ReadStreamResponse>, Status> {
        authorize(&request)?;
        let request = request.into_inner();
        let stream = StreamId::new(request.stream_id).map_err(to_status)?;
        let as_of = request
            .as_of
            .as_ref()
            .map(|at| convert::from_timestamp("as_of", at))
            .transpose()
            .map_err(to_status)?;
        if let Some(to) = request.to_version
            && to < request.from_version
        {
            return Err(to_status(Failure::invalid_field(
                "to_version",
                "must not be below from_version",
            )));
        }
        let range = StreamRange {
            from_version: request.from_version,
            to_version: request.to_version,
            as_of,
        };
        let events = self
            .store
            .read_stream(&stream, range)
            .await
            .map_err(to_status)?;
        // An empty range of an existing stream is an answer; a stream with no events is not.
        if events.is_empty()
            && self
                .store
                .stream_version(&stream)
                .await
                .map_err(to_status)?
                .is_none()
        {
            return Err(to_status(Failure::NotFound(format!(
                "stream {stream} does not exist"
            ))));
        }
        Ok(Response::new(pb::ReadStreamResponse {
            events: events.into_iter().map(convert::to_event).collect(),
        }))
    }

    async fn read_all(
        &self,
        request: Request<pb::ReadAllRequest>,
    ) -> Result<Response<pb::ReadAllResponse>, Status> {
        authorize(&request)?;
        let request = request.into_inner();
        let after = convert::from_log_position(request.after.as_ref());
        let limit = match request.limit {
            0 => MAX_PAGE,
            n => n.min(MAX_PAGE),
        };
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let page = self.store.read_all(after, limit).await.map_err(to_status)?;
        let next = match page.events.last() {
            Some(event) => Some(convert::to_log_position(event.checkpoint())),
            None => request.after,
        };
        Ok(Response::new(pb::ReadAllResponse {
            events: page.events.into_iter().map(convert::to_event).collect(),
            next,
            held: page.held,
        }))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        authorize(&request)?;
        let after = convert::from_log_position(request.get_ref().after.as_ref());
        let events = follow(&self.store, after, self.stopping.clone());
        Ok(Response::new(Box::pin(observe_stream(
            request.extensions(),
            Box::pin(events),
        ))))
    }
}

/// The log after `after`, as responses, until `stopping` is cancelled or the store fails.
fn follow(
    store: &EventStore,
    after: Checkpoint,
    stopping: CancellationToken,
) -> impl Stream<Item = Result<pb::SubscribeResponse, Status>> + Send + 'static {
    let events = Box::pin(store.subscribe(after));
    futures::stream::unfold(Some((events, stopping)), |state| async move {
        let (mut events, stopping) = state?;
        tokio::select! {
            // Shutdown first: a busy log must not keep a subscription alive past it.
            biased;
            () = stopping.cancelled() => Some((
                Err(to_status(Failure::unavailable(
                    "the server is shutting down; resubscribe after the last position received",
                ))),
                None,
            )),
            next = events.next() => match next {
                Some(Ok(event)) => Some((
                    Ok(pb::SubscribeResponse {
                        event: Some(convert::to_event(event)),
                    }),
                    Some((events, stopping)),
                )),
                Some(Err(error)) => Some((Err(to_status(error)), None)),
                None => None,
            },
        }
    })
}
