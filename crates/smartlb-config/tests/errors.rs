//! Invalid files: each kind of problem is reported with its line, column and field path.

use smartlb_config::{ErrorKind, parse_str};

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("t0ken".to_owned()),
        _ => None,
    }
}

/// All errors of `source` as `(line, column, path, kind, message)`.
fn errors(source: &str) -> Vec<(u32, u32, String, ErrorKind, String)> {
    match parse_str(source, "bad.toml", &env) {
        Ok(c) => panic!("expected errors, got {c:#?}"),
        Err(errors) => errors
            .iter()
            .map(|e| {
                (
                    e.line().unwrap_or(0),
                    e.column().unwrap_or(0),
                    e.path().to_owned(),
                    e.kind(),
                    e.message().to_owned(),
                )
            })
            .collect(),
    }
}

/// The single error of `source`.
fn error(source: &str) -> (u32, u32, String, ErrorKind, String) {
    let mut all = errors(source);
    assert_eq!(all.len(), 1, "expected one error, got {all:#?}");
    all.remove(0)
}

/// The rendered error lines of `source`.
fn rendered(source: &str) -> String {
    parse_str(source, "bad.toml", &env)
        .expect_err("the source is invalid")
        .to_string()
}

const UPSTREAM: &str = "[[upstream]]\nname = \"web\"\nbackends = [\"127.0.0.1:8081\"]\n";

#[test]
fn unknown_key_with_did_you_mean() {
    let source = format!("{UPSTREAM}\n[upstream.health]\nintreval = \"2s\"\n");
    assert_eq!(
        error(&source),
        (
            6,
            1,
            "upstream[0].health.intreval".to_owned(),
            ErrorKind::UnknownKey,
            "unknown key `intreval`; did you mean `interval`?".to_owned()
        )
    );
    assert_eq!(
        rendered(&source),
        "bad.toml:6:1: upstream[0].health.intreval: unknown key `intreval`; did you mean `interval`?"
    );
}

#[test]
fn unknown_key_in_the_wrong_table_says_where_it_belongs() {
    let source = format!("{UPSTREAM}unhealthy_threshold = 3\n");
    let (line, col, path, kind, message) = error(&source);
    assert_eq!((line, col, kind), (4, 1, ErrorKind::UnknownKey));
    assert_eq!(path, "upstream[0].unhealthy_threshold");
    assert_eq!(
        message,
        "unknown key `unhealthy_threshold`; `unhealthy_threshold` belongs in [upstream.health]"
    );
}

#[test]
fn unknown_key_without_close_match_lists_the_keys() {
    let (_, _, path, _, message) = error(&format!("[log]\ncolour = true\n{UPSTREAM}"));
    assert_eq!(path, "log.colour");
    assert_eq!(
        message,
        "unknown key `colour`; the keys of [log] are: level, format, access_log"
    );
    let (_, _, path, _, message) = error(&format!("{UPSTREAM}[[upstreams]]\n"));
    assert_eq!(path, "upstreams");
    assert!(message.contains("did you mean `upstream`?"), "{message}");
}

#[test]
fn bad_duration() {
    let source = format!("{UPSTREAM}[upstream.health]\ninterval = \"2 sec\"\n");
    assert_eq!(
        rendered(&source),
        "bad.toml:5:12: upstream[0].health.interval: invalid duration \"2 sec\": missing unit after \"2\"; use ns, us, ms, s, m, h or d"
    );
    let (line, col, path, kind, message) =
        error(&format!("{UPSTREAM}[upstream.health]\ninterval = \"0s\"\n"));
    assert_eq!((line, col, kind), (5, 12, ErrorKind::InvalidValue));
    assert_eq!(path, "upstream[0].health.interval");
    assert_eq!(message, "must be greater than zero");
    let (_, _, _, kind, message) = error(&format!("{UPSTREAM}connect_timeout = 5\n"));
    assert_eq!(kind, ErrorKind::WrongType);
    assert!(message.contains("such as \"5s\""), "{message}");
}

