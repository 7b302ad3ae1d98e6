//! The search view's queries on SQLite and PostgreSQL logs: exact substring keywords in Japanese
//! and English (R-SRCH-1), conditions and refinement (R-SRCH-2), the 1,000 cap with the true
//! total (R-SRCH-3), both orders and stable paging (R-SRCH-4), and the public, employer and
//! agency scopes (R-SRCH-5).

mod search_support;
mod support;

use std::collections::BTreeSet;

use futures::future::join_all;
use jobboard_domain::PostingStatus;
use jobboard_domain::posting::{EmploymentType, InstitutionType, Language, PostingId};
use jobboard_projections::search::{DateRange, MAX_RESULTS, Scope, SearchQuery, SortOrder};
use search_support::{
    Env, Kind, Running, agency, content, date, drafted, item, options, organisation, posting_id,
    public_history, saved, submitted, with_end, with_terms, withdrawal_requested, withdrawn,
};
use serde_json::json;

jobboard_testkit::on_both_backends!(
    r_srch_1_japanese_keywords_match_inside_words_down_to_one_character,
    r_srch_1_english_keywords_match_inside_words_ignoring_case_and_width,
    r_srch_1_several_keywords_mixed_japanese_and_english_must_all_match,
    r_srch_1_the_internal_name_is_searched_only_in_the_employer_scope,
    r_srch_2_each_condition_filters_and_combines_with_keywords,
    r_srch_2_further_conditions_refine_a_result,
    r_srch_3_at_most_1000_results_are_reachable_and_the_total_is_true,
    r_srch_4_orders_by_update_or_recruitment_end_and_pages_stably,
    relevance_order_ranks_the_better_match_first,
    r_srch_5_public_search_shows_only_postings_on_public_search,
    an_employer_sees_its_postings_in_every_state_and_no_others,
    r_srch_5_an_agency_sees_the_postings_its_referrals_were_requested_for,
);

/// The postings most tests search.
struct Fixture {
    running: Running,
    /// ja, public, University, Tokyo, full time, ends 03-31, web; org 1.
    tokyo: PostingId,
    /// en, public, public research institute, Tsukuba, fixed term, ends 05-31, no web; org 1.
    ml: PostingId,
    /// ja, public, public research institute, つくば, no employment type, ends 04-30, web; org 2.
    postdoc: PostingId,
    /// ja, draft; org 1.
    draft: PostingId,
    /// en, withdrawn; org 2.
    gone: PostingId,
    /// en, withdrawal pending (still public), company, part time, ends 02-28, no web; org 2.
    leaving: PostingId,
    /// ja, pending review; org 1.
    pending: PostingId,
}

