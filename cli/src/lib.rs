//! `s2s-guard`: the operator's tool for s2s-guard configurations. It runs the
//! filter's own pure core natively (the same validation, the same messages as
//! Envoy's log), with no Wasm and no proxy.

pub mod explain;
pub mod input;
pub mod secrets;
pub mod sign;

use std::process::ExitCode;

const USAGE: &str = "\
usage: s2s-guard <command> [options]

  check CONFIG [--set SET]     validate a configuration (JSON or YAML, or the ones
                               embedded in an Envoy bootstrap or an Istio WasmPlugin)
                               with the filter's own validation; exit 1 if invalid
  explain CONFIG               what the configuration does: routes, apps, tokens,
                               token source, mode
  token new [--id ID] [--app APP] [--scopes a,b] [--realm R] [--kind server|client]
                               a strong random token (printed once) and its entry
  hash                         SHA-256 digests of the secrets on stdin, one a line
  app-secret new --app APP [--id N]
                               an App Secret (Secret ID and four integers)
  sign --app APP --secret-id N (--info a,b,c,d | --secret DIGITS) --activity KIND
       [--url URL] [--device NAME=VALUE] [--sdk android4.38.0] [--created-at T]
       [NAME=VALUE...]         an SDK request signed as the SDK does, as curl
  tokens convert --from jitsu|lines FILE [--realm R]
                               a Jitsu api_keys list or one token per line, as an
                               s2s-guard token set with digests only
  schema [--token-set]         the JSON Schema of the configuration (or a token set)
";

/// A failure to report: the message, and the exit status.
pub struct Fail(pub String);

impl<T: std::fmt::Display> From<T> for Fail {
    fn from(e: T) -> Fail {
        Fail(e.to_string())
    }
}

/// Command-line arguments: options (`--name value`, `--flag`) and the rest.
pub struct Args {
    items: Vec<String>,
}

impl Args {
    /// The value of `--name`, removed from the arguments.
    pub fn opt(&mut self, name: &str) -> Result<Option<String>, Fail> {
        let flag = format!("--{name}");
        match self.items.iter().position(|a| *a == flag) {
            None => Ok(None),
            Some(i) if i + 1 < self.items.len() => {
                let v = self.items.remove(i + 1);
                self.items.remove(i);
                Ok(Some(v))
            }
            Some(_) => Err(Fail(format!("{flag} needs a value"))),
        }
    }

    /// Every value of a repeatable `--name`.
    pub fn opts(&mut self, name: &str) -> Result<Vec<String>, Fail> {
        let mut out = Vec::new();
        while let Some(v) = self.opt(name)? {
            out.push(v);
        }
        Ok(out)
    }

    pub fn required(&mut self, name: &str) -> Result<String, Fail> {
        self.opt(name)?
            .ok_or_else(|| Fail(format!("--{name} is required")))
    }

    /// Whether `--name` is present (removed).
    pub fn flag(&mut self, name: &str) -> bool {
        let flag = format!("--{name}");
        match self.items.iter().position(|a| *a == flag) {
            Some(i) => {
                self.items.remove(i);
                true
            }
            None => false,
        }
    }

    /// The remaining arguments; an unknown option is an error.
    pub fn rest(self) -> Result<Vec<String>, Fail> {
        if let Some(o) = self.items.iter().find(|a| a.starts_with("--")) {
            return Err(Fail(format!("unknown option {o}")));
        }
        Ok(self.items)
    }

    /// Exactly one remaining argument.
    pub fn one(self, what: &str) -> Result<String, Fail> {
        let rest = self.rest()?;
        match <[String; 1]>::try_from(rest) {
            Ok([one]) => Ok(one),
            Err(_) => Err(Fail(format!("expected one {what}"))),
        }
    }
}

/// Runs a command line (without the program name).
pub fn run(argv: Vec<String>) -> Result<ExitCode, Fail> {
    let mut it = argv.into_iter();
    let Some(command) = it.next() else {
        return Err(Fail(USAGE.to_string()));
    };
    let mut items: Vec<String> = it.collect();
    // Two-word commands.
    let sub = |items: &mut Vec<String>, want: &str| -> Result<(), Fail> {
        if items.first().map(String::as_str) == Some(want) {
            items.remove(0);
            Ok(())
        } else {
            Err(Fail(format!("{command} {want}: expected\n\n{USAGE}")))
        }
    };
    match command.as_str() {
        "token" => sub(&mut items, "new")?,
        "app-secret" => sub(&mut items, "new")?,
        "tokens" => sub(&mut items, "convert")?,
        _ => {}
    }
    let args = Args { items };
    match command.as_str() {
        "check" => input::check(args),
        "explain" => explain::explain(args),
        "token" => secrets::token_new(args),
        "hash" => secrets::hash(args),
        "app-secret" => secrets::app_secret_new(args),
        "sign" => sign::sign(args),
        "tokens" => secrets::convert(args),
        "schema" => schema(args),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(Fail(format!("unknown command {other:?}\n\n{USAGE}"))),
    }
}

fn schema(mut args: Args) -> Result<ExitCode, Fail> {
    let set = args.flag("token-set");
    args.rest()?;
    let s = if set {
        s2s_guard::config::schema::token_set()
    } else {
        s2s_guard::config::schema::configuration()
    };
    print!("{}", s2s_guard::config::schema::to_text(&s));
    Ok(ExitCode::SUCCESS)
}
