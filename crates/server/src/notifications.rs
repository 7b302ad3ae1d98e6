//! `jobboard.v1.NotificationsService`: the notifications feed, over its projection.
//!
//! Who reads what: an employer its own organisation's notifications; `service`, `operator` and
//! `ops` every organisation's (or one's). Watch is pull-driven like the event feed: a page is read
//! from the view only when the client has taken the previous one, and when the view has nothing
//! new the stream waits for the projector's next commit (no polling); it ends with UNAVAILABLE on
//! shutdown, and the client resumes from the last cursor it received.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use jobboard_app::{Caller, Role};
use jobboard_domain::posting::OrganisationId;
use jobboard_eventstore::Checkpoint;
use jobboard_projections::ProjectionRuntime;
use jobboard_projections::notifications::{
    self, NotificationKind, NotificationRow, NotificationsView,
};
use jobboard_proto::v1 as pb;
use jobboard_proto::v1::notifications_service_server::NotificationsService;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::auth::caller_of;
use crate::convert;
use crate::metered::observe_stream;
use crate::status::{Failure, to_status};

/// Notifications read from the view per step of a watch.
const WATCH_PAGE: u32 = 100;

/// How long a watch waits for the projector before looking at the view again anyway.
const WATCH_WAIT: Duration = Duration::from_secs(30);

/// The notifications service.
#[derive(Clone, Debug)]
pub struct Notifications {
    view: NotificationsView,
    projections: ProjectionRuntime,
    stopping: CancellationToken,
}

impl Notifications {
    /// Reads `view`, waking watches on `projections`' commits; watches end on `stopping`.
    pub fn new(
        view: NotificationsView,
        projections: ProjectionRuntime,
        stopping: CancellationToken,
    ) -> Self {
        Self {
            view,
            projections,
            stopping,
        }
    }
}

/// The organisation whose notifications `caller` reads: `requested` (empty: its own for an
/// employer, every one for the others).
pub(crate) fn organisation_scope(
    caller: &Caller,
    requested: &str,
    allowed: &[Role],
) -> Result<Option<OrganisationId>, Failure> {
    let requested =
        match requested {
            "" => None,
            text => Some(text.parse::<OrganisationId>().map_err(|_| {
                Failure::invalid_field("organisation_id", "must be a uuid or empty")
            })?),
        };
    match caller.role {
        Role::Employer => {
            let own = caller.organisation.parse::<OrganisationId>().map_err(|_| {
                Failure::PermissionDenied(
                    "an employer's token must name its organisation id (a uuid)".into(),
                )
            })?;
            match requested {
                Some(other) if other != own => Err(Failure::PermissionDenied(
                    "an employer reads only its own organisation's".into(),
                )),
                _ => Ok(Some(own)),
            }
        }
        role if allowed.contains(&role) => Ok(requested),
        role => Err(Failure::PermissionDenied(format!(
            "role {role} may not read this"
        ))),
    }
}

const READERS: [Role; 3] = [Role::Service, Role::Operator, Role::Ops];

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::Notification, Status>> + Send>>;

#[tonic::async_trait]
impl NotificationsService for Notifications {
    type WatchNotificationsStream = WatchStream;

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let caller = caller_of(&request)?;
        let request = request.get_ref();
        let organisation =
            organisation_scope(caller, &request.organisation_id, &READERS).map_err(to_status)?;
        let rows = self
            .view
            .after(organisation, request.after_cursor, request.page_size)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: rows.into_iter().map(to_notification).collect(),
        }))
    }

    async fn watch_notifications(
        &self,
        request: Request<pb::WatchNotificationsRequest>,
    ) -> Result<Response<Self::WatchNotificationsStream>, Status> {
        let caller = caller_of(&request)?;
        let organisation = organisation_scope(caller, &request.get_ref().organisation_id, &READERS)
            .map_err(to_status)?;
        let watch = Watch {
            feed: self.clone(),
            organisation,
            cursor: request.get_ref().after_cursor,
            buffered: VecDeque::new(),
        };
        let stream = futures::stream::unfold(Some(watch), |watch| async move {
            let mut watch = watch?;
            match watch.next().await {
                Ok(notification) => Some((Ok(notification), Some(watch))),
                Err(status) => Some((Err(status), None)),
            }
        });
        Ok(Response::new(Box::pin(observe_stream(
            request.extensions(),
            Box::pin(stream),
        ))))
    }
}

/// One client's position in the feed.
struct Watch {
    feed: Notifications,
    organisation: Option<OrganisationId>,
    cursor: u64,
    buffered: VecDeque<NotificationRow>,
}

impl Watch {
    /// The next notification, waiting for one if the view has none yet.
    async fn next(&mut self) -> Result<pb::Notification, Status> {
        loop {
            if let Some(row) = self.buffered.pop_front() {
                self.cursor = row.seq;
                return Ok(to_notification(row));
            }
            // What the projector has committed before reading: anything committed after it
            // wakes the wait below, so nothing slips between the read and the wait.
            let seen = self
                .feed
                .projections
                .checkpoint(notifications::PROJECTOR)
                .map_err(to_status)?;
            let rows = self
                .feed
                .view
                .after(self.organisation, self.cursor, WATCH_PAGE)
                .await
                .map_err(to_status)?;
            if !rows.is_empty() {
                self.buffered.extend(rows);
                continue;
            }
            let next = Checkpoint {
                tx: seen.tx,
                position: seen.position + 1,
            };
            tokio::select! {
                biased;
                () = self.feed.stopping.cancelled() => {
                    return Err(to_status(Failure::unavailable(
                        "the server is shutting down; watch again after the last cursor received",
                    )));
                }
                // A timeout (or a stopped runtime) only means: look again.
                _ = self.feed.projections.wait_for(notifications::PROJECTOR, next, WATCH_WAIT) => {}
            }
        }
    }
}

fn to_notification(row: NotificationRow) -> pb::Notification {
    let kind = match row.kind {
        NotificationKind::RegistrationReturned => pb::NotificationKind::RegistrationReturned,
        NotificationKind::RegistrationApproved => pb::NotificationKind::RegistrationApproved,
        NotificationKind::Published => pb::NotificationKind::Published,
        NotificationKind::ModificationReturned => pb::NotificationKind::ModificationReturned,
        NotificationKind::ModificationApproved => pb::NotificationKind::ModificationApproved,
        NotificationKind::ModificationPublished => pb::NotificationKind::ModificationPublished,
        NotificationKind::MonthlyReferralNotice => pb::NotificationKind::MonthlyReferralNotice,
    };
    pb::Notification {
        notification_id: row.notification_id,
        cursor: row.seq,
        organisation_id: row.organisation_id.to_string(),
        kind: kind.into(),
        posting_id: row.posting_id.map(|p| p.to_string()).unwrap_or_default(),
        title: row.title,
        reasons: row.detail.reasons,
        effective_at: row.detail.effective_at.map(convert::to_timestamp),
        month: row.detail.month.unwrap_or_default(),
        postings: row
            .detail
            .postings
            .into_iter()
            .map(|p| pb::NoticedPosting {
                posting_id: p.posting_id.to_string(),
                title: p.title,
                referral_period_end: Some(convert::to_date(p.referral_period_end)),
            })
            .collect(),
        created_at: Some(convert::to_timestamp(row.created_at)),
    }
}
