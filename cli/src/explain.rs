//! `explain`: what a configuration does, as tables an operator reads before a
//! rollout. Everything shown comes from the compiled policy, so it is what the
//! filter will do, presets expanded and defaults applied.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use s2s_guard::policy::{
    BodyRule, Checks, LaterSdk, OriginMismatch, PathMatch, Policy, Role, Route,
};
use s2s_guard::token::Kind;

use crate::{input, Args, Fail};

use crate::input::mode;

fn checks(r: &Route) -> String {
    let c = match r.checks {
        Checks::Token => "token",
        Checks::Signature => "signature",
        Checks::TokenAndSignature => "token+signature",
        Checks::S2sTokenElseSignature => "token if s2s=1, else signature",
    };
    if r.per_app {
        format!("{c} (apps that switch it on)")
    } else {
        c.to_string()
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let mut widths = vec![0; rows.iter().map(Vec::len).max().unwrap_or(0)];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::from("  ");
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn duration_ms(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The whole explanation of a compiled policy.
pub fn describe(p: &Policy) -> String {
    let mut out = String::new();
    let profile = |i: usize| p.profiles.get(i).map_or("?", |p| p.name.as_str());
    let _ = writeln!(
        out,
        "mode: {}    unknown paths: {}    form bodies up to {} bytes{}",
        mode(p.mode),
        if p.reject_unknown_paths {
            format!("reject ({} profile)", profile(p.unknown_profile))
        } else {
            "pass".to_string()
        },
        p.max_body_bytes,
        if p.hold_headers_for_body {
            ", headers held for the body"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "credential stripped: {}    origin mismatch: {}",
        if p.strip_credential { "yes" } else { "no" },
        match p.origin_mismatch {
            OriginMismatch::Reject => "reject",
            OriginMismatch::OmitCors => "omit CORS (Jitsu)",
        }
    );

    let _ = writeln!(out, "\nroutes ({}):", p.routes.len());
    let mut rows = vec![[
        "PATH",
        "METHODS",
        "CHECKS",
        "SCOPE",
        "KINDS",
        "REALM",
        "PROFILE",
        "BODY",
        "CREDENTIALS",
    ]
    .map(String::from)
    .to_vec()];
    for r in &p.routes {
        let path = match &r.path {
            PathMatch::Exact(b) => String::from_utf8_lossy(b).into_owned(),
            PathMatch::Prefix(b) => format!("{}*", String::from_utf8_lossy(b)),
        };
        let methods = if r.methods.is_empty() {
            "any".to_string()
        } else {
            r.methods
                .iter()
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .collect::<Vec<_>>()
                .join(",")
        };
        let kinds = match (r.accept_server, r.accept_client) {
            (true, true) => "server,client",
            (true, false) => "server",
            (false, true) => "client",
            (false, false) => "none",
        };
        let mut creds: Vec<String> = if r.checks == Checks::Signature {
            Vec::new()
        } else {
            r.sources.iter().map(|s| s.describe()).collect()
        };
        if r.checks != Checks::Token {
            creds.push("Authorization: Signature".into());
        }
        rows.push(vec![
            path,
            methods,
            checks(r),
            r.scope.map_or("-".into(), |s| s.name().to_string()),
            kinds.into(),
            r.realm.clone(),
            profile(r.profile).into(),
            match r.body {
                BodyRule::Form => "form",
                BodyRule::Ignore => "ignored",
            }
            .into(),
            creds.join(", "),
        ]);
    }
    out.push_str(&table(&rows));

    let mut apps: Vec<&String> = p.apps.keys().chain(p.signatures.keys()).collect();
    apps.sort();
    apps.dedup();
    let _ = writeln!(
        out,
        "\napps ({}; unlisted apps: authentication {}):",
        apps.len(),
        if p.app_authentication_default {
            "on"
        } else {
            "off"
        }
    );
    if !apps.is_empty() {
        let mut rows = vec![["APP", "S2S AUTHENTICATION", "SDK SIGNATURE"]
            .map(String::from)
            .to_vec()];
        for app in apps {
            let auth = match p.apps.get(app) {
                None => "default".to_string(),
                Some(s) if !s.authentication => "off".to_string(),
                Some(s) => match s.authentication_scopes {
                    None => "on".to_string(),
                    Some(sc) => {
                        let names: Vec<&str> = s2s_guard::token::Scope::ALL
                            .into_iter()
                            .filter(|x| sc.contains(*x))
                            .map(|x| x.name())
                            .collect();
                        format!("on for {}", names.join(", "))
                    }
                },
            };
            let sig = match p.signatures.get(app) {
                None => "not checked".to_string(),
                Some(s) => format!(
                    "{}, {} secret(s) ({} active), max age {}s, later SDKs {}, replay {}",
                    if s.enforce_signature {
                        "enforced"
                    } else {
                        "checked when present"
                    },
                    s.secrets.len(),
                    s.secrets.iter().filter(|x| x.active).count(),
                    s.max_age,
                    match s.later_sdk {
                        LaterSdk::Pass => "pass",
                        LaterSdk::Flag => "flag",
                        LaterSdk::Reject => "reject",
                    },
                    if s.replay_enabled { "on" } else { "off" }
                ),
            };
            rows.push(vec![app.clone(), auth, sig]);
        }
        out.push_str(&table(&rows));
    }

    // Tokens by realm and kind (a token with two secrets counts under both).
    let mut by: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    for (_, t, kind) in p.tokens.entries() {
        let e = by.entry(t.realm.to_string()).or_default();
        match kind {
            Kind::Server => e[0] += 1,
            Kind::Client => e[1] += 1,
        }
        if !t.active {
            e[2] += 1;
        }
    }
    let _ = writeln!(out, "\ntokens ({}):", p.tokens.len());
    if !by.is_empty() {
        let mut rows = vec![["REALM", "SERVER SECRETS", "CLIENT SECRETS", "INACTIVE"]
            .map(String::from)
            .to_vec()];
        for (realm, [s, c, i]) in by {
            rows.push(vec![realm, s.to_string(), c.to_string(), i.to_string()]);
        }
        out.push_str(&table(&rows));
    }

    match &p.source {
        None => out.push_str("\ntoken source: none (the tokens above are all)\n"),
        Some(s) => {
            let _ = writeln!(
                out,
                "\ntoken source \"{}\": cluster {} path {} every {} (timeout {}), role {}, lookup {}, {}, before the first set: {}{}{}",
                s.name,
                s.cluster,
                s.path,
                duration_ms(s.period_ms),
                duration_ms(s.timeout_ms),
                match s.role {
                    Role::Auto => "auto (lease)",
                    Role::Fetcher => "fetcher",
                    Role::Reader => "reader",
                },
                if s.shared_lookup { "shared" } else { "copy" },
                if s.bundle_key.is_some() {
                    "signed sets"
                } else {
                    "unsigned sets"
                },
                if s.before_first_inline {
                    "inline tokens"
                } else {
                    "503"
                },
                match s.stale_after_ms {
                    None => String::new(),
                    Some(ms) => format!(
                        ", stale after {} ({})",
                        duration_ms(ms),
                        if s.stale_rejects { "503" } else { "served" }
                    ),
                },
                if s.apps_from_set {
                    ", sets may change apps"
                } else {
                    ""
                }
            );
        }
    }
    for w in &p.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

pub fn explain(args: Args) -> Result<ExitCode, Fail> {
    let path = args.one("configuration file")?;
    let text = input::read_file(&path)?;
    let found = input::configurations(&text).map_err(|Fail(m)| Fail(format!("{path}: {m}")))?;
    let mut status = ExitCode::SUCCESS;
    for f in &found {
        if found.len() > 1 || !f.label.is_empty() {
            println!("== {}", input::name(&path, f));
        }
        match s2s_guard::config::parse(f.json.as_bytes()) {
            Ok(p) => print!("{}", describe(&p)),
            Err(e) => {
                println!("FAIL {e}");
                status = ExitCode::FAILURE;
            }
        }
    }
    Ok(status)
}