async fn fixture(env: &Env) -> Fixture {
    let running = env.start(options()).await;
    let (org1, org2) = (organisation(1), organisation(2));
    let ids = (1..=7).map(posting_id).collect::<Vec<_>>();

    let mut tokyo = with_terms(
        with_end(
            content(
                "Rustエンジニア（研究開発）",
                "機械学習基盤の開発。東京大学と共同研究。",
            ),
            Some(date(2026, 3, 31)),
        ),
        InstitutionType::University,
        Some(EmploymentType::FullTime),
        "東京都文京区",
        true,
    );
    tokyo.name = "内部名称ALPHA".into();
    tokyo.additional_items = vec![item("応募資格", "博士号取得者")];
    env.append(ids[0], &public_history(ids[0], org1, Language::Ja, &tokyo))
        .await;

    let mut ml = with_terms(
        with_end(
            content(
                "Research Engineer, Machine Learning",
                "Build data pipelines in Python and Rust.",
            ),
            Some(date(2026, 5, 31)),
        ),
        InstitutionType::PublicResearchInstitute,
        Some(EmploymentType::FixedTerm),
        "Tsukuba, Ibaraki",
        false,
    );
    ml.name = "internal-beta".into();
    ml.additional_items = vec![item("Benefits", "Housing allowance")];
    env.append(ids[1], &public_history(ids[1], org1, Language::En, &ml))
        .await;

    let mut postdoc = with_terms(
        with_end(
            content("ポスドク研究員（材料科学）", "薄膜材料の合成と評価。"),
            Some(date(2026, 4, 30)),
        ),
        InstitutionType::PublicResearchInstitute,
        None,
        "茨城県つくば市",
        true,
    );
    postdoc.additional_items = vec![item("勤務地", "つくば")];
    env.append(
        ids[2],
        &public_history(ids[2], org2, Language::Ja, &postdoc),
    )
    .await;

    let draft = content("エンジニア募集（下書き）", "研究支援");
    env.append(ids[3], &[drafted(ids[3], org1, Language::Ja, &draft)])
        .await;

    let gone = content("Data Engineer (withdrawn)", "Research data");
    let mut events = public_history(ids[4], org2, Language::En, &gone);
    events.extend([withdrawal_requested(), withdrawn()]);
    env.append(ids[4], &events).await;

    let leaving = with_terms(
        with_end(
            content("Lab Technician", "Support our research engineers."),
            Some(date(2026, 2, 28)),
        ),
        InstitutionType::Company,
        Some(EmploymentType::PartTime),
        "Osaka",
        false,
    );
    let mut events = public_history(ids[5], org2, Language::En, &leaving);
    events.push(withdrawal_requested());
    env.append(ids[5], &events).await;

    let pending = content("研究員（審査中）", "エンジニアリング");
    let outcome = env
        .append(
            ids[6],
            &[
                drafted(ids[6], org1, Language::Ja, &pending),
                submitted(&pending),
            ],
        )
        .await;
    running.saw(&outcome).await;
    Fixture {
        running,
        tokyo: ids[0],
        ml: ids[1],
        postdoc: ids[2],
        draft: ids[3],
        gone: ids[4],
        leaving: ids[5],
        pending: ids[6],
    }
}

fn public(keywords: &str) -> SearchQuery {
    let mut query = SearchQuery::new(Scope::Public);
    query.keywords = keywords.into();
    query
}

fn set<const N: usize>(ids: [PostingId; N]) -> BTreeSet<PostingId> {
    ids.into_iter().collect()
}

async fn r_srch_1_japanese_keywords_match_inside_words_down_to_one_character(kind: Kind) {
    let env = Env::new(kind).await;
    let f = fixture(&env).await;
    let r = &f.running;
    // Inside words, wherever they occur: title, description, additional item title and detail.
    assert_eq!(r.set(&public("エンジニア")), set([f.tokyo]));
    assert_eq!(r.set(&public("研究")), set([f.tokyo, f.postdoc]));
    assert_eq!(r.set(&public("共同研究")), set([f.tokyo]));
    assert_eq!(r.set(&public("応募資格")), set([f.tokyo]));
    assert_eq!(r.set(&public("士号取")), set([f.tokyo]));
    assert_eq!(r.set(&public("合成と評価")), set([f.postdoc]));
    // One character, also the last one of a value.
    assert_eq!(r.set(&public("薄")), set([f.postdoc]));
    assert_eq!(r.set(&public("ば")), set([f.postdoc]));
    assert_eq!(r.set(&public("京")), set([f.tokyo]));
    // Exact, not fuzzy: a near miss finds nothing, and no match runs from one value into the next
    // (the title ends in "）", the description starts with "機械").
    assert_eq!(r.set(&public("研究開花")), set([]));
    assert_eq!(r.set(&public("）機械")), set([]));
    // Half-width katakana read as full-width.
    assert_eq!(r.set(&public("ｴﾝｼﾞﾆｱ")), set([f.tokyo]));
}

async fn r_srch_1_english_keywords_match_inside_words_ignoring_case_and_width(kind: Kind) {
    let env = Env::new(kind).await;
    let f = fixture(&env).await;
    let r = &f.running;
    assert_eq!(r.set(&public("engineer")), set([f.ml, f.leaving]));
    assert_eq!(r.set(&public("ENGINEER")), set([f.ml, f.leaving]));
    assert_eq!(r.set(&public("ngine")), set([f.ml, f.leaving]));
    assert_eq!(r.set(&public("python")), set([f.ml]));
    assert_eq!(r.set(&public("benefits")), set([f.ml]));
    assert_eq!(r.set(&public("housing allowance")), set([f.ml]));
    assert_eq!(r.set(&public("Ｒｕｓｔ")), set([f.tokyo, f.ml]));
    assert_eq!(r.set(&public("x")), set([]));
    assert_eq!(r.set(&public("Ｙ")), set([f.ml]));
}

