//! `rebuild`: how fast a SQL projection is rebuilt blue/green from the log, through the same
//! code `jobboard-replay rebuild` runs (`jobboard_projections::rebuild`).
//!
//! Seeds M posting events through the store if the log is empty (postings walked through a
//! realistic life: drafted, saved twice, submitted, approved, published, a modification asked
//! for, approved and published, expired; one event per append, many writers, so each posting's
//! events are spread over the log), builds the first generation, then measures a rebuild beside
//! it up to the switch. The read-all rate of the same log, measured in the same run, is the
//! baseline: a rebuild cannot read faster than that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use jobboard_domain::PostingEvent;
use jobboard_domain::posting::{
    EmploymentType, InstitutionType, Language, OrganisationId, PostingContent, PostingId,
    RecruitmentPeriod,
};
use jobboard_eventstore::{
    Checkpoint, CommandMetadata, EventStore, ExpectedVersion, NewEvent, StreamId,
};
use jobboard_projections::{Projector, RuntimeOptions, ViewDb};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{Backend, FreshDb, round};

/// Options of `rebuild`.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// The projector to rebuild.
    #[arg(long, default_value = "postings")]
    projector: String,
    /// Events to seed when the log is empty.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    #[arg(long, value_enum, default_value_t = Backend::Postgres)]
    backend: Backend,
    /// Use this database instead of a fresh one (seeded only if its log is empty; kept after).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Events per rebuild transaction.
    #[arg(long, default_value_t = RuntimeOptions::default().rebuild_batch_size)]
    batch_size: usize,
    /// Print only the JSON line.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Events in one posting's life as seeded.
const LIFE: u64 = 10;
/// Concurrent writers while seeding.
const WRITERS: usize = 32;
/// Postings a writer walks through their lives together (so their events interleave).
const WAVE: usize = 50;

pub(crate) async fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    let projector = jobboard_projections::projectors()
        .into_iter()
        .find(|p| p.name() == args.projector)
        .with_context(|| format!("no SQL projector named {:?}", args.projector))?;
    let fresh = match &args.database_url {
        Some(_) => None,
        None => Some(FreshDb::create(args.backend, Default::default()).await?),
    };
    let url = match (&args.database_url, &fresh) {
        (Some(url), _) => url.clone(),
        (None, Some(db)) => db.url(),
        (None, None) => unreachable!("a fresh database is made when no url is given"),
    };
    let result = measure(&args, &url, projector).await;
    if let Some(db) = fresh {
        db.drop().await;
    }
    result
}

async fn measure(
    args: &Args,
    url: &str,
    projector: Arc<dyn Projector>,
) -> anyhow::Result<serde_json::Value> {
    let quiet = args.json;
    let store = EventStore::open(url, Default::default()).await?;
    let mut events = count(&store).await?;
    if events == 0 {
        if !quiet {
            eprintln!(
                "seeding {} posting events on {}",
                args.events,
                store.backend_name()
            );
        }
        let began = Instant::now();
        seed(&store, args.events).await?;
        events = count(&store).await?;
        if !quiet {
            eprintln!(
                "seeded {events} events in {:.1}s",
                began.elapsed().as_secs_f64()
            );
        }
    }
    let baseline = read_all_rate(&store, events).await?;
    if !quiet {
        eprintln!("read-all baseline: {baseline:.0} events/s");
    }
    let views = ViewDb::open(url).await?;
    let options = RuntimeOptions {
        rebuild_batch_size: args.batch_size,
        drop_grace: Duration::ZERO,
        ..RuntimeOptions::default()
    };
    let shutdown = CancellationToken::new();
    let silent = |_: &jobboard_projections::RebuildProgress| {};
    // The first generation, unless one serves already (a reused database).
    let initial = if views.current(projector.name()).await?.active.is_none() {
        let outcome = jobboard_projections::rebuild(
            &views,
            &store,
            projector.as_ref(),
            &options,
            &shutdown,
            &silent,
        )
        .await?;
        Some(outcome.elapsed.as_secs_f64())
    } else {
        None
    };
    if !quiet {
        eprintln!(
            "rebuilding {} beside the serving generation",
            projector.name()
        );
    }
    let outcome = jobboard_projections::rebuild(
        &views,
        &store,
        projector.as_ref(),
        &options,
        &shutdown,
        &silent,
    )
    .await?;
    if outcome.built_elsewhere || outcome.events != events {
        bail!(
            "the rebuild covered {} events of {events} (built elsewhere: {})",
            outcome.events,
            outcome.built_elsewhere
        );
    }
    let seconds = outcome.elapsed.as_secs_f64();
    views.close().await;
    store.close().await;
    Ok(json!({
        "bench": "rebuild",
        "backend": args.backend.name(),
        "projector": projector.name(),
        "events": events,
        "batch_size": args.batch_size,
        "seconds": round(seconds),
        "events_per_sec": round(events as f64 / seconds),
        "initial_build_events_per_sec": initial.map(|s| round(events as f64 / s)),
        "read_all_events_per_sec": round(baseline),
        "generation": outcome.generation.generation,
    }))
}

/// Events in the log.
async fn count(store: &EventStore) -> anyhow::Result<u64> {
    let mut counter = jobboard_projections::LogCounter::default();
    counter.advance(store).await?;
    Ok(counter.count())
}