#[test]
fn bad_type() {
    let (line, col, path, kind, message) = error(&format!("[server]\nworkers = \"4\"\n{UPSTREAM}"));
    assert_eq!((line, col, kind), (2, 11, ErrorKind::WrongType));
    assert_eq!(path, "server.workers");
    assert_eq!(message, "expected an integer, found a string");

    let (_, _, path, kind, message) = error(&format!("[log]\naccess_log = \"yes\"\n{UPSTREAM}"));
    assert_eq!(
        (path.as_str(), kind),
        ("log.access_log", ErrorKind::WrongType)
    );
    assert_eq!(
        message,
        "expected a boolean (true or false), found a string"
    );

    let (_, _, path, _, message) =
        error("server = 1\n[[upstream]]\nname = \"a\"\nbackends = [\"127.0.0.1:1\"]\n");
    assert_eq!(path, "server");
    assert_eq!(message, "expected a table, found an integer");

    let (_, _, path, _, message) = error("[upstream]\nname = \"web\"\n");
    assert_eq!(path, "upstream");
    assert_eq!(
        message,
        "expected an array of tables, written [[upstream]], found a table"
    );
}

#[test]
fn missing_required_field() {
    let (line, col, path, kind, message) = error("[[upstream]]\nbackends = [\"127.0.0.1:1\"]\n");
    assert_eq!((line, col, kind), (1, 1, ErrorKind::MissingKey));
    assert_eq!(path, "upstream[0].name");
    assert_eq!(message, "missing required key `name`");

    let (line, _, path, kind, _) = error("[[upstream]]\nname = \"web\"\n");
    assert_eq!((line, kind), (1, ErrorKind::MissingKey));
    assert_eq!(path, "upstream[0].backends");

    let (line, col, path, kind, message) = error("[server]\nlisten = \"127.0.0.1:80\"\n");
    assert_eq!((line, col, kind), (1, 1, ErrorKind::MissingKey));
    assert_eq!(path, "upstream");
    assert_eq!(message, "at least one [[upstream]] table is required");

    let (_, _, path, _, _) = error(&format!("[server.tls]\ncert = \"c.pem\"\n{UPSTREAM}"));
    assert_eq!(path, "server.tls.key");
}

#[test]
fn bad_weight() {
    let source =
        "[[upstream]]\nname = \"web\"\nbackends = [{ address = \"127.0.0.1:1\", weight = 0 }]\n";
    assert_eq!(
        rendered(source),
        "bad.toml:3:49: upstream[0].backends[0].weight: must be between 1 and 1000, found 0"
    );
    let source = "[[upstream]]\nname = \"web\"\nbackends = [\"127.0.0.1:2\", { address = \"127.0.0.1:1\", weight = 1001 }]\n";
    let (_, _, path, kind, _) = error(source);
    assert_eq!(
        (path.as_str(), kind),
        ("upstream[0].backends[1].weight", ErrorKind::InvalidValue)
    );
}

#[test]
fn bad_backend_addresses() {
    let source = "[[upstream]]\nname = \"web\"\nbackends = [\"127.0.0.1\", \"127.0.0.1:8081\", \"127.0.0.1:8081\", { address = \"ftp://x:1\" }]\n";
    let all = errors(source);
    let paths: Vec<&str> = all.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(
        paths,
        [
            "upstream[0].backends[0]",
            "upstream[0].backends[2]",
            "upstream[0].backends[3].address"
        ]
    );
    assert!(all[0].4.contains("missing port"), "{}", all[0].4);
    assert!(
        all[1]
            .4
            .contains("duplicate backend 127.0.0.1:8081 (also upstream[0].backends[1])")
    );
    assert!(all[2].4.contains("unsupported scheme"));

    let (_, _, _, _, message) = error(
        "[[upstream]]\nname = \"web\"\nbackends = [{ address = \"127.0.0.1:1\", backup = true }]\n",
    );
    assert!(
        message.contains("at least one must be a primary"),
        "{message}"
    );
}