async fn r_srch_1_several_keywords_mixed_japanese_and_english_must_all_match(kind: Kind) {
    let env = Env::new(kind).await;
    let f = fixture(&env).await;
    let r = &f.running;
    assert_eq!(r.set(&public("Rust エンジニア")), set([f.tokyo]));
    // The ideographic space separates keywords too.
    assert_eq!(r.set(&public("rust　python")), set([f.ml]));
    assert_eq!(r.set(&public("rust 研究")), set([f.tokyo]));
    assert_eq!(r.set(&public("rust 薄膜")), set([]));
    assert_eq!(r.set(&public("Rustエンジニア")), set([f.tokyo]));
    assert_eq!(
        r.set(&public("  ")).len(),
        4,
        "blank keywords do not filter"
    );
}

async fn r_srch_1_the_internal_name_is_searched_only_in_the_employer_scope(kind: Kind) {
    let env = Env::new(kind).await;
    let f = fixture(&env).await;
    let r = &f.running;
    let mut own = SearchQuery::new(Scope::Employer(organisation(1)));
    own.keywords = "alpha".into();
    let found = r.search(&own);
    assert_eq!(found.hits.len(), 1);
    assert_eq!(found.hits[0].posting_id, f.tokyo);
    assert_eq!(found.hits[0].content.name, "内部名称ALPHA");
    // R-POST-1: the name is internal; the public neither finds by it nor sees it.
    assert_eq!(r.set(&public("alpha")), set([]));
    let shown = r.search(&public("東京大学"));
    assert_eq!(shown.hits[0].content.name, "");
    assert_eq!(shown.hits[0].content.title, "Rustエンジニア（研究開発）");
}

async fn r_srch_2_each_condition_filters_and_combines_with_keywords(kind: Kind) {
    let env = Env::new(kind).await;
    let f = fixture(&env).await;
    let r = &f.running;
    let all = |edit: &dyn Fn(&mut SearchQuery)| {
        let mut query = public("");
        edit(&mut query);
        r.set(&query)
    };
    assert_eq!(
        all(&|q| q.filters.institution_types = vec![InstitutionType::University]),
        set([f.tokyo])
    );
    assert_eq!(
        all(&|q| q.filters.institution_types = vec![
            InstitutionType::PublicResearchInstitute,
            InstitutionType::Company
        ]),
        set([f.ml, f.postdoc, f.leaving])
    );
    assert_eq!(
        all(&|q| q.filters.location = Some("つくば".into())),
        set([f.postdoc])
    );
    assert_eq!(
        all(&|q| q.filters.location = Some("TSUKUBA".into())),
        set([f.ml])
    );
    assert_eq!(
        all(&|q| q.filters.location = Some("京".into())),
        set([f.tokyo])
    );
    assert_eq!(all(&|q| q.filters.location = Some("京大".into())), set([]));
    assert_eq!(
        all(&|q| q.filters.employment_types = vec![EmploymentType::FixedTerm]),
        set([f.ml])
    );
    assert_eq!(
        all(&|q| q.filters.employment_types =
            vec![EmploymentType::FullTime, EmploymentType::PartTime]),
        set([f.tokyo, f.leaving])
    );
    assert_eq!(
        all(&|q| q.filters.languages = vec![Language::En]),
        set([f.ml, f.leaving])
    );
    assert_eq!(
        all(&|q| q.filters.recruitment_end = DateRange {
            from: Some(date(2026, 4, 1)),
            to: None
        }),
        set([f.ml, f.postdoc])
    );
    assert_eq!(
        all(&|q| q.filters.recruitment_end = DateRange {
            from: None,
            to: Some(date(2026, 3, 31))
        }),
        set([f.tokyo, f.leaving])
    );
    assert_eq!(
        all(&|q| q.filters.recruitment_end = DateRange {
            from: Some(date(2026, 4, 30)),
            to: Some(date(2026, 4, 30))
        }),
        set([f.postdoc])
    );
    assert_eq!(
        all(&|q| q.filters.web_application = Some(true)),
        set([f.tokyo, f.postdoc])
    );
    assert_eq!(
        all(&|q| q.filters.web_application = Some(false)),
        set([f.ml, f.leaving])
    );
    assert_eq!(
        all(&|q| q.filters.statuses = vec![PostingStatus::WithdrawalPending]),
        set([f.leaving])
    );
    // With keywords.
    let mut query = public("engineer");
    query.filters.web_application = Some(false);
    query.filters.languages = vec![Language::En];
    query.filters.institution_types = vec![InstitutionType::Company];
    assert_eq!(r.set(&query), set([f.leaving]));
}

