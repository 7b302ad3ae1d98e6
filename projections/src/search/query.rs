//! Running a [`SearchQuery`] on one generation: the tantivy query it becomes, the collector that
//! counts every match and keeps the first [`MAX_RESULTS`] in order, and the hits it reads back.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Bound;
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::ColumnValues;
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery,
    TermSetQuery,
};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::{
    DocAddress, DocId, Score, Searcher, SegmentOrdinal, SegmentReader, TantivyDocument, Term,
};

use super::error::IndexError;
use super::schema::{
    Fields, ID_HIGH, ID_LOW, OWNER, PUBLIC, PostingState, RECRUITMENT_END, UPDATED_AT, day_number,
};
use super::text::{bigrams, keywords, normalize};
use super::{MAX_LIMIT, MAX_RESULTS, Scope, SearchHit, SearchQuery, SortOrder};

/// What a search found: the true number of matches and the requested page of the first
/// [`MAX_RESULTS`].
pub(super) struct Found {
    pub(super) total: u64,
    pub(super) hits: Vec<SearchHit>,
}

/// Runs `query` on `searcher`.
pub(super) fn run(
    searcher: &Searcher,
    fields: &Fields,
    query: &SearchQuery,
) -> Result<Found, IndexError> {
    let limit = query.limit.min(MAX_LIMIT);
    // R-SRCH-3: nothing past the first MAX_RESULTS is reachable, whatever the offset.
    let end = query.offset.saturating_add(limit).min(MAX_RESULTS);
    let compiled = compile(fields, query);
    let collector = TopKeys {
        k: end,
        order: query.order,
    };
    let (total, top) = searcher.search(&*compiled, &collector)?;
    let mut hits = Vec::with_capacity(end.saturating_sub(query.offset));
    for (key, address) in top.into_iter().skip(query.offset) {
        let doc: TantivyDocument = searcher.doc(address)?;
        let stored = doc
            .get_first(fields.state)
            .and_then(|v| v.as_bytes())
            .ok_or_else(|| IndexError::Payload("a document has no stored state".into()))?;
        let state = PostingState::decode(stored)?;
        let score = (query.order == SortOrder::Relevance).then(|| f32::from_bits(score_bits(key)));
        hits.push(hit(state, query.scope, score)?);
    }
    Ok(Found { total, hits })
}

/// The hit for a matching document of `state` in `scope`.
fn hit(state: PostingState, scope: Scope, score: Option<f32>) -> Result<SearchHit, IndexError> {
    let posting = &state.posting;
    let content = match scope {
        Scope::Public => posting.public_content(),
        Scope::Employer(_) | Scope::Agency(_) => posting.content(),
    };
    let missing = || {
        IndexError::Payload(format!(
            "posting {} matched without content",
            state.posting_id
        ))
    };
    let mut content = content.cloned().ok_or_else(missing)?;
    if !matches!(scope, Scope::Employer(_)) {
        // R-POST-1: the name is internal, seen by the employer and the operator only.
        content.name.clear();
    }
    Ok(SearchHit {
        posting_id: state.posting_id,
        organisation_id: posting.organisation_id().ok_or_else(missing)?,
        status: posting.status().ok_or_else(missing)?,
        language: posting.language().ok_or_else(missing)?,
        content,
        version: state.version,
        updated_at: state.updated_at.ok_or_else(missing)?,
        score,
    })
}