#[test]
fn unknown_upstream_in_route() {
    let source = format!("{UPSTREAM}\n[[route]]\npath_prefix = \"/\"\nupstream = \"wbe\"\n");
    assert_eq!(
        rendered(&source),
        "bad.toml:7:12: route[0].upstream: unknown upstream \"wbe\"; did you mean \"web\"?"
    );
    let source = format!(
        "{UPSTREAM}\n[[route]]\nsplit = [{{ upstream = \"web\", weight = 1 }}, {{ upstream = \"zzz\", weight = 1 }}]\n"
    );
    let (line, _, path, _, message) = error(&source);
    assert_eq!(line, 6);
    assert_eq!(path, "route[0].split[1].upstream");
    assert_eq!(message, "unknown upstream \"zzz\"; the upstreams are: web");
}

#[test]
fn route_shape_rules() {
    let (_, _, path, kind, _) = error(&format!("{UPSTREAM}[[route]]\npath_prefix = \"/\"\n"));
    assert_eq!(
        (path.as_str(), kind),
        ("route[0].upstream", ErrorKind::MissingKey)
    );

    let (_, _, path, _, message) = error(&format!(
        "{UPSTREAM}[[route]]\nupstream = \"web\"\nsplit = [{{ upstream = \"web\", weight = 1 }}]\n"
    ));
    assert_eq!(path, "route[0].split");
    assert!(message.contains("not both"));

    let (_, _, path, _, message) = error(&format!(
        "{UPSTREAM}[[route]]\nsplit = [{{ upstream = \"web\", weight = 0 }}]\n"
    ));
    assert_eq!(path, "route[0].split");
    assert!(message.contains("add up to 0"));

    let (_, _, path, _, message) = error(&format!(
        "{UPSTREAM}[[route]]\nupstream = \"web\"\n[[route]]\nupstream = \"web\"\n"
    ));
    assert_eq!(path, "route[1]");
    assert!(
        message.contains("never used: route[0] comes first"),
        "{message}"
    );

    // Routes are tried in file order: a broader route first hides narrower ones.
    let (line, col, path, _, _) = error(&format!(
        "{UPSTREAM}[[route]]\npath_prefix = \"/\"\nupstream = \"web\"\n[[route]]\npath_prefix = \"/api\"\nupstream = \"web\"\n"
    ));
    assert_eq!((line, col, path.as_str()), (7, 1, "route[1]"));
    let (_, _, path, _, _) = error(&format!(
        "{UPSTREAM}[[route]]\nhost = \"*.example.com\"\nupstream = \"web\"\n[[route]]\nhost = \"a.b.example.com\"\nupstream = \"web\"\n"
    ));
    assert_eq!(path, "route[1]");
    // Narrower first, broader after: both are used.
    let ok = format!(
        "{UPSTREAM}[[route]]\nhost = \"a.example.com\"\npath_prefix = \"/api\"\nupstream = \"web\"\n[[route]]\nhost = \"*.example.com\"\nupstream = \"web\"\n[[route]]\npath_prefix = \"/api\"\nupstream = \"web\"\n[[route]]\nupstream = \"web\"\n"
    );
    assert_eq!(parse_str(&ok, "ok.toml", &env).unwrap().routes.len(), 4);

    let (_, _, path, _, _) = error(&format!(
        "{UPSTREAM}[[route]]\nupstream = \"web\"\nhost = \"a.*.com\"\n"
    ));
    assert_eq!(path, "route[0].host");
    let (_, _, path, _, _) = error(&format!(
        "{UPSTREAM}[[route]]\nupstream = \"web\"\n[route.rate_limit]\nkey = \"cookie:x\"\n"
    ));
    assert_eq!(path, "route[0].rate_limit.key");
}

