//! A proxy-wasm (ABI 0.2.1) host on wasmtime that behaves as Envoy does, for testing
//! s2s-guard through its compiled `.wasm`.
//!
//! What it models (each point follows Envoy's semantics, see FACTS.md §5):
//! - one VM instance per worker, N workers of one module, sharing shared data
//!   (with compare-and-swap) and shared queues;
//! - the VM and plugin lifecycle (`_initialize`, `proxy_on_vm_start`,
//!   `proxy_on_configure` whose `false` rejects the configuration, `proxy_on_done`,
//!   `proxy_on_delete`);
//! - HTTP streams: header/body/trailer callbacks with `end_of_stream`, framed as the
//!   downstream codec frames them ([`Protocol`]): over HTTP/1.1 the body arrives in
//!   chunks with `end_of_stream` false and the end of the request as one more, empty,
//!   body callback with `end_of_stream` true, and request trailers are dropped by the
//!   codec (Envoy's default `enable_trailers: false`); over HTTP/2 the last DATA frame
//!   carries `end_of_stream` unless trailers follow, which are then delivered to
//!   `proxy_on_request_trailers`;
//! - a pause in the request headers holds the body and the trailers back until
//!   `proxy_continue_stream` (`StopAllIterationAndWatermark`); a pause in the body
//!   buffers it, up to the connection buffer limit, beyond which Envoy answers 413,
//!   and later body and trailer callbacks still reach the filter, which sees (and
//!   may replace) the whole buffered body; a pause in the trailers holds the buffered
//!   body and the trailers until `proxy_continue_stream` or a local reply; request
//!   headers are no longer accessible once they were continued (a `BadArgument`, on
//!   which the Rust SDK panics, as it does in Envoy; the pairs call answers an empty
//!   map, as Envoy's does); docs/envoy-model-notes.md has the Envoy sources behind
//!   these rules;
//! - local replies, followed by the filter's own response callbacks;
//! - `proxy_http_call` to named clusters served by test handlers, with delays,
//!   resets and timeouts; ticks and time from a virtual clock;
//! - metrics under the names Envoy shows (`wasmcustom.<name>`), logs per level;
//! - the WASI calls a `wasm32-wasip1` module imports;
//! - bounds checks on every guest pointer; a trap fails the worker closed, so later
//!   requests on it get Envoy's 503.

mod abi;
pub mod lines;
pub mod pairs;
pub mod prom;
pub mod serve;
pub mod soak;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use wasmtime::{Engine, Instance, Linker, Module, Store, TypedFunc};

pub use pairs::Headers;

/// Log levels, as the proxy-wasm ABI numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

impl LogLevel {
    fn from_u32(v: u32) -> Option<LogLevel> {
        Some(match v {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }
    }
}

/// One line the guest logged (or the host logged about the guest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub worker: usize,
    pub level: LogLevel,
    pub message: String,
}

/// How the host is set up.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Number of worker VMs (Envoy runs one per worker thread).
    pub workers: usize,
    /// Plugin configuration handed to `proxy_on_configure`.
    pub plugin_config: Vec<u8>,
    /// VM configuration handed to `proxy_on_vm_start`.
    pub vm_config: Vec<u8>,
    pub plugin_name: String,
    pub root_id: String,
    pub vm_id: String,
    /// The level `proxy_get_log_level` reports; all logged lines are captured.
    pub log_level: LogLevel,
    /// Envoy's per-connection buffer limit: a body buffered beyond it gets a 413.
    pub request_body_limit: usize,
    /// Virtual clock at start, nanoseconds since the Unix epoch.
    pub start_time_ns: u64,
    pub route_name: String,
    pub cluster_name: String,
    /// Envoy `fail_open`: after a trap the filter is skipped instead of answering 503.
    pub fail_open: bool,
    /// Envoy's `PluginConfig.allow_on_headers_stop_iteration`: a pause in the
    /// request headers is a plain StopIteration (the body still reaches the filter,
    /// the headers stay writable) instead of StopAllIterationAndWatermark.
    pub allow_on_headers_stop_iteration: bool,
    /// Clusters that exist from the start (as in an Envoy bootstrap), so calls made
    /// during start-up reach them; serve them with [`Host::set_cluster`].
    pub clusters: Vec<String>,
    /// Shared data with strict compare-and-swap, as Kong's ngx_wasm_module has it
    /// (a missing key's CAS is 0: a write with another CAS is not made, and a write
    /// with 0 only creates), instead of Envoy's (a CAS only guards an existing key;
    /// 0 writes whatever is there).
    pub strict_cas: bool,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            workers: 1,
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            plugin_name: "s2s-guard".into(),
            root_id: "s2s-guard".into(),
            vm_id: "s2s-guard".into(),
            log_level: LogLevel::Info,
            request_body_limit: 1024 * 1024,
            // 2026-01-01T00:00:00Z
            start_time_ns: 1_767_225_600_000_000_000,
            route_name: "collector".into(),
            cluster_name: "collector".into(),
            fail_open: false,
            allow_on_headers_stop_iteration: false,
            clusters: Vec::new(),
            strict_cas: false,
        }
    }
}

/// The protocol a downstream client speaks to Envoy; it decides how the request's
/// body and trailers reach the filter (see docs/envoy-model-notes.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Protocol {
    /// Envoy's HTTP/1 codec with its defaults: each body chunk is a body callback
    /// with `end_of_stream` false, the end of the request one more empty body
    /// callback with `end_of_stream` true; trailers are dropped by the codec
    /// (`Http1ProtocolOptions.enable_trailers` is false by default).
    #[default]
    Http11,
    /// Envoy's HTTP/2 codec: each chunk is a DATA frame, the last one carries
    /// `end_of_stream` unless trailers follow; trailers reach
    /// `proxy_on_request_trailers` and go upstream.
    Http2,
}

impl Protocol {
    /// The name Envoy gives it (the `request.protocol` attribute).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http11 => "HTTP/1.1",
            Protocol::Http2 => "HTTP/2",
        }
    }
}

