//! `jobboard.v1.PostingsService`: the posting commands, over the command layer.
//!
//! Each rpc parses its request at the edge (`convert`), reporting every bad field at once, and
//! hands one domain command with its [`CommandContext`] to [`PostingCommands::execute`], which
//! authorises the caller, decides and appends. Who may send what is the command layer's table
//! (`jobboard_app::PostingCommands`), not this module's: the server holds no business rule.

use jobboard_app::{CommandContext, CommandOutcome, PostingCommands};
use jobboard_domain::PostingCommand;
use jobboard_domain::posting::{
    ApproveModification, ApprovePosting, CancelPosting, CreateDraft, DiscardDraft,
    DiscardModification, FieldViolation as DomainViolation, OrganisationId, PostingContent,
    PostingId, RequestModification, RequestWithdrawal, ReturnModification, ReturnPosting,
    SaveDraft, StopRecruiting, SubmitForReview,
};
use jobboard_proto::v1 as pb;
use jobboard_proto::v1::postings_service_server::PostingsService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::caller_of;
use crate::convert::{self, Violations};
use crate::status::{Failure, to_status};

/// The posting commands service.
#[derive(Clone, Debug)]
pub struct PostingsApi {
    commands: PostingCommands,
}

impl PostingsApi {
    /// The service over `commands`.
    pub fn new(commands: PostingCommands) -> Self {
        Self { commands }
    }

    /// Runs `command` for a request that carries nothing beyond the shared fields (or whose
    /// other fields the command holds as they came, validated by the domain).
    async fn run<T: OnPosting>(
        &self,
        request: &Request<T>,
        command: impl Into<PostingCommand>,
    ) -> Result<Option<pb::CommandResult>, Status> {
        let parsed = parse(request)?;
        parsed.violations.finish().map_err(to_status)?;
        let outcome = self
            .execute(&parsed.ctx, parsed.posting_id, command)
            .await?;
        Ok(result(&outcome))
    }

    /// Runs the command `make` builds from the request's `content`, which `checks` validate (see
    /// [`with_content_checks`]).
    async fn run_with_content<T: OnPosting, C: Into<PostingCommand>>(
        &self,
        request: &Request<T>,
        content: Option<pb::PostingContent>,
        checks: fn(&PostingContent) -> Vec<DomainViolation>,
        make: impl FnOnce(PostingContent) -> C,
    ) -> Result<Option<pb::CommandResult>, Status> {
        let Parsed {
            ctx,
            posting_id,
            mut violations,
        } = parse(request)?;
        let content = convert::content(content, &mut violations);
        with_content_checks(&content, checks, &mut violations);
        violations.finish().map_err(to_status)?;
        let outcome = self.execute(&ctx, posting_id, make(content)).await?;
        Ok(result(&outcome))
    }

    /// Runs the command `make` builds from the request's required `publish_date`.
    async fn run_dated<T: OnPosting, C: Into<PostingCommand>>(
        &self,
        request: &Request<T>,
        publish_date: Option<pb::Date>,
        make: impl FnOnce(chrono::NaiveDate) -> C,
    ) -> Result<Option<pb::CommandResult>, Status> {
        let Parsed {
            ctx,
            posting_id,
            mut violations,
        } = parse(request)?;
        let publish_date =
            convert::required_date("publish_date", publish_date.as_ref(), &mut violations);
        violations.finish().map_err(to_status)?;
        let command = make(accepted(publish_date, "publish_date")?);
        let outcome = self.execute(&ctx, posting_id, command).await?;
        Ok(result(&outcome))
    }

    async fn execute(
        &self,
        ctx: &CommandContext,
        posting_id: Option<PostingId>,
        command: impl Into<PostingCommand>,
    ) -> Result<CommandOutcome, Status> {
        self.commands
            .execute(ctx, posting_id, command.into())
            .await
            .map_err(to_status)
    }
}

/// The fields every command on an existing posting carries.
trait OnPosting {
    fn command_id(&self) -> &str;
    fn posting_id(&self) -> &str;
    fn expected_version(&self) -> Option<u64>;
}

macro_rules! on_posting {
    ($($request:ty),* $(,)?) => {
        $(impl OnPosting for $request {
            fn command_id(&self) -> &str {
                &self.command_id
            }
            fn posting_id(&self) -> &str {
                &self.posting_id
            }
            fn expected_version(&self) -> Option<u64> {
                self.expected_version
            }
        })*
    };
}

