//! Command handling: loads aggregates from the log, decides, appends; authorization, retries, timers.