/// An HTTP request from a downstream client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path with query, as sent on the request line.
    pub path: String,
    pub authority: String,
    pub scheme: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    /// Trailers the client sends; over HTTP/1.1 Envoy's codec drops them.
    pub trailers: Headers,
    /// Deliver the body in chunks of this size (the whole body at once if `None`):
    /// HTTP/2 DATA frames, or what one read of an HTTP/1.1 connection brings.
    pub chunk_size: Option<usize>,
    pub source_address: String,
    pub mtls: bool,
    /// The downstream protocol (HTTP/1.1 unless set).
    pub protocol: Protocol,
    /// Model a host that never reports the end of the stream with the headers
    /// (nginx's ngx_wasm_module): `end_of_stream` is false in the headers
    /// callback, and one empty body callback with `end_of_stream` true follows
    /// when the request has no body.
    pub headers_never_end_stream: bool,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            authority: "collector.example.com".into(),
            scheme: "https".into(),
            headers: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
            chunk_size: None,
            source_address: "203.0.113.7:41234".into(),
            mtls: false,
            protocol: Protocol::Http11,
            headers_never_end_stream: false,
        }
    }

    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    pub fn post(path: &str) -> Request {
        Request::new("POST", path)
    }

    /// Adds a header (name lower-cased, as Envoy's codecs present them).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    /// Sets `:authority` (the Host), `collector.example.com` by default.
    pub fn authority(mut self, authority: &str) -> Request {
        self.authority = authority.to_string();
        self
    }

    pub fn body(mut self, body: impl AsRef<[u8]>) -> Request {
        self.body = body.as_ref().to_vec();
        self
    }

    pub fn trailer(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.trailers
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    pub fn chunked(mut self, size: usize) -> Request {
        self.chunk_size = Some(size.max(1));
        self
    }

    /// Sends the request over HTTP/2 (trailers reach the filter and the upstream).
    pub fn http2(mut self) -> Request {
        self.protocol = Protocol::Http2;
        self
    }

    /// The trailers that reach Envoy's filter chain: none over HTTP/1.1, whose codec
    /// drops them (`enable_trailers` is false by default).
    pub fn delivered_trailers(&self) -> Headers {
        match self.protocol {
            Protocol::Http11 => Vec::new(),
            Protocol::Http2 => self.trailers.clone(),
        }
    }

    /// The body and trailer frames the filter chain receives after the headers, in
    /// order, as Envoy's codec for [`Request::protocol`] raises them.
    fn frames(&self) -> VecDeque<Frame> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        if !self.body.is_empty() {
            match self.chunk_size {
                Some(n) => chunks.extend(self.body.chunks(n).map(|c| c.to_vec())),
                None => chunks.push(self.body.clone()),
            }
        }
        let mut frames = VecDeque::new();
        match self.protocol {
            Protocol::Http11 => {
                // ServerConnectionImpl::onBody: decodeData(data, false) per read;
                // onMessageCompleteBase: decodeData(empty, true). Trailers are ignored
                // by the parser (enable_trailers false).
                for c in chunks {
                    frames.push_back(Frame::Data {
                        bytes: c,
                        eos: false,
                    });
                }
                if !self.headers_end_stream() {
                    frames.push_back(Frame::Data {
                        bytes: Vec::new(),
                        eos: true,
                    });
                }
            }
            Protocol::Http2 => {
                // DATA frames: decodeData(data, END_STREAM); trailers: decodeTrailers.
                let n = chunks.len();
                for (i, c) in chunks.into_iter().enumerate() {
                    frames.push_back(Frame::Data {
                        bytes: c,
                        eos: i + 1 == n && self.trailers.is_empty(),
                    });
                }
                if !self.trailers.is_empty() {
                    frames.push_back(Frame::Trailers(self.trailers.clone()));
                }
                if n == 0 && self.trailers.is_empty() && self.headers_never_end_stream {
                    frames.push_back(Frame::Data {
                        bytes: Vec::new(),
                        eos: true,
                    });
                }
            }
        }
        frames
    }

    /// Whether the request headers end the stream (no body, no trailers; over
    /// HTTP/1.1 trailers need chunked framing, so a body follows).
    fn headers_end_stream(&self) -> bool {
        self.body.is_empty() && self.trailers.is_empty() && !self.headers_never_end_stream
    }

    /// The header map Envoy hands the filter: pseudo-headers first, then the request's
    /// headers. Envoy's "inline" request headers (Authorization among them) are
    /// coalesced into one comma-joined value when a client repeats them.
    pub fn envoy_headers(&self) -> Headers {
        let mut map: Headers = vec![
            (":authority".into(), self.authority.clone().into_bytes()),
            (":path".into(), self.path.clone().into_bytes()),
            (":method".into(), self.method.clone().into_bytes()),
            (":scheme".into(), self.scheme.clone().into_bytes()),
        ];
        for (k, v) in &self.headers {
            if INLINE_REQUEST_HEADERS.contains(&k.as_str()) {
                if let Some((_, existing)) = map.iter_mut().find(|(name, _)| name == k) {
                    existing.push(b',');
                    existing.extend_from_slice(v);
                    continue;
                }
            }
            map.push((k.clone(), v.clone()));
        }
        if !self.body.is_empty() && !map.iter().any(|(k, _)| k == "content-length") {
            map.push((
                "content-length".into(),
                self.body.len().to_string().into_bytes(),
            ));
        }
        map
    }
}

/// Request headers Envoy stores inline and coalesces with `,` when repeated.
pub const INLINE_REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "user-agent",
    "x-forwarded-for",
    "x-request-id",
    "te",
    "via",
];

/// What reached the upstream (the collector), after the filter's changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Upstream {
    pub headers: Headers,
    pub body: Vec<u8>,
    pub trailers: Headers,
}

impl Upstream {
    /// First value of a header, if present.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header_value(&self.headers, name)
    }
}

/// The upstream's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamResponse {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// How a stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The filter let the request through to the upstream.
    Forwarded,
    /// A local reply (by the filter, or by the host acting as Envoy: 413, fail-closed 503).
    Local { details: String },
    /// The stream is still paused, waiting for something (an http call, a continue).
    Pending,
}

/// What the client saw, and what the upstream saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub status: u16,
    pub response_headers: Headers,
    pub response_body: Vec<u8>,
    pub upstream: Option<Upstream>,
    /// Request headers that reached the upstream before the stream ended without
    /// being forwarded (a local reply or a fail-closed 503): Envoy sends headers on
    /// once the filter continues them, and a later local reply resets the upstream
    /// request, which never gets its body. What a collector acting before the body
    /// has seen.
    pub early_upstream: Option<Headers>,
}

impl Outcome {
    pub fn response_header(&self, name: &str) -> Option<&[u8]> {
        header_value(&self.response_headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.response_body).into_owned()
    }

    pub fn is_local(&self) -> bool {
        matches!(self.verdict, Verdict::Local { .. })
    }
}

/// First value of `name` in a header map.
pub fn header_value<'a>(headers: &'a Headers, name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// An outgoing `proxy_http_call`, as the cluster handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    pub cluster: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
    pub worker: usize,
    /// Virtual time the call was made, nanoseconds.
    pub at_ns: u64,
}

/// How a cluster answers a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallReply {
    /// A response, delivered after `delay_ms` of virtual time.
    Response {
        status: u16,
        headers: Headers,
        body: Vec<u8>,
        delay_ms: u64,
    },
    /// The connection is reset after `delay_ms`: delivered with no headers and no body.
    Reset { delay_ms: u64 },
    /// Never answers: at the call's timeout Envoy delivers a 504.
    Hang,
}

impl CallReply {
    pub fn ok(status: u16, body: impl AsRef<[u8]>) -> CallReply {
        CallReply::Response {
            status,
            headers: Vec::new(),
            body: body.as_ref().to_vec(),
            delay_ms: 0,
        }
    }
}

type CallHandler = Box<dyn FnMut(&CallRequest) -> CallReply + Send>;
type UpstreamHandler = Box<dyn FnMut(&Request, &Upstream) -> UpstreamResponse + Send>;

/// Errors the host reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The module could not be compiled or instantiated.
    Load(String),
    /// `proxy_on_vm_start` returned false.
    VmStartRejected { worker: usize },
    /// `proxy_on_configure` returned false: Envoy rejects this configuration.
    ConfigRejected { worker: usize, logs: Vec<String> },
    /// The guest trapped, or misused a host call, during start-up.
    Trap { worker: usize, message: String },
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::Load(m) => write!(f, "cannot load the module: {m}"),
            HostError::VmStartRejected { worker } => {
                write!(f, "worker {worker}: proxy_on_vm_start returned false")
            }
            HostError::ConfigRejected { worker, logs } => write!(
                f,
                "worker {worker}: the plugin configuration was rejected: {}",
                logs.join(" | ")
            ),
            HostError::Trap { worker, message } => write!(f, "worker {worker}: trap: {message}"),
        }
    }
}

impl std::error::Error for HostError {}

/// A metric the guest defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    pub value: i64,
    /// Recorded values, for histograms.
    pub samples: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

struct Queue {
    vm_id: String,
    name: String,
    owner_worker: usize,
    owner_context: u32,
    items: VecDeque<Vec<u8>>,
}