async fn r_srch_2_further_conditions_refine_a_result(kind: Kind) {
    let env = Env::new(kind).await;
    let f = fixture(&env).await;
    let r = &f.running;
    let mut query = public("研究");
    let first = r.search(&query);
    assert_eq!(first.total, 2);
    query.filters.institution_types = vec![InstitutionType::PublicResearchInstitute];
    let refined = r.search(&query);
    assert_eq!(refined.total, 1);
    assert_eq!(refined.hits[0].posting_id, f.postdoc);
    query.keywords.push_str(" 材料");
    query.filters.web_application = Some(true);
    assert_eq!(r.set(&query), set([f.postdoc]));
    query.filters.location = Some("東京".into());
    let none = r.search(&query);
    assert_eq!((none.total, none.hits.len()), (0, 0));
}

async fn r_srch_3_at_most_1000_results_are_reachable_and_the_total_is_true(kind: Kind) {
    let env = Env::new(kind).await;
    let running = env.start(options()).await;
    const POSTINGS: u128 = 1_050;
    let org = organisation(1);
    let mut last = None;
    for chunk in (1..=POSTINGS).collect::<Vec<_>>().chunks(64) {
        env.clock.advance(60);
        let appends = chunk.iter().map(|&n| {
            let id = posting_id(n);
            let body = content(&format!("研究員 {n}"), "Research position");
            let events = public_history(id, org, Language::Ja, &body);
            let store = env.store.clone();
            async move { search_support::append(&store, id, &events).await }
        });
        last = join_all(appends)
            .await
            .into_iter()
            .max_by_key(|o| o.checkpoint);
    }
    running.saw(&last.expect("appended")).await;

    let mut query = public("研究員");
    query.limit = 100;
    let mut seen = Vec::new();
    let mut offset = Some(0);
    while let Some(at) = offset {
        query.offset = at;
        let page = running.search(&query);
        assert_eq!(
            page.total, 1_050,
            "R-SRCH-3: the total is counted past the cap"
        );
        seen.extend(page.hits.iter().map(|h| h.posting_id));
        offset = page.next_offset;
    }
    assert_eq!(seen.len(), MAX_RESULTS);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), MAX_RESULTS);

    query.offset = 980;
    let tail = running.search(&query);
    assert_eq!(tail.hits.len(), 20, "nothing past the 1,000th");
    assert_eq!(tail.next_offset, None);
    query.offset = 1_000;
    let beyond = running.search(&query);
    assert_eq!((beyond.total, beyond.hits.len()), (1_050, 0));
    // The same for the other orders.
    for order in [SortOrder::RecruitmentEnd, SortOrder::Relevance] {
        query.order = order;
        query.offset = 990;
        let page = running.search(&query);
        assert_eq!((page.total, page.hits.len()), (1_050, 10), "{order:?}");
    }
}

