//! The key schema: which keys each table may hold.
//!
//! The decoder checks every table against its [`Schema`] before reading it, so an
//! unknown key is reported wherever it is, with a "did you mean" hint; and
//! [`known_keys`] lists the whole schema for the documentation check.

/// The keys one table may hold.
pub(crate) struct Schema {
    /// Dotted path of the table, such as `upstream.health` (empty for the root).
    pub(crate) path: &'static str,
    pub(crate) keys: &'static [Key],
}

/// One key of a table.
pub(crate) struct Key {
    /// Full dotted path, such as `upstream.health.interval`.
    pub(crate) path: &'static str,
    pub(crate) shape: Shape,
}

pub(crate) enum Shape {
    /// A value (string, number, boolean or an array of values).
    Value,
    /// A sub-table, such as `[upstream.health]`.
    Table(&'static Schema),
    /// An array of tables, such as `[[upstream]]`.
    Tables(&'static Schema),
    /// An array whose items may be tables, such as `backends` or `split`.
    Items(&'static Schema),
}

impl Key {
    /// The last segment of the path: the key as written in its table.
    pub(crate) fn name(&self) -> &'static str {
        self.path.rsplit('.').next().unwrap_or(self.path)
    }
}

impl Schema {
    pub(crate) fn key(&self, name: &str) -> Option<&'static Key> {
        self.keys.iter().find(|k| k.name() == name)
    }

    /// How the table is written in a file: `[server]`, `[[upstream]]`, a backend table.
    pub(crate) fn header(&self) -> String {
        match self.path {
            "" => "the top level".to_owned(),
            "upstream" | "route" => format!("[[{}]]", self.path),
            "upstream.backends" => "a backend table { address, weight, backup }".to_owned(),
            "route.split" => "a split table { upstream, weight }".to_owned(),
            p => format!("[{p}]"),
        }
    }
}

const fn value(path: &'static str) -> Key {
    Key {
        path,
        shape: Shape::Value,
    }
}

const fn table(path: &'static str, schema: &'static Schema) -> Key {
    Key {
        path,
        shape: Shape::Table(schema),
    }
}

pub(crate) const ROOT: Schema = Schema {
    path: "",
    keys: &[
        table("server", &SERVER),
        table("admin", &ADMIN),
        table("log", &LOG),
        Key {
            path: "upstream",
            shape: Shape::Tables(&UPSTREAM),
        },
        Key {
            path: "route",
            shape: Shape::Tables(&ROUTE),
        },
    ],
};

pub(crate) const SERVER: Schema = Schema {
    path: "server",
    keys: &[
        value("server.listen"),
        value("server.workers"),
        value("server.header_read_timeout"),
        value("server.idle_timeout"),
        value("server.request_timeout"),
        value("server.max_header_bytes"),
        value("server.max_connections"),
        value("server.shutdown_grace"),
        table("server.tls", &TLS),
    ],
};

pub(crate) const TLS: Schema = Schema {
    path: "server.tls",
    keys: &[value("server.tls.cert"), value("server.tls.key")],
};

pub(crate) const ADMIN: Schema = Schema {
    path: "admin",
    keys: &[value("admin.listen"), value("admin.token")],
};

pub(crate) const LOG: Schema = Schema {
    path: "log",
    keys: &[
        value("log.level"),
        value("log.format"),
        value("log.access_log"),
    ],
};

pub(crate) const UPSTREAM: Schema = Schema {
    path: "upstream",
    keys: &[
        value("upstream.name"),
        value("upstream.algorithm"),
        value("upstream.hash_key"),
        value("upstream.connect_timeout"),
        value("upstream.protocol"),
        Key {
            path: "upstream.backends",
            shape: Shape::Items(&BACKEND),
        },
        table("upstream.health", &HEALTH),
        table("upstream.outlier", &OUTLIER),
        table("upstream.retry", &RETRY),
        table("upstream.slow_start", &SLOW_START),
        table("upstream.analysis", &ANALYSIS),
        table("upstream.sticky", &STICKY),
        table("upstream.tls", &UPSTREAM_TLS),
        table("upstream.discovery", &DISCOVERY),
    ],
};

pub(crate) const UPSTREAM_TLS: Schema = Schema {
    path: "upstream.tls",
    keys: &[
        value("upstream.tls.ca"),
        value("upstream.tls.cert"),
        value("upstream.tls.key"),
        value("upstream.tls.server_name"),
    ],
};

pub(crate) const BACKEND: Schema = Schema {
    path: "upstream.backends",
    keys: &[
        value("upstream.backends.address"),
        value("upstream.backends.weight"),
        value("upstream.backends.backup"),
    ],
};

pub(crate) const HEALTH: Schema = Schema {
    path: "upstream.health",
    keys: &[
        value("upstream.health.path"),
        value("upstream.health.interval"),
        value("upstream.health.timeout"),
        value("upstream.health.healthy_threshold"),
        value("upstream.health.unhealthy_threshold"),
        value("upstream.health.expect_status"),
        value("upstream.health.kind"),
        value("upstream.health.grpc_service"),
    ],
};

pub(crate) const OUTLIER: Schema = Schema {
    path: "upstream.outlier",
    keys: &[
        value("upstream.outlier.consecutive_failures"),
        value("upstream.outlier.base_ejection_time"),
        value("upstream.outlier.max_ejection_time"),
        value("upstream.outlier.max_ejection_percent"),
    ],
};

pub(crate) const RETRY: Schema = Schema {
    path: "upstream.retry",
    keys: &[
        value("upstream.retry.attempts"),
        value("upstream.retry.on"),
        value("upstream.retry.budget_ratio"),
    ],
};

pub(crate) const SLOW_START: Schema = Schema {
    path: "upstream.slow_start",
    keys: &[value("upstream.slow_start.duration")],
};

pub(crate) const ANALYSIS: Schema = Schema {
    path: "upstream.analysis",
    keys: &[
        value("upstream.analysis.enabled"),
        value("upstream.analysis.tick"),
        value("upstream.analysis.history"),
        value("upstream.analysis.season"),
        value("upstream.analysis.max_weight_change"),
        value("upstream.analysis.mode"),
    ],
};

pub(crate) const STICKY: Schema = Schema {
    path: "upstream.sticky",
    keys: &[
        value("upstream.sticky.cookie"),
        value("upstream.sticky.ttl"),
    ],
};

pub(crate) const DISCOVERY: Schema = Schema {
    path: "upstream.discovery",
    keys: &[
        value("upstream.discovery.kind"),
        value("upstream.discovery.endpoints"),
        value("upstream.discovery.prefix"),
        value("upstream.discovery.name"),
        value("upstream.discovery.record"),
        value("upstream.discovery.port"),
        value("upstream.discovery.refresh"),
        value("upstream.discovery.resolvers"),
    ],
};

pub(crate) const ROUTE: Schema = Schema {
    path: "route",
    keys: &[
        value("route.host"),
        value("route.path_prefix"),
        value("route.upstream"),
        Key {
            path: "route.split",
            shape: Shape::Items(&SPLIT),
        },
        table("route.canary", &CANARY),
        table("route.rate_limit", &RATE_LIMIT),
        table("route.cache", &CACHE),
    ],
};

pub(crate) const SPLIT: Schema = Schema {
    path: "route.split",
    keys: &[value("route.split.upstream"), value("route.split.weight")],
};

pub(crate) const CANARY: Schema = Schema {
    path: "route.canary",
    keys: &[
        value("route.canary.upstream"),
        value("route.canary.step"),
        value("route.canary.interval"),
        value("route.canary.max_error_rate"),
        value("route.canary.max_p99_ratio"),
    ],
};

pub(crate) const RATE_LIMIT: Schema = Schema {
    path: "route.rate_limit",
    keys: &[
        value("route.rate_limit.rps"),
        value("route.rate_limit.burst"),
        value("route.rate_limit.key"),
    ],
};

pub(crate) const CACHE: Schema = Schema {
    path: "route.cache",
    keys: &[
        value("route.cache.max_entries"),
        value("route.cache.max_bytes"),
    ],
};

/// Every key the parser accepts, as dotted paths such as `upstream.health.interval`,
/// in schema order.
///
/// Keys holding a value are listed, including arrays whose items are tables
/// (`upstream.backends`, `route.split`) and the keys of those item tables
/// (`upstream.backends.weight`). Table headers themselves (`server`, `upstream.health`)
/// are not: they only group keys. Array indexes are left out.
///
/// ```
/// let keys = smartlb_config::known_keys();
/// assert!(keys.contains(&"upstream.health.interval"));
/// assert!(keys.contains(&"upstream.backends.weight"));
/// assert!(!keys.contains(&"upstream.health"));
/// ```
pub fn known_keys() -> Vec<&'static str> {
    let mut out = Vec::new();
    collect(&ROOT, &mut out);
    out
}

