//! Text for exact substring search: one normalisation for documents and queries, and the
//! tokenizers that cut normalised text into character n-grams (R-SRCH-1).
//!
//! Japanese is written without spaces, so a keyword must match wherever it occurs inside a word;
//! a dictionary tokenizer would miss matches that cross its word boundaries (and the good ones
//! download dictionaries at build time). Instead every value is indexed as overlapping character
//! bigrams, each at the position of its first character. A keyword of n ≥ 3 characters is the
//! phrase of its n − 1 bigrams at consecutive positions, which occurs exactly where the keyword
//! occurs as a substring: bigram k starts with character k + 1 of the text, so consecutive bigrams
//! spell out consecutive characters. Two characters are one bigram term. One character is looked
//! up in a second field that holds the set of characters of the document. Nothing is stemmed,
//! split into words or matched fuzzily.
//!
//! Keywords never contain white space (the query is split on it), so bigrams that contain white
//! space are not indexed; positions still count every character, so phrases stay exact.

use std::borrow::Cow;
use std::str::CharIndices;

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// Tokenizer name of [`Bigrams`].
pub(super) const BIGRAMS: &str = "jobboard_bigrams";
/// Tokenizer name of [`CharSet`].
pub(super) const CHAR_SET: &str = "jobboard_char_set";
/// Tokenizer name of [`Unigrams`].
pub(super) const UNIGRAMS: &str = "jobboard_unigrams";

/// Folds `text` into the form both documents and queries are indexed and searched in: NFKC
/// (full-width Latin letters and digits become ASCII, half-width katakana become full-width,
/// the ideographic space becomes a space), then lower case, character by character so that the
/// same character always folds the same way wherever it stands.
///
/// Matches are exact on this form: `Ｒｕｓｔ`, `RUST` and `rust` are one keyword.
pub(super) fn normalize(text: &str) -> Cow<'_, str> {
    // Most text is already NFKC (all ASCII is); the quick check avoids rebuilding it.
    let nfkc: Cow<'_, str> = if text.is_ascii() || is_nfkc_quick(text.chars()) == IsNormalized::Yes
    {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.nfkc().collect())
    };
    if nfkc.chars().all(is_lower) {
        return nfkc;
    }
    let mut folded = String::with_capacity(nfkc.len());
    for c in nfkc.chars() {
        folded.extend(c.to_lowercase());
    }
    Cow::Owned(folded)
}

/// Whether lower-casing leaves `c` as it is.
fn is_lower(c: char) -> bool {
    if c.is_ascii() {
        return !c.is_ascii_uppercase();
    }
    let mut lower = c.to_lowercase();
    lower.next() == Some(c) && lower.next().is_none()
}

/// The keywords of a normalised query: its white-space separated parts.
pub(super) fn keywords(normalized: &str) -> impl Iterator<Item = &str> {
    normalized.split_whitespace()
}

/// The overlapping character bigrams of `keyword` (which holds no white space), in order; empty
/// for a keyword of one character.
pub(super) fn bigrams(keyword: &str) -> Vec<String> {
    let chars: Vec<char> = keyword.chars().collect();
    chars.windows(2).map(|w| w.iter().collect()).collect()
}

/// Cuts normalised text into overlapping character bigrams, each at the position (in
/// characters) of its first character; bigrams that hold white space are left out.
#[derive(Clone, Debug, Default)]
pub(super) struct Bigrams {
    token: Token,
}

impl Tokenizer for Bigrams {
    type TokenStream<'a> = BigramStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> BigramStream<'a> {
        self.token.reset();
        BigramStream {
            chars: text.char_indices(),
            previous: None,
            position: 0,
            token: &mut self.token,
        }
    }
}

pub(super) struct BigramStream<'a> {
    chars: CharIndices<'a>,
    /// The last character read: its byte offset, itself and its position.
    previous: Option<(usize, char, usize)>,
    /// The position of the next character.
    position: usize,
    token: &'a mut Token,
}