/// The tantivy query for `query`: the scope and every filter as unscored clauses, each keyword
/// as a scored one, all required (R-SRCH-2: conditions combine and refine).
fn compile(f: &Fields, query: &SearchQuery) -> Box<dyn Query> {
    let mut must: Vec<Box<dyn Query>> = Vec::new();
    let filter = |q: Box<dyn Query>| -> Box<dyn Query> { Box::new(ConstScoreQuery::new(q, 0.0)) };
    let text = |field: Field, value: &str| Term::from_field_text(field, value);
    let any_of = |field: Field, values: Vec<&str>| -> Box<dyn Query> {
        Box::new(TermSetQuery::new(
            values.into_iter().map(|v| text(field, v)),
        ))
    };

    // R-SRCH-5: the scope.
    match query.scope {
        Scope::Public => must.push(filter(term(text(f.audience, PUBLIC)))),
        Scope::Employer(organisation) => {
            must.push(filter(term(text(f.audience, OWNER))));
            must.push(filter(term(text(
                f.organisation,
                &organisation.to_string(),
            ))));
        }
        Scope::Agency(agency) => {
            must.push(filter(term(text(f.audience, OWNER))));
            must.push(filter(term(text(f.agency, &agency.to_string()))));
        }
    }

    // R-SRCH-1: every keyword must occur inside the searched text; the employer's own search
    // also looks in the internal name.
    let normalized = normalize(&query.keywords);
    for keyword in keywords(&normalized) {
        let in_text = substring(f.text, f.chars, keyword);
        let q = if matches!(query.scope, Scope::Employer(_)) {
            let in_name = substring(f.name_text, f.name_chars, keyword);
            Box::new(BooleanQuery::new(vec![
                (Occur::Should, in_text),
                (Occur::Should, in_name),
            ]))
        } else {
            in_text
        };
        must.push(q);
    }

    // R-SRCH-2: the conditions.
    let filters = &query.filters;
    if !filters.institution_types.is_empty() {
        let values = filters
            .institution_types
            .iter()
            .map(|t| t.as_str())
            .collect();
        must.push(filter(any_of(f.institution, values)));
    }
    if !filters.employment_types.is_empty() {
        let values = filters
            .employment_types
            .iter()
            .map(|t| t.as_str())
            .collect();
        must.push(filter(any_of(f.employment, values)));
    }
    if !filters.languages.is_empty() {
        let values = filters.languages.iter().map(|l| l.as_str()).collect();
        must.push(filter(any_of(f.language, values)));
    }
    if !filters.statuses.is_empty() {
        let values = filters.statuses.iter().map(|s| s.as_str()).collect();
        must.push(filter(any_of(f.status, values)));
    }
    if let Some(location) = &filters.location {
        for keyword in keywords(&normalize(location)) {
            must.push(filter(sequence(f.location, keyword)));
        }
    }
    if let Some(web) = filters.web_application {
        must.push(filter(term(Term::from_field_bool(f.web_application, web))));
    }
    let range = &filters.recruitment_end;
    if range.from.is_some() || range.to.is_some() {
        let bound = |d: Option<chrono::NaiveDate>| match d {
            Some(d) => Bound::Included(Term::from_field_u64(f.recruitment_end, day_number(d))),
            None => Bound::Unbounded,
        };
        // A posting without a recruitment period has no end, and so none in the range.
        let lower = match range.from {
            None => Bound::Included(Term::from_field_u64(f.recruitment_end, 1)),
            from => bound(from),
        };
        must.push(filter(Box::new(RangeQuery::new(lower, bound(range.to)))));
    }

    if must.is_empty() {
        return Box::new(AllQuery);
    }
    Box::new(BooleanQuery::new(
        must.into_iter().map(|q| (Occur::Must, q)).collect(),
    ))
}

fn term(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs))
}

/// Where `keyword` (normalised, no white space) occurs as a substring of the text indexed as
/// bigrams in `bigram_field` and as a character set in `char_field` (see `text.rs`).
fn substring(bigram_field: Field, char_field: Field, keyword: &str) -> Box<dyn Query> {
    let grams = bigrams(keyword);
    match grams.as_slice() {
        [] => Box::new(TermQuery::new(
            Term::from_field_text(char_field, keyword),
            IndexRecordOption::Basic,
        )),
        [one] => term(Term::from_field_text(bigram_field, one)),
        _ => {
            // Every other bigram covers the keyword (plus the last one when the length is odd):
            // bigram k at position p + k means characters k and k + 1 are there, so the phrase
            // of these still occurs exactly where the keyword does, with about half the terms
            // to intersect.
            let last = grams.len() - 1;
            let mut offsets: Vec<usize> = (0..=last).step_by(2).collect();
            if offsets.last() != Some(&last) {
                offsets.push(last);
            }
            let terms = offsets
                .into_iter()
                .map(|k| (k, Term::from_field_text(bigram_field, &grams[k])))
                .collect();
            Box::new(PhraseQuery::new_with_offset(terms))
        }
    }
}

