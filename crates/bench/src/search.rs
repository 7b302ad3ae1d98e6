//! `search`: builds the postings search index from N generated bilingual postings and runs a
//! mix of Q queries against it.
//!
//! The index is built from generated log events, without a database, through the same code a
//! rebuild runs (`jobboard_projections::search::build`: decode, fold with the domain's
//! aggregate, index, commit with a checkpoint): the rate is the indexer's, not the log's (the
//! `read-all` bench measures reading). Each posting has the events of its life (drafted,
//! submitted, approved, published; some withdrawn or left as drafts), spread over the log as a
//! real one would have them. Queries run one at a time through `SearchView::search`: Japanese,
//! English, one-character, mixed, filtered, sorted, employer-scoped and deep-paged ones.

use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Duration as TimeDelta, NaiveDate, TimeZone, Utc};
use hdrhistogram::Histogram;
use jobboard_domain::PostingEvent;
use jobboard_domain::posting::{
    AdditionalItem, EmploymentType, InstitutionType, Language, OrganisationId, PostingContent,
    PostingId, RecruitmentPeriod,
};
use jobboard_eventstore::{CommandMetadata, EventMetadata, RecordedEvent};
use jobboard_projections::search::{
    self, DateRange, Scope, SearchOptions, SearchQuery, SearchView, SortOrder,
};
use serde_json::json;

/// Options of the `search` bench.
#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Postings to index.
    #[arg(long, default_value_t = 100_000)]
    postings: u64,
    /// Queries to run.
    #[arg(long, default_value_t = 2_000)]
    queries: u64,
    /// Seed of the generator (same seed, same postings and queries).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Indexing threads (default: the index's default).
    #[arg(long)]
    indexing_threads: Option<usize>,
    /// Indexing memory in MiB (default: the index's default).
    #[arg(long)]
    indexing_memory_mb: Option<usize>,
    /// Print only the JSON line.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    tokio::task::spawn_blocking(move || run_blocking(&args)).await?
}

fn run_blocking(args: &Args) -> anyhow::Result<serde_json::Value> {
    let mut options = SearchOptions::default();
    if let Some(threads) = args.indexing_threads {
        options.indexing_threads = threads;
    }
    if let Some(mb) = args.indexing_memory_mb {
        options.indexing_memory_bytes = mb << 20;
    }
    let mut generator = Generator::new(args.seed);
    let started = Instant::now();
    let events = generator.log(args.postings);
    let generated = started.elapsed();
    let event_count = events.len();
    if !args.json {
        eprintln!(
            "generated {} postings, {event_count} events in {generated:.1?}",
            args.postings
        );
    }

    let dir = tempfile::tempdir().context("a temporary index directory")?;
    let started = Instant::now();
    search::build(dir.path(), &options, events).context("build the index")?;
    let indexed = started.elapsed().as_secs_f64();
    let index_bytes = directory_size(dir.path())?;
    if !args.json {
        eprintln!("indexed in {indexed:.2} s, {} MiB", index_bytes >> 20);
    }

    let runtime = tokio::runtime::Handle::current();
    let (view, _runner) = runtime.block_on(SearchView::open(dir.path(), options))?;
    let queries: Vec<SearchQuery> = (0..args.queries).map(|i| generator.query(i)).collect();
    // One untimed pass over a few queries, as a service would have answered some by then.
    for query in queries.iter().take(20) {
        view.search(query)?;
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut kinds = std::collections::BTreeMap::<&str, Histogram<u64>>::new();
    let mut matched = 0u64;
    let started = Instant::now();
    for (i, query) in queries.iter().enumerate() {
        let began = Instant::now();
        let results = view.search(query)?;
        let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        latency.record(micros.max(1))?;
        kinds
            .entry(QUERY_KINDS[i % QUERY_KINDS.len()])
            .or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).expect("bounds"))
            .record(micros.max(1))?;
        matched += results.total;
    }
    let querying = started.elapsed().as_secs_f64();
    let by_kind: serde_json::Map<String, serde_json::Value> = kinds
        .iter()
        .map(|(kind, h)| {
            let value = json!({
                "p50_ms": crate::millis(h.value_at_quantile(0.5)),
                "p99_ms": crate::millis(h.value_at_quantile(0.99)),
            });
            ((*kind).to_owned(), value)
        })
        .collect();
    Ok(json!({
        "bench": "search",
        "source": "generated events, no database",
        "postings": args.postings,
        "events": event_count,
        "index_seconds": crate::round(indexed),
        "index_postings_per_sec": crate::round(ratio(args.postings, indexed)),
        "index_events_per_sec": crate::round(ratio(event_count as u64, indexed)),
        "index_mib": index_bytes >> 20,
        "queries": args.queries,
        "p50_ms": crate::millis(latency.value_at_quantile(0.5)),
        "p99_ms": crate::millis(latency.value_at_quantile(0.99)),
        "max_ms": crate::millis(latency.max()),
        "queries_per_sec": crate::round(ratio(args.queries, querying)),
        "mean_total_matches": matched / args.queries.max(1),
        "by_kind": by_kind,
    }))
}

