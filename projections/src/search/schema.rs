//! The index's schema, the per-posting state it stores, and the documents a posting becomes.
//!
//! A posting is indexed as one document per audience whose content differs: the employer's
//! document (its latest `content()`, every state; agencies search it too) and, while it is on
//! public search, the public document (`public_content()`). Both contents are almost always the
//! same, and then one document carries both audiences. Every document of a posting stores the
//! posting's state (the domain's own `Posting` fold, its stream version, the last event's time and
//! its agencies), so the next event is applied without reading the stream again, and that state
//! commits atomically with the checkpoint. A document without an audience holds the state of a
//! posting the hook named before its first event.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use jobboard_domain::Posting;
use jobboard_domain::posting::{OrganisationId, PostingContent, PostingId};
use serde::{Deserialize, Serialize};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::{TantivyDocument, Term};

use super::error::IndexError;
use super::text::{BIGRAMS, CHAR_SET, UNIGRAMS, normalize};

/// Audience values.
pub(super) const PUBLIC: &str = "public";
pub(super) const OWNER: &str = "owner";

/// The fields of the index, resolved by name from its schema. The collector reads the fast ones
/// by name ([`UPDATED_AT`], [`RECRUITMENT_END`], [`ID_HIGH`], [`ID_LOW`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Fields {
    pub(super) posting_id: Field,
    pub(super) audience: Field,
    pub(super) organisation: Field,
    pub(super) agency: Field,
    pub(super) status: Field,
    pub(super) language: Field,
    pub(super) institution: Field,
    pub(super) employment: Field,
    pub(super) web_application: Field,
    pub(super) recruitment_end: Field,
    pub(super) updated_at: Field,
    pub(super) id_high: Field,
    pub(super) id_low: Field,
    pub(super) text: Field,
    pub(super) chars: Field,
    pub(super) name_text: Field,
    pub(super) name_chars: Field,
    pub(super) location: Field,
    pub(super) state: Field,
}

/// Names of the fast (columnar) fields.
pub(super) const UPDATED_AT: &str = "updated_at";
pub(super) const RECRUITMENT_END: &str = "recruitment_end";
pub(super) const ID_HIGH: &str = "id_high";
pub(super) const ID_LOW: &str = "id_low";

/// The schema of the current version.
pub(super) fn schema() -> Schema {
    let mut b = Schema::builder();
    let text = |tokenizer: &str, record: IndexRecordOption, fieldnorms: bool| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer)
                .set_index_option(record)
                .set_fieldnorms(fieldnorms),
        )
    };
    b.add_text_field("posting_id", STRING);
    b.add_text_field("audience", STRING);
    b.add_text_field("organisation", STRING);
    b.add_text_field("agency", STRING);
    b.add_text_field("status", STRING);
    b.add_text_field("language", STRING);
    b.add_text_field("institution", STRING);
    b.add_text_field("employment", STRING);
    b.add_bool_field("web_application", INDEXED);
    b.add_u64_field(RECRUITMENT_END, INDEXED | FAST);
    b.add_u64_field(UPDATED_AT, FAST);
    b.add_u64_field(ID_HIGH, FAST);
    b.add_u64_field(ID_LOW, FAST);
    // Positions make phrases of bigrams exact substrings; frequencies and norms feed BM25.
    let positions = IndexRecordOption::WithFreqsAndPositions;
    b.add_text_field("text", text(BIGRAMS, positions, true));
    b.add_text_field("chars", text(CHAR_SET, IndexRecordOption::Basic, false));
    b.add_text_field("name_text", text(BIGRAMS, positions, true));
    b.add_text_field(
        "name_chars",
        text(CHAR_SET, IndexRecordOption::Basic, false),
    );
    b.add_text_field("location", text(UNIGRAMS, positions, false));
    b.add_bytes_field("state", STORED);
    b.build()
}

impl Fields {
    /// Resolves the fields in `schema`; fails if one is missing.
    pub(super) fn resolve(schema: &Schema) -> Result<Self, IndexError> {
        let f = |name: &str| schema.get_field(name).map_err(IndexError::from);
        Ok(Self {
            posting_id: f("posting_id")?,
            audience: f("audience")?,
            organisation: f("organisation")?,
            agency: f("agency")?,
            status: f("status")?,
            language: f("language")?,
            institution: f("institution")?,
            employment: f("employment")?,
            web_application: f("web_application")?,
            recruitment_end: f(RECRUITMENT_END)?,
            updated_at: f(UPDATED_AT)?,
            id_high: f(ID_HIGH)?,
            id_low: f(ID_LOW)?,
            text: f("text")?,
            chars: f("chars")?,
            name_text: f("name_text")?,
            name_chars: f("name_chars")?,
            location: f("location")?,
            state: f("state")?,
        })
    }

    /// The term that finds every document of a posting.
    pub(super) fn posting_term(&self, id: PostingId) -> Term {
        Term::from_field_text(self.posting_id, &id.to_string())
    }
}

