//! The host side of the proxy-wasm ABI 0.2.1 and of the WASI calls a
//! `wasm32-wasip1` module imports. Every guest pointer is bounds-checked; a bad one
//! is recorded as misuse and answered with `InvalidMemoryAccess`, on which the Rust
//! SDK panics: the trap the test then sees is the one Envoy would cause.

use wasmtime::{Caller, Extern, Linker, Memory, Module, Val};

use crate::pairs::{self, Headers};
use crate::{CallRequest, LocalReply, LogEntry, LogLevel, Metric, MetricKind, Phase, WorkerState};

type C<'a> = Caller<'a, WorkerState>;
type R = wasmtime::Result<i32>;

const OK: i32 = 0;
const NOT_FOUND: i32 = 1;
const BAD_ARGUMENT: i32 = 2;
const SERIALIZATION_FAILURE: i32 = 3;
const INVALID_MEMORY_ACCESS: i32 = 6;
const EMPTY: i32 = 7;
const CAS_MISMATCH: i32 = 8;
const INTERNAL_FAILURE: i32 = 10;
const UNIMPLEMENTED: i32 = 12;

const WASI_ENOSYS: i32 = 52;
const WASI_EBADF: i32 = 8;

/// A failed guest memory access; already recorded as misuse.
struct Fault;

fn memory(c: &mut C) -> Option<Memory> {
    c.get_export("memory").and_then(Extern::into_memory)
}

fn misuse(c: &mut C, what: String) {
    let index = c.data().index;
    c.data_mut().misuse.push(what.clone());
    c.data().shared().logs.push(LogEntry {
        worker: index,
        level: LogLevel::Error,
        message: format!("[host] host-call misuse: {what}"),
    });
}

fn read(c: &mut C, ptr: i32, len: i32) -> Result<Vec<u8>, Fault> {
    let (ptr, len) = (ptr as u32 as usize, len as u32 as usize);
    let Some(mem) = memory(c) else {
        misuse(c, "module exports no memory".into());
        return Err(Fault);
    };
    let data = mem.data(&*c);
    match ptr.checked_add(len).and_then(|end| data.get(ptr..end)) {
        Some(bytes) => Ok(bytes.to_vec()),
        None => {
            let size = data.len();
            misuse(
                c,
                format!("read of {len} bytes at {ptr} outside memory of {size} bytes"),
            );
            Err(Fault)
        }
    }
}

fn write(c: &mut C, ptr: i32, bytes: &[u8]) -> Result<(), Fault> {
    let ptr = ptr as u32 as usize;
    let Some(mem) = memory(c) else {
        misuse(c, "module exports no memory".into());
        return Err(Fault);
    };
    let data = mem.data_mut(&mut *c);
    match ptr
        .checked_add(bytes.len())
        .and_then(|end| data.get_mut(ptr..end))
    {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            Ok(())
        }
        None => {
            let (len, size) = (bytes.len(), data.len());
            misuse(
                c,
                format!("write of {len} bytes at {ptr} outside memory of {size} bytes"),
            );
            Err(Fault)
        }
    }
}

fn write_u32(c: &mut C, ptr: i32, v: u32) -> Result<(), Fault> {
    write(c, ptr, &v.to_le_bytes())
}

fn read_str(c: &mut C, ptr: i32, len: i32) -> Result<String, Fault> {
    let bytes = read(c, ptr, len)?;
    String::from_utf8(bytes).map_err(|_| {
        misuse(c, "string argument is not UTF-8".into());
        Fault
    })
}

