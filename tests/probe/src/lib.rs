//! A proxy-wasm filter that exercises host calls when a request asks it to, so the
//! test host's own tests can check Envoy's semantics through a real SDK guest.
//! Each `x-probe-*` request header names one action; the answer is a local reply
//! whose body reports what the host returned.
//!
//! `x-probe-trailers: MODE` follows the request body and trailers instead, logging
//! (at info) every body callback as `body size=N eos=B` and the trailers callback as
//! `trailers n=N k=v,...` and `trailers body=TEXT|none` (what `HttpRequestBody` holds
//! then). In the trailers callback it always sets `x-probe-trailer-seen: 1` and
//! removes `x-probe-remove-me`. MODE:
//! - `log`: continues every callback;
//! - `maps`: as `log`, and logs how many request headers and trailers a body
//!   callback can read (`body maps headers=N trailers=N`);
//! - `read-body`: buffers the body (Pause until end of stream), then in the trailers
//!   adds the trailer `x-probe-body-len` and continues;
//! - `replace-body`: buffers, then in the trailers replaces the body with its upper
//!   case plus `!` and continues;
//! - `pause-then-reply` / `pause-then-continue`: buffers, then pauses in the trailers
//!   and calls the cluster `tokens`; its answer brings a local 403 or a continue;
//! - `pause-headers`: pauses in the headers while calling `tokens`, buffers the body,
//!   pauses in the trailers until the call answered; the answer continues.
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ProbeRoot { ticks: 0, queue: 0 }) });
}}

struct ProbeRoot {
    ticks: u32,
    queue: u32,
}

impl Context for ProbeRoot {
    fn on_http_call_response(&mut self, token: u32, _h: usize, body: usize, _t: usize) {
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_default();
        let body = self
            .get_http_call_response_body(0, body)
            .unwrap_or_default();
        log::info!(
            "root call {token}: status={status} body={}",
            String::from_utf8_lossy(&body)
        );
    }
}

impl RootContext for ProbeRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let cfg = self.get_plugin_configuration().unwrap_or_default();
        let cfg = String::from_utf8_lossy(&cfg).to_string();
        if cfg.contains("reject") {
            log::error!("probe: configuration rejected on request");
            return false;
        }
        if let Some(ms) = cfg.strip_prefix("tick_ms=") {
            let ms: u64 = ms.trim().parse().unwrap_or(0);
            self.set_tick_period(Duration::from_millis(ms));
        }
        self.queue = hostcalls::register_shared_queue("probe_queue").unwrap_or(0);
        true
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        if let Ok(id) = hostcalls::define_metric(MetricType::Counter, "probe.ticks") {
            let _ = hostcalls::increment_metric(id, 1);
        }
        let now = self.get_current_time();
        log::debug!("tick {} at {:?}", self.ticks, now);
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        while let Ok(Some(item)) = hostcalls::dequeue_shared_queue(queue_id) {
            log::info!("queue: {}", String::from_utf8_lossy(&item));
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Probe {
            body_mode: false,
            trailers_mode: None,
            call_done: false,
        }))
    }
}

struct Probe {
    body_mode: bool,
    /// `x-probe-trailers`: how to treat the body and the trailers.
    trailers_mode: Option<String>,
    /// The call made in `pause-*` modes has answered.
    call_done: bool,
}

impl Probe {
    fn reply(&self, status: u32, body: String) -> Action {
        self.send_http_response(status, vec![("x-probe", "1")], Some(body.as_bytes()));
        Action::Pause
    }