#[test]
fn canary_rules() {
    let two = "[[upstream]]\nname = \"web\"\nbackends = [\"127.0.0.1:1\"]\n[[upstream]]\nname = \"canary\"\nbackends = [\"127.0.0.1:2\"]\n";
    let (_, _, path, _, message) = error(&format!(
        "{two}[[route]]\nsplit = [{{ upstream = \"web\", weight = 80 }}, {{ upstream = \"canary\", weight = 10 }}]\n[route.canary]\nupstream = \"canary\"\n"
    ));
    assert_eq!(path, "route[0].split");
    assert!(message.contains("adding up to 100"), "{message}");

    let (_, _, path, _, message) = error(&format!(
        "{two}[[route]]\nsplit = [{{ upstream = \"web\", weight = 100 }}]\n[route.canary]\nupstream = \"canary\"\n"
    ));
    assert_eq!(path, "route[0].canary.upstream");
    assert!(message.contains("not one of the route's split targets"));

    let (_, _, path, _, message) = error(&format!(
        "{two}[[route]]\nupstream = \"web\"\n[route.canary]\nupstream = \"canary\"\n"
    ));
    assert_eq!(path, "route[0].canary");
    assert!(message.contains("needs a `split`"));
}

#[test]
fn unset_environment_variable() {
    let source = format!("[admin]\ntoken = \"Bearer-${{MISSING_VAR}}\"\n{UPSTREAM}");
    assert_eq!(
        rendered(&source),
        "bad.toml:2:17: admin.token: environment variable `MISSING_VAR` is not set"
    );
    let (_, _, _, kind, _) = error(&source);
    assert_eq!(kind, ErrorKind::Environment);
    // A set variable is substituted anywhere a string goes, durations included.
    let ok = "[admin]\ntoken = \"${TOKEN}\"\n[[upstream]]\nname = \"web\"\nbackends = [\"127.0.0.1:1\"]\n";
    let c = parse_str(ok, "ok.toml", &env).unwrap();
    assert_eq!(c.admin.token.as_deref(), Some("t0ken"));
    let (_, _, _, kind, message) = error(&format!("[admin]\ntoken = \"${{oops\"\n{UPSTREAM}"));
    assert_eq!(kind, ErrorKind::Environment);
    assert!(message.contains("unterminated"));
}

#[test]
fn admin_on_public_address_needs_a_token() {
    let source = format!("[admin]\nlisten = \"0.0.0.0:9901\"\n{UPSTREAM}");
    let (line, col, path, kind, message) = error(&source);
    assert_eq!((line, col, kind), (2, 10, ErrorKind::InvalidValue));
    assert_eq!(path, "admin.listen");
    assert!(message.contains("non-loopback address 0.0.0.0:9901 without a token"));

    let with_token =
        format!("[admin]\nlisten = \"0.0.0.0:9901\"\ntoken = \"${{TOKEN}}\"\n{UPSTREAM}");
    assert!(parse_str(&with_token, "ok.toml", &env).is_ok());
    let loopback_v6 = format!("[admin]\nlisten = \"[::1]:9901\"\n{UPSTREAM}");
    assert!(parse_str(&loopback_v6, "ok.toml", &env).is_ok());
    let (_, _, path, _, message) = error(&format!("[admin]\ntoken = \"\"\n{UPSTREAM}"));
    assert_eq!(path, "admin.token");
    assert!(message.contains("must not be empty"));
    let (_, _, path, _, message) = error(&format!(
        "[server]\nlisten = \"0.0.0.0:9901\"\n[admin]\nlisten = \"127.0.0.1:9901\"\n{UPSTREAM}"
    ));
    assert_eq!(path, "admin.listen");
    assert!(message.contains("also a proxy listener"));
}

#[test]
fn algorithm_and_hash_key_rules() {
    let (_, _, path, _, message) = error(&format!("{UPSTREAM}hash_key = \"ip\"\n"));
    assert_eq!(path, "upstream[0].hash_key");
    assert!(message.contains("only used with algorithm = \"consistent-hash\""));
    let (_, _, path, _, message) = error(&format!(
        "{UPSTREAM}algorithm = \"consistent-hash\"\nhash_key = \"body\"\n"
    ));
    assert_eq!(path, "upstream[0].hash_key");
    assert!(message.contains("header:NAME"));
    let (_, _, path, _, message) = error(&format!("{UPSTREAM}algorithm = \"p2c\"\n"));
    assert_eq!(path, "upstream[0].algorithm");
    assert!(
        message.starts_with("unknown algorithm \"p2c\""),
        "{message}"
    );
}

