//! Browsers as clients, proved in a real headless Chromium driven over WebDriver (fantoccini and
//! chromedriver): a page on another origin that talks to the hub as the React apps written for Django
//! Channels do (`cross_origin`), and every view of the web console (`console_views`).
//!
//! Without `chromedriver` on PATH each test says it is skipped and passes, so `cargo test` needs only
//! Rust; `scripts/ci.sh` installs Chromium and sets `RTCTL_TEST_BROWSER=1`, which turns a missing
//! browser into a failure. `RTCTL_UPDATE_SCREENSHOTS=1` regenerates the console's pictures in
//! `docs/images/` (`screenshots`).

mod chrome;
mod console_views;
mod cross_origin;
mod screenshots;
