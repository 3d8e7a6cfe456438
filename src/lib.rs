//! s2s-guard: an edge authenticator for event-ingestion traffic, as a proxy-wasm
//! HTTP filter for Envoy and Istio.
//!
//! A pure core (configuration, credentials, tokens, decision) under a thin
//! proxy-wasm adapter (`filter`, compiled for Wasm only).

pub mod config;
pub mod credential;
pub mod decision;
pub mod distribution;
pub mod metrics;
pub mod path;
pub mod policy;
pub mod reading;
pub mod replay;
pub mod request;
pub mod signature;
pub mod store;
pub mod token;

#[cfg(target_arch = "wasm32")]
mod fetcher;
#[cfg(target_arch = "wasm32")]
mod filter;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(filter::Root::new())
    });
}}