#[test]
fn table_level_rules() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[upstream.health]\nexpect_status = \"200-99\"\n",
            "upstream[0].health.expect_status",
            "not a status range",
        ),
        (
            "[upstream.health]\nhealthy_threshold = 0\n",
            "upstream[0].health.healthy_threshold",
            "between 1 and 100",
        ),
        (
            "[upstream.health]\ninterval = \"1s\"\ntimeout = \"2s\"\n",
            "upstream[0].health.timeout",
            "must not be longer than interval",
        ),
        (
            "[upstream.health]\npath = \"health\"\n",
            "upstream[0].health.path",
            "starts with `/`",
        ),
        (
            "[upstream.outlier]\nmax_ejection_percent = 101\n",
            "upstream[0].outlier.max_ejection_percent",
            "between 0 and 100",
        ),
        (
            "[upstream.outlier]\nbase_ejection_time = \"10m\"\n",
            "upstream[0].outlier.max_ejection_time",
            "at least base_ejection_time",
        ),
        (
            "[upstream.retry]\nbudget_ratio = -0.1\n",
            "upstream[0].retry.budget_ratio",
            "between 0 and 1",
        ),
        (
            "[upstream.retry]\non = [\"conect-failure\"]\n",
            "upstream[0].retry.on[0]",
            "did you mean \"connect-failure\"?",
        ),
        (
            "[upstream.retry]\non = [\"200\"]\n",
            "upstream[0].retry.on[0]",
            "unknown retry condition",
        ),
        (
            "[upstream.analysis]\nmode = \"audit\"\n",
            "upstream[0].analysis.mode",
            "expected one of: enforce, shadow",
        ),
        (
            "[upstream.analysis]\nseason = \"never\"\n",
            "upstream[0].analysis.season",
            "invalid duration",
        ),
        (
            "[upstream.analysis]\nmax_weight_change = 0\n",
            "upstream[0].analysis.max_weight_change",
            "greater than 0",
        ),
        (
            "[upstream.analysis]\nmax_weight_change = 1.5\n",
            "upstream[0].analysis.max_weight_change",
            "at most 1",
        ),
        (
            "[upstream.analysis]\ntick = \"1m\"\nhistory = \"30s\"\n",
            "upstream[0].analysis.history",
            "at least one tick",
        ),
        (
            "[upstream.sticky]\ncookie = \"a b\"\n",
            "upstream[0].sticky.cookie",
            "not a valid cookie name",
        ),
        (
            "[upstream.discovery]\nkind = \"dns\"\nname = \"web.internal\"\nport = 80\n",
            "upstream[0].backends",
            "not both",
        ),
        (
            "[upstream.discovery]\nkind = \"consul\"\n",
            "upstream[0].discovery.kind",
            "expected one of: static, dns, etcd",
        ),
    ];
    for (extra, path, needle) in cases {
        let source = format!("{UPSTREAM}{extra}");
        let all = errors(&source);
        assert_eq!(all.len(), 1, "{extra}: {all:#?}");
        assert_eq!(all[0].2, *path, "{extra}");
        assert!(all[0].4.contains(needle), "{extra}: {}", all[0].4);
    }
}

