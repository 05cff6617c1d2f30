//! Route: approval lifecycle, enrichment from the WeCom API, and fan-out to one delivery job
//! per (event, mapping, connector).
//!
//! Not built yet (issue "Approval lifecycle, WeCom API enrichment, routing"); the broker
//! stage's consumer settles route messages until then.