/// Copies `bytes` into memory the guest allocates (via `malloc`, else
/// `proxy_on_memory_allocate`, as Envoy looks them up) and writes pointer and size.
/// An empty value is returned as a null pointer, as Envoy does.
fn return_bytes(
    c: &mut C,
    bytes: &[u8],
    ret_ptr: i32,
    ret_size: i32,
) -> wasmtime::Result<Result<(), Fault>> {
    if bytes.is_empty() {
        return Ok(write_u32(c, ret_ptr, 0).and_then(|_| write_u32(c, ret_size, 0)));
    }
    let alloc = c
        .get_export("malloc")
        .or_else(|| c.get_export("proxy_on_memory_allocate"))
        .and_then(Extern::into_func);
    let Some(alloc) = alloc else {
        misuse(
            c,
            "module exports neither malloc nor proxy_on_memory_allocate".into(),
        );
        return Ok(Err(Fault));
    };
    let alloc = alloc.typed::<i32, i32>(&*c)?;
    let ptr = alloc.call(&mut *c, bytes.len() as i32)?;
    if ptr == 0 {
        misuse(
            c,
            format!("guest allocator returned null for {} bytes", bytes.len()),
        );
        return Ok(Err(Fault));
    }
    Ok(write(c, ptr, bytes)
        .and_then(|_| write_u32(c, ret_ptr, ptr as u32))
        .and_then(|_| write_u32(c, ret_size, bytes.len() as u32)))
}

fn status(r: Result<(), Fault>) -> i32 {
    match r {
        Ok(()) => OK,
        Err(Fault) => INVALID_MEMORY_ACCESS,
    }
}

macro_rules! try_mem {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(Fault) => return Ok(INVALID_MEMORY_ACCESS),
        }
    };
}

/// Which header map a map type names, if it is available now (Envoy answers
/// `BadArgument` for a map that is not currently available).
fn with_map<T>(
    state: &mut WorkerState,
    map_type: i32,
    f: impl FnOnce(&mut Headers) -> T,
) -> Result<T, i32> {
    if map_type == 6 || map_type == 7 {
        return match &mut state.call_response {
            Some((headers, _)) if map_type == 6 => Ok(f(headers)),
            Some(_) => Ok(f(&mut Vec::new())),
            None => Err(BAD_ARGUMENT),
        };
    }
    let ctx = state.effective_context;
    let Some(s) = state.streams.get_mut(&ctx) else {
        return Err(BAD_ARGUMENT);
    };
    match map_type {
        0 if !s.request_headers_sent => Ok(f(&mut s.request_headers)),
        1 if s.request_trailers_available() => Ok(f(&mut s.request_trailers)),
        2 if s.phase == Phase::ResponseHeaders => Ok(f(&mut s.response_headers)),
        3 if s.phase == Phase::ResponseHeaders || s.phase == Phase::ResponseBody => {
            Ok(f(&mut s.response_trailers))
        }
        _ => Err(BAD_ARGUMENT),
    }
}

/// Header names are case-insensitive; Envoy stores them lower-case.
fn lower(key: &str) -> String {
    key.to_ascii_lowercase()
}

fn property(state: &WorkerState, path: &[&str]) -> Option<Vec<u8>> {
    let o = &state.opts;
    let text = |s: &str| Some(s.as_bytes().to_vec());
    let int = |v: i64| Some(v.to_le_bytes().to_vec());
    match path {
        ["plugin_name"] => return text(&o.plugin_name),
        ["plugin_root_id"] => return text(&o.root_id),
        ["plugin_vm_id"] => return text(&o.vm_id),
        ["xds", "route_name"] => return text(&o.route_name),
        ["xds", "cluster_name"] => return text(&o.cluster_name),
        _ => {}
    }
    let s = state.streams.get(&state.effective_context)?;
    let r = &s.request;
    let (url_path, query) = match r.path.split_once('?') {
        Some((p, q)) => (p, q),
        None => (r.path.as_str(), ""),
    };
    match path {
        ["request", "path"] => text(&r.path),
        ["request", "url_path"] => text(url_path),
        ["request", "query"] => text(query),
        ["request", "method"] => text(&r.method),
        ["request", "host"] => text(&r.authority),
        ["request", "scheme"] => text(&r.scheme),
        ["request", "protocol"] => text(r.protocol.name()),
        ["request", "size"] => int(r.body.len() as i64),
        ["request", "headers"] => Some(pairs::encode(&r.envoy_headers())),
        ["request", "headers", name] => {
            crate::header_value(&r.envoy_headers(), name).map(|v| v.to_vec())
        }
        ["source", "address"] => text(&r.source_address),
        ["source", "port"] => {
            let port = r.source_address.rsplit_once(':')?.1.parse::<i64>().ok()?;
            int(port)
        }
        ["destination", "address"] => text("10.0.0.2:8080"),
        ["destination", "port"] => int(8080),
        ["connection", "mtls"] => Some(vec![r.mtls as u8]),
        ["response", "code"] => {
            let v = crate::header_value(&s.response_headers, ":status")?;
            int(std::str::from_utf8(v).ok()?.parse().ok()?)
        }
        _ => None,
    }
}

