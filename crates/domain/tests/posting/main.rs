//! Given/when/then tests of the posting aggregate, one module per area; each test names the rule
//! it proves (`// R-POST-4`).

mod ending;
mod golden;
mod lifecycle;
mod modification;
mod publication;
mod support;
mod validation;
mod withdrawal;
