//! The projection runtime and the read models it keeps: checkpointed, rebuildable from the log.