/// State shared by all workers of one host (Envoy's process-wide state).
#[derive(Default)]
pub(crate) struct Shared {
    clock_ns: u64,
    shared_data: HashMap<String, (Vec<u8>, u32)>,
    queues: Vec<Queue>,
    /// (worker, root context, queue id) waiting for `proxy_on_queue_ready`.
    queue_ready: VecDeque<(usize, u32, u32)>,
    metrics: Vec<Metric>,
    metric_ids: HashMap<String, u32>,
    logs: Vec<LogEntry>,
    random_state: u64,
    /// Cluster names `proxy_http_call` accepts.
    clusters: std::collections::HashSet<String>,
    /// The last CAS handed out (Envoy: a process-wide counter).
    next_cas: u32,
    /// ngx_wasm_module's strict compare-and-swap ([`HostOptions::strict_cas`]).
    pub(crate) strict_cas: bool,
    /// Writes made by "another worker" right after the next read of a key
    /// ([`Host::write_after_next_read`]).
    pub(crate) after_read: HashMap<String, Vec<u8>>,
}

/// Which part of a stream the guest is in; decides which maps and buffers exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    Other,
}

#[derive(Debug, Clone)]
pub(crate) struct LocalReply {
    status: u16,
    details: String,
    body: Vec<u8>,
    headers: Headers,
}

/// One HTTP stream in one worker.
pub(crate) struct Stream {
    request: Request,
    phase: Phase,
    request_headers: Headers,
    /// Set once the request headers were continued: later access is an error.
    request_headers_sent: bool,
    request_body: Vec<u8>,
    request_trailers: Headers,
    response_headers: Headers,
    response_body: Vec<u8>,
    response_trailers: Headers,
    local_reply: Option<LocalReply>,
    continue_requested: bool,
    /// The request headers were handed to the filter.
    headers_delivered: bool,
    /// Body and trailer frames not yet delivered to the filter.
    frames: VecDeque<Frame>,
    /// Paused in the request headers: body and trailers held back until continue.
    headers_paused: bool,
    /// Paused in the request headers with Envoy's `allow_on_headers_stop_iteration`:
    /// plain StopIteration, the body and trailers still reach the filter and the
    /// headers stay writable until the filter continues.
    headers_stopped: bool,
    /// Paused in the body (StopIterationAndBuffer): `request_body` holds the buffered
    /// body, which the filter may read and replace until it continues.
    body_paused: bool,
    /// Paused in the trailers (StopIteration): the buffered body and the trailers
    /// wait for `proxy_continue_stream` or a local reply.
    trailers_paused: bool,
    upstream: Upstream,
    outcome: Option<Outcome>,
}

/// What the downstream codec raises after the request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Frame {
    /// `decodeData(bytes, eos)`.
    Data { bytes: Vec<u8>, eos: bool },
    /// `decodeTrailers(trailers)` (ends the stream).
    Trailers(Headers),
}

struct PendingCall {
    token: u32,
    context: u32,
    due_ns: u64,
    status: Option<u16>,
    headers: Headers,
    body: Vec<u8>,
}

/// Per-worker state: what one Envoy worker thread keeps for its VM.
pub(crate) struct WorkerState {
    index: usize,
    shared: Arc<Mutex<Shared>>,
    opts: Arc<HostOptions>,
    root_context: u32,
    effective_context: u32,
    streams: HashMap<u32, Stream>,
    tick_period_ms: u32,
    next_tick_ns: Option<u64>,
    /// Calls waiting for their cluster handler (filled during a guest callback).
    new_calls: Vec<(u32, u32, CallRequest)>,
    pending_calls: Vec<PendingCall>,
    next_token: u32,
    /// The response being delivered by `proxy_on_http_call_response`.
    call_response: Option<(Headers, Vec<u8>)>,
    /// Host-call misuse by the guest (bad pointers, bad encodings), for tests to see.
    misuse: Vec<String>,
    in_configure: bool,
    in_vm_start: bool,
    done_requested: bool,
    /// The plugin configuration `proxy_on_configure` reads (changes on reconfigure).
    plugin_config: Vec<u8>,
}

impl WorkerState {
    pub(crate) fn shared(&self) -> MutexGuard<'_, Shared> {
        // A poisoned lock means a test thread panicked while holding it; the data is
        // still consistent for reading, so carry on.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Exports {
    on_context_create: TypedFunc<(i32, i32), ()>,
    on_vm_start: TypedFunc<(i32, i32), i32>,
    on_configure: TypedFunc<(i32, i32), i32>,
    on_tick: TypedFunc<i32, ()>,
    on_queue_ready: TypedFunc<(i32, i32), ()>,
    on_request_headers: TypedFunc<(i32, i32, i32), i32>,
    on_request_body: TypedFunc<(i32, i32, i32), i32>,
    on_request_trailers: TypedFunc<(i32, i32), i32>,
    on_response_headers: TypedFunc<(i32, i32, i32), i32>,
    on_response_body: TypedFunc<(i32, i32, i32), i32>,
    on_http_call_response: TypedFunc<(i32, i32, i32, i32, i32), ()>,
    on_log: TypedFunc<i32, ()>,
    on_done: TypedFunc<i32, i32>,
    on_delete: TypedFunc<i32, ()>,
}

struct Worker {
    store: Store<WorkerState>,
    exports: Exports,
    memory: Option<wasmtime::Memory>,
    /// Set when the VM trapped: the worker then fails closed (or open).
    failed: Option<String>,
    /// A stalled worker thread: no ticks, no call deliveries (for lease tests).
    paused: bool,
}

/// A handle to a stream started with [`Host::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId {
    pub worker: usize,
    context: u32,
}

/// The host: N workers running one module, a virtual clock, clusters and an upstream.
pub struct Host {
    workers: Vec<Worker>,
    shared: Arc<Mutex<Shared>>,
    opts: Arc<HostOptions>,
    clusters: HashMap<String, CallHandler>,
    upstream: UpstreamHandler,
    next_context: u32,
    round_robin: usize,
}

const ACTION_CONTINUE: i32 = 0;

/// Where the built `.wasm` files are: `$S2S_GUARD_DIST`, else `<workspace>/dist`.
pub fn dist_dir() -> std::path::PathBuf {
    match std::env::var_os("S2S_GUARD_DIST") {
        Some(d) => d.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist"),
    }
}