#[allow(clippy::cast_precision_loss)]
fn ratio(count: u64, seconds: f64) -> f64 {
    count as f64 / seconds.max(1e-9)
}

fn directory_size(path: &std::path::Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            directory_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The query kinds, in the order queries cycle through them.
const QUERY_KINDS: [&str; 10] = [
    "japanese",
    "english",
    "one_character",
    "mixed",
    "filtered",
    "recruitment_end_order",
    "relevance",
    "employer",
    "deep_page",
    "no_keywords",
];

const JA_KEYWORDS: [&str; 16] = [
    "研究員",
    "エンジニア",
    "機械学習",
    "量子",
    "ポスドク",
    "材料",
    "データ",
    "准教授",
    "開発",
    "解析",
    "ロボット",
    "生命科学",
    "半導体",
    "技術職員",
    "特任助教",
    "自然言語処理",
];
const EN_KEYWORDS: [&str; 14] = [
    "engineer",
    "Research",
    "machine learning",
    "quantum",
    "postdoc",
    "materials",
    "data",
    "software",
    "Rust",
    "analysis",
    "robotics",
    "biology",
    "semiconductor",
    "professor",
];
const ONE_CHARACTER: [&str; 8] = ["研", "学", "京", "子", "e", "R", "量", "ア"];
const MIXED: [&str; 6] = [
    "Rust エンジニア",
    "AI 研究",
    "Python データ",
    "GPU 開発",
    "machine 学習",
    "PhD 研究員",
];

/// A small deterministic generator (splitmix64): the bench needs repeatable data, not a
/// cryptographic or statistical-grade source.
struct Generator {
    state: u64,
}

const JA_FIELDS: [&str; 16] = [
    "機械学習",
    "量子計算",
    "材料科学",
    "生命科学",
    "半導体",
    "ロボット工学",
    "自然言語処理",
    "気候モデル",
    "データ基盤",
    "計算化学",
    "天文学",
    "神経科学",
    "ソフトウェア工学",
    "創薬",
    "エネルギー",
    "画像認識",
];
const JA_ROLES: [&str; 10] = [
    "研究員",
    "ポスドク研究員",
    "エンジニア",
    "准教授",
    "特任助教",
    "技術職員",
    "研究開発職",
    "データサイエンティスト",
    "教授",
    "リサーチアシスタント",
];
const EN_FIELDS: [&str; 16] = [
    "Machine Learning",
    "Quantum Computing",
    "Materials Science",
    "Life Sciences",
    "Semiconductors",
    "Robotics",
    "Natural Language Processing",
    "Climate Modelling",
    "Data Platforms",
    "Computational Chemistry",
    "Astronomy",
    "Neuroscience",
    "Software Engineering",
    "Drug Discovery",
    "Energy Systems",
    "Computer Vision",
];
const EN_ROLES: [&str; 10] = [
    "Research Scientist",
    "Postdoctoral Researcher",
    "Software Engineer",
    "Associate Professor",
    "Assistant Professor",
    "Research Engineer",
    "Data Scientist",
    "Lab Technician",
    "Professor",
    "Research Assistant",
];
const JA_SENTENCES: [&str; 12] = [
    "当研究室では{f}に関する基礎研究と応用研究を行っています。",
    "{f}の分野で新しい手法を開発し、国際共同研究を推進します。",
    "大規模データの解析とシミュレーションを担当していただきます。",
    "PythonやRustを用いたソフトウェア開発の経験を歓迎します。",
    "GPUクラスタを利用した計算環境が整っています。",
    "博士号取得者、または取得見込みの方を対象とします。",
    "研究成果は国際会議や学術論文で発表していただきます。",
    "企業との共同研究プロジェクトに参加する機会があります。",
    "実験装置の保守と試料の準備も担当します。",
    "英語でのコミュニケーション能力が必要です。",
    "任期は原則として三年間で、評価により更新の可能性があります。",
    "若手研究者の育成と学生指導にも携わっていただきます。",
];
const EN_SENTENCES: [&str; 12] = [
    "Our group works on fundamental and applied research in {f}.",
    "You will develop new methods in {f} and contribute to international collaborations.",
    "The role involves large-scale data analysis and simulation.",
    "Experience with software development in Python or Rust is welcome.",
    "A GPU cluster and modern computing environment are available.",
    "Applicants should hold a PhD or expect to obtain one soon.",
    "Results are published at international conferences and in journals.",
    "There are opportunities to join joint projects with industry partners.",
    "Duties include maintaining instruments and preparing samples.",
    "Fluent communication in English is required; Japanese is a plus.",
    "The appointment is for three years, renewable subject to review.",
    "You will also mentor students and early-career researchers.",
];
const LOCATIONS: [(&str, &str); 12] = [
    ("東京都文京区", "Bunkyo, Tokyo"),
    ("茨城県つくば市", "Tsukuba, Ibaraki"),
    ("京都府京都市", "Kyoto"),
    ("大阪府吹田市", "Suita, Osaka"),
    ("宮城県仙台市", "Sendai, Miyagi"),
    ("愛知県名古屋市", "Nagoya, Aichi"),
    ("北海道札幌市", "Sapporo, Hokkaido"),
    ("福岡県福岡市", "Fukuoka"),
    ("神奈川県横浜市", "Yokohama, Kanagawa"),
    ("兵庫県神戸市", "Kobe, Hyogo"),
    ("沖縄県恩納村", "Onna, Okinawa"),
    ("埼玉県和光市", "Wako, Saitama"),
];
const ORGANISATIONS: u64 = 2_000;

impl Generator {
    fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = usize::try_from(self.below(items.len() as u64)).unwrap_or(0);
        &items[i]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// A posting's content in `language`.
    fn content(&mut self, language: Language, n: u64) -> PostingContent {
        let ja = language == Language::Ja;
        let field_index = self.below(16);
        let role_index = self.below(10);
        let idx = |i: u64| usize::try_from(i).unwrap_or(0);
        let (field, role) = if ja {
            (JA_FIELDS[idx(field_index)], JA_ROLES[idx(role_index)])
        } else {
            (EN_FIELDS[idx(field_index)], EN_ROLES[idx(role_index)])
        };
        let title = if ja {
            format!("{role}（{field}）募集")
        } else {
            format!("{role} in {field}")
        };
        let sentences = if ja { &JA_SENTENCES } else { &EN_SENTENCES };
        let mut description = String::new();
        for _ in 0..3 + self.below(4) {
            description.push_str(&self.pick(sentences).replace("{f}", field));
            description.push(if ja { '\n' } else { ' ' });
        }
        let items = (0..1 + self.below(3))
            .map(|_| {
                let (title, detail) = if ja {
                    ("応募資格", *self.pick(&JA_SENTENCES))
                } else {
                    ("Qualifications", *self.pick(&EN_SENTENCES))
                };
                AdditionalItem {
                    title: title.to_owned(),
                    detail: detail.replace("{f}", field),
                }
            })
            .collect();
        let location = self.pick(&LOCATIONS);
        let start = NaiveDate::from_ymd_opt(2026, 1, 1).expect("a date")
            + TimeDelta::days(i64::try_from(self.below(365)).unwrap_or(0));
        let end = start + TimeDelta::days(30 + i64::try_from(self.below(150)).unwrap_or(0));
        PostingContent {
            name: format!("{role}-{n:06}"),
            title,
            description,
            additional_items: items,
            employment_terms: if ja {
                "任期付き、三年"
            } else {
                "Fixed term, three years"
            }
            .into(),
            location: if ja { location.0 } else { location.1 }.to_owned(),
            institution_type: Some(*self.pick(&[
                InstitutionType::University,
                InstitutionType::University,
                InstitutionType::PublicResearchInstitute,
                InstitutionType::Company,
                InstitutionType::Other,
            ])),
            recruitment_period: Some(RecruitmentPeriod { start, end }),
            referral_period_end: Some(end),
            web_application: self.chance(70),
            direct_application: self.chance(30),
            employment_type: if self.chance(80) {
                Some(*self.pick(&[
                    EmploymentType::FullTime,
                    EmploymentType::FixedTerm,
                    EmploymentType::FixedTerm,
                    EmploymentType::PartTime,
                ]))
            } else {
                None
            },
            ..PostingContent::default()
        }
    }

    /// The log of `postings` postings: each one's events, spread over the log (a posting is
    /// submitted, approved and published while others are being drafted), in global order.
    fn log(&mut self, postings: u64) -> Vec<RecordedEvent> {
        let start = Utc
            .with_ymd_and_hms(2026, 1, 5, 0, 0, 0)
            .single()
            .expect("a time");
        // (time, posting, version, event)
        let mut planned: Vec<(i64, u64, u64, PostingEvent)> = Vec::new();
        for n in 0..postings {
            let id = posting_id(n);
            let organisation: OrganisationId = uuid::Uuid::from_u64_pair(
                0x0194_0000_0000_7000,
                0x8000_0000_0000_0000 | (n % ORGANISATIONS),
            )
            .into();
            let language = if self.chance(60) {
                Language::Ja
            } else {
                Language::En
            };
            let content = self.content(language, n);
            let at = i64::try_from(n).unwrap_or(0) * 60;
            let mut events = vec![event(json!({
                "type": "PostingDrafted", "posting_id": id, "organisation_id": organisation,
                "language": language, "content": content, "draft_version": 1,
            }))];
            let fate = self.below(100);
            if fate >= 8 {
                events.push(event(json!({
                    "type": "PostingSubmitted", "content": content, "draft_version": 1,
                })));
                events.push(event(json!({
                    "type": "PostingApproved", "publish_date": "2026-01-20",
                    "publishes_at": "2026-01-19T15:00:00Z",
                })));
                events.push(event(json!({
                    "type": "PostingPublished", "published_at": "2026-01-19T15:00:00Z",
                })));
            }
            if fate >= 95 {
                events.push(event(json!({
                    "type": "WithdrawalRequested", "requested_at": "2026-02-01T01:00:00Z",
                    "effective_at": "2026-02-01T13:00:00Z",
                })));
                events.push(event(json!({
                    "type": "PostingWithdrawn", "withdrawn_at": "2026-02-01T13:00:00Z",
                })));
            }
            // Each later event comes up to ~1,000 postings' worth of log later.
            let mut when = at;
            for (version, e) in (1..).zip(events) {
                planned.push((when, n, version, e));
                when += 1 + i64::try_from(self.below(60 * 1_000)).unwrap_or(0);
            }
        }
        planned.sort_by_key(|(when, n, version, _)| (*when, *n, *version));
        planned
            .into_iter()
            .zip(1u64..)
            .map(|((when, n, version, e), position)| {
                recorded(
                    &e,
                    posting_id(n),
                    version,
                    position,
                    start + TimeDelta::seconds(when),
                )
            })
            .collect()
    }

    /// Query `i` of the mix (see [`QUERY_KINDS`]).
    fn query(&mut self, i: u64) -> SearchQuery {
        let mut query = SearchQuery::new(Scope::Public);
        match QUERY_KINDS[usize::try_from(i).unwrap_or(0) % QUERY_KINDS.len()] {
            "japanese" => query.keywords = (*self.pick(&JA_KEYWORDS)).to_owned(),
            "english" => query.keywords = (*self.pick(&EN_KEYWORDS)).to_owned(),
            "one_character" => query.keywords = (*self.pick(&ONE_CHARACTER)).to_owned(),
            "mixed" => query.keywords = (*self.pick(&MIXED)).to_owned(),
            "filtered" => {
                query.keywords = (*self.pick(&JA_KEYWORDS)).to_owned();
                query.filters.institution_types = vec![InstitutionType::University];
                query.filters.location =
                    Some((*self.pick(&["東京", "つくば", "Kyoto", "大阪"])).to_owned());
                query.filters.recruitment_end = DateRange {
                    from: NaiveDate::from_ymd_opt(2026, 4, 1),
                    to: NaiveDate::from_ymd_opt(2026, 12, 31),
                };
                query.filters.web_application = Some(true);
            }
            "recruitment_end_order" => {
                query.keywords = (*self.pick(&EN_KEYWORDS)).to_owned();
                query.order = SortOrder::RecruitmentEnd;
            }
            "relevance" => {
                query.keywords = (*self.pick(&MIXED)).to_owned();
                query.order = SortOrder::Relevance;
            }
            "employer" => {
                let org = self.below(ORGANISATIONS);
                query.scope = Scope::Employer(
                    uuid::Uuid::from_u64_pair(0x0194_0000_0000_7000, 0x8000_0000_0000_0000 | org)
                        .into(),
                );
                query.keywords = (*self.pick(&JA_KEYWORDS)).to_owned();
            }
            "deep_page" => {
                query.keywords = (*self.pick(&ONE_CHARACTER)).to_owned();
                query.offset = 980;
            }
            _ => query.filters.languages = vec![Language::En],
        }
        query
    }
}

fn posting_id(n: u64) -> PostingId {
    uuid::Uuid::from_u64_pair(0x0194_0000_0000_7000, 0x8000_0000_0000_0000 | n).into()
}

/// Events are written as the domain's JSON and read back through its type, as a log holds them.
fn event(value: serde_json::Value) -> PostingEvent {
    serde_json::from_value(value).expect("a posting event")
}

fn recorded(
    event: &PostingEvent,
    id: PostingId,
    version: u64,
    position: u64,
    at: DateTime<Utc>,
) -> RecordedEvent {
    RecordedEvent {
        position,
        tx: position,
        stream_id: format!("posting-{id}"),
        version,
        event_type: event.type_name().to_owned(),
        schema_version: event.schema_version(),
        payload: serde_json::to_value(event).expect("an event serialises"),
        metadata: EventMetadata {
            event_id: uuid::Uuid::from_u64_pair(position, version),
            command: CommandMetadata::default(),
            recorded_at: at,
        },
        hash: [0; 32],
    }
}