#[test]
fn discovery_rules() {
    let base = "[[upstream]]\nname = \"web\"\n[upstream.discovery]\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "kind = \"dns\"\nname = \"web.internal\"\n",
            "upstream[0].discovery.port",
            "missing required key `port`",
        ),
        (
            "kind = \"dns\"\nname = \"_x._tcp.web\"\nrecord = \"SRV\"\nport = 1\n",
            "upstream[0].discovery.port",
            "SRV records carry",
        ),
        (
            "kind = \"dns\"\nname = \"web\"\nport = 1\nrecord = \"MX\"\n",
            "upstream[0].discovery.record",
            "unknown DNS record type",
        ),
        (
            "kind = \"dns\"\nname = \"web\"\nport = 1\nprefix = \"/x\"\n",
            "upstream[0].discovery.prefix",
            "not used by discovery kind \"dns\"",
        ),
        (
            "kind = \"dns\"\nname = \"web\"\nport = 1\nresolvers = [\"dns.google\"]\n",
            "upstream[0].discovery.resolvers[0]",
            "not a resolver address",
        ),
        (
            "kind = \"etcd\"\nprefix = \"/x\"\n",
            "upstream[0].discovery.endpoints",
            "missing required key",
        ),
        (
            "kind = \"etcd\"\nendpoints = []\nprefix = \"/x\"\n",
            "upstream[0].discovery.endpoints",
            "at least one",
        ),
        (
            "kind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n",
            "upstream[0].discovery.prefix",
            "missing required key",
        ),
        (
            "kind = \"static\"\n",
            "upstream[0].backends",
            "which is missing",
        ),
    ];
    for (extra, path, needle) in cases {
        let all = errors(&format!("{base}{extra}"));
        assert_eq!(all.len(), 1, "{extra}: {all:#?}");
        assert_eq!(all[0].2, *path, "{extra}");
        assert!(all[0].4.contains(needle), "{extra}: {}", all[0].4);
    }
}

#[test]
fn several_errors_at_once_are_all_reported_in_file_order() {
    let source = r#"[server]
listen = "localhost:8080"
workers = -1

[log]
level = "loud"

[[upstream]]
name = "web"
algorithm = "fastest"
backends = ["127.0.0.1:8081", { address = "127.0.0.1:8082", weight = 5000 }]

[upstream.health]
intervall = "2s"

[[upstream]]
name = "web"
backends = ["127.0.0.1:9000"]

[[route]]
upstream = "nowhere"
"#;
    let text = rendered(source);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "bad.toml:2:10: server.listen: \"localhost:8080\" is not a socket address; expected IP:PORT such as 0.0.0.0:8080 or [::]:8080",
            "bad.toml:3:11: server.workers: must be between 0 and 1024, found -1",
            "bad.toml:6:9: log.level: unknown log level \"loud\"; expected one of: trace, debug, info, warn, error",
            "bad.toml:10:13: upstream[0].algorithm: unknown algorithm \"fastest\"; expected one of: round-robin, weighted-round-robin, random, weighted-random, least-requests, p2c-ewma, consistent-hash, ip-hash, adaptive",
            "bad.toml:11:70: upstream[0].backends[1].weight: must be between 1 and 1000, found 5000",
            "bad.toml:14:1: upstream[0].health.intervall: unknown key `intervall`; did you mean `interval`?",
            "bad.toml:17:8: upstream[1].name: duplicate upstream name \"web\" (also upstream[0])",
            "bad.toml:21:12: route[0].upstream: unknown upstream \"nowhere\"; the upstreams are: web",
        ]
    );
}

#[test]
fn toml_syntax_errors_have_positions() {
    let source = "[server]\nlisten = \"127.0.0.1:8080\nworkers = 4\n";
    let all = errors(source);
    assert!(!all.is_empty());
    let (line, col, path, kind, message) = &all[0];
    assert_eq!((*line, *col), (2, 25));
    assert_eq!(path, "");
    assert_eq!(*kind, ErrorKind::Syntax);
    assert!(message.starts_with("TOML syntax error: "), "{message}");
    assert!(rendered(source).starts_with("bad.toml:2:25: TOML syntax error: "));

    let (line, col, _, kind, message) = error("a = 1\na = 2\n");
    assert_eq!((line, col, kind), (2, 1, ErrorKind::Syntax));
    assert!(message.contains("duplicate key"), "{message}");
}

#[test]
fn listen_lists() {
    let (_, _, path, _, message) = error(&format!("[server]\nlisten = []\n{UPSTREAM}"));
    assert_eq!(path, "server.listen");
    assert!(message.contains("at least one"));
    let (_, _, path, _, message) = error(&format!(
        "[server]\nlisten = [\"0.0.0.0:80\", \"127.0.0.1:80\"]\n{UPSTREAM}"
    ));
    assert_eq!(path, "server.listen[1]");
    assert!(message.contains("overlaps 0.0.0.0:80"));
    let (_, _, path, kind, _) = error(&format!("[server]\nlisten = 8080\n{UPSTREAM}"));
    assert_eq!(
        (path.as_str(), kind),
        ("server.listen", ErrorKind::WrongType)
    );
}