fn collect(schema: &'static Schema, out: &mut Vec<&'static str>) {
    for key in schema.keys {
        match key.shape {
            Shape::Value => out.push(key.path),
            Shape::Table(child) | Shape::Tables(child) => collect(child, out),
            Shape::Items(child) => {
                out.push(key.path);
                collect(child, out);
            }
        }
    }
}

/// Every table of the schema, with its path.
fn all_tables(schema: &'static Schema, out: &mut Vec<&'static Schema>) {
    out.push(schema);
    for key in schema.keys {
        if let Shape::Table(child) | Shape::Tables(child) | Shape::Items(child) = key.shape {
            all_tables(child, out);
        }
    }
}

/// The hint for an unknown key `name` found in `schema`: a close key of the same table,
/// or else the table where a key of exactly that name lives.
pub(crate) fn unknown_key_hint(schema: &'static Schema, name: &str) -> String {
    if let Some(close) = closest(name, schema.keys.iter().map(Key::name)) {
        return format!("; did you mean `{close}`?");
    }
    let mut tables = Vec::new();
    all_tables(&ROOT, &mut tables);
    if let Some(home) = tables
        .iter()
        .find(|t| t.path != schema.path && t.key(name).is_some())
    {
        return format!("; `{name}` belongs in {}", home.header());
    }
    let names: Vec<&str> = schema.keys.iter().map(Key::name).collect();
    format!(
        "; the keys of {} are: {}",
        schema.header(),
        names.join(", ")
    )
}