on_posting!(
    pb::SaveDraftRequest,
    pb::DiscardDraftRequest,
    pb::SubmitForReviewRequest,
    pb::ReturnPostingRequest,
    pb::ApprovePostingRequest,
    pb::RequestWithdrawalRequest,
    pb::RequestModificationRequest,
    pb::ReturnModificationRequest,
    pb::ApproveModificationRequest,
    pb::DiscardModificationRequest,
    pb::StopRecruitingRequest,
    pb::CancelPostingRequest,
);

/// A request's parts that every command has: its context and the posting it names.
struct Parsed {
    ctx: CommandContext,
    posting_id: Option<PostingId>,
    violations: Violations,
}

/// Parses the fields shared by the commands on an existing posting.
fn parse<T: OnPosting>(request: &Request<T>) -> Result<Parsed, Status> {
    let caller = caller_of(request)?;
    let r = request.get_ref();
    let mut violations = Violations::default();
    let ctx = convert::command_context(
        caller,
        r.command_id().to_owned(),
        r.expected_version(),
        &mut violations,
    );
    let posting_id = convert::posting_id("posting_id", r.posting_id(), true, &mut violations);
    Ok(Parsed {
        ctx,
        posting_id,
        violations,
    })
}

/// Adds the domain's own content `checks` to a request that is already refused, so it lists
/// every problem at once. A request the edge accepts leaves them to the aggregate, which looks at
/// the posting's state first (saving while pending review is R-POST-3, whatever the content).
fn with_content_checks(
    content: &PostingContent,
    checks: fn(&PostingContent) -> Vec<DomainViolation>,
    violations: &mut Violations,
) {
    if !violations.is_empty() {
        violations.extend(checks(content));
    }
}

/// The value of a field that parsed without violations; a `None` here would be a bug in
/// `convert` (a refused field must record a violation).
fn accepted<T>(value: Option<T>, field: &str) -> Result<T, Status> {
    value.ok_or_else(|| {
        to_status(Failure::Internal(
            format!("{field} was refused without a violation").into(),
        ))
    })
}

fn result(outcome: &CommandOutcome) -> Option<pb::CommandResult> {
    Some(convert::to_command_result(outcome))
}

#[tonic::async_trait]
impl PostingsService for PostingsApi {
    async fn create_draft(
        &self,
        request: Request<pb::CreateDraftRequest>,
    ) -> Result<Response<pb::CreateDraftResponse>, Status> {
        let caller = caller_of(&request)?.clone();
        let request = request.into_inner();
        let mut violations = Violations::default();
        let ctx = convert::command_context(&caller, request.command_id, None, &mut violations);
        let posting_id =
            convert::posting_id("posting_id", &request.posting_id, false, &mut violations);
        let language = convert::language(request.language, &mut violations);
        let content = convert::content(request.content, &mut violations);
        with_content_checks(&content, PostingContent::draft_violations, &mut violations);
        violations.finish().map_err(to_status)?;
        let command = CreateDraft {
            // The command layer sets both: the posting id it settles on (given or generated) and
            // the caller's organisation, so an employer can only create its own postings.
            posting_id: posting_id.unwrap_or(PostingId::new(Uuid::nil())),
            organisation_id: OrganisationId::new(Uuid::nil()),
            language: accepted(language, "language")?,
            content,
            reused_from: None,
        };
        let outcome = self.execute(&ctx, posting_id, command).await?;
        Ok(Response::new(pb::CreateDraftResponse {
            result: result(&outcome),
            posting_id: outcome.posting_id.to_string(),
        }))
    }

    async fn save_draft(
        &self,
        request: Request<pb::SaveDraftRequest>,
    ) -> Result<Response<pb::SaveDraftResponse>, Status> {
        let content = request.get_ref().content.clone();
        let checks = PostingContent::draft_violations;
        let result = self
            .run_with_content(&request, content, checks, |content| SaveDraft { content })
            .await?;
        Ok(Response::new(pb::SaveDraftResponse { result }))
    }

    async fn discard_draft(
        &self,
        request: Request<pb::DiscardDraftRequest>,
    ) -> Result<Response<pb::DiscardDraftResponse>, Status> {
        Ok(Response::new(pb::DiscardDraftResponse {
            result: self.run(&request, DiscardDraft).await?,
        }))
    }

