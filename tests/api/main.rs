//! Integration tests of the hub over HTTP, on SQLite by default and on PostgreSQL when
//! `KOMMUTATOR_TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, missing_debug_implementations, dead_code)]

mod acl;
mod acl_leaks;
mod auth_flow;
mod bad_input;
mod browser;
mod canned_responses;
mod concurrency;
mod connector_host;
mod console_bench;
mod console_restart;
mod console_ui;
mod console_widget;
mod custom_fields;
mod helpers;
mod ingest_batch;
mod input_regressions;
mod leads;
mod messages_paging;
mod multinode;
mod realtime_bot;
mod realtime_e2e;
mod realtime_resume;
mod realtime_routing;
mod realtime_widget;
mod smoke;
mod storage_story;
mod ws_bad_input;
mod ws_client;
