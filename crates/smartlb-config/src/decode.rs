//! Reading typed values out of toml's spanned document tree, collecting every error.
//!
//! [`Ctx`] owns the error list; readers push an error and return `None` for a bad
//! value, so one pass over the file reports every problem with its position.

use std::ops::Range;
use std::time::Duration;

use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{ConfigError, ErrorKind, LineIndex};
use crate::schema::{self, Schema};

/// Looks up an environment variable.
pub(crate) type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

/// A value of the document and its field path.
pub(crate) struct Node<'a, 'i> {
    pub(crate) value: &'a DeValue<'i>,
    pub(crate) span: Range<usize>,
    pub(crate) path: String,
}

impl<'a, 'i> Node<'a, 'i> {
    pub(crate) fn new(spanned: &'a Spanned<DeValue<'i>>, path: String) -> Self {
        Node {
            value: spanned.get_ref(),
            span: spanned.span(),
            path,
        }
    }
}

/// A table of the document whose keys have been checked against its schema.
pub(crate) struct Table<'a, 'i> {
    map: &'a DeTable<'i>,
    pub(crate) span: Range<usize>,
    pub(crate) path: String,
    schema: &'static Schema,
}

impl<'a, 'i> Table<'a, 'i> {
    /// The value of `key`, if present.
    pub(crate) fn node(&self, key: &str) -> Option<Node<'a, 'i>> {
        debug_assert!(
            self.schema.key(key).is_some(),
            "`{key}` is not in the schema of `{}`",
            self.schema.path
        );
        self.map
            .get(key)
            .map(|v| Node::new(v, self.child_path(key)))
    }

    /// Whether `key` is present.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some()
    }

    /// The field path of `key` in this table.
    pub(crate) fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Span of the value of `key`, or of the table when the key is absent.
    pub(crate) fn span_of(&self, key: &str) -> Range<usize> {
        self.map.get(key).map_or(self.span.clone(), Spanned::span)
    }
}

/// The decoding context: source text, environment and the errors found so far.
pub(crate) struct Ctx<'s> {
    origin: &'s str,
    source: &'s str,
    lines: LineIndex<'s>,
    env: Env<'s>,
    errors: Vec<ConfigError>,
}

impl<'s> Ctx<'s> {
    pub(crate) fn new(origin: &'s str, source: &'s str, env: Env<'s>) -> Self {
        Ctx {
            origin,
            source,
            lines: LineIndex::new(source),
            env,
            errors: Vec::new(),
        }
    }