    async fn submit_for_review(
        &self,
        request: Request<pb::SubmitForReviewRequest>,
    ) -> Result<Response<pb::SubmitForReviewResponse>, Status> {
        Ok(Response::new(pb::SubmitForReviewResponse {
            result: self.run(&request, SubmitForReview).await?,
        }))
    }

    async fn return_posting(
        &self,
        request: Request<pb::ReturnPostingRequest>,
    ) -> Result<Response<pb::ReturnPostingResponse>, Status> {
        let reasons = request.get_ref().reasons.clone();
        Ok(Response::new(pb::ReturnPostingResponse {
            result: self.run(&request, ReturnPosting { reasons }).await?,
        }))
    }

    async fn approve_posting(
        &self,
        request: Request<pb::ApprovePostingRequest>,
    ) -> Result<Response<pb::ApprovePostingResponse>, Status> {
        let date = request.get_ref().publish_date;
        let result = self
            .run_dated(&request, date, |publish_date| ApprovePosting {
                publish_date,
            })
            .await?;
        Ok(Response::new(pb::ApprovePostingResponse { result }))
    }

    async fn request_withdrawal(
        &self,
        request: Request<pb::RequestWithdrawalRequest>,
    ) -> Result<Response<pb::RequestWithdrawalResponse>, Status> {
        Ok(Response::new(pb::RequestWithdrawalResponse {
            result: self.run(&request, RequestWithdrawal).await?,
        }))
    }

    async fn request_modification(
        &self,
        request: Request<pb::RequestModificationRequest>,
    ) -> Result<Response<pb::RequestModificationResponse>, Status> {
        let content = request.get_ref().content.clone();
        // A modification is reviewed like a registration: complete content (R-POST-5).
        let checks = PostingContent::submission_violations;
        let result = self
            .run_with_content(&request, content, checks, |content| RequestModification {
                content,
            })
            .await?;
        Ok(Response::new(pb::RequestModificationResponse { result }))
    }

    async fn return_modification(
        &self,
        request: Request<pb::ReturnModificationRequest>,
    ) -> Result<Response<pb::ReturnModificationResponse>, Status> {
        let reasons = request.get_ref().reasons.clone();
        Ok(Response::new(pb::ReturnModificationResponse {
            result: self.run(&request, ReturnModification { reasons }).await?,
        }))
    }

    async fn approve_modification(
        &self,
        request: Request<pb::ApproveModificationRequest>,
    ) -> Result<Response<pb::ApproveModificationResponse>, Status> {
        let date = request.get_ref().publish_date;
        let result = self
            .run_dated(&request, date, |publish_date| ApproveModification {
                publish_date,
            })
            .await?;
        Ok(Response::new(pb::ApproveModificationResponse { result }))
    }

    async fn discard_modification(
        &self,
        request: Request<pb::DiscardModificationRequest>,
    ) -> Result<Response<pb::DiscardModificationResponse>, Status> {
        Ok(Response::new(pb::DiscardModificationResponse {
            result: self.run(&request, DiscardModification).await?,
        }))
    }

    async fn stop_recruiting(
        &self,
        request: Request<pb::StopRecruitingRequest>,
    ) -> Result<Response<pb::StopRecruitingResponse>, Status> {
        Ok(Response::new(pb::StopRecruitingResponse {
            result: self.run(&request, StopRecruiting).await?,
        }))
    }

    async fn cancel_posting(
        &self,
        request: Request<pb::CancelPostingRequest>,
    ) -> Result<Response<pb::CancelPostingResponse>, Status> {
        Ok(Response::new(pb::CancelPostingResponse {
            result: self.run(&request, CancelPosting).await?,
        }))
    }

    async fn reuse_posting(
        &self,
        request: Request<pb::ReusePostingRequest>,
    ) -> Result<Response<pb::ReusePostingResponse>, Status> {
        let caller = caller_of(&request)?.clone();
        let request = request.into_inner();
        let mut violations = Violations::default();
        let ctx = convert::command_context(&caller, request.command_id, None, &mut violations);
        let posting_id =
            convert::posting_id("posting_id", &request.posting_id, false, &mut violations);
        let source = convert::posting_id(
            "source_posting_id",
            &request.source_posting_id,
            true,
            &mut violations,
        );
        violations.finish().map_err(to_status)?;
        let outcome = self
            .commands
            .reuse(&ctx, posting_id, accepted(source, "source_posting_id")?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ReusePostingResponse {
            result: result(&outcome),
            posting_id: outcome.posting_id.to_string(),
        }))
    }
}