async fn r_srch_4_orders_by_update_or_recruitment_end_and_pages_stably(kind: Kind) {
    let env = Env::new(kind).await;
    let f = fixture(&env).await;
    let r = &f.running;
    // Most recently updated first: the order the fixture appended them, reversed.
    assert_eq!(r.ids(&public("")), [f.leaving, f.postdoc, f.ml, f.tokyo]);
    // An update moves a posting to the front.
    let outcome = env.append(f.tokyo, &[withdrawal_requested()]).await;
    r.saw(&outcome).await;
    assert_eq!(r.ids(&public("")), [f.tokyo, f.leaving, f.postdoc, f.ml]);
    let mut by_end = public("");
    by_end.order = SortOrder::RecruitmentEnd;
    assert_eq!(r.ids(&by_end), [f.ml, f.postdoc, f.tokyo, f.leaving]);

    // Postings updated at the same instant break the tie on the posting id, ascending; paging
    // by offset returns each exactly once.
    let org = organisation(3);
    env.clock.advance(60);
    let mut ids: Vec<PostingId> = (100..110).map(posting_id).collect();
    let mut outcomes = Vec::new();
    for &id in ids.iter().rev() {
        let body = with_end(content("同時刻", "tie"), None);
        let events = public_history(id, org, Language::Ja, &body);
        outcomes.push(search_support::append(&env.store, id, &events).await);
    }
    r.saw(outcomes.iter().max_by_key(|o| o.checkpoint).unwrap())
        .await;
    ids.sort();
    let mut query = public("同時刻");
    assert_eq!(r.ids(&query), ids);
    query.limit = 3;
    let mut paged = Vec::new();
    let mut offset = Some(0);
    while let Some(at) = offset {
        query.offset = at;
        let page = r.search(&query);
        paged.extend(page.hits.iter().map(|h| h.posting_id));
        offset = page.next_offset;
    }
    assert_eq!(paged, ids);
    // Without a recruitment period they come last in the recruitment-end order.
    by_end.limit = 100;
    let ordered = r.ids(&by_end);
    assert_eq!(ordered[..4], [f.ml, f.postdoc, f.tokyo, f.leaving]);
    assert_eq!(ordered[4..], ids);
}

async fn relevance_order_ranks_the_better_match_first(kind: Kind) {
    let env = Env::new(kind).await;
    let running = env.start(options()).await;
    let org = organisation(1);
    let (strong, weak) = (posting_id(1), posting_id(2));
    let weak_body = content(
        "研究補助",
        "量子。実験装置の保守、試料の準備、データ整理、報告書の作成、会議の準備を担当します。",
    );
    env.append(weak, &public_history(weak, org, Language::Ja, &weak_body))
        .await;
    let strong_body = content("量子計算の研究者", "量子アルゴリズムと量子誤り訂正。");
    let outcome = env
        .append(
            strong,
            &public_history(strong, org, Language::Ja, &strong_body),
        )
        .await;
    running.saw(&outcome).await;
    let mut query = public("量子");
    query.order = SortOrder::Relevance;
    let found = running.search(&query);
    let ids: Vec<_> = found.hits.iter().map(|h| h.posting_id).collect();
    assert_eq!(ids, [strong, weak]);
    let scores: Vec<f32> = found.hits.iter().map(|h| h.score.unwrap()).collect();
    assert!(scores[0] > scores[1], "{scores:?}");
    // Updated order would put the weak match (older) last too; the other way round shows the
    // ranking is not the update order.
    let outcome = env.append(weak, &[withdrawal_requested()]).await;
    running.saw(&outcome).await;
    assert_eq!(running.ids(&query), [strong, weak]);
    query.order = SortOrder::RecentlyUpdated;
    assert_eq!(running.ids(&query), [weak, strong]);
    assert!(running.search(&query).hits[0].score.is_none());
}

async fn r_srch_5_public_search_shows_only_postings_on_public_search(kind: Kind) {
    let env = Env::new(kind).await;
    let f = fixture(&env).await;
    let r = &f.running;
    // Drafts, requests pending review and withdrawn postings are not public; a posting whose
    // withdrawal is pending still is.
    assert_eq!(
        r.set(&public("")),
        set([f.tokyo, f.ml, f.postdoc, f.leaving])
    );
    assert!(!r.set(&public("")).contains(&f.draft));
    assert!(!r.set(&public("")).contains(&f.gone));
    assert!(!r.set(&public("")).contains(&f.pending));
    // The withdrawal taking effect removes it.
    let outcome = env.append(f.leaving, &[withdrawn()]).await;
    r.saw(&outcome).await;
    assert_eq!(r.set(&public("")), set([f.tokyo, f.ml, f.postdoc]));
    let hit = &r.search(&public("薄膜")).hits[0];
    assert_eq!(hit.status, PostingStatus::Published);
    assert_eq!(hit.language, Language::Ja);
    assert_eq!(hit.organisation_id, organisation(2));
    assert_eq!(hit.version, 4);
}

