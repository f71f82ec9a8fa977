//! Integration tests of the hub over HTTP, on SQLite by default and on PostgreSQL when
//! `KOMMUTATOR_TEST_DATABASE_URL` is set.
#![allow(clippy::unwrap_used, missing_debug_implementations, dead_code)]

mod acl;
mod acl_leaks;
mod ami_calls;
mod assist;
mod assist_bench;
mod assist_engines;
mod assist_refine;
mod auth_flow;
mod bad_input;
mod browser;
mod canned_responses;
mod channels_bench;
mod channels_core;
mod channels_e2e;
mod concurrency;
mod connector_host;
mod console_bench;
mod console_restart;
mod console_ui;
mod console_widget;
mod custom_fields;
mod email_channel;
mod fake_api;
mod helpers;
mod hep_calls;
mod ingest_batch;
mod input_regressions;
mod intake;
mod kb;
mod leads;
mod messages_paging;
mod multinode;
mod realtime_bot;
mod realtime_e2e;
mod realtime_resume;
mod realtime_routing;
mod realtime_widget;
mod ring_bench;
mod sip_rig;
mod smoke;
mod storage_story;
mod telephony;
mod ws_bad_input;
mod ws_client;