    pub(crate) fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }

    /// A marker to ask later whether errors were found since.
    pub(crate) fn mark(&self) -> usize {
        self.errors.len()
    }

    /// Whether no error was found since `mark`.
    pub(crate) fn clean_since(&self, mark: usize) -> bool {
        self.errors.len() == mark
    }

    /// Records an error at `span` for field `path`.
    pub(crate) fn error(
        &mut self,
        kind: ErrorKind,
        span: Range<usize>,
        path: &str,
        message: impl Into<String>,
    ) {
        self.error_at(kind, span.start, path, message);
    }

    fn error_at(&mut self, kind: ErrorKind, offset: usize, path: &str, message: impl Into<String>) {
        let e = ConfigError::at(kind, self.origin, &self.lines, offset, path, message.into());
        self.errors.push(e);
    }

    /// Records an invalid-value error at a node.
    pub(crate) fn invalid(&mut self, node: &Node<'_, '_>, message: impl Into<String>) {
        self.error(
            ErrorKind::InvalidValue,
            node.span.clone(),
            &node.path,
            message,
        );
    }

    /// Records a syntax error reported by the TOML parser.
    pub(crate) fn syntax(&mut self, error: &toml::de::Error) {
        let offset = error.span().map_or(0, |s| s.start);
        let message = format!("TOML syntax error: {}", error.message().trim());
        self.error_at(ErrorKind::Syntax, offset, "", message);
    }

    fn wrong_type(&mut self, node: &Node<'_, '_>, expected: &str) {
        let found = node.value.type_str();
        let article = if found.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        self.error(
            ErrorKind::WrongType,
            node.span.clone(),
            &node.path,
            format!("expected {expected}, found {article} {found}"),
        );
    }

    /// Reads a table and reports every key the schema does not know.
    pub(crate) fn table<'a, 'i>(
        &mut self,
        node: &Node<'a, 'i>,
        schema: &'static Schema,
    ) -> Option<Table<'a, 'i>> {
        let DeValue::Table(map) = node.value else {
            self.wrong_type(node, "a table");
            return None;
        };
        Some(self.checked_table(map, node.span.clone(), node.path.clone(), schema))
    }

    /// Wraps a table and reports every key the schema does not know.
    pub(crate) fn checked_table<'a, 'i>(
        &mut self,
        map: &'a DeTable<'i>,
        span: Range<usize>,
        path: String,
        schema: &'static Schema,
    ) -> Table<'a, 'i> {
        let table = Table {
            map,
            span,
            path,
            schema,
        };
        for (key, _) in map.iter() {
            let name: &str = key.get_ref();
            if schema.key(name).is_none() {
                let hint = schema::unknown_key_hint(schema, name);
                self.error(
                    ErrorKind::UnknownKey,
                    key.span(),
                    &table.child_path(name),
                    format!("unknown key `{name}`{hint}"),
                );
            }
        }
        table
    }

    /// Every table of an array of tables (`[[upstream]]`), with indexed paths.
    pub(crate) fn tables<'a, 'i>(
        &mut self,
        node: &Node<'a, 'i>,
        schema: &'static Schema,
    ) -> Vec<Table<'a, 'i>> {
        let DeValue::Array(items) = node.value else {
            let expected = format!("an array of tables, written [[{}]]", schema.path);
            self.wrong_type(node, &expected);
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let item = Node::new(item, format!("{}[{i}]", node.path));
                self.table(&item, schema)
            })
            .collect()
    }

    /// Reads a required key; reports a missing key at the table.
    pub(crate) fn required<'a, 'i, T>(
        &mut self,
        table: &Table<'a, 'i>,
        key: &str,
        read: impl FnOnce(&mut Self, &Node<'a, 'i>) -> Option<T>,
    ) -> Option<T> {
        match table.node(key) {
            Some(node) => read(self, &node),
            None => {
                self.error(
                    ErrorKind::MissingKey,
                    table.span.clone(),
                    &table.child_path(key),
                    format!("missing required key `{key}`"),
                );
                None
            }
        }
    }

    /// Reads an optional key: `None` when absent or bad (a bad value is reported).
    pub(crate) fn optional<'a, 'i, T>(
        &mut self,
        table: &Table<'a, 'i>,
        key: &str,
        read: impl FnOnce(&mut Self, &Node<'a, 'i>) -> Option<T>,
    ) -> Option<T> {
        table.node(key).and_then(|node| read(self, &node))
    }

    /// The items of an array, with their indexed paths.
    pub(crate) fn array<'a, 'i>(&mut self, node: &Node<'a, 'i>) -> Option<Vec<Node<'a, 'i>>> {
        match node.value {
            DeValue::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Node::new(v, format!("{}[{i}]", node.path)))
                    .collect(),
            ),
            _ => {
                self.wrong_type(node, "an array");
                None
            }
        }
    }

    /// An array of strings, or a single string taken as a one-item list.
    pub(crate) fn one_or_many<'a, 'i>(&mut self, node: &Node<'a, 'i>) -> Option<Vec<Node<'a, 'i>>> {
        match node.value {
            DeValue::String(_) => Some(vec![Node {
                value: node.value,
                span: node.span.clone(),
                path: node.path.clone(),
            }]),
            DeValue::Array(_) => self.array(node),
            _ => {
                self.wrong_type(node, "a string or an array of strings");
                None
            }
        }
    }

    /// A string, with `${NAME}` references replaced from the environment.
    pub(crate) fn string(&mut self, node: &Node<'_, '_>) -> Option<String> {
        let DeValue::String(text) = node.value else {
            self.wrong_type(node, "a string");
            return None;
        };
        match interpolate(text, self.env) {
            Ok(s) => Some(s),
            Err(problems) => {
                let raw = self.source.get(node.span.clone()).unwrap_or("");
                for problem in problems {
                    let offset = raw
                        .find(&problem.needle)
                        .map_or(node.span.start, |i| node.span.start + i);
                    self.error_at(ErrorKind::Environment, offset, &node.path, problem.message);
                }
                None
            }
        }
    }

    /// A non-empty string.
    pub(crate) fn non_empty_string(&mut self, node: &Node<'_, '_>) -> Option<String> {
        let s = self.string(node)?;
        if s.trim().is_empty() {
            self.invalid(node, "must not be empty");
            return None;
        }
        Some(s)
    }

    /// A string parsed by `parse`; a parse error is reported as an invalid value.
    pub(crate) fn parsed<T>(
        &mut self,
        node: &Node<'_, '_>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.string(node)?;
        match parse(&s) {
            Ok(v) => Some(v),
            Err(message) => {
                self.invalid(node, message);
                None
            }
        }
    }

    /// A boolean.
    pub(crate) fn boolean(&mut self, node: &Node<'_, '_>) -> Option<bool> {
        match node.value {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(node, "a boolean (true or false)");
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub(crate) fn uint(&mut self, node: &Node<'_, '_>, min: u64, max: u64) -> Option<u64> {
        let DeValue::Integer(int) = node.value else {
            self.wrong_type(node, "an integer");
            return None;
        };
        let value = i128::from_str_radix(int.as_str(), int.radix()).ok();
        match value {
            Some(v) if v >= i128::from(min) && v <= i128::from(max) => u64::try_from(v).ok(),
            Some(v) => {
                self.invalid(node, format!("must be between {min} and {max}, found {v}"));
                None
            }
            None => {
                self.invalid(node, format!("must be between {min} and {max}"));
                None
            }
        }
    }

    /// A finite number (integer or float) within `min..=max`; `min_exclusive` makes the
    /// lower bound exclusive.
    pub(crate) fn number(
        &mut self,
        node: &Node<'_, '_>,
        min: f64,
        min_exclusive: bool,
        max: f64,
    ) -> Option<f64> {
        let value = match node.value {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|v| v as f64),
            _ => {
                self.wrong_type(node, "a number");
                return None;
            }
        };
        let bounds = if min_exclusive {
            format!("greater than {min} and at most {max}")
        } else {
            format!("between {min} and {max}")
        };
        match value {
            Some(v) if v.is_finite() && (v > min || (!min_exclusive && v == min)) && v <= max => {
                Some(v)
            }
            Some(v) if v.is_finite() => {
                self.invalid(node, format!("must be {bounds}, found {v}"));
                None
            }
            _ => {
                self.invalid(node, format!("must be a finite number {bounds}"));
                None
            }
        }
    }

    /// A duration string such as `"5s"`, at least `min`.
    pub(crate) fn duration_min(&mut self, node: &Node<'_, '_>, min: Duration) -> Option<Duration> {
        if let DeValue::Integer(_) | DeValue::Float(_) = node.value {
            self.error(
                ErrorKind::WrongType,
                node.span.clone(),
                &node.path,
                "expected a duration string with a unit, such as \"5s\" or \"250ms\", found a number",
            );
            return None;
        }
        let d = self.parsed(node, |s| {
            crate::duration::parse_duration(s).map_err(|e| e.to_string())
        })?;
        if d < min {
            let message = if min == Duration::from_nanos(1) {
                "must be greater than zero".to_owned()
            } else {
                format!("must be at least {}", crate::format_duration(min))
            };
            self.invalid(node, message);
            return None;
        }
        Some(d)
    }

    /// A positive duration.
    pub(crate) fn duration(&mut self, node: &Node<'_, '_>) -> Option<Duration> {
        self.duration_min(node, Duration::from_nanos(1))
    }

    /// A duration that may be zero.
    pub(crate) fn duration_or_zero(&mut self, node: &Node<'_, '_>) -> Option<Duration> {
        self.duration_min(node, Duration::ZERO)
    }

    /// A string naming a variant of a named enumeration.
    pub(crate) fn choice<T: std::str::FromStr>(&mut self, node: &Node<'_, '_>) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        self.parsed(node, |s| s.parse::<T>().map_err(|e| e.to_string()))
    }
}