async fn an_employer_sees_its_postings_in_every_state_and_no_others(kind: Kind) {
    let env = Env::new(kind).await;
    let f = fixture(&env).await;
    let r = &f.running;
    let own = |org| SearchQuery::new(Scope::Employer(organisation(org)));
    assert_eq!(r.set(&own(1)), set([f.tokyo, f.ml, f.draft, f.pending]));
    assert_eq!(r.set(&own(2)), set([f.postdoc, f.gone, f.leaving]));
    assert_eq!(r.set(&own(9)), set([]));
    let mut drafts = own(1);
    drafts.filters.statuses = vec![PostingStatus::Draft, PostingStatus::PendingReview];
    assert_eq!(r.set(&drafts), set([f.draft, f.pending]));
    // The employer searches its latest content: a saved draft replaces the old text.
    let mut keyword = own(1);
    keyword.keywords = "下書き".into();
    assert_eq!(r.set(&keyword), set([f.draft]));
    let outcome = env
        .append(f.draft, &[saved(&content("新しいタイトル", "更新"), 2)])
        .await;
    r.saw(&outcome).await;
    assert_eq!(r.set(&keyword), set([]));
    keyword.keywords = "新しい".into();
    assert_eq!(r.set(&keyword), set([f.draft]));
    // Another organisation's postings stay out whatever the keywords.
    keyword.keywords = "薄膜".into();
    assert_eq!(r.set(&keyword), set([]));
}

async fn r_srch_5_an_agency_sees_the_postings_its_referrals_were_requested_for(kind: Kind) {
    let env = Env::new(kind).await;
    let f = fixture(&env).await;
    let r = &f.running;
    let referral = async |event: &str, posting: PostingId, agency_id| {
        let payload = json!({"posting_id": posting, "agency_id": agency_id});
        let stream = format!("referral-{}", uuid::Uuid::new_v4().simple());
        env.append_raw(&stream, event, payload).await
    };
    let scope = |n| {
        let mut query = SearchQuery::new(Scope::Agency(agency(n)));
        query.limit = 100;
        query
    };
    assert_eq!(r.set(&scope(1)), set([]), "no referrals, nothing to see");
    referral("ReferralsRequested", f.tokyo, agency(1)).await;
    referral("ReferralsRequested", f.postdoc, agency(1)).await;
    // A request naming a posting before its first event is kept until the posting exists.
    let later = posting_id(50);
    referral("ReferralsRequested", later, agency(1)).await;
    let outcome = referral("ReferralsRequested", f.ml, agency(2)).await;
    r.saw(&outcome).await;
    assert_eq!(r.set(&scope(1)), set([f.tokyo, f.postdoc]));
    assert_eq!(r.set(&scope(2)), set([f.ml]));
    let body = content("後から作成", "agency");
    let outcome = env
        .append(
            later,
            &[drafted(later, organisation(3), Language::Ja, &body)],
        )
        .await;
    r.saw(&outcome).await;
    assert_eq!(r.set(&scope(1)), set([f.tokyo, f.postdoc, later]));
    // Keywords and conditions work within the scope.
    let mut query = scope(1);
    query.keywords = "研究".into();
    query.filters.institution_types = vec![InstitutionType::PublicResearchInstitute];
    assert_eq!(r.set(&query), set([f.postdoc]));
    // Ending the referrals removes the posting from that agency's scope only.
    referral("ReferralsRequested", f.tokyo, agency(2)).await;
    let outcome = referral("ReferralsEnded", f.tokyo, agency(1)).await;
    r.saw(&outcome).await;
    assert_eq!(r.set(&scope(1)), set([f.postdoc, later]));
    assert_eq!(r.set(&scope(2)), set([f.ml, f.tokyo]));
    // The internal name stays hidden from agencies.
    let hit = r
        .search(&scope(2))
        .hits
        .into_iter()
        .find(|h| h.posting_id == f.tokyo)
        .unwrap();
    assert_eq!(hit.content.name, "");
}