impl TokenStream for BigramStream<'_> {
    fn advance(&mut self) -> bool {
        for (offset, c) in self.chars.by_ref() {
            let position = self.position;
            self.position += 1;
            let previous = self.previous.replace((offset, c, position));
            let Some((from, first, first_position)) = previous else {
                continue;
            };
            if first.is_whitespace() || c.is_whitespace() {
                continue;
            }
            self.token.text.clear();
            self.token.text.push(first);
            self.token.text.push(c);
            self.token.offset_from = from;
            self.token.offset_to = offset + c.len_utf8();
            self.token.position = first_position;
            return true;
        }
        false
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

/// Emits each distinct character of normalised text once (white space left out): the index of
/// one-character keywords. One token per distinct character, not per occurrence, keeps this
/// field a small fraction of the indexing work.
#[derive(Clone, Debug, Default)]
pub(super) struct CharSet {
    chars: Vec<char>,
    token: Token,
}

impl Tokenizer for CharSet {
    type TokenStream<'a> = CharSetStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CharSetStream<'a> {
        self.token.reset();
        self.chars.clear();
        self.chars
            .extend(text.chars().filter(|c| !c.is_whitespace()));
        self.chars.sort_unstable();
        self.chars.dedup();
        CharSetStream {
            chars: self.chars.iter(),
            token: &mut self.token,
        }
    }
}

pub(super) struct CharSetStream<'a> {
    chars: std::slice::Iter<'a, char>,
    token: &'a mut Token,
}

impl TokenStream for CharSetStream<'_> {
    fn advance(&mut self) -> bool {
        let Some(&c) = self.chars.next() else {
            return false;
        };
        self.token.text.clear();
        self.token.text.push(c);
        self.token.position = 0;
        true
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

/// Emits every character of normalised text at its position (white space left out): the index
/// of short fields searched by substring, such as the location, where one- and two-character
/// keywords are common and the field is too short for bigrams to pay off.
#[derive(Clone, Debug, Default)]
pub(super) struct Unigrams {
    token: Token,
}

impl Tokenizer for Unigrams {
    type TokenStream<'a> = UnigramStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> UnigramStream<'a> {
        self.token.reset();
        UnigramStream {
            chars: text.char_indices(),
            position: 0,
            token: &mut self.token,
        }
    }
}

pub(super) struct UnigramStream<'a> {
    chars: CharIndices<'a>,
    position: usize,
    token: &'a mut Token,
}

impl TokenStream for UnigramStream<'_> {
    fn advance(&mut self) -> bool {
        for (offset, c) in self.chars.by_ref() {
            let position = self.position;
            self.position += 1;
            if c.is_whitespace() {
                continue;
            }
            self.token.text.clear();
            self.token.text.push(c);
            self.token.offset_from = offset;
            self.token.offset_to = offset + c.len_utf8();
            self.token.position = position;
            return true;
        }
        false
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens<T: Tokenizer>(mut tokenizer: T, text: &str) -> Vec<(String, usize)> {
        let mut stream = tokenizer.token_stream(text);
        let mut out = Vec::new();
        while let Some(token) = stream.next() {
            out.push((token.text.clone(), token.position));
        }
        out
    }

    #[test]
    fn normalisation_folds_width_and_case() {
        assert_eq!(normalize("Ｒｕｓｔ　エンジニア"), "rust エンジニア");
        assert_eq!(normalize("ｴﾝｼﾞﾆｱ"), "エンジニア");
        assert_eq!(normalize("Machine LEARNING"), "machine learning");
        assert!(matches!(normalize("研究員 rust"), Cow::Borrowed(_)));
    }

    #[test]
    fn bigrams_sit_at_the_position_of_their_first_character() {
        assert_eq!(
            tokens(Bigrams::default(), "東京 ab"),
            [("東京".to_owned(), 0), ("ab".to_owned(), 3)]
        );
        assert!(tokens(Bigrams::default(), "a").is_empty());
        assert_eq!(bigrams("研究員"), ["研究", "究員"]);
        assert!(bigrams("研").is_empty());
    }

    #[test]
    fn the_character_set_holds_each_character_once() {
        let set: Vec<String> = tokens(CharSet::default(), "abca b")
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(set, ["a", "b", "c"]);
    }

    #[test]
    fn unigrams_keep_positions_across_spaces() {
        assert_eq!(
            tokens(Unigrams::default(), "東 京"),
            [("東".to_owned(), 0), ("京".to_owned(), 2)]
        );
    }
}