/// Loads `dist/<name>` for a test; a missing file fails the test with the command
/// that builds it (tests never skip silently).
pub fn load_dist(name: &str) -> Compiled {
    let path = dist_dir().join(name);
    if !path.exists() {
        panic!(
            "{} is missing: build the Wasm modules first with `make build` \
             (or `bash scripts/build-wasm.sh`)",
            path.display()
        );
    }
    Compiled::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compiles a module once, to start many hosts from it cheaply.
pub struct Compiled {
    engine: Engine,
    module: Module,
}

impl Compiled {
    pub fn from_file(path: &std::path::Path) -> Result<Compiled, HostError> {
        let bytes = std::fs::read(path)
            .map_err(|e| HostError::Load(format!("cannot read {}: {e}", path.display())))?;
        Compiled::from_bytes(&bytes)
    }

    /// The module's imports, as `module::name`.
    pub fn imports(&self) -> Vec<String> {
        self.module
            .imports()
            .map(|i| format!("{}::{}", i.module(), i.name()))
            .collect()
    }

    /// Accepts a binary module or, for the host's own tests, WAT text.
    pub fn from_bytes(bytes: &[u8]) -> Result<Compiled, HostError> {
        // S2S_HOST_PERFMAP=1 writes /tmp/perf-<pid>.map, so `perf` names the
        // guest's functions (profiling only; build the .wasm with its names).
        let engine = if std::env::var_os("S2S_HOST_PERFMAP").is_some() {
            let mut config = wasmtime::Config::new();
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
            Engine::new(&config).map_err(|e| HostError::Load(e.to_string()))?
        } else {
            Engine::default()
        };
        let module = Module::new(&engine, bytes).map_err(|e| HostError::Load(format!("{e:#}")))?;
        Ok(Compiled { engine, module })
    }
}

impl Host {
    /// Loads the module into `opts.workers` VMs and runs each through start-up
    /// (`_initialize`, root context, `proxy_on_vm_start`, `proxy_on_configure`).
    pub fn new(compiled: &Compiled, opts: HostOptions) -> Result<Host, HostError> {
        let shared = Arc::new(Mutex::new(Shared {
            clock_ns: opts.start_time_ns,
            random_state: 0x5eed_5eed_5eed_5eed,
            clusters: opts.clusters.iter().cloned().collect(),
            strict_cas: opts.strict_cas,
            ..Shared::default()
        }));
        Host::with_shared(compiled, opts, shared)
    }

    /// More VMs in the same Envoy process as `other`: they share its shared data,
    /// queues, metrics, logs and clock (e.g. an Envoy singleton bootstrap service
    /// beside the HTTP filter's workers, with another configuration). Each host
    /// fires its own VMs' ticks: advance both.
    pub fn join(compiled: &Compiled, opts: HostOptions, other: &Host) -> Result<Host, HostError> {
        {
            let mut sh = other.shared();
            sh.clusters.extend(opts.clusters.iter().cloned());
        }
        Host::with_shared(compiled, opts, other.shared.clone())
    }

    fn with_shared(
        compiled: &Compiled,
        opts: HostOptions,
        shared: Arc<Mutex<Shared>>,
    ) -> Result<Host, HostError> {
        let opts = Arc::new(opts);
        let mut linker: Linker<WorkerState> = Linker::new(&compiled.engine);
        abi::add_to_linker(&mut linker).map_err(|e| HostError::Load(format!("{e:#}")))?;
        abi::add_wasi_to_linker(&mut linker, &compiled.module)
            .map_err(|e| HostError::Load(format!("{e:#}")))?;
        let mut host = Host {
            workers: Vec::new(),
            shared: shared.clone(),
            opts: opts.clone(),
            clusters: HashMap::new(),
            upstream: Box::new(|_, _| UpstreamResponse {
                status: 200,
                headers: vec![("content-type".into(), b"text/plain".to_vec())],
                body: b"OK".to_vec(),
            }),
            next_context: 2,
            round_robin: 0,
        };
        for index in 0..opts.workers.max(1) {
            let state = WorkerState {
                index,
                shared: shared.clone(),
                opts: opts.clone(),
                root_context: 1,
                effective_context: 1,
                streams: HashMap::new(),
                tick_period_ms: 0,
                next_tick_ns: None,
                new_calls: Vec::new(),
                pending_calls: Vec::new(),
                next_token: 1,
                call_response: None,
                misuse: Vec::new(),
                in_configure: false,
                in_vm_start: false,
                done_requested: false,
                plugin_config: opts.plugin_config.clone(),
            };
            let mut store = Store::new(&compiled.engine, state);
            let instance = linker
                .instantiate(&mut store, &compiled.module)
                .map_err(|e| HostError::Load(format!("{e:#}")))?;
            let exports = Exports::resolve(&mut store, &instance)?;
            let memory = instance.get_memory(&mut store, "memory");
            let mut worker = Worker {
                store,
                exports,
                memory,
                failed: None,
                paused: false,
            };
            worker.start(&instance)?;
            host.workers.push(worker);
        }
        Ok(host)
    }

    pub fn options(&self) -> &HostOptions {
        &self.opts
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Serves calls to `cluster` with `handler`; calls to other clusters fail as in
    /// Envoy (`BadArgument`: unknown cluster).
    pub fn set_cluster(
        &mut self,
        cluster: &str,
        handler: impl FnMut(&CallRequest) -> CallReply + Send + 'static,
    ) {
        self.clusters.insert(cluster.to_string(), Box::new(handler));
        self.shared().clusters.insert(cluster.to_string());
    }

    /// Replaces the upstream (the default answers 200 "OK").
    pub fn set_upstream(
        &mut self,
        handler: impl FnMut(&Request, &Upstream) -> UpstreamResponse + Send + 'static,
    ) {
        self.upstream = Box::new(handler);
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Virtual time now, nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.shared().clock_ns
    }

    /// Sends a request through the next worker (round robin) and runs it as far as
    /// it can go without advancing the clock.
    pub fn send(&mut self, request: Request) -> Outcome {
        let worker = self.round_robin % self.workers.len();
        self.round_robin += 1;
        self.send_on(worker, request)
    }

    /// Sends a request through one worker.
    pub fn send_on(&mut self, worker: usize, request: Request) -> Outcome {
        let id = self.start(worker, request);
        self.pump();
        self.take_outcome(id)
    }

    /// The outcome of a stream, forgetting the stream once it has ended (streams
    /// still paused stay, and report `Verdict::Pending`).
    pub fn take_outcome(&mut self, id: StreamId) -> Outcome {
        let outcome = self.outcome(id);
        if outcome.verdict != Verdict::Pending {
            self.workers[id.worker]
                .store
                .data_mut()
                .streams
                .remove(&id.context);
        }
        outcome
    }

    /// Starts a stream; it runs until it completes or pauses.
    pub fn start(&mut self, worker: usize, request: Request) -> StreamId {
        let context = self.next_context;
        self.next_context += 1;
        let id = StreamId { worker, context };
        let w = &mut self.workers[worker];
        if w.failed.is_some() {
            let outcome = if self.opts.fail_open {
                let upstream = Upstream {
                    headers: request.envoy_headers(),
                    body: request.body.clone(),
                    trailers: request.delivered_trailers(),
                };
                let resp = (self.upstream)(&request, &upstream);
                Outcome {
                    verdict: Verdict::Forwarded,
                    status: resp.status,
                    response_headers: resp.headers,
                    response_body: resp.body,
                    upstream: Some(upstream),
                    early_upstream: None,
                }
            } else {
                fail_closed_outcome()
            };
            w.store
                .data_mut()
                .streams
                .insert(context, Stream::finished(request, outcome));
            return id;
        }
        let stream = Stream::new(request);
        w.store.data_mut().streams.insert(context, stream);
        let root = w.store.data().root_context;
        if w.call(|e, s| e.on_context_create.call(s, (context as i32, root as i32)))
            .is_ok()
        {
            self.drive(id);
        } else {
            self.fail_stream(id);
        }
        id
    }

    /// The outcome of a stream; `Verdict::Pending` while it is paused.
    pub fn outcome(&self, id: StreamId) -> Outcome {
        self.workers[id.worker]
            .store
            .data()
            .streams
            .get(&id.context)
            .and_then(|s| s.outcome.clone())
            .unwrap_or(Outcome {
                verdict: Verdict::Pending,
                status: 0,
                response_headers: Vec::new(),
                response_body: Vec::new(),
                upstream: None,
                early_upstream: None,
            })
    }

    /// Runs everything due at the current virtual time: http call responses, queue
    /// notifications, resumed streams.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            progressed |= self.dispatch_new_calls();
            progressed |= self.deliver_due_calls();
            progressed |= self.deliver_queue_ready();
            progressed |= self.resume_streams();
            if !progressed {
                return;
            }
        }
        self.host_log(
            0,
            LogLevel::Critical,
            "pump: no quiescence after 10000 rounds",
        );
    }

    /// Advances the virtual clock by `ms`, firing ticks and delivering responses in
    /// time order.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now_ns() + ms * 1_000_000;
        self.pump();
        loop {
            let next = self.next_event_ns();
            match next {
                Some(t) if t <= target => {
                    self.shared().clock_ns = t.max(self.now_ns());
                    self.fire_ticks_at(t);
                    self.pump();
                }
                _ => break,
            }
        }
        self.shared().clock_ns = target;
        self.pump();
    }

    fn next_event_ns(&self) -> Option<u64> {
        let mut next: Option<u64> = None;
        for w in &self.workers {
            if w.failed.is_some() || w.paused {
                continue;
            }
            let s = w.store.data();
            let candidates = s
                .next_tick_ns
                .into_iter()
                .chain(s.pending_calls.iter().map(|c| c.due_ns));
            for t in candidates {
                next = Some(next.map_or(t, |n: u64| n.min(t)));
            }
        }
        next
    }

    fn fire_ticks_at(&mut self, t: u64) {
        for i in 0..self.workers.len() {
            let w = &mut self.workers[i];
            if w.failed.is_some() || w.paused {
                continue;
            }
            let due = matches!(w.store.data().next_tick_ns, Some(n) if n <= t);
            if due {
                let (root, period) = {
                    let s = w.store.data();
                    (s.root_context, s.tick_period_ms)
                };
                w.store.data_mut().next_tick_ns = Some(t + period as u64 * 1_000_000);
                w.store.data_mut().effective_context = root;
                let _ = w.call(|e, s| e.on_tick.call(s, root as i32));
            }
        }
    }

    /// Runs the cluster handlers for calls the guests made.
    fn dispatch_new_calls(&mut self) -> bool {
        let mut any = false;
        for i in 0..self.workers.len() {
            let calls = std::mem::take(&mut self.workers[i].store.data_mut().new_calls);
            for (token, context, req) in calls {
                any = true;
                let reply = match self.clusters.get_mut(&req.cluster) {
                    Some(h) => h(&req),
                    None => CallReply::Reset { delay_ms: 0 },
                };
                let timeout_ns = req.timeout_ms as u64 * 1_000_000;
                let (due, status, headers, body) = match reply {
                    CallReply::Response {
                        status,
                        headers,
                        body,
                        delay_ms,
                    } if delay_ms * 1_000_000 < timeout_ns || timeout_ns == 0 => {
                        (delay_ms * 1_000_000, Some(status), headers, body)
                    }
                    CallReply::Reset { delay_ms }
                        if delay_ms * 1_000_000 < timeout_ns || timeout_ns == 0 =>
                    {
                        (delay_ms * 1_000_000, None, Vec::new(), Vec::new())
                    }
                    // Too slow or never: Envoy's router times the call out with a 504.
                    _ => (
                        timeout_ns,
                        Some(504),
                        vec![("content-type".into(), b"text/plain".to_vec())],
                        b"upstream request timeout".to_vec(),
                    ),
                };
                let mut headers = headers;
                if let Some(status) = status {
                    headers.insert(0, (":status".into(), status.to_string().into_bytes()));
                }
                self.workers[i]
                    .store
                    .data_mut()
                    .pending_calls
                    .push(PendingCall {
                        token,
                        context,
                        due_ns: req.at_ns + due,
                        status,
                        headers,
                        body,
                    });
            }
        }
        any
    }

    fn deliver_due_calls(&mut self) -> bool {
        let now = self.now_ns();
        let mut any = false;
        for w in self.workers.iter_mut() {
            if w.failed.is_some() || w.paused {
                continue;
            }
            loop {
                let pos = w
                    .store
                    .data()
                    .pending_calls
                    .iter()
                    .position(|c| c.due_ns <= now);
                let Some(pos) = pos else { break };
                let call = w.store.data_mut().pending_calls.remove(pos);
                any = true;
                let nheaders = call.headers.len() as i32;
                let nbody = call.body.len() as i32;
                let _ = call.status;
                w.store.data_mut().call_response = Some((call.headers, call.body));
                w.store.data_mut().effective_context = call.context;
                let ctx = call.context as i32;
                let token = call.token as i32;
                let _ = w.call(|e, s| {
                    e.on_http_call_response
                        .call(s, (ctx, token, nheaders, nbody, 0))
                });
                w.store.data_mut().call_response = None;
                if w.failed.is_some() {
                    break;
                }
            }
        }
        any
    }

    fn deliver_queue_ready(&mut self) -> bool {
        let ready: Vec<_> = self.shared().queue_ready.drain(..).collect();
        let any = !ready.is_empty();
        for (worker, root, queue) in ready {
            let w = &mut self.workers[worker];
            if w.failed.is_none() {
                w.store.data_mut().effective_context = root;
                let _ = w.call(|e, s| e.on_queue_ready.call(s, (root as i32, queue as i32)));
            }
        }
        any
    }

    fn resume_streams(&mut self) -> bool {
        let mut ids = Vec::new();
        for (i, w) in self.workers.iter_mut().enumerate() {
            for (ctx, s) in w.store.data_mut().streams.iter_mut() {
                if s.outcome.is_none() && (s.continue_requested || s.local_reply.is_some()) {
                    ids.push(StreamId {
                        worker: i,
                        context: *ctx,
                    });
                }
            }
        }
        let any = !ids.is_empty();
        for id in ids {
            self.drive(id);
        }
        any
    }

    /// Moves a stream forward as far as it can go.
    fn drive(&mut self, id: StreamId) {
        for _ in 0..100_000 {
            if self.workers[id.worker].failed.is_some() {
                self.fail_stream(id);
                return;
            }
            let Some(step) = self.next_step(id) else {
                return;
            };
            let w = &mut self.workers[id.worker];
            w.store.data_mut().effective_context = id.context;
            let ctx = id.context as i32;
            let result = match step {
                Step::RequestHeaders { n, eos } => {
                    set_phase(w, id, Phase::RequestHeaders);
                    w.call(|e, s| e.on_request_headers.call(s, (ctx, n, eos)))
                        .map(|a| self.after_request_headers(id, a))
                }
                Step::RequestBody { len, eos } => {
                    set_phase(w, id, Phase::RequestBody);
                    w.call(|e, s| e.on_request_body.call(s, (ctx, len, eos)))
                        .map(|a| self.after_request_body(id, a))
                }
                Step::RequestTrailers { n } => {
                    set_phase(w, id, Phase::RequestTrailers);
                    w.call(|e, s| e.on_request_trailers.call(s, (ctx, n)))
                        .map(|a| self.after_request_trailers(id, a))
                }
                Step::Upstream => {
                    self.forward(id);
                    Ok(())
                }
                Step::Local => {
                    self.finish_local(id);
                    Ok(())
                }
            };
            if result.is_err() {
                self.fail_stream(id);
                return;
            }
        }
    }

    fn stream_mut(&mut self, id: StreamId) -> Option<&mut Stream> {
        self.workers[id.worker]
            .store
            .data_mut()
            .streams
            .get_mut(&id.context)
    }

    /// What happens next on a stream, following Envoy's FilterManager: which frame
    /// the filter gets, whether the stream waits, or leaves for the upstream.
    fn next_step(&mut self, id: StreamId) -> Option<Step> {
        let limit = self.opts.request_body_limit;
        let s = self.stream_mut(id)?;
        if s.outcome.is_some() {
            return None;
        }
        if s.local_reply.is_some() {
            return Some(Step::Local);
        }
        if !s.headers_delivered {
            s.headers_delivered = true;
            return Some(Step::RequestHeaders {
                n: s.request_headers.len() as i32,
                eos: s.request.headers_end_stream() as i32,
            });
        }
        if s.headers_paused {
            if !s.continue_requested {
                // Envoy holds the body back (StopAllIterationAndWatermark), up to the
                // limit; the trailers wait too (decodeTrailers returns on stoppedAll).
                let held: usize = s
                    .frames
                    .iter()
                    .map(|f| match f {
                        Frame::Data { bytes, .. } => bytes.len(),
                        Frame::Trailers(_) => 0,
                    })
                    .sum();
                if held > limit {
                    s.local_reply = Some(payload_too_large());
                    return Some(Step::Local);
                }
                return None;
            }
            s.continue_requested = false;
            s.headers_paused = false;
            s.request_headers_sent = true;
            s.upstream.headers = s.request_headers.clone();
            // commonContinue: everything held back arrives as one buffer, ending the
            // stream unless trailers follow (doData(complete() && !had_trailers)),
            // then the trailers, both starting with this filter.
            let mut merged: Option<(Vec<u8>, bool)> = None;
            let mut trailers = None;
            for f in s.frames.drain(..) {
                match f {
                    Frame::Data { bytes, eos } => {
                        let m = merged.get_or_insert((Vec::new(), false));
                        m.0.extend_from_slice(&bytes);
                        m.1 |= eos;
                    }
                    Frame::Trailers(t) => trailers = Some(t),
                }
            }
            if let Some((bytes, eos)) = merged {
                s.frames.push_back(Frame::Data { bytes, eos });
            }
            if let Some(t) = trailers {
                s.frames.push_back(Frame::Trailers(t));
            }
        }
        if s.trailers_paused {
            if !s.continue_requested {
                return None;
            }
            // commonContinue: stopped headers, the buffered body and the trailers go on.
            s.continue_requested = false;
            s.trailers_paused = false;
            s.release_held();
        }
        if s.body_paused {
            if s.continue_requested {
                s.continue_requested = false;
                s.release_held();
            } else {
                if s.request_body.len() > limit {
                    s.local_reply = Some(payload_too_large());
                    return Some(Step::Local);
                }
                if s.frames.is_empty() {
                    return None;
                }
                // Later frames still reach the filter (decodeData adds them to the
                // buffer; decodeTrailers is called with the body still buffered).
            }
        }
        match s.frames.pop_front() {
            Some(Frame::Data { bytes, eos }) => {
                s.request_body.extend_from_slice(&bytes);
                return Some(Step::RequestBody {
                    len: s.request_body.len() as i32,
                    eos: eos as i32,
                });
            }
            Some(Frame::Trailers(t)) => {
                s.request_trailers = t;
                return Some(Step::RequestTrailers {
                    n: s.request_trailers.len() as i32,
                });
            }
            None => {}
        }
        if s.headers_stopped {
            // Headers (and no body) still stopped: wait for the filter to continue.
            if !s.continue_requested {
                return None;
            }
            s.continue_requested = false;
            s.release_held();
        }
        Some(Step::Upstream)
    }

    fn after_request_headers(&mut self, id: StreamId, action: i32) {
        let stop_iteration = self.opts.allow_on_headers_stop_iteration;
        if let Some(s) = self.stream_mut(id) {
            if action == ACTION_CONTINUE || s.continue_requested {
                s.continue_requested = false;
                s.request_headers_sent = true;
                s.upstream.headers = s.request_headers.clone();
            } else if stop_iteration {
                s.headers_stopped = true;
            } else {
                s.headers_paused = true;
            }
            s.phase = Phase::Other;
        }
    }

    fn after_request_body(&mut self, id: StreamId, action: i32) {
        if let Some(s) = self.stream_mut(id) {
            if action == ACTION_CONTINUE || s.continue_requested {
                s.continue_requested = false;
                // Continuing the body resumes the stopped headers first.
                s.release_held();
            } else {
                s.body_paused = true;
            }
            s.phase = Phase::Other;
        }
    }

    fn after_request_trailers(&mut self, id: StreamId, action: i32) {
        if let Some(s) = self.stream_mut(id) {
            if action == ACTION_CONTINUE || s.continue_requested {
                // commonHandleAfterTrailersCallback: Continue after a stop continues
                // everything held (headers, buffered body), then the trailers.
                s.continue_requested = false;
                s.release_held();
            } else {
                // StopIteration: nothing goes upstream until proxy_continue_stream.
                s.trailers_paused = true;
            }
            s.phase = Phase::Other;
        }
    }

    /// The request passed the filter: hand it to the upstream, then run the response
    /// through the filter.
    fn forward(&mut self, id: StreamId) {
        let (request, upstream) = {
            let Some(s) = self.stream_mut(id) else { return };
            s.upstream.trailers = s.request_trailers.clone();
            (s.request.clone(), s.upstream.clone())
        };
        let resp = (self.upstream)(&request, &upstream);
        let mut headers = vec![(":status".to_string(), resp.status.to_string().into_bytes())];
        headers.extend(resp.headers);
        self.run_response(id, headers, resp.body, Verdict::Forwarded, Some(upstream));
    }

    fn finish_local(&mut self, id: StreamId) {
        let Some(s) = self.stream_mut(id) else { return };
        let Some(reply) = s.local_reply.clone() else {
            return;
        };
        let mut headers = vec![(":status".to_string(), reply.status.to_string().into_bytes())];
        headers.extend(reply.headers.iter().cloned());
        if !reply.body.is_empty() {
            if !headers.iter().any(|(k, _)| k == "content-type") {
                headers.push(("content-type".into(), b"text/plain".to_vec()));
            }
            headers.push((
                "content-length".into(),
                reply.body.len().to_string().into_bytes(),
            ));
        }
        let verdict = Verdict::Local {
            details: reply.details.clone(),
        };
        self.run_response(id, headers, reply.body, verdict, None);
    }

    /// Runs the response callbacks (also on a local reply, as Envoy does), records
    /// the outcome and ends the stream (`on_done`, `on_log`, `on_delete`).
    fn run_response(
        &mut self,
        id: StreamId,
        headers: Headers,
        body: Vec<u8>,
        verdict: Verdict,
        upstream: Option<Upstream>,
    ) {
        let ctx = id.context as i32;
        {
            let Some(s) = self.stream_mut(id) else { return };
            s.response_headers = headers;
            s.response_body = body;
            s.local_reply = None;
            s.phase = Phase::ResponseHeaders;
        }
        let w = &mut self.workers[id.worker];
        w.store.data_mut().effective_context = id.context;
        let (n, body_len) = {
            let s = &w.store.data().streams[&id.context];
            (
                s.response_headers.len() as i32,
                s.response_body.len() as i32,
            )
        };
        let mut ok = w
            .call(|e, s| {
                e.on_response_headers
                    .call(s, (ctx, n, (body_len == 0) as i32))
            })
            .is_ok();
        if ok && body_len > 0 {
            set_phase(w, id, Phase::ResponseBody);
            ok = w
                .call(|e, s| e.on_response_body.call(s, (ctx, body_len, 1)))
                .is_ok();
        }
        if !ok {
            self.fail_stream(id);
            return;
        }
        let w = &mut self.workers[id.worker];
        let s = w.store.data_mut().streams.get_mut(&id.context);
        if let Some(s) = s {
            s.phase = Phase::Other;
            let status = header_value(&s.response_headers, ":status")
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let response_headers = s
                .response_headers
                .iter()
                .filter(|(k, _)| !k.starts_with(':'))
                .cloned()
                .collect();
            let early_upstream =
                (upstream.is_none() && s.request_headers_sent).then(|| s.upstream.headers.clone());
            s.outcome = Some(Outcome {
                verdict,
                status,
                response_headers,
                response_body: s.response_body.clone(),
                upstream,
                early_upstream,
            });
        }
        self.end_stream(id);
    }

    fn end_stream(&mut self, id: StreamId) {
        let w = &mut self.workers[id.worker];
        if w.failed.is_some() {
            return;
        }
        let ctx = id.context as i32;
        w.store.data_mut().effective_context = id.context;
        let _ = w.call(|e, s| e.on_done.call(s, ctx));
        let _ = w.call(|e, s| e.on_log.call(s, ctx));
        let _ = w.call(|e, s| e.on_delete.call(s, ctx));
    }

    /// A trap mid-stream: Envoy fails the stream (503) unless fail-open.
    fn fail_stream(&mut self, id: StreamId) {
        if let Some(s) = self.stream_mut(id) {
            if s.outcome.is_none() {
                let mut o = fail_closed_outcome();
                o.early_upstream = s.request_headers_sent.then(|| s.upstream.headers.clone());
                s.outcome = Some(o);
            }
        }
    }

    /// Logs an entry on behalf of the host (e.g. guest misuse).
    fn host_log(&self, worker: usize, level: LogLevel, message: &str) {
        self.shared().logs.push(LogEntry {
            worker,
            level,
            message: format!("[host] {message}"),
        });
    }

    // ---- inspection -------------------------------------------------------------

    /// All metrics, by the name Envoy's `/stats` shows (`wasmcustom.<name>`).
    pub fn metrics(&self) -> BTreeMap<String, i64> {
        self.shared()
            .metrics
            .iter()
            .map(|m| (format!("wasmcustom.{}", m.name), m.value))
            .collect()
    }

    /// A metric's value by its `/stats` name or the name the guest defined.
    pub fn metric(&self, name: &str) -> Option<i64> {
        let bare = name.strip_prefix("wasmcustom.").unwrap_or(name);
        self.shared()
            .metrics
            .iter()
            .find(|m| m.name == bare)
            .map(|m| m.value)
    }

    /// Every metric the guests defined, as defined (without `wasmcustom.`).
    pub fn metric_records(&self) -> Vec<Metric> {
        self.shared().metrics.clone()
    }

    /// A metric's full record (kind, samples).
    pub fn metric_record(&self, name: &str) -> Option<Metric> {
        let bare = name.strip_prefix("wasmcustom.").unwrap_or(name);
        self.shared()
            .metrics
            .iter()
            .find(|m| m.name == bare)
            .cloned()
    }

    pub fn logs(&self) -> Vec<LogEntry> {
        self.shared().logs.clone()
    }

    pub fn logs_at(&self, level: LogLevel) -> Vec<String> {
        self.shared()
            .logs
            .iter()
            .filter(|l| l.level == level)
            .map(|l| l.message.clone())
            .collect()
    }

    pub fn clear_logs(&self) {
        self.shared().logs.clear();
    }

    /// Shared data as the guests see it: value and CAS.
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared().shared_data.get(key).cloned()
    }

    /// Visits every shared-data entry (key, value), in no particular order: for
    /// measuring what the guests keep there.
    pub fn shared_data_visit(&self, mut f: impl FnMut(&str, &[u8])) {
        for (k, (v, _)) in self.shared().shared_data.iter() {
            f(k, v);
        }
    }

    /// Another worker writes `value` to `key` right after a guest next reads that
    /// key (the read returns what was there before): the interleaving of two
    /// workers handling requests at the same instant, made exact.
    pub fn write_after_next_read(&self, key: &str, value: &[u8]) {
        self.shared()
            .after_read
            .insert(key.to_string(), value.to_vec());
    }

    /// Writes shared data as another filter or tool would (bumps the CAS).
    pub fn set_shared_data(&self, key: &str, value: &[u8]) {
        let mut sh = self.shared();
        let cas = sh
            .shared_data
            .get(key)
            .map_or(1, |(_, c)| c.wrapping_add(1).max(1));
        sh.shared_data
            .insert(key.to_string(), (value.to_vec(), cas));
    }

    /// Enqueues onto a registered shared queue from outside (as another VM would).
    pub fn enqueue(&mut self, vm_id: &str, name: &str, value: &[u8]) -> bool {
        let mut sh = self.shared();
        let Some(qid) = sh
            .queues
            .iter()
            .position(|q| q.vm_id == vm_id && q.name == name)
        else {
            return false;
        };
        let q = &mut sh.queues[qid];
        q.items.push_back(value.to_vec());
        let (w, c) = (q.owner_worker, q.owner_context);
        sh.queue_ready.push_back((w, c, qid as u32 + 1));
        drop(sh);
        self.pump();
        true
    }

    /// Stalls a worker (as a stuck worker thread): its ticks and call responses wait
    /// until [`Host::resume_worker`]; missed ticks are not replayed.
    pub fn pause_worker(&mut self, worker: usize) {
        self.workers[worker].paused = true;
    }

    pub fn resume_worker(&mut self, worker: usize) {
        let now = self.now_ns();
        let w = &mut self.workers[worker];
        w.paused = false;
        let s = w.store.data_mut();
        if let Some(t) = s.next_tick_ns.as_mut() {
            *t = (*t).max(now);
        }
    }

    /// Why a worker failed (trapped), if it did.
    pub fn worker_failure(&self, worker: usize) -> Option<String> {
        self.workers[worker].failed.clone()
    }

    /// Host-call misuse the guest committed on a worker (bad pointers, encodings).
    pub fn misuse(&self, worker: usize) -> Vec<String> {
        self.workers[worker].store.data().misuse.clone()
    }

    /// Size of a worker's guest linear memory, bytes.
    pub fn memory_bytes(&self, worker: usize) -> usize {
        let w = &self.workers[worker];
        w.memory.map_or(0, |m| m.data_size(&w.store))
    }

    /// The tick period a worker's root context asked for, in ms (0: none).
    pub fn tick_period_ms(&self, worker: usize) -> u32 {
        self.workers[worker].store.data().tick_period_ms
    }

    /// Calls still in flight on a worker.
    pub fn pending_calls(&self, worker: usize) -> usize {
        let s = self.workers[worker].store.data();
        s.pending_calls.len() + s.new_calls.len()
    }

    /// Pushes a new plugin configuration, as an xDS or `WasmPlugin` update does: each
    /// worker gets a new root context configured with it. If any worker rejects it,
    /// the update is refused and the old configuration keeps running everywhere.
    pub fn reconfigure(&mut self, config: &[u8]) -> Result<(), HostError> {
        let mut new_roots = Vec::new();
        for i in 0..self.workers.len() {
            let root = self.next_context;
            self.next_context += 1;
            let w = &mut self.workers[i];
            let old_config =
                std::mem::replace(&mut w.store.data_mut().plugin_config, config.to_vec());
            let index = w.store.data().index;
            let created = w
                .call(|e, s| e.on_context_create.call(s, (root as i32, 0)))
                .map_err(|message| HostError::Trap {
                    worker: index,
                    message,
                });
            let result = created.and_then(|_| w.configure(root as i32));
            w.store.data_mut().plugin_config = old_config;
            if let Err(e) = result {
                // Envoy discards the rejected root contexts and keeps the old ones.
                for (j, r) in new_roots.into_iter().chain(std::iter::once((i, root))) {
                    let w: &mut Worker = &mut self.workers[j];
                    let _ = w.call(|e, s| e.on_delete.call(s, r as i32));
                }
                return Err(e);
            }
            new_roots.push((i, root));
        }
        for (i, root) in new_roots {
            let w = &mut self.workers[i];
            let old = w.store.data().root_context;
            w.store.data_mut().plugin_config = config.to_vec();
            w.store.data_mut().root_context = root;
            w.store.data_mut().effective_context = old;
            let _ = w.call(|e, s| e.on_done.call(s, old as i32));
            let _ = w.call(|e, s| e.on_delete.call(s, old as i32));
        }
        Ok(())
    }

    /// Ends a worker's VM as Envoy does on shutdown: `proxy_on_done` on the root
    /// context (which may answer later via `proxy_done`), then `proxy_on_delete`.
    pub fn shutdown_worker(&mut self, worker: usize) -> bool {
        let w = &mut self.workers[worker];
        let root = w.store.data().root_context as i32;
        w.store.data_mut().effective_context = root as u32;
        let done = w.call(|e, s| e.on_done.call(s, root)).unwrap_or(1) != 0
            || w.store.data().done_requested;
        let _ = w.call(|e, s| e.on_delete.call(s, root));
        done
    }
}

