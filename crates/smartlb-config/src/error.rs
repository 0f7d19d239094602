//! Configuration errors: one ([`ConfigError`]) and all of them ([`ConfigErrors`]).

use std::fmt;

/// What kind of problem a [`ConfigError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read (missing, unreadable, not UTF-8).
    Io,
    /// The text is not valid TOML.
    Syntax,
    /// A key the schema does not know.
    UnknownKey,
    /// A value of the wrong TOML type (a string where a number belongs, ...).
    WrongType,
    /// A required key is absent.
    MissingKey,
    /// A value of the right type that is not acceptable (out of range, malformed
    /// duration or address, unknown upstream, conflicting settings, ...).
    InvalidValue,
    /// A `${NAME}` reference to an environment variable that is not set, or a
    /// malformed `${...}` reference.
    Environment,
}

/// One problem found in a configuration file.
///
/// Displays as `FILE:LINE:COL: FIELD.PATH: message`, for example
/// `smartlb.toml:12:12: upstream[1].health.interval: invalid duration "2x": unknown unit "x"`.
/// Problems with the file as a whole (it cannot be read) have no position and no
/// field path: `FILE: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{position}:{path} {message}")]
pub struct ConfigError {
    kind: ErrorKind,
    origin: String,
    position: Position,
    path: PathPrefix,
    message: String,
    offset: Option<usize>,
}

/// `:LINE:COL` or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position(Option<(u32, u32)>);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some((line, column)) => write!(f, ":{line}:{column}"),
            None => Ok(()),
        }
    }
}

/// ` PATH:` or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathPrefix(String);

impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, " {}:", self.0)
        }
    }
}

impl ConfigError {
    /// An error about a configuration source as a whole, without a position or field
    /// path (for example "cannot read file" or "etcd key not found").
    pub fn whole_file(origin: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            kind: ErrorKind::Io,
            origin: origin.into(),
            position: Position(None),
            path: PathPrefix(String::new()),
            message: message.into(),
            offset: None,
        }
    }

    /// An error at a byte offset of `source`.
    pub(crate) fn at(
        kind: ErrorKind,
        origin: &str,
        lines: &LineIndex,
        offset: usize,
        path: &str,
        message: String,
    ) -> Self {
        ConfigError {
            kind,
            origin: origin.to_owned(),
            position: Position(Some(lines.line_column(offset))),
            path: PathPrefix(path.to_owned()),
            message,
            offset: Some(offset),
        }
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The file name (or other origin) the configuration came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The 1-based line of the offending text, when the error has a position.
    pub fn line(&self) -> Option<u32> {
        self.position.0.map(|(line, _)| line)
    }

    /// The 1-based column (in characters) of the offending text, when the error has a
    /// position.
    pub fn column(&self) -> Option<u32> {
        self.position.0.map(|(_, column)| column)
    }

    /// The field path, such as `upstream[1].health.interval`; empty for syntax and
    /// whole-file errors.
    pub fn path(&self) -> &str {
        &self.path.0
    }

    /// The message alone, without file, position or path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Every problem found in a configuration file, in the order they appear in it.
///
/// Never empty. Displays one [`ConfigError`] per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Lines(.errors))]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

struct Lines<'a>(&'a [ConfigError]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// Sorts by position (errors without one first) and wraps; `None` when empty.
    pub(crate) fn from_vec(mut errors: Vec<ConfigError>) -> Option<Self> {
        if errors.is_empty() {
            return None;
        }
        errors.sort_by_key(|e| e.offset.map_or(0, |o| o + 1));
        errors.dedup();
        Some(ConfigErrors { errors })
    }

    /// The errors, in file order.
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// How many errors there are (at least one).
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always `false`: a `ConfigErrors` holds at least one error.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Iterates over the errors in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// The errors, in file order.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.errors
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors {
            errors: vec![error],
        }
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

/// Maps byte offsets of a source text to 1-based line and column numbers.
#[derive(Debug)]
pub(crate) struct LineIndex<'s> {
    source: &'s str,
    line_starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    pub(crate) fn new(source: &'s str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            source
                .bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex {
            source,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of `offset`.
    pub(crate) fn line_column(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.source.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let column = match self.source.get(start..offset) {
            Some(text) => text.chars().count(),
            None => offset - start,
        };
        (line as u32, column as u32 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let index = LineIndex::new("ab\ncdé\nf");
        assert_eq!(index.line_column(0), (1, 1));
        assert_eq!(index.line_column(1), (1, 2));
        assert_eq!(index.line_column(3), (2, 1));
        assert_eq!(index.line_column(7), (2, 4)); // after the two-byte é
        assert_eq!(index.line_column(8), (3, 1));
        assert_eq!(index.line_column(9), (3, 2));
        assert_eq!(index.line_column(99), (3, 2));
    }

    #[test]
    fn display_formats() {
        let index = LineIndex::new("x\ny = 1\n");
        let e = ConfigError::at(
            ErrorKind::InvalidValue,
            "f.toml",
            &index,
            6,
            "server.y",
            "bad".into(),
        );
        assert_eq!(e.to_string(), "f.toml:2:5: server.y: bad");
        let s = ConfigError::at(ErrorKind::Syntax, "f.toml", &index, 0, "", "oops".into());
        assert_eq!(s.to_string(), "f.toml:1:1: oops");
        let w = ConfigError::whole_file("f.toml", "cannot read");
        assert_eq!(w.to_string(), "f.toml: cannot read");
        let all = ConfigErrors::from_vec(vec![e.clone(), w.clone()]).unwrap();
        assert_eq!(
            all.to_string(),
            "f.toml: cannot read\nf.toml:2:5: server.y: bad"
        );
        assert!(ConfigErrors::from_vec(Vec::new()).is_none());
    }
}
