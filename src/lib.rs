//! s2s-guard: an edge authenticator for event-ingestion traffic, as a proxy-wasm
//! HTTP filter for Envoy and Istio.
//!
//! The folders show the architecture:
//! - `src/core/`: the pure core. No host calls; built natively (tests, the CLI)
//!   and for Wasm. The configuration (`config`: its types in `config/model.rs`,
//!   validation into the immutable [`policy::Policy`] in `config/compile.rs`, the
//!   presets as data in `config/presets.rs`); reading a request (`request`,
//!   `path`, `reading`); where a credential is extracted (`credential`); tokens
//!   (`token`, `store`); SDK signatures (`signature`) and their replay memory
//!   (`replay`); where a request is decided (`decision`); the token source's
//!   logic (`distribution`); the counters (`metrics`).
//! - `src/adapter/`: the proxy-wasm adapter, the only code that calls the host
//!   (`filter`: the HTTP and root contexts; `fetcher`: fetching and publishing
//!   token sets). Compiled for Wasm only.
//! - `cli/`: the operator tool `s2s-guard`, over the same core.

#[path = "core"]
mod pure_core {
    pub mod config;
    pub mod credential;
    pub mod decision;
    pub mod distribution;
    pub mod metrics;
    pub(crate) mod order;
    pub mod path;
    pub mod policy;
    pub mod reading;
    pub mod replay;
    pub mod request;
    pub mod signature;
    pub mod store;
    pub(crate) mod times;
    pub mod token;
}

pub use pure_core::{
    config, credential, decision, distribution, metrics, path, policy, reading, replay, request,
    signature, store, token,
};
pub(crate) use pure_core::{order, times};

#[cfg(target_arch = "wasm32")]
#[path = "adapter"]
mod adapter {
    pub mod fetcher;
    pub mod filter;
}

#[cfg(target_arch = "wasm32")]
use adapter::{fetcher, filter};

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(filter::Root::new())
    });
}}