/// What the index keeps of a posting between events: enough to apply the next one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct PostingState {
    /// The posting (also for a posting the hook named before its first event).
    pub(super) posting_id: PostingId,
    /// The version of the posting's stream the state reflects; an event at or below it is
    /// already applied.
    pub(super) version: u64,
    /// When the log recorded the posting's last event.
    pub(super) updated_at: Option<DateTime<Utc>>,
    /// The domain's fold of the posting's events.
    pub(super) posting: Posting,
    /// The agencies that may refer to it (R-SRCH-5), from the hook.
    pub(super) agencies: BTreeSet<OrganisationId>,
}

impl PostingState {
    /// A posting the index has not seen.
    pub(super) fn new(posting_id: PostingId) -> Self {
        Self {
            posting_id,
            version: 0,
            updated_at: None,
            posting: Posting::default(),
            agencies: BTreeSet::new(),
        }
    }

    /// Decodes the stored form.
    pub(super) fn decode(bytes: &[u8]) -> Result<Self, IndexError> {
        serde_json::from_slice(bytes).map_err(IndexError::State)
    }

    /// The documents that index this posting; see the module documentation.
    pub(super) fn documents(&self, fields: &Fields) -> Result<Vec<TantivyDocument>, IndexError> {
        // JSON because the domain's serde form is what it keeps readable (cqrs-es snapshots
        // store the same form, ADR 0005); compact binary formats do not support its
        // skip-if-empty fields.
        let stored = serde_json::to_vec(self).map_err(IndexError::State)?;
        let owner = self.posting.content();
        let public = self.posting.public_content();
        let docs = match (owner, public) {
            (None, _) => vec![self.document(fields, &stored, &[], None)],
            (Some(owner), Some(public)) if owner == public => {
                vec![self.document(fields, &stored, &[OWNER, PUBLIC], Some(owner))]
            }
            (Some(owner), Some(public)) => vec![
                self.document(fields, &stored, &[OWNER], Some(owner)),
                self.document(fields, &stored, &[PUBLIC], Some(public)),
            ],
            (Some(owner), None) => vec![self.document(fields, &stored, &[OWNER], Some(owner))],
        };
        Ok(docs)
    }

    fn document(
        &self,
        f: &Fields,
        stored: &[u8],
        audiences: &[&str],
        content: Option<&PostingContent>,
    ) -> TantivyDocument {
        let mut doc = TantivyDocument::new();
        let id = self.posting_id.as_uuid().as_u64_pair();
        doc.add_text(f.posting_id, self.posting_id.to_string());
        doc.add_u64(f.id_high, id.0);
        doc.add_u64(f.id_low, id.1);
        doc.add_u64(f.updated_at, sort_micros(self.updated_at));
        doc.add_bytes(f.state, stored);
        for audience in audiences {
            doc.add_text(f.audience, audience);
        }
        let Some(content) = content else {
            return doc;
        };
        // Agencies search the employer's content (the hook decides which postings they see).
        if audiences.contains(&OWNER) {
            for agency in &self.agencies {
                doc.add_text(f.agency, agency.to_string());
            }
        }
        let posting = &self.posting;
        if let Some(organisation) = posting.organisation_id() {
            doc.add_text(f.organisation, organisation.to_string());
        }
        if let Some(status) = posting.status() {
            doc.add_text(f.status, status.as_str());
        }
        if let Some(language) = posting.language() {
            doc.add_text(f.language, language.as_str());
        }
        if let Some(institution) = content.institution_type {
            doc.add_text(f.institution, institution.as_str());
        }
        if let Some(employment) = content.employment_type {
            doc.add_text(f.employment, employment.as_str());
        }
        doc.add_bool(f.web_application, content.web_application);
        if let Some(period) = content.recruitment_period {
            doc.add_u64(f.recruitment_end, day_number(period.end));
        }
        // R-SRCH-1: title, free text, additional item titles and details; each value apart, so
        // no phrase runs from one into the next.
        let mut all = String::new();
        let mut add = |value: &str| {
            let value = normalize(value);
            all.push_str(&value);
            all.push('\n');
            doc.add_text(f.text, value);
        };
        add(&content.title);
        add(&content.description);
        for item in &content.additional_items {
            add(&item.title);
            add(&item.detail);
        }
        doc.add_text(f.chars, all);
        // The internal name (R-POST-1) in fields of its own: only the employer's search reads it.
        let name = normalize(&content.name);
        doc.add_text(f.name_chars, &name);
        doc.add_text(f.name_text, name);
        doc.add_text(f.location, normalize(&content.location));
        doc
    }
}

/// The sort value of an update time: microseconds since the epoch (0 when unknown).
pub(super) fn sort_micros(at: Option<DateTime<Utc>>) -> u64 {
    at.and_then(|t| u64::try_from(t.timestamp_micros()).ok())
        .unwrap_or(0)
}

/// A date as the index keeps it: days since 0001-01-01 (common era), plus one so that 0 means
/// "no date" in sort keys.
pub(super) fn day_number(date: NaiveDate) -> u64 {
    u64::try_from(date.num_days_from_ce()).map_or(0, |d| d + 1)
}