#[test]
fn column_counts_characters_not_bytes() {
    let source = "[[upstream]]\nname = \"web\"\nbackends = [\"127.0.0.1:1\", \"ü\", \"x\"]\n";
    let all = errors(source);
    let positions: Vec<(u32, u32, &str)> = all.iter().map(|e| (e.0, e.1, e.2.as_str())).collect();
    assert_eq!(
        positions,
        [
            (3, 28, "upstream[0].backends[1]"),
            (3, 33, "upstream[0].backends[2]")
        ]
    );
}

#[test]
fn backends_and_discovery_conflict_is_reported_alongside_other_errors() {
    let source = "[[upstream]]\nname = \"web\"\nbackends = [\"127.0.0.1:1\"]\n[upstream.discovery]\nkind = \"etcd\"\nprefix = \"/x\"\n";
    let all = errors(source);
    let paths: Vec<&str> = all.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(
        paths,
        ["upstream[0].backends", "upstream[0].discovery.endpoints"]
    );
    assert!(all[0].4.contains("kind \"etcd\", not both"), "{}", all[0].4);
}

#[test]
fn upstream_protocol_and_tls_rules() {
    let (_, _, path, _, message) = error(&format!("{UPSTREAM}protocol = \"h3\"\n"));
    assert_eq!(path, "upstream[0].protocol");
    assert!(message.contains("expected http1 or h2"), "{message}");
    let (_, _, path, kind, message) = error(&format!(
        "{UPSTREAM}[upstream.tls]\ncert = \"client.pem\"\n"
    ));
    assert_eq!(path, "upstream[0].tls.key");
    assert_eq!(kind, ErrorKind::MissingKey);
    assert!(message.contains("needs both"), "{message}");
    let (_, _, path, _, _) = error(&format!("{UPSTREAM}[upstream.tls]\nca = \"\"\n"));
    assert_eq!(path, "upstream[0].tls.ca");
    let (_, _, path, _, message) = error(&format!("{UPSTREAM}[upstream.tls]\nverify = false\n"));
    assert_eq!(path, "upstream[0].tls.verify");
    assert!(message.contains("unknown key"), "{message}");
}

#[test]
fn upstream_protocol_and_tls_parse() {
    let config = parse_str(
        &format!(
            "{UPSTREAM}protocol = \"h2\"\n[upstream.tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\nserver_name = \"api.internal\"\n"
        ),
        "good.toml",
        &env,
    )
    .unwrap();
    let upstream = &config.upstreams[0];
    assert_eq!(upstream.protocol, smartlb_config::UpstreamProtocol::H2);
    let tls = upstream.tls.as_ref().unwrap();
    assert_eq!(tls.ca.as_deref(), Some(std::path::Path::new("ca.pem")));
    assert_eq!(tls.cert.as_deref(), Some(std::path::Path::new("c.pem")));
    assert_eq!(tls.key.as_deref(), Some(std::path::Path::new("k.pem")));
    assert_eq!(tls.server_name.as_deref(), Some("api.internal"));
}

#[test]
fn health_check_kind() {
    let (_, _, path, _, message) = error(&format!("{UPSTREAM}[upstream.health]\nkind = \"tcp\"\n"));
    assert_eq!(path, "upstream[0].health.kind");
    assert!(message.contains("expected http or grpc"), "{message}");
    let config = parse_str(
        &format!("{UPSTREAM}[upstream.health]\nkind = \"grpc\"\ngrpc_service = \"api.v1.Users\"\n"),
        "good.toml",
        &env,
    )
    .unwrap();
    let health = config.upstreams[0].health.as_ref().unwrap();
    assert_eq!(health.kind, smartlb_config::HealthCheckKind::Grpc);
    assert_eq!(health.grpc_service, "api.v1.Users");
}