    fn header(&self, name: &str) -> Option<String> {
        self.get_http_request_header_bytes(name)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    fn mode_is(&self, mode: &str) -> bool {
        self.trailers_mode.as_deref() == Some(mode)
    }

    /// Calls the `tokens` cluster (answered later in `on_http_call_response`).
    fn call_tokens(&self) -> Result<u32, Status> {
        self.dispatch_http_call(
            "tokens",
            vec![
                (":method", "GET"),
                (":path", "/tokens"),
                (":authority", "tokens"),
            ],
            None,
            vec![],
            Duration::from_millis(5000),
        )
    }
}

impl Context for Probe {
    fn on_http_call_response(&mut self, _token: u32, _h: usize, body: usize, _t: usize) {
        if self.trailers_mode.is_some() {
            self.call_done = true;
            log::info!("call answered");
            if self.mode_is("pause-then-reply") {
                self.send_http_response(403, vec![("x-probe", "1")], Some(b"denied in trailers"));
            } else {
                self.resume_http_request();
            }
            return;
        }
        let headers = self.get_http_call_response_headers_bytes();
        let status = headers
            .iter()
            .find(|(k, _)| k == ":status")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| "none".into());
        let body = self
            .get_http_call_response_body(0, body)
            .unwrap_or_default();
        let text = format!(
            "status={status} headers={} body={}",
            headers.len(),
            String::from_utf8_lossy(&body)
        );
        self.send_http_response(200, vec![], Some(text.as_bytes()));
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if self.header("x-probe-panic").is_some() {
            panic!("probe panic requested");
        }
        if let Some(spec) = self.header("x-probe-shared-set") {
            let (kv, cas) = spec.split_once(";cas=").unwrap_or((&spec, "0"));
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let cas: u32 = cas.parse().unwrap_or(0);
            let r = self.set_shared_data(k, Some(v.as_bytes()), (cas != 0).then_some(cas));
            return self.reply(
                200,
                match r {
                    Ok(()) => "ok".into(),
                    Err(Status::CasMismatch) => "cas_mismatch".into(),
                    Err(s) => format!("error {s:?}"),
                },
            );
        }
        if let Some(k) = self.header("x-probe-shared-get") {
            return match self.get_shared_data(&k) {
                (Some(v), Some(cas)) => {
                    self.reply(200, format!("{}|{cas}", String::from_utf8_lossy(&v)))
                }
                _ => self.reply(404, "missing".into()),
            };
        }
        if let Some(cluster) = self.header("x-probe-call") {
            let timeout: u64 = self
                .header("x-probe-timeout")
                .and_then(|t| t.parse().ok())
                .unwrap_or(1000);
            let mut headers = vec![
                (":method", "GET"),
                (":path", "/tokens"),
                (":authority", "tokens"),
            ];
            if self.header("x-probe-call-bad").is_some() {
                headers.retain(|(k, _)| *k != ":authority");
            }
            return match self.dispatch_http_call(
                &cluster,
                headers,
                None,
                vec![],
                Duration::from_millis(timeout),
            ) {
                Ok(_) => Action::Pause,
                Err(s) => self.reply(500, format!("call failed: {s:?}")),
            };
        }
        if let Some(spec) = self.header("x-probe-queue") {
            let (name, payload) = spec.split_once('=').unwrap_or((&spec, ""));
            let vm = self
                .header("x-probe-vm")
                .unwrap_or_else(|| "s2s-guard".into());
            return match hostcalls::resolve_shared_queue(&vm, name) {
                Ok(Some(id)) => match hostcalls::enqueue_shared_queue(id, Some(payload.as_bytes()))
                {
                    Ok(()) => self.reply(200, "enqueued".into()),
                    Err(s) => self.reply(500, format!("{s:?}")),
                },
                Ok(None) => self.reply(404, "no such queue".into()),
                Err(s) => self.reply(500, format!("{s:?}")),
            };
        }
        if let Some(path) = self.header("x-probe-property") {
            let parts: Vec<&str> = path.split('.').collect();
            return match self.get_property(parts) {
                Some(v) => self.reply(200, String::from_utf8_lossy(&v).into_owned()),
                None => self.reply(404, "no property".into()),
            };
        }
        if self.header("x-probe-headers").is_some() {
            let all = self.get_http_request_headers_bytes();
            let text: Vec<String> = all
                .iter()
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                .collect();
            return self.reply(200, text.join("\n"));
        }
        if self.header("x-probe-body").is_some() {
            self.body_mode = true;
            return Action::Continue;
        }
        if let Some(mode) = self.header("x-probe-trailers") {
            self.trailers_mode = Some(mode);
            if self.mode_is("pause-headers") {
                return match self.call_tokens() {
                    Ok(_) => Action::Pause,
                    Err(s) => self.reply(500, format!("call failed: {s:?}")),
                };
            }
            return Action::Continue;
        }
        if self.header("x-probe-pause").is_some() {
            // Held until something continues the stream (never, here).
            return Action::Pause;
        }
        self.set_http_request_header("x-probe-seen", Some("1"));
        self.set_http_request_header("x-probe-remove-me", None);
        Action::Continue
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        if self.trailers_mode.is_some() {
            log::info!("body size={size} eos={eos}");
            if self.mode_is("maps") {
                // Maps not available now read as empty (Envoy), they do not trap.
                let headers = self.get_http_request_headers().len();
                let trailers = self.get_http_request_trailers().len();
                log::info!("body maps headers={headers} trailers={trailers}");
            }
            if self.mode_is("log") || self.mode_is("maps") || eos {
                return Action::Continue;
            }
            // Buffer the body until the end of the stream or the trailers.
            return Action::Pause;
        }
        if !self.body_mode {
            return Action::Continue;
        }
        if !eos {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, size).unwrap_or_default();
        let mut upper = body.to_ascii_uppercase();
        upper.extend_from_slice(b"!");
        self.set_http_request_body(0, size, &upper);
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, n: usize) -> Action {
        if self.trailers_mode.is_none() {
            return Action::Continue;
        }
        let pairs: Vec<String> = self
            .get_http_request_trailers()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        log::info!("trailers n={n} {}", pairs.join(","));
        let body = self.get_http_request_body(0, usize::MAX);
        log::info!(
            "trailers body={}",
            body.as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_else(|| "none".into())
        );
        self.set_http_request_trailer("x-probe-trailer-seen", Some("1"));
        self.set_http_request_trailer("x-probe-remove-me", None);
        let body = body.unwrap_or_default();
        match self.trailers_mode.as_deref().unwrap_or_default() {
            "read-body" => {
                self.set_http_request_trailer("x-probe-body-len", Some(&body.len().to_string()));
                Action::Continue
            }
            "replace-body" => {
                let mut upper = body.to_ascii_uppercase();
                upper.extend_from_slice(b"!");
                self.set_http_request_body(0, body.len(), &upper);
                Action::Continue
            }
            "pause-then-reply" | "pause-then-continue" => match self.call_tokens() {
                Ok(_) => Action::Pause,
                Err(s) => self.reply(500, format!("call failed: {s:?}")),
            },
            "pause-headers" if !self.call_done => Action::Pause,
            _ => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.set_http_response_header("x-probe-resp", Some("1"));
        Action::Continue
    }
}