/// The candidate closest to `word` by edit distance, when it is close enough to be a
/// likely typo (case and `-`/`_` differences count as nothing).
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let normal = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let word_n = normal(word);
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_n, &normal(c)), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Levenshtein distance with adjacent transpositions (optimal string alignment).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("helth", "health"), 1);
        assert_eq!(edit_distance("intreval", "interval"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        let keys = ["interval", "timeout", "path"];
        assert_eq!(closest("intervall", keys), Some("interval"));
        assert_eq!(closest("Timeout", keys), Some("timeout"));
        assert_eq!(closest("zzz", keys), None);
        assert_eq!(closest("path-prefix", ["path_prefix"]), Some("path_prefix"));
    }

    #[test]
    fn hints() {
        assert_eq!(
            unknown_key_hint(&HEALTH, "intervl"),
            "; did you mean `interval`?"
        );
        assert_eq!(
            unknown_key_hint(&UPSTREAM, "unhealthy_threshold"),
            "; `unhealthy_threshold` belongs in [upstream.health]"
        );
        assert!(unknown_key_hint(&LOG, "zzzzzz").contains("level, format, access_log"));
    }

    #[test]
    fn key_paths_are_consistent() {
        let mut tables = Vec::new();
        all_tables(&ROOT, &mut tables);
        for t in tables {
            for k in t.keys {
                let parent = k.path.rsplit_once('.').map_or("", |(p, _)| p);
                assert_eq!(parent, t.path, "{} is filed under {}", k.path, t.path);
            }
        }
        let keys = known_keys();
        let mut dedup = keys.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), keys.len());
    }
}
