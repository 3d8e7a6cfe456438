//! Trust boundaries: a token opens only routes of its own realm. With the shipped
//! edge configuration (`envoy/edge.yaml`: Adjust, Swaarm and Jitsu in one listener),
//! each system's token, presented in every place every other system reads a
//! credential, is refused on every token route of the other systems; natively and
//! through the `.wasm`.

mod common;

use common::{run_native, Observed, WasmRunner};
use s2s_guard_host::Request;

const ADJUST: &str = "v8s5opi0zs45607l8h8c48wak2vxb5oe";
const SWAARM: &str = "s2sTokenForTheStoreApp";
const JITSU_CLIENT: &str = "bd33c5fa-d69f-11ea-87d0-0242ac130003";
const JITSU_SERVER: &str = "5f15eba2-db58-11ea-87d0-0242ac130003";
const APP: &str = "abc123kuvada7";

/// The s2s-guard configuration embedded in a shipped Envoy file (a single-quoted
/// YAML scalar on one line).
fn shipped(file: &str) -> String {
    let text = std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("value: '{"))
        .unwrap_or_else(|| panic!("no embedded configuration in {file}"));
    let v = line.trim_start().trim_start_matches("value: '");
    v.strip_suffix('\'').unwrap().replace("''", "'")
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum System {
    Adjust,
    Swaarm,
    Jitsu,
}

/// A request to a token route of `system`, carrying `token` wherever that system
/// reads one (the route's own sources), with every other parameter valid.
fn requests(system: System, token: &str) -> Vec<(String, Request)> {
    let mut out = Vec::new();
    match system {
        System::Adjust => {
            for p in ["/event", "/session", "/ad_revenue", "/gdpr_forget_device"] {
                let path = format!("{p}?s2s=1&app_token={APP}&event_token=e");
                out.push((
                    format!("POST {p} Bearer"),
                    Request::post(&path).header("authorization", format!("Bearer {token}")),
                ));
            }
        }
        System::Swaarm => {
            let q = "user_id=u&event_id=e&user_ip=1.2.3.4&user_ua=UA";
            for p in ["/postback", "/s2sevent"] {
                out.push((
                    format!("GET {p} raw Authorization"),
                    Request::get(&format!("{p}?{q}")).header("authorization", token),
                ));
            }
            out.push((
                "GET /postback s2s_token".into(),
                Request::get(&format!("/postback?s2s_token={token}&{q}")),
            ));
            out.push((
                "GET /s2sevent token".into(),
                Request::get(&format!("/s2sevent?token={token}&{q}")),
            ));
        }
        System::Jitsu => {
            for p in [
                "/api/v1/event",
                "/api/v1/events",
                "/api/v1/s2s/event",
                "/api/v1/s2s/events",
                "/api/v1/events/bulk",
            ] {
                out.push((
                    format!("POST {p} X-Auth-Token"),
                    Request::post(p)
                        .header("x-auth-token", token)
                        .header("content-type", "application/json")
                        .body("{}"),
                ));
                out.push((
                    format!("POST {p} ?token"),
                    Request::post(&format!("{p}?token={token}"))
                        .header("content-type", "application/json")
                        .body("{}"),
                ));
            }
        }
    }
    out
}

fn tokens(system: System) -> Vec<&'static str> {
    match system {
        System::Adjust => vec![ADJUST],
        System::Swaarm => vec![SWAARM],
        System::Jitsu => vec![JITSU_CLIENT, JITSU_SERVER],
    }
}

const SYSTEMS: [System; 3] = [System::Adjust, System::Swaarm, System::Jitsu];

fn check(mut run: impl FnMut(&str, &Request) -> Observed, runner: &str) {
    let cfg = shipped("envoy/edge.yaml");
    let mut failures = Vec::new();
    for owner in SYSTEMS {
        for route_system in SYSTEMS {
            for token in tokens(owner) {
                for (what, req) in requests(route_system, token) {
                    let o = run(&cfg, &req);
                    if owner != route_system && o.forwarded {
                        failures.push(format!(
                            "[{runner}] {owner:?} token forwarded on {route_system:?} route: {what}"
                        ));
                    }
                }
            }
        }
        // Each system's own token still works on its routes (the realms are not
        // simply closed): at least one of its requests is forwarded.
        let own = requests(owner, tokens(owner).last().unwrap());
        if !own.iter().any(|(_, r)| run(&cfg, r).forwarded) {
            failures.push(format!(
                "[{runner}] {owner:?} token opens none of its routes"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn tokens_are_refused_on_other_systems_routes_native() {
    check(run_native, "native");
}

#[test]
fn tokens_are_refused_on_other_systems_routes_through_the_wasm() {
    let mut runner = WasmRunner::new();
    check(|cfg, r| runner.run(cfg, r), "wasm");
}

/// A token with no app does not open a route that checks the app, unless it says it
/// is valid for every app of its realm.
#[test]
fn a_token_without_app_needs_all_apps() {
    let cfg = |all: bool| {
        format!(
            r#"{{"presets": ["adjust"], "tokens": [{{"id": "ops", "secret": "ops-token", "all_apps": {all}}}],
               "apps": {{"{APP}": {{"authentication": true}}}}}}"#
        )
    };
    let req = Request::post(&format!("/event?s2s=1&app_token={APP}&event_token=e"))
        .header("authorization", "Bearer ops-token");
    let mut runner = WasmRunner::new();
    for (all, forwarded) in [(false, false), (true, true)] {
        let c = cfg(all);
        assert_eq!(
            run_native(&c, &req).forwarded,
            forwarded,
            "native all_apps={all}"
        );
        assert_eq!(
            runner.run(&c, &req).forwarded,
            forwarded,
            "wasm all_apps={all}"
        );
    }
}

/// Session 10, round 2 (helper-35) N4: a user route with a preset route's path
/// replaces it whole; when that drops the preset route's realm, app parameter,
/// scope, per-app enforcement or checks, the load says so (the route works as
/// configured: an operator may mean it).
#[test]
fn replacing_a_preset_route_with_less_is_warned_about() {
    use s2s_guard_host::{load_dist, Host, HostOptions, LogLevel};
    let host = |config: &str| {
        Host::new(
            &load_dist("s2s-guard.wasm"),
            HostOptions {
                workers: 1,
                plugin_config: config.as_bytes().to_vec(),
                ..HostOptions::default()
            },
        )
        .unwrap()
    };
    let h = host(
        r#"{"presets": ["adjust"], "routes": [{"path": "/event", "profile": "adjust", "methods": ["POST"]}]}"#,
    );
    let warnings = h.logs_at(LogLevel::Warn).join("\n");
    assert!(
        warnings.contains(
            "routes[0] replaces preset route adjust_event with another realm, app_param, scope, per_app_enforcement: the route is only what routes[0] says"
        ),
        "{warnings}"
    );
    // The same protections, another method list: nothing to say.
    let h = host(
        r#"{"presets": ["adjust"], "routes": [{"path": "/event", "profile": "adjust", "methods": ["POST"],
            "realm": "adjust", "app_param": "app_token", "scope": "events", "per_app_enforcement": true}]}"#,
    );
    let warnings = h.logs_at(LogLevel::Warn).join("\n");
    assert!(!warnings.contains("replaces preset route"), "{warnings}");
}
