//! The smartlb configuration: the TOML file's schema, parsed and validated into one
//! [`Config`] value.
//!
//! A configuration file names the proxy listener (`[server]`), the admin API
//! (`[admin]`), logging (`[log]`), groups of backends with their balancing, health,
//! retry and analysis settings (`[[upstream]]`), and optional request routing
//! (`[[route]]`). `docs/configuration.md` documents every key; a test keeps it in step
//! with [`known_keys`].
//!
//! # Pipeline
//!
//! 1. **Parse.** The text becomes toml's spanned document tree
//!    ([`toml::de::DeTable`]): every key and value keeps its byte span. TOML syntax
//!    errors stop here, each with its position.
//! 2. **Decode.** Each table is checked against the key schema (unknown keys are
//!    reported with a "did you mean" hint), then its values are read with their types:
//!    `${NAME}` references are replaced from the environment, durations such as
//!    `"1m30s"` and addresses such as `"127.0.0.1:8081"` are parsed.
//! 3. **Validate.** Defaults fill absent keys, ranges are checked, and the rules that
//!    tie keys together (routes name existing upstreams, a consistent hash needs an
//!    upstream using it, a public admin listener needs a token, ...) are applied.
//!
//! Decoding and validation never stop at the first problem: every error in the file
//! is collected into [`ConfigErrors`], each as `FILE:LINE:COL: FIELD.PATH: message`
//! (for example `smartlb.toml:14:12: upstream[1].health.interval: invalid duration
//! "2x": unknown unit "x"; use ns, us, ms, s, m, h or d`).
//!
//! The decoder reads the spanned tree directly instead of deriving serde
//! `Deserialize` for intermediate structs, because a derived deserializer stops at the
//! first error and loses positions inside untagged enums (a backend is a string *or*
//! a table); reading the tree gives every error with its exact line and column.
//!
//! Only the validated types of this crate are public: other crates never see
//! unchecked values.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use smartlb_config::{parse_str, Algorithm};
//!
//! let source = r#"
//! [server]
//! listen = "127.0.0.1:8080"
//!
//! [[upstream]]
//! name = "web"
//! algorithm = "least-requests"
//! backends = ["127.0.0.1:8081", { address = "127.0.0.1:8082", weight = 3 }]
//!
//! [upstream.health]
//! interval = "${CHECK_INTERVAL}"
//! "#;
//! let env = |name: &str| (name == "CHECK_INTERVAL").then(|| "5s".to_string());
//! let config = parse_str(source, "example.toml", &env).unwrap();
//!
//! let web = &config.upstreams[0];
//! assert_eq!(web.algorithm, Algorithm::LeastRequests);
//! assert_eq!(web.backends[1].weight, 3);
//! assert_eq!(web.health.as_ref().unwrap().interval, Duration::from_secs(5));
//! assert!(config.routes.is_empty()); // everything goes to the first upstream
//!
//! // Errors carry the file, line, column and field path; all of them are reported.
//! let bad = "[[upstream]]\nname = \"web\"\nbackends = [\"127.0.0.1:8081\"]\nalgoritm = \"random\"\nconnect_timeout = \"5\"\n";
//! let errors = parse_str(bad, "bad.toml", &env).unwrap_err();
//! assert_eq!(
//!     errors.to_string(),
//!     "bad.toml:4:1: upstream[0].algoritm: unknown key `algoritm`; did you mean `algorithm`?\n\
//!      bad.toml:5:19: upstream[0].connect_timeout: invalid duration \"5\": missing unit after \"5\"; use ns, us, ms, s, m, h or d"
//! );
//! ```

mod address;
mod build;
mod decode;
mod duration;
mod error;
mod model;
mod schema;

use std::path::Path;

use toml::de::DeTable;

pub use address::{AddressError, BackendAddress, Scheme};
pub use duration::{DurationError, format_duration, parse_duration};
pub use error::{ConfigError, ConfigErrors, ErrorKind};
pub use model::{
    AdminConfig, Algorithm, AnalysisConfig, AnalysisMode, BackendConfig, CacheConfig, CanaryConfig,
    Config, DiscoveryConfig, DnsDiscovery, DnsRecord, EtcdDiscovery, HashKey, HealthCheckKind,
    HealthConfig, HostMatch, LogConfig, LogFormat, LogLevel, OutlierConfig, RateLimitConfig,
    RateLimitKey, RetryConfig, RetryOn, RouteConfig, ServerConfig, SlowStartConfig, SplitTarget,
    StatusRange, StickyConfig, TlsConfig, UnknownNameError, UpstreamConfig, UpstreamProtocol,
    UpstreamTlsConfig,
};
pub use schema::known_keys;

/// Reads, parses and validates the configuration file at `path`.
///
/// `${NAME}` references are replaced from the process environment. A file that cannot
/// be read (or is not UTF-8) gives a single error without a position.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::whole_file(&origin, format!("cannot read the file: {e}")))?;
    let source = String::from_utf8(bytes).map_err(|e| {
        ConfigError::whole_file(
            &origin,
            format!(
                "the file is not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    let env = |name: &str| std::env::var(name).ok();
    parse_str(&source, &origin, &env)
}

/// Parses and validates configuration text.
///
/// `origin` names the source in error messages (usually the file name). `env` looks up
/// the environment variables that `${NAME}` references name; passing a closure keeps
/// this function pure and testable. Every problem found is returned, in file order.
pub fn parse_str(
    source: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut cx = decode::Ctx::new(origin, source, env);
    let (document, syntax_errors) = DeTable::parse_recoverable(source);
    if !syntax_errors.is_empty() {
        for error in &syntax_errors {
            cx.syntax(error);
        }
        return Err(into_errors(cx));
    }
    let config = build::config(&mut cx, &document);
    match ConfigErrors::from_vec(cx.into_errors()) {
        None => Ok(config),
        Some(errors) => Err(errors),
    }
}

fn into_errors(cx: decode::Ctx<'_>) -> ConfigErrors {
    let errors = cx.into_errors();
    ConfigErrors::from_vec(errors)
        .unwrap_or_else(|| ConfigError::whole_file("", "unknown configuration error").into())
}

impl Config {
    /// Parses and validates configuration text; the same as [`parse_str`].
    pub fn from_str_with_env(
        source: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        parse_str(source, origin, env)
    }
}