/// Where `keyword` occurs as a substring of a field indexed as single characters with
/// positions: the phrase of its characters.
fn sequence(field: Field, keyword: &str) -> Box<dyn Query> {
    let terms: Vec<Term> = keyword
        .chars()
        .map(|c| Term::from_field_text(field, c.encode_utf8(&mut [0; 4])))
        .collect();
    if terms.len() == 1 {
        Box::new(TermQuery::new(
            terms.into_iter().next().expect("one term"),
            IndexRecordOption::Basic,
        ))
    } else {
        Box::new(PhraseQuery::new(terms))
    }
}

/// A sort key: larger sorts first. The last two words are the posting id, inverted, so that
/// ties break on the id ascending and every key is unique within a scope (R-SRCH-4, stable
/// paging).
type Key = [u64; 4];

fn score_bits(key: Key) -> u32 {
    u32::try_from(key[0]).unwrap_or(0)
}

/// Counts every match and keeps the `k` best by the order's key.
struct TopKeys {
    k: usize,
    order: SortOrder,
}

struct SegmentTop {
    k: usize,
    order: SortOrder,
    segment: SegmentOrdinal,
    updated: Arc<dyn ColumnValues<u64>>,
    end: Arc<dyn ColumnValues<u64>>,
    id_high: Arc<dyn ColumnValues<u64>>,
    id_low: Arc<dyn ColumnValues<u64>>,
    count: u64,
    /// The best `k` so far, worst on top.
    heap: BinaryHeap<Reverse<(Key, DocId)>>,
}

impl Collector for TopKeys {
    type Fruit = (u64, Vec<(Key, DocAddress)>);
    type Child = SegmentTop;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentTop> {
        let fast = reader.fast_fields();
        Ok(SegmentTop {
            k: self.k,
            order: self.order,
            segment,
            updated: fast.column_first_or_default(UPDATED_AT)?,
            end: fast.column_first_or_default(RECRUITMENT_END)?,
            id_high: fast.column_first_or_default(ID_HIGH)?,
            id_low: fast.column_first_or_default(ID_LOW)?,
            count: 0,
            heap: BinaryHeap::with_capacity(self.k.min(MAX_RESULTS) + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.order == SortOrder::Relevance
    }

    fn merge_fruits(
        &self,
        fruits: Vec<(u64, Vec<(Key, DocAddress)>)>,
    ) -> tantivy::Result<Self::Fruit> {
        let total = fruits.iter().map(|(count, _)| count).sum();
        let mut top: Vec<(Key, DocAddress)> = fruits.into_iter().flat_map(|(_, t)| t).collect();
        top.sort_unstable_by_key(|(key, _)| Reverse(*key));
        top.truncate(self.k);
        Ok((total, top))
    }
}

impl SegmentTop {
    fn key(&self, doc: DocId, score: Score) -> Key {
        let updated = self.updated.get_val(doc);
        let (first, second) = match self.order {
            // R-SRCH-4: most recently updated first.
            SortOrder::RecentlyUpdated => (updated, 0),
            // R-SRCH-4: latest recruitment end first (postings without one last), then newest.
            SortOrder::RecruitmentEnd => (self.end.get_val(doc), updated),
            // BM25 scores are never negative, so their bits order like the scores.
            SortOrder::Relevance => (u64::from(score.max(0.0).to_bits()), updated),
        };
        [
            first,
            second,
            !self.id_high.get_val(doc),
            !self.id_low.get_val(doc),
        ]
    }

    fn offer(&mut self, doc: DocId, score: Score) {
        self.count += 1;
        if self.k == 0 {
            return;
        }
        if self.heap.len() == self.k {
            let key = self.key(doc, score);
            if let Some(mut worst) = self.heap.peek_mut()
                && key > worst.0.0
            {
                *worst = Reverse((key, doc));
            }
        } else {
            let key = self.key(doc, score);
            self.heap.push(Reverse((key, doc)));
        }
    }
}

impl SegmentCollector for SegmentTop {
    type Fruit = (u64, Vec<(Key, DocAddress)>);

    fn collect(&mut self, doc: DocId, score: Score) {
        self.offer(doc, score);
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        for &doc in docs {
            self.offer(doc, 0.0);
        }
    }

    fn harvest(self) -> Self::Fruit {
        let segment = self.segment;
        let top = self
            .heap
            .into_iter()
            .map(|Reverse((key, doc))| (key, DocAddress::new(segment, doc)))
            .collect();
        (self.count, top)
    }
}