enum Step {
    RequestHeaders { n: i32, eos: i32 },
    RequestBody { len: i32, eos: i32 },
    RequestTrailers { n: i32 },
    Upstream,
    Local,
}

fn set_phase(w: &mut Worker, id: StreamId, phase: Phase) {
    if let Some(s) = w.store.data_mut().streams.get_mut(&id.context) {
        s.phase = phase;
    }
}

fn payload_too_large() -> LocalReply {
    LocalReply {
        status: 413,
        details: "request_payload_too_large".into(),
        body: b"Payload Too Large".to_vec(),
        headers: Vec::new(),
    }
}

/// What Envoy answers when the filter's VM has failed and the plugin fails closed.
fn fail_closed_outcome() -> Outcome {
    Outcome {
        verdict: Verdict::Local {
            details: "wasm_fail_stream".into(),
        },
        status: 503,
        response_headers: Vec::new(),
        response_body: Vec::new(),
        upstream: None,
        early_upstream: None,
    }
}

impl Stream {
    fn new(request: Request) -> Stream {
        Stream {
            frames: request.frames(),
            request_headers: request.envoy_headers(),
            request,
            phase: Phase::Other,
            request_headers_sent: false,
            request_body: Vec::new(),
            request_trailers: Vec::new(),
            response_headers: Vec::new(),
            response_body: Vec::new(),
            response_trailers: Vec::new(),
            local_reply: None,
            continue_requested: false,
            headers_delivered: false,
            headers_paused: false,
            headers_stopped: false,
            body_paused: false,
            trailers_paused: false,
            upstream: Upstream::default(),
            outcome: None,
        }
    }