/// Envoy's stats are process-wide: a name defined by several workers is one metric.
fn define_metric(state: &WorkerState, kind: i32, name: String) -> Option<u32> {
    let kind = match kind {
        0 => MetricKind::Counter,
        1 => MetricKind::Gauge,
        2 => MetricKind::Histogram,
        _ => return None,
    };
    let mut sh = state.shared();
    if let Some(id) = sh.metric_ids.get(&name) {
        return Some(*id);
    }
    let id = sh.metrics.len() as u32 + 1;
    sh.metrics.push(Metric {
        name: name.clone(),
        kind,
        value: 0,
        samples: Vec::new(),
    });
    sh.metric_ids.insert(name, id);
    Some(id)
}

pub(crate) fn add_to_linker(l: &mut Linker<WorkerState>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_log",
        |mut c: C, level: i32, ptr: i32, len: i32| -> R {
            let msg = try_mem!(read(&mut c, ptr, len));
            let Some(level) = LogLevel::from_u32(level as u32) else {
                return Ok(BAD_ARGUMENT);
            };
            let worker = c.data().index;
            c.data().shared().logs.push(LogEntry {
                worker,
                level,
                message: String::from_utf8_lossy(&msg).into_owned(),
            });
            Ok(OK)
        },
    )?;
    l.func_wrap("env", "proxy_get_log_level", |mut c: C, ret: i32| -> R {
        let level = c.data().opts.log_level as u32;
        Ok(status(write_u32(&mut c, ret, level)))
    })?;
    l.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C, ret: i32| -> R {
            let now = c.data().shared().clock_ns;
            Ok(status(write(&mut c, ret, &now.to_le_bytes())))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C, period: i32| -> R {
            let now = c.data().shared().clock_ns;
            let s = c.data_mut();
            s.tick_period_ms = period as u32;
            s.next_tick_ns = (period != 0).then(|| now + period as u32 as u64 * 1_000_000);
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_size: i32| -> R {
            let data: Option<Vec<u8>> = {
                let s = c.data();
                let stream = s.streams.get(&s.effective_context);
                match kind {
                    // Envoy's getBuffer: the whole buffered body while the filter
                    // buffers it (any callback, the trailers' included), else the
                    // current chunk in a body callback, else an empty buffer.
                    0 => stream.map(|st| {
                        if st.request_body_available() {
                            st.request_body.clone()
                        } else {
                            Vec::new()
                        }
                    }),
                    1 => stream
                        .filter(|st| st.phase == Phase::ResponseBody)
                        .map(|st| st.response_body.clone()),
                    4 => s.call_response.as_ref().map(|(_, b)| b.clone()),
                    6 => Some(s.opts.vm_config.clone()),
                    7 => Some(s.plugin_config.clone()),
                    _ => None,
                }
            };
            let Some(data) = data else {
                return Ok(NOT_FOUND);
            };
            let (start, max) = (start as u32 as usize, max as u32 as usize);
            if start > data.len() {
                return Ok(BAD_ARGUMENT);
            }
            let end = start.saturating_add(max).min(data.len());
            Ok(status(return_bytes(
                &mut c,
                &data[start..end],
                ret_ptr,
                ret_size,
            )?))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C, kind: i32, start: i32, size: i32, ptr: i32, len: i32| -> R {
            let value = try_mem!(read(&mut c, ptr, len));
            let s = c.data_mut();
            let ctx = s.effective_context;
            let Some(st) = s.streams.get_mut(&ctx) else {
                return Ok(NOT_FOUND);
            };
            let buf = match kind {
                0 if st.request_body_available() => &mut st.request_body,
                // No body buffer to write to: Envoy's BufferBase::copyFrom refuses.
                0 => return Ok(BAD_ARGUMENT),
                1 if st.phase == Phase::ResponseBody => &mut st.response_body,
                1 => return Ok(NOT_FOUND),
                _ => return Ok(BAD_ARGUMENT),
            };
            let (start, size) = (start as u32 as usize, size as u32 as usize);
            // Envoy supports exactly: prepend, replace all, append.
            if start == 0 && size == 0 {
                buf.splice(0..0, value);
            } else if start == 0 && size >= buf.len() {
                *buf = value;
            } else if start >= buf.len() {
                buf.extend_from_slice(&value);
            } else {
                return Ok(BAD_ARGUMENT);
            }
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C, kind: i32, ret_ptr: i32, ret_size: i32| -> R {
            // Envoy's getHeaderMapPairs reads getConstMap: a map not available now
            // is an empty map (Ok), not an error; an empty map comes back as null.
            let enc = match with_map(c.data_mut(), kind, |m| {
                if m.is_empty() {
                    Vec::new()
                } else {
                    pairs::encode(m)
                }
            }) {
                Ok(e) => e,
                Err(_) if (0..=7).contains(&kind) => Vec::new(),
                Err(st) => return Ok(st),
            };
            Ok(status(return_bytes(&mut c, &enc, ret_ptr, ret_size)?))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C, kind: i32, ptr: i32, len: i32| -> R {
            let raw = try_mem!(read(&mut c, ptr, len));
            let map = match pairs::decode(&raw) {
                Ok(m) => m,
                Err(e) => {
                    misuse(&mut c, format!("set_header_map_pairs: {e}"));
                    return Ok(SERIALIZATION_FAILURE);
                }
            };
            let map: Headers = map.into_iter().map(|(k, v)| (lower(&k), v)).collect();
            Ok(with_map(c.data_mut(), kind, |m| *m = map).map_or_else(|st| st, |_| OK))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C, kind: i32, kptr: i32, klen: i32, ret_ptr: i32, ret_size: i32| -> R {
            let key = lower(&try_mem!(read_str(&mut c, kptr, klen)));
            // Envoy returns the first value only (multiple values need the pairs call).
            let found = with_map(c.data_mut(), kind, |m| {
                m.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
            });
            match found {
                Err(st) => Ok(st),
                Ok(None) => Ok(NOT_FOUND),
                Ok(Some(v)) => {
                    // A present but empty value is an empty string, not "absent".
                    if v.is_empty() {
                        return Ok(status(
                            write_u32(&mut c, ret_ptr, 0)
                                .and_then(|_| write_u32(&mut c, ret_size, 0)),
                        ));
                    }
                    Ok(status(return_bytes(&mut c, &v, ret_ptr, ret_size)?))
                }
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C, kind: i32, kptr: i32, klen: i32, vptr: i32, vlen: i32| -> R {
            let key = lower(&try_mem!(read_str(&mut c, kptr, klen)));
            let value = try_mem!(read(&mut c, vptr, vlen));
            // Replace drops every existing instance, then sets one value.
            let r = with_map(c.data_mut(), kind, |m| {
                m.retain(|(k, _)| *k != key);
                m.push((key.clone(), value));
            });
            Ok(r.map_or_else(|st| st, |_| OK))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C, kind: i32, kptr: i32, klen: i32| -> R {
            let key = lower(&try_mem!(read_str(&mut c, kptr, klen)));
            let r = with_map(c.data_mut(), kind, |m| m.retain(|(k, _)| *k != key));
            Ok(r.map_or_else(|st| st, |_| OK))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C, kind: i32, kptr: i32, klen: i32, vptr: i32, vlen: i32| -> R {
            let key = lower(&try_mem!(read_str(&mut c, kptr, klen)));
            let value = try_mem!(read(&mut c, vptr, vlen));
            let r = with_map(c.data_mut(), kind, |m| m.push((key, value)));
            Ok(r.map_or_else(|st| st, |_| OK))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C, pptr: i32, plen: i32, ret_ptr: i32, ret_size: i32| -> R {
            let raw = try_mem!(read(&mut c, pptr, plen));
            let Ok(path) = std::str::from_utf8(&raw) else {
                return Ok(NOT_FOUND);
            };
            let parts: Vec<&str> = path.split('\0').collect();
            match property(c.data(), &parts) {
                Some(v) => Ok(status(return_bytes(&mut c, &v, ret_ptr, ret_size)?)),
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C, pptr: i32, plen: i32, vptr: i32, vlen: i32| -> R {
            try_mem!(read(&mut c, pptr, plen));
            try_mem!(read(&mut c, vptr, vlen));
            // Filter state writes are accepted and not modelled further.
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C, kptr: i32, klen: i32, ret_ptr: i32, ret_size: i32, ret_cas: i32| -> R {
            let key = try_mem!(read_str(&mut c, kptr, klen));
            let found = {
                let mut sh = c.data().shared();
                let found = sh.shared_data.get(&key).cloned();
                if let Some(v) = sh.after_read.remove(&key) {
                    sh.next_cas = sh.next_cas.wrapping_add(1).max(1);
                    let next = sh.next_cas;
                    sh.shared_data.insert(key.clone(), (v, next));
                }
                found
            };
            let Some((value, cas)) = found else {
                return Ok(NOT_FOUND);
            };
            if let Err(Fault) = return_bytes(&mut c, &value, ret_ptr, ret_size)? {
                return Ok(INVALID_MEMORY_ACCESS);
            }
            Ok(status(write_u32(&mut c, ret_cas, cas)))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C, kptr: i32, klen: i32, vptr: i32, vlen: i32, cas: i32| -> R {
            let key = try_mem!(read_str(&mut c, kptr, klen));
            let value = try_mem!(read(&mut c, vptr, vlen));
            let s = c.data();
            let mut sh = s.shared();
            let cas = cas as u32;
            // As Envoy: a CAS only guards an existing key; every write gets a new CAS.
            // Strict (ngx_wasm_module): a missing key's CAS is 0, and 0 guards too.
            let current = sh.shared_data.get(&key).map(|(_, c)| *c);
            let mismatch = if sh.strict_cas {
                cas != current.unwrap_or(0)
            } else {
                current.is_some_and(|c| cas != 0 && cas != c)
            };
            if mismatch {
                return Ok(CAS_MISMATCH);
            }
            sh.next_cas = sh.next_cas.wrapping_add(1).max(1);
            let next = sh.next_cas;
            sh.shared_data.insert(key, (value, next));
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C, nptr: i32, nlen: i32, ret_id: i32| -> R {
            let name = try_mem!(read_str(&mut c, nptr, nlen));
            let (worker, ctx) = (c.data().index, c.data().effective_context);
            let vm_id = c.data().opts.vm_id.clone();
            let id = {
                let s = c.data();
                let mut sh = s.shared();
                match sh
                    .queues
                    .iter()
                    .position(|q| q.vm_id == vm_id && q.name == name)
                {
                    Some(i) => {
                        sh.queues[i].owner_worker = worker;
                        sh.queues[i].owner_context = ctx;
                        i as u32 + 1
                    }
                    None => {
                        sh.queues.push(crate::Queue {
                            vm_id,
                            name,
                            owner_worker: worker,
                            owner_context: ctx,
                            items: Default::default(),
                        });
                        sh.queues.len() as u32
                    }
                }
            };
            Ok(status(write_u32(&mut c, ret_id, id)))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C, vptr: i32, vlen: i32, nptr: i32, nlen: i32, ret_id: i32| -> R {
            let vm_id = try_mem!(read_str(&mut c, vptr, vlen));
            let name = try_mem!(read_str(&mut c, nptr, nlen));
            let found = c
                .data()
                .shared()
                .queues
                .iter()
                .position(|q| q.vm_id == vm_id && q.name == name);
            match found {
                Some(i) => Ok(status(write_u32(&mut c, ret_id, i as u32 + 1))),
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C, id: i32, vptr: i32, vlen: i32| -> R {
            let value = try_mem!(read(&mut c, vptr, vlen));
            let s = c.data();
            let mut sh = s.shared();
            let Some(q) = (id as u32 as usize)
                .checked_sub(1)
                .and_then(|i| sh.queues.get_mut(i))
            else {
                return Ok(NOT_FOUND);
            };
            q.items.push_back(value);
            let (w, ctx) = (q.owner_worker, q.owner_context);
            sh.queue_ready.push_back((w, ctx, id as u32));
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C, id: i32, ret_ptr: i32, ret_size: i32| -> R {
            let item = {
                let s = c.data();
                let mut sh = s.shared();
                let Some(q) = (id as u32 as usize)
                    .checked_sub(1)
                    .and_then(|i| sh.queues.get_mut(i))
                else {
                    return Ok(NOT_FOUND);
                };
                q.items.pop_front()
            };
            match item {
                None => Ok(EMPTY),
                Some(v) => Ok(status(return_bytes(&mut c, &v, ret_ptr, ret_size)?)),
            }
        },
    )?;
    l.func_wrap("env", "proxy_continue_stream", |mut c: C, kind: i32| -> R {
        let s = c.data_mut();
        let ctx = s.effective_context;
        let Some(st) = s.streams.get_mut(&ctx) else {
            return Ok(BAD_ARGUMENT);
        };
        match kind {
            0 | 1 => {
                st.continue_requested = true;
                Ok(OK)
            }
            _ => Ok(BAD_ARGUMENT),
        }
    })?;
    l.func_wrap("env", "proxy_close_stream", |mut c: C, kind: i32| -> R {
        let s = c.data_mut();
        let ctx = s.effective_context;
        let Some(st) = s.streams.get_mut(&ctx) else {
            return Ok(BAD_ARGUMENT);
        };
        if kind > 1 {
            return Ok(BAD_ARGUMENT);
        }
        // Envoy resets the stream; the client sees no response.
        if st.local_reply.is_none() {
            st.local_reply = Some(LocalReply {
                status: 0,
                details: "reset_by_filter".into(),
                body: Vec::new(),
                headers: Vec::new(),
            });
        }
        Ok(OK)
    })?;
    l.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C,
         status_code: i32,
         dptr: i32,
         dlen: i32,
         bptr: i32,
         blen: i32,
         hptr: i32,
         hlen: i32,
         _grpc: i32|
         -> R {
            let details = String::from_utf8_lossy(&try_mem!(read(&mut c, dptr, dlen))).into_owned();
            let body = try_mem!(read(&mut c, bptr, blen));
            let raw = try_mem!(read(&mut c, hptr, hlen));
            let headers = match pairs::decode(&raw) {
                Ok(h) => h.into_iter().map(|(k, v)| (lower(&k), v)).collect(),
                Err(e) => {
                    misuse(&mut c, format!("send_local_response headers: {e}"));
                    return Ok(SERIALIZATION_FAILURE);
                }
            };
            let s = c.data_mut();
            let ctx = s.effective_context;
            let Some(st) = s.streams.get_mut(&ctx) else {
                return Ok(BAD_ARGUMENT);
            };
            if st.local_reply.is_none() && st.outcome.is_none() {
                st.local_reply = Some(LocalReply {
                    status: status_code as u32 as u16,
                    details,
                    body,
                    headers,
                });
            }
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C,
         uptr: i32,
         ulen: i32,
         hptr: i32,
         hlen: i32,
         bptr: i32,
         blen: i32,
         tptr: i32,
         tlen: i32,
         timeout: i32,
         ret_token: i32|
         -> R {
            let cluster = try_mem!(read_str(&mut c, uptr, ulen));
            let raw = try_mem!(read(&mut c, hptr, hlen));
            let body = try_mem!(read(&mut c, bptr, blen));
            try_mem!(read(&mut c, tptr, tlen));
            let Ok(headers) = pairs::decode(&raw) else {
                misuse(
                    &mut c,
                    "http_call headers are not a valid pairs buffer".into(),
                );
                return Ok(BAD_ARGUMENT);
            };
            let has = |n: &str| headers.iter().any(|(k, v)| k == n && !v.is_empty());
            // Envoy refuses a call without these, or to a cluster it does not know.
            if !(has(":method") && has(":path") && has(":authority")) {
                return Ok(BAD_ARGUMENT);
            }
            if !c.data().shared().clusters.contains(&cluster) {
                return Ok(BAD_ARGUMENT);
            }
            let at_ns = c.data().shared().clock_ns;
            let s = c.data_mut();
            let token = s.next_token;
            s.next_token += 1;
            let context = s.effective_context;
            let req = CallRequest {
                cluster,
                headers,
                body,
                timeout_ms: timeout as u32,
                worker: s.index,
                at_ns,
            };
            s.new_calls.push((token, context, req));
            Ok(status(write_u32(&mut c, ret_token, token)))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C, ctx: i32| -> R {
            let s = c.data_mut();
            let ctx = ctx as u32;
            // Root contexts (current or being replaced) and live streams are valid targets.
            if ctx != 0 {
                s.effective_context = ctx;
                Ok(OK)
            } else {
                Ok(BAD_ARGUMENT)
            }
        },
    )?;
    l.func_wrap("env", "proxy_done", |mut c: C| -> R {
        c.data_mut().done_requested = true;
        Ok(OK)
    })?;
    l.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C, kind: i32, nptr: i32, nlen: i32, ret_id: i32| -> R {
            let name = try_mem!(read_str(&mut c, nptr, nlen));
            match define_metric(c.data(), kind, name) {
                Some(id) => Ok(status(write_u32(&mut c, ret_id, id))),
                None => Ok(BAD_ARGUMENT),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_increment_metric",
        |c: C, id: i32, offset: i64| -> R {
            let s = c.data();
            let mut sh = s.shared();
            let Some(m) = (id as u32 as usize)
                .checked_sub(1)
                .and_then(|i| sh.metrics.get_mut(i))
            else {
                return Ok(NOT_FOUND);
            };
            match m.kind {
                MetricKind::Counter if offset < 0 => Ok(BAD_ARGUMENT),
                MetricKind::Histogram => Ok(BAD_ARGUMENT),
                _ => {
                    m.value = m.value.saturating_add(offset);
                    Ok(OK)
                }
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_record_metric",
        |c: C, id: i32, value: i64| -> R {
            let s = c.data();
            let mut sh = s.shared();
            let Some(m) = (id as u32 as usize)
                .checked_sub(1)
                .and_then(|i| sh.metrics.get_mut(i))
            else {
                return Ok(NOT_FOUND);
            };
            match m.kind {
                MetricKind::Histogram => m.samples.push(value as u64),
                _ => m.value = value,
            }
            Ok(OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C, id: i32, ret: i32| -> R {
            let value = {
                let s = c.data();
                let sh = s.shared();
                match (id as u32 as usize)
                    .checked_sub(1)
                    .and_then(|i| sh.metrics.get(i))
                {
                    Some(m) if m.kind != MetricKind::Histogram => m.value as u64,
                    Some(_) => return Ok(BAD_ARGUMENT),
                    None => return Ok(NOT_FOUND),
                }
            };
            Ok(status(write(&mut c, ret, &value.to_le_bytes())))
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |_c: C, _a: i32, _b: i32, _d: i32, _e: i32, _f: i32, _g: i32| -> R { Ok(NOT_FOUND) },
    )?;
    let _ = INTERNAL_FAILURE;
    Ok(())
}

/// WASI (`wasi_snapshot_preview1`) as far as a proxy-wasm module uses it, and a
/// defined answer for everything else the module imports: `Unimplemented` for
/// unknown `env` calls, `ENOSYS` for unknown WASI calls.
pub(crate) fn add_wasi_to_linker(
    l: &mut Linker<WorkerState>,
    module: &Module,
) -> wasmtime::Result<()> {
    const W: &str = "wasi_snapshot_preview1";
    l.func_wrap(
        W,
        "fd_write",
        |mut c: C, fd: i32, iovs: i32, n: i32, ret: i32| -> R {
            let mut out = Vec::new();
            for i in 0..n {
                let iov = match read(&mut c, iovs.wrapping_add(i * 8), 8) {
                    Ok(v) => v,
                    Err(Fault) => return Ok(21), // EFAULT
                };
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                match read(&mut c, ptr, len) {
                    Ok(v) => out.extend(v),
                    Err(Fault) => return Ok(21),
                }
            }
            let level = match fd {
                1 => LogLevel::Info,
                2 => LogLevel::Error,
                _ => return Ok(WASI_EBADF),
            };
            let worker = c.data().index;
            let text = String::from_utf8_lossy(&out).trim_end().to_string();
            if !text.is_empty() {
                c.data().shared().logs.push(LogEntry {
                    worker,
                    level,
                    message: format!("[{}] {text}", if fd == 1 { "stdout" } else { "stderr" }),
                });
            }
            Ok(match write_u32(&mut c, ret, out.len() as u32) {
                Ok(()) => 0,
                Err(Fault) => 21,
            })
        },
    )?;
    l.func_wrap(
        W,
        "clock_time_get",
        |mut c: C, _id: i32, _precision: i64, ret: i32| -> R {
            let now = c.data().shared().clock_ns;
            Ok(match write(&mut c, ret, &now.to_le_bytes()) {
                Ok(()) => 0,
                Err(Fault) => 21,
            })
        },
    )?;
    l.func_wrap(W, "random_get", |mut c: C, ptr: i32, len: i32| -> R {
        let bytes: Vec<u8> = {
            let s = c.data();
            let mut sh = s.shared();
            (0..len.max(0))
                .map(|_| {
                    // xorshift64: deterministic, so test runs repeat exactly.
                    let mut x = sh.random_state;
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    sh.random_state = x;
                    x as u8
                })
                .collect()
        };
        Ok(match write(&mut c, ptr, &bytes) {
            Ok(()) => 0,
            Err(Fault) => 21,
        })
    })?;
    for (name, _) in [("environ_sizes_get", ()), ("args_sizes_get", ())] {
        l.func_wrap(W, name, |mut c: C, count: i32, size: i32| -> R {
            Ok(
                match write_u32(&mut c, count, 0).and_then(|_| write_u32(&mut c, size, 0)) {
                    Ok(()) => 0,
                    Err(Fault) => 21,
                },
            )
        })?;
    }
    for name in ["environ_get", "args_get"] {
        l.func_wrap(W, name, |_c: C, _a: i32, _b: i32| -> R { Ok(0) })?;
    }
    l.func_wrap(W, "sched_yield", |_c: C| -> R { Ok(0) })?;
    l.func_wrap(W, "proc_exit", |_c: C, code: i32| -> wasmtime::Result<()> {
        wasmtime::bail!("proc_exit({code})")
    })?;

    // Everything else the module imports gets a defined answer instead of a link error.
    let mut probe = wasmtime::Store::new(module.engine(), dummy_state());
    for import in module.imports() {
        let (m, name) = (import.module().to_string(), import.name().to_string());
        if l.get_by_import(&mut probe, &import).is_some() {
            continue;
        }
        let Some(ty) = import.ty().func().cloned() else {
            wasmtime::bail!("unsupported non-function import {m}.{name}");
        };
        let answer = if m == W {
            WASI_ENOSYS
        } else if m == "env" {
            UNIMPLEMENTED
        } else {
            wasmtime::bail!("unsupported import module {m} ({name})");
        };
        let results: Vec<_> = ty.results().collect();
        l.func_new(&m, &name, ty.clone(), move |_c, _params, out| {
            for (slot, t) in out.iter_mut().zip(results.iter()) {
                *slot = match t {
                    wasmtime::ValType::I64 => Val::I64(answer as i64),
                    wasmtime::ValType::F32 => Val::F32(0),
                    wasmtime::ValType::F64 => Val::F64(0),
                    _ => Val::I32(answer),
                };
            }
            Ok(())
        })?;
    }
    Ok(())
}

fn dummy_state() -> WorkerState {
    use std::sync::{Arc, Mutex};
    WorkerState {
        index: usize::MAX,
        shared: Arc::new(Mutex::new(Default::default())),
        opts: Arc::new(Default::default()),
        root_context: 0,
        effective_context: 0,
        streams: Default::default(),
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
        plugin_config: Vec::new(),
    }
}
