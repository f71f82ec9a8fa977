//! Kommutator: a real-time communications hub and CRM core.
//!
//! Inbound items from every channel become clients, leads, dialogs, messages, calls and
//! interactions in one store; operators work them through the REST API and the console.
//! Start reading at [`startup`] (how the process is assembled) and [`storage`] (the system
//! of record). ARCHITECTURE.md has the map.

pub mod assist;
pub mod auth;
pub mod bus;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod hub;
pub mod pipeline;
pub mod routing;
pub mod startup;
pub mod storage;
pub mod telemetry;