    /// Envoy's commonContinue for a filter stopped in its headers (StopIteration) or
    /// its body: the headers go on, then the body it held; the filter no longer
    /// holds anything.
    fn release_held(&mut self) {
        if self.headers_stopped {
            self.headers_stopped = false;
            self.request_headers_sent = true;
            self.upstream.headers = self.request_headers.clone();
        }
        self.body_paused = false;
        let body = std::mem::take(&mut self.request_body);
        self.upstream.body.extend_from_slice(&body);
    }

    /// Whether the filter can see the request body now (`HttpRequestBody`): in a body
    /// callback, or while it buffers the body (Envoy's `buffering_request_body_`).
    pub(crate) fn request_body_available(&self) -> bool {
        self.phase == Phase::RequestBody || self.body_paused
    }

    /// Whether the request trailers are accessible (Envoy's `request_trailers_`):
    /// in the trailers callback, and while the filter holds them paused.
    pub(crate) fn request_trailers_available(&self) -> bool {
        self.phase == Phase::RequestTrailers || self.trailers_paused
    }

    fn finished(request: Request, outcome: Outcome) -> Stream {
        let mut s = Stream::new(request);
        s.outcome = Some(outcome);
        s
    }
}

impl Exports {
    fn resolve(store: &mut Store<WorkerState>, instance: &Instance) -> Result<Exports, HostError> {
        macro_rules! get {
            ($name:literal) => {
                instance
                    .get_typed_func(&mut *store, $name)
                    .map_err(|e| HostError::Load(format!("export {}: {e:#}", $name)))?
            };
        }
        Ok(Exports {
            on_context_create: get!("proxy_on_context_create"),
            on_vm_start: get!("proxy_on_vm_start"),
            on_configure: get!("proxy_on_configure"),
            on_tick: get!("proxy_on_tick"),
            on_queue_ready: get!("proxy_on_queue_ready"),
            on_request_headers: get!("proxy_on_request_headers"),
            on_request_body: get!("proxy_on_request_body"),
            on_request_trailers: get!("proxy_on_request_trailers"),
            on_response_headers: get!("proxy_on_response_headers"),
            on_response_body: get!("proxy_on_response_body"),
            on_http_call_response: get!("proxy_on_http_call_response"),
            on_log: get!("proxy_on_log"),
            on_done: get!("proxy_on_done"),
            on_delete: get!("proxy_on_delete"),
        })
    }
}