/// A problem in a `${...}` reference.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct InterpolationProblem {
    /// The raw text to look for in the source to place the error.
    pub(crate) needle: String,
    pub(crate) message: String,
}

/// Replaces `${NAME}` by the value of environment variable NAME; `$${` is a literal `${`.
pub(crate) fn interpolate(text: &str, env: Env<'_>) -> Result<String, Vec<InterpolationProblem>> {
    if !text.contains("${") {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            match tail.find('}') {
                Some(end) => {
                    let name = &tail[..end];
                    let needle = format!("${{{name}}}");
                    if !is_variable_name(name) {
                        problems.push(InterpolationProblem {
                            message: format!(
                                "invalid environment variable reference `{needle}`: a name is letters, digits and `_`, not starting with a digit (write `$${{` for a literal `${{`)"
                            ),
                            needle,
                        });
                    } else {
                        match env(name) {
                            Some(value) => out.push_str(&value),
                            None => problems.push(InterpolationProblem {
                                message: format!("environment variable `{name}` is not set"),
                                needle,
                            }),
                        }
                    }
                    rest = &tail[end + 1..];
                }
                None => {
                    problems.push(InterpolationProblem {
                        needle: "${".to_owned(),
                        message:
                            "unterminated `${`: expected `${NAME}` (write `$${` for a literal `${`)"
                                .to_owned(),
                    });
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn interpolation() {
        assert_eq!(interpolate("plain", &env).unwrap(), "plain");
        assert_eq!(interpolate("x${A}y", &env).unwrap(), "xalphay");
        assert_eq!(interpolate("${A}${A}", &env).unwrap(), "alphaalpha");
        assert_eq!(interpolate("${EMPTY}", &env).unwrap(), "");
        assert_eq!(interpolate("$5 and $${A}", &env).unwrap(), "$5 and ${A}");
        assert_eq!(interpolate("trailing $", &env).unwrap(), "trailing $");
    }

    #[test]
    fn interpolation_errors() {
        let e = interpolate("${NOPE} ${A} ${ALSO_NOPE}", &env).unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].message, "environment variable `NOPE` is not set");
        assert_eq!(e[1].needle, "${ALSO_NOPE}");
        let e = interpolate("${1X}", &env).unwrap_err();
        assert!(
            e[0].message
                .contains("invalid environment variable reference")
        );
        let e = interpolate("${}", &env).unwrap_err();
        assert!(e[0].message.contains("invalid"));
        let e = interpolate("abc ${A", &env).unwrap_err();
        assert!(e[0].message.contains("unterminated"));
    }
}