/// The rate of reading the whole log in pages of 5,000, decoded (the rebuild's own page size).
async fn read_all_rate(store: &EventStore, events: u64) -> anyhow::Result<f64> {
    let began = Instant::now();
    let mut after = Checkpoint::START;
    let mut read = 0u64;
    loop {
        let page = store.read_all(after, 5000).await?;
        let Some(last) = page.events.last() else {
            if page.held {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            break;
        };
        after = last.checkpoint();
        read += page.events.len() as u64;
    }
    if read != events {
        bail!("read {read} events, counted {events}");
    }
    Ok(read as f64 / began.elapsed().as_secs_f64())
}

/// Appends `events` posting events, one per append, from many writers at once.
async fn seed(store: &EventStore, events: u64) -> anyhow::Result<()> {
    let postings = events.div_ceil(LIFE);
    let mut tasks = Vec::new();
    for writer in 0..WRITERS as u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mine: Vec<u64> = (writer..postings).step_by(WRITERS).collect();
            for wave in mine.chunks(WAVE) {
                for step in 0..LIFE {
                    for &n in wave {
                        if n * LIFE + step >= events {
                            continue;
                        }
                        let (stream, event) = life_event(n, step);
                        let expected = match step {
                            0 => ExpectedVersion::NoStream,
                            v => ExpectedVersion::Exact(v),
                        };
                        let payload = serde_json::to_value(&event)?;
                        store
                            .append(
                                &stream,
                                expected,
                                vec![NewEvent::new(
                                    event.type_name(),
                                    event.schema_version(),
                                    payload,
                                )],
                                CommandMetadata {
                                    actor: Some(format!("staff-{}", n % 97)),
                                    organisation: Some(organisation(n).to_string()),
                                    ..CommandMetadata::default()
                                },
                            )
                            .await?;
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

fn organisation(n: u64) -> OrganisationId {
    uuid::Uuid::from_u128(0x0194_0000_0000_7000_8000_00aa_0000_0000 | u128::from(n % 500)).into()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid date")
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0)
        .single()
        .expect("a valid time")
}

/// Bilingual content of the size real postings have.
fn content(n: u64, revision: u64) -> PostingContent {
    PostingContent {
        name: format!("材料科学研究室 {n}"),
        title: format!(
            "ポスドク研究員（計算材料科学）/ Postdoctoral researcher {n} rev {revision}"
        ),
        description: "第一原理計算と機械学習を用いた新規材料探索。Exploration of new materials \
                      with first-principles calculations and machine learning; thin films, \
                      characterisation, and collaboration with industry partners."
            .into(),
        employment_terms: "任期付き 2年（更新可）/ Fixed term, two years, renewable".into(),
        location: "茨城県つくば市 / Tsukuba, Ibaraki".into(),
        institution_type: Some(InstitutionType::University),
        recruitment_period: Some(RecruitmentPeriod {
            start: date(2026, 4, 1),
            end: date(2026, 6, 30),
        }),
        referral_period_end: Some(date(2026, 6, 15)),
        web_application: true,
        employment_type: Some(EmploymentType::FixedTerm),
        ..PostingContent::default()
    }
}

/// The `step`th event of posting `n`'s life, and its stream.
fn life_event(n: u64, step: u64) -> (StreamId, PostingEvent) {
    let id: PostingId =
        uuid::Uuid::from_u128(0x0194_0000_0000_7000_8000_0000_0000_0000 | u128::from(n)).into();
    let event = match step {
        0 => PostingEvent::PostingDrafted {
            posting_id: id,
            organisation_id: organisation(n),
            language: if n.is_multiple_of(3) {
                Language::En
            } else {
                Language::Ja
            },
            content: content(n, 1),
            draft_version: 1,
            reused_from: None,
        },
        1 | 2 => PostingEvent::DraftSaved {
            content: content(n, step + 1),
            draft_version: u32::try_from(step + 1).expect("small"),
        },
        3 => PostingEvent::PostingSubmitted {
            content: content(n, 3),
            draft_version: 3,
        },
        4 => PostingEvent::PostingApproved {
            publish_date: date(2026, 3, 2),
            publishes_at: at(1, 13),
        },
        5 => PostingEvent::PostingPublished {
            published_at: at(1, 13),
            content: Some(content(n, 3)),
            expires_at: Some(at(30, 15)),
            modifiable_until: Some(at(20, 15)),
        },
        6 => PostingEvent::ModificationRequested {
            content: content(n, 4),
            requested_at: at(5, 1),
        },
        7 => PostingEvent::ModificationApproved {
            publish_date: date(2026, 3, 7),
            effective_at: at(6, 13),
        },
        8 => PostingEvent::ModificationPublished {
            content: content(n, 4),
            published_at: at(6, 13),
            expires_at: Some(at(30, 15)),
            modifiable_until: Some(at(20, 15)),
        },
        _ => PostingEvent::PostingExpired {
            expired_at: at(30, 15),
        },
    };
    let stream = StreamId::new(format!("posting-{id}")).expect("a valid stream id");
    (stream, event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_life_serialises_as_the_domain_reads_it() {
        for step in 0..LIFE {
            let (stream, event) = life_event(7, step);
            assert!(stream.as_str().starts_with("posting-"));
            let payload = serde_json::to_value(&event).unwrap();
            let back: PostingEvent = serde_json::from_value(payload).unwrap();
            assert_eq!(back, event);
        }
    }
}
