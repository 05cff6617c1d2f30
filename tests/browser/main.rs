//! Browser tests of the operator console in a real headless Chromium, driven over
//! chromedriver with fantoccini. They FAIL (never skip) when `chromium` or
//! `chromedriver` is missing: install Debian's `chromium` and `chromium-driver` packages.
//!
//! Screenshots of the pages are saved under `target/screenshots/` for reviewers.
//!
//! The bridge runs in this process (listeners on port 0, a real store in a temporary
//! folder): with RabbitMQ as its broker, under a unique prefix that the test deletes, for
//! the dead-letter test; with the embedded broker, the WeCom API stand-in and the finance
//! stand-in (the shipped expense mapping and finance connector) for the journey test.

#[path = "../it/support/mod.rs"]
mod support;
mod wecom_login;

mod dead_letters;
mod harness;
mod journey;
