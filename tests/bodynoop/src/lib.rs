//! A proxy-wasm HTTP filter that buffers the whole request body, reads it once and
//! continues: the least a filter that decides on a form body must do. It is the
//! baseline for "a signed SDK POST costs at least 0.90 × a no-op filter that
//! buffers the body" (issue 11); `make bench` and `scripts/bench-nginx.sh` measure
//! s2s-guard against it.
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(BodyNoopRoot) });
}}

struct BodyNoopRoot;
impl Context for BodyNoopRoot {}
impl RootContext for BodyNoopRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(BodyNoopHttp))
    }
}

struct BodyNoopHttp;
impl Context for BodyNoopHttp {}
impl HttpContext for BodyNoopHttp {
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            // Buffer: the host keeps the chunks until the body is complete.
            return Action::Pause;
        }
        // The whole body, read once (as a filter parsing a form would).
        let body = self.get_http_request_body(0, body_size);
        std::hint::black_box(body);
        Action::Continue
    }
}