impl Worker {
    /// Calls into the guest; a trap fails this worker for good (as in Envoy).
    fn call<R>(
        &mut self,
        f: impl FnOnce(&Exports, &mut Store<WorkerState>) -> wasmtime::Result<R>,
    ) -> Result<R, String> {
        if let Some(reason) = &self.failed {
            return Err(reason.clone());
        }
        match f(&self.exports, &mut self.store) {
            Ok(r) => Ok(r),
            Err(e) => {
                let message = format!("{e:#}");
                let index = self.store.data().index;
                self.store.data().shared().logs.push(LogEntry {
                    worker: index,
                    level: LogLevel::Critical,
                    message: format!("[host] wasm trap: {message}"),
                });
                self.failed = Some(message.clone());
                Err(message)
            }
        }
    }

    fn start(&mut self, instance: &Instance) -> Result<(), HostError> {
        let index = self.store.data().index;
        let trap = |message: String| HostError::Trap {
            worker: index,
            message,
        };
        for name in ["_initialize", "_start"] {
            if let Ok(f) = instance.get_typed_func::<(), ()>(&mut self.store, name) {
                f.call(&mut self.store, ())
                    .map_err(|e| trap(format!("{name}: {e:#}")))?;
                break;
            }
        }
        if instance
            .get_typed_func::<(), ()>(&mut self.store, "proxy_abi_version_0_2_1")
            .is_err()
        {
            return Err(HostError::Load(
                "the module does not export proxy_abi_version_0_2_1".into(),
            ));
        }
        let root = self.store.data().root_context as i32;
        self.call(|e, s| e.on_context_create.call(s, (root, 0)))
            .map_err(trap)?;
        let vm_len = self.store.data().opts.vm_config.len() as i32;
        self.store.data_mut().in_vm_start = true;
        let ok = self
            .call(|e, s| e.on_vm_start.call(s, (root, vm_len)))
            .map_err(trap)?;
        self.store.data_mut().in_vm_start = false;
        if ok == 0 {
            return Err(HostError::VmStartRejected { worker: index });
        }
        self.configure(root)
    }

    /// Runs `proxy_on_configure` on a root context with the current plugin configuration.
    fn configure(&mut self, root: i32) -> Result<(), HostError> {
        let index = self.store.data().index;
        let cfg_len = self.store.data().plugin_config.len() as i32;
        let first_log = self.store.data().shared().logs.len();
        self.store.data_mut().in_configure = true;
        self.store.data_mut().effective_context = root as u32;
        let ok = self
            .call(|e, s| e.on_configure.call(s, (root, cfg_len)))
            .map_err(|message| HostError::Trap {
                worker: index,
                message,
            })?;
        self.store.data_mut().in_configure = false;
        if ok == 0 {
            let logs = self.store.data().shared().logs[first_log..]
                .iter()
                .filter(|l| l.level >= LogLevel::Warn)
                .map(|l| l.message.clone())
                .collect();
            return Err(HostError::ConfigRejected {
                worker: index,
                logs,
            });
        }
        Ok(())
    }
}
