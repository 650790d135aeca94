//! A reader for `syncserver.ini` that follows the Python server's rules exactly: Python
//! `configparser` (strict mode, `=`/`:` delimiters, only `#` full-line comments, indented
//! continuation lines) with konfig 1.1's extended interpolation and value typing.
//!
//! Interpolation runs once, at parse time, so every error carries the file and line of the
//! option that caused it. `${name}` is looked up as `HERE`, then the environment, then the same
//! section, then `[DEFAULT]`. konfig itself only looked at `HERE` and the environment for a bare
//! `${name}`; the extra fallbacks only accept files Python refused, they never change the
//! meaning of a file Python accepted.

use std::fmt;
use std::path::{Path, PathBuf};

use super::interp;

/// Name of the section whose options every other section inherits.
pub const DEFAULT_SECTION: &str = "DEFAULT";

/// A value typed the way konfig 1.1 types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `^-?[0-9]+$` (a value too large for i64 stays a `Str`).
    Int(i64),
    /// `^-?[0-9]+\.[0-9]*$` or `^-?\.[0-9]+$`.
    Float(f64),
    /// `true` / `false` in any case.
    Bool(bool),
    /// Anything else; surrounding double quotes are removed.
    Str(String),
    /// A multi-line value: one typed entry per non-empty line.
    List(Vec<Value>),
}

impl Value {
    /// Types one line as konfig's `_unserialize` does (the line is stripped first).
    pub fn from_line(line: &str) -> Value {
        let v = line.trim();
        if is_int(v) {
            if let Ok(i) = v.parse::<i64>() {
                return Value::Int(i);
            }
            return Value::Str(v.to_string());
        }
        if is_float(v) {
            if let Ok(f) = v.parse::<f64>() {
                return Value::Float(f);
            }
        }
        if let Some(s) = unquote(v) {
            return Value::Str(s.to_string());
        }
        if v.eq_ignore_ascii_case("true") {
            return Value::Bool(true);
        }
        if v.eq_ignore_ascii_case("false") {
            return Value::Bool(false);
        }
        Value::Str(v.to_string())
    }

    /// Types a whole interpolated value: a value spanning several lines becomes a `List`.
    pub fn from_raw(raw: &str) -> Value {
        if raw.contains('\n') {
            let items = raw
                .split('\n')
                .map(Value::from_line)
                .filter(|v| !matches!(v, Value::Str(s) if s.is_empty()))
                .collect();
            Value::List(items)
        } else {
            Value::from_line(raw)
        }
    }
}

/// Splits a raw value into konfig's lines, as strings: stripped, quotes removed, empty lines of
/// a multi-line value dropped, but never typed (so `0123` stays `0123`).
pub fn string_lines(raw: &str) -> Vec<String> {
    let untyped = |line: &str| {
        let v = line.trim();
        unquote(v).unwrap_or(v).to_string()
    };
    if raw.contains('\n') {
        raw.split('\n')
            .map(untyped)
            .filter(|s| !s.is_empty())
            .collect()
    } else {
        vec![untyped(raw)]
    }
}

fn is_int(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_float(v: &str) -> bool {
    let body = v.strip_prefix('-').unwrap_or(v);
    match body.split_once('.') {
        Some((int, frac)) => {
            let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
            // `5.` and `.5` are floats, a lone `.` is not.
            all_digits(int) && all_digits(frac) && (!int.is_empty() || !frac.is_empty())
        }
        None => false,
    }
}

/// konfig: a value that starts and ends with `"` loses them (a lone `"` becomes empty).
fn unquote(v: &str) -> Option<&str> {
    if v.starts_with('"') && v.ends_with('"') {
        Some(v.get(1..v.len().saturating_sub(1)).unwrap_or(""))
    } else {
        None
    }
}

/// Why a line or value of the ini file was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum IniErrorKind {
    /// An option appears before any `[section]` line.
    MissingSectionHeader,
    /// The line is not a section, an option, a continuation or a comment.
    NotAnOption,
    /// `= value` with nothing before the delimiter.
    EmptyKey,
    /// The same section appears twice.
    DuplicateSection {
        /// The section name.
        section: String,
    },
    /// The same option appears twice in a section.
    DuplicateKey {
        /// The section name.
        section: String,
        /// The option name.
        key: String,
    },
    /// A `$` not followed by `$` or `{`.
    LoneDollar {
        /// The section name.
        section: String,
        /// The option name.
        key: String,
    },
    /// A malformed `${...}`: unclosed or empty (then `reference` is empty), or with more than
    /// one `:`.
    BadReference {
        /// The section name.
        section: String,
        /// The option name.
        key: String,
        /// What was written inside `${...}`; empty when unclosed.
        reference: String,
    },
    /// `${...}` names nothing that exists.
    MissingReference {
        /// The section name.
        section: String,
        /// The option name.
        key: String,
        /// The name inside `${...}`.
        reference: String,
    },
    /// References nested more than 10 deep (most likely a loop).
    TooDeep {
        /// The section name.
        section: String,
        /// The option name.
        key: String,
    },
    /// konfig's `extends` / `overrides` file inclusion, which we do not support.
    Include {
        /// `extends` or `overrides`.
        key: String,
    },
}

/// A refused ini file: where, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct IniError {
    /// The ini file, when known (set by the loader).
    pub file: Option<PathBuf>,
    /// The 1-based line of the offending line or option.
    pub line: usize,
    /// What is wrong.
    pub kind: IniErrorKind,
}

impl IniError {
    fn new(line: usize, kind: IniErrorKind) -> IniError {
        IniError {
            file: None,
            line,
            kind,
        }
    }

    /// Attaches the file name, for messages.
    pub fn with_file(mut self, file: &Path) -> IniError {
        self.file = Some(file.to_path_buf());
        self
    }
}

impl fmt::Display for IniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "{}:{}: ", p.display(), self.line)?,
            None => write!(f, "line {}: ", self.line)?,
        }
        use IniErrorKind as K;
        match &self.kind {
            K::MissingSectionHeader => write!(
                f,
                "this option comes before any [section] line; put it under the section it belongs to (e.g. [syncserver])"
            ),
            K::NotAnOption => write!(
                f,
                "this line is not `[section]`, `key = value`, an indented continuation line or a `#` comment (note: only `#` starts a comment, not `;`)"
            ),
            K::EmptyKey => write!(f, "there is no option name before the `=` or `:`"),
            K::DuplicateSection { section } => write!(
                f,
                "section [{section}] appears a second time; merge both into one [{section}] section"
            ),
            K::DuplicateKey { section, key } => write!(
                f,
                "`{key}` is set a second time in [{section}]; keep only one of the two lines"
            ),
            K::LoneDollar { section, key } => write!(
                f,
                "[{section}] {key} contains a `$` that is not `$$` or `${{name}}`; write `$$` for a literal `$`"
            ),
            K::BadReference {
                section,
                key,
                reference,
            } => {
                if reference.is_empty() {
                    write!(f, "[{section}] {key}: a `${{` is empty or never closed")?;
                } else {
                    write!(f, "[{section}] {key}: bad reference `${{{reference}}}`")?;
                }
                write!(f, "; use `${{name}}` or `${{section:option}}`, and `$$` for a literal `$`")
            }
            K::MissingReference {
                section,
                key,
                reference,
            } => write!(
                f,
                "[{section}] {key}: `${{{reference}}}` names no environment variable and no option; set it, fix the name, or write `$$` for a literal `$`"
            ),
            K::TooDeep { section, key } => write!(
                f,
                "[{section}] {key}: references are nested more than 10 deep (a reference loop?)"
            ),
            K::Include { key } => write!(
                f,
                "konfig's `{key}` (including another ini file) is not supported; copy the settings into this file"
            ),
        }
    }
}

impl std::error::Error for IniError {}

/// One option: its name, its value after interpolation (lines joined by `\n`), its line.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) value: String,
    pub(super) line: usize,
}

/// One `[section]` and its options, in file order.
#[derive(Debug, Clone)]
pub(super) struct Section {
    pub(super) name: String,
    pub(super) line: usize,
    pub(super) entries: Vec<Entry>,
}

impl Section {
    fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

/// A parsed, interpolated ini file: sections in order, each an ordered list of options.
#[derive(Debug, Clone, Default)]
pub struct Ini {
    defaults: Section,
    sections: Vec<Section>,
}

impl Default for Section {
    fn default() -> Section {
        Section {
            name: DEFAULT_SECTION.to_string(),
            line: 0,
            entries: Vec::new(),
        }
    }
}

impl Ini {
    /// Parses `text` with the Python server's rules; `here` is `${HERE}` (the ini file's
    /// directory) and `env` answers `${NAME}` lookups.
    pub fn parse(
        text: &str,
        here: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Ini, IniError> {
        let raw = Ini::read_structure(text)?;
        for key in ["extends", "overrides"] {
            if let Some(e) = raw.defaults.entry(key) {
                let kind = IniErrorKind::Include {
                    key: key.to_string(),
                };
                return Err(IniError::new(e.line, kind));
            }
        }
        let here = here.to_string_lossy();
        let resolver = interp::Resolver {
            ini: &raw,
            here: &here,
            env,
        };
        // References always read the raw (not yet expanded) values, as configparser does.
        let mut expanded = raw.clone();
        let all = std::iter::once(&mut expanded.defaults).chain(expanded.sections.iter_mut());
        for section in all {
            for entry in &mut section.entries {
                entry.value = resolver
                    .expand(&section.name, &entry.key, &entry.value)
                    .map_err(|kind| IniError::new(entry.line, kind))?;
            }
        }
        Ok(expanded)
    }

    /// First pass, as configparser's `_read`: sections, options and continuation lines.
    fn read_structure(text: &str) -> Result<Ini, IniError> {
        // Index 0 is [DEFAULT]; configparser keeps a value's lines and joins them at the end.
        let mut sections: Vec<RawSection> = vec![RawSection::new(DEFAULT_SECTION, 0)];
        let mut current: Option<usize> = None;
        let mut in_option = false;
        let mut indent_level = 0usize;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (idx, full) in text.split('\n').enumerate() {
            let lineno = idx + 1;
            let line = full.strip_suffix('\r').unwrap_or(full);
            let value = line.trim();
            let open_entry = current
                .filter(|_| in_option)
                .and_then(|i| sections.get_mut(i))
                .and_then(|s| s.entries.last_mut());
            if value.is_empty() || value.starts_with('#') {
                // An empty line inside a value is kept (and dropped later); a comment is not.
                if let (true, Some(e)) = (value.is_empty(), open_entry) {
                    e.lines.push(String::new());
                }
                continue;
            }
            let indent = line.chars().take_while(|c| c.is_whitespace()).count();
            if let (true, Some(e)) = (indent > indent_level, open_entry) {
                e.lines.push(value.to_string());
                continue;
            }
            indent_level = indent;
            if let Some(name) = section_header(value) {
                current = Some(open_section(&mut sections, name, lineno)?);
                in_option = false;
                continue;
            }
            let Some(section) = current.and_then(|i| sections.get_mut(i)) else {
                return Err(IniError::new(lineno, IniErrorKind::MissingSectionHeader));
            };
            let Some((key, val)) = split_option(value) else {
                return Err(IniError::new(lineno, IniErrorKind::NotAnOption));
            };
            if key.is_empty() {
                return Err(IniError::new(lineno, IniErrorKind::EmptyKey));
            }
            if section.entries.iter().any(|e| e.key == key) {
                let kind = IniErrorKind::DuplicateKey {
                    section: section.name.clone(),
                    key: key.to_string(),
                };
                return Err(IniError::new(lineno, kind));
            }
            section.entries.push(RawEntry {
                key: key.to_string(),
                lines: vec![val.to_string()],
                line: lineno,
            });
            in_option = true;
        }
        let mut all = sections.into_iter().map(RawSection::finish);
        let defaults = all.next().unwrap_or_default();
        Ok(Ini {
            defaults,
            sections: all.collect(),
        })
    }

    /// An ini with no sections (configuration from the environment only).
    pub fn empty() -> Ini {
        Ini::default()
    }

    pub(super) fn section(&self, name: &str) -> Option<&Section> {
        if name == DEFAULT_SECTION {
            return Some(&self.defaults);
        }
        self.sections.iter().find(|s| s.name == name)
    }

    /// The option as configparser finds it: in the section, else in `[DEFAULT]` (only when the
    /// section exists, as configparser does).
    fn entry(&self, section: &str, key: &str) -> Option<&Entry> {
        let s = self.section(section)?;
        s.entry(key).or_else(|| self.defaults.entry(key))
    }

    /// The typed value of `[section] key` (falling back to `[DEFAULT]`).
    pub fn get(&self, section: &str, key: &str) -> Option<Value> {
        self.get_raw(section, key).map(Value::from_raw)
    }

    /// The value after interpolation but before typing; lines of a multi-line value are
    /// joined by `\n`.
    pub fn get_raw(&self, section: &str, key: &str) -> Option<&str> {
        self.entry(section, key).map(|e| e.value.as_str())
    }

    /// The value as untyped strings (see [`string_lines`]): one entry for a single-line value
    /// (possibly empty), one per non-empty line otherwise.
    pub fn get_strings(&self, section: &str, key: &str) -> Option<Vec<String>> {
        self.get_raw(section, key).map(string_lines)
    }

    /// The line where `[section] key` is set.
    pub fn line(&self, section: &str, key: &str) -> Option<usize> {
        self.entry(section, key).map(|e| e.line)
    }

    /// The line of a `[section]` header.
    pub fn section_line(&self, section: &str) -> Option<usize> {
        self.section(section).map(|s| s.line)
    }

    /// Whether `[section]` appears in the file (`DEFAULT` counts only if it has options).
    pub fn has_section(&self, section: &str) -> bool {
        match section {
            DEFAULT_SECTION => !self.defaults.entries.is_empty(),
            _ => self.sections.iter().any(|s| s.name == section),
        }
    }

    /// Section names in file order, without `[DEFAULT]` (as configparser's `sections()`).
    pub fn sections(&self) -> impl Iterator<Item = &str> + '_ {
        self.sections.iter().map(|s| s.name.as_str())
    }

    /// Option names set in the section itself, in file order (`"DEFAULT"` lists `[DEFAULT]`).
    pub fn keys<'a>(&'a self, section: &str) -> impl Iterator<Item = &'a str> + 'a {
        self.section(section)
            .into_iter()
            .flat_map(|s| s.entries.iter().map(|e| e.key.as_str()))
    }
}

/// An option during the first pass: its raw lines, not yet joined.
struct RawEntry {
    key: String,
    lines: Vec<String>,
    line: usize,
}

/// A section during the first pass.
struct RawSection {
    name: String,
    line: usize,
    entries: Vec<RawEntry>,
}

impl RawSection {
    fn new(name: &str, line: usize) -> RawSection {
        RawSection {
            name: name.to_string(),
            line,
            entries: Vec::new(),
        }
    }

    /// configparser: lines joined with `\n`, then the whole value right-stripped.
    fn finish(self) -> Section {
        let entries = self
            .entries
            .into_iter()
            .map(|e| Entry {
                key: e.key,
                value: e.lines.join("\n").trim_end().to_string(),
                line: e.line,
            })
            .collect();
        Section {
            name: self.name,
            line: self.line,
            entries,
        }
    }
}

/// Enters `[name]`: a repeated `[DEFAULT]` continues it, any other repeat is an error
/// (configparser's strict mode).
fn open_section(
    sections: &mut Vec<RawSection>,
    name: &str,
    line: usize,
) -> Result<usize, IniError> {
    if name == DEFAULT_SECTION {
        if let Some(d) = sections.first_mut() {
            if d.line == 0 {
                d.line = line;
            }
        }
        return Ok(0);
    }
    if sections.iter().skip(1).any(|s| s.name == name) {
        let kind = IniErrorKind::DuplicateSection {
            section: name.to_string(),
        };
        return Err(IniError::new(line, kind));
    }
    sections.push(RawSection::new(name, line));
    Ok(sections.len() - 1)
}

/// configparser's SECTCRE `\[(?P<header>.+)\]` with `match`: anything after the last `]` is
/// ignored, so `[syncserver] # note` is the section `syncserver`.
fn section_header(value: &str) -> Option<&str> {
    let inner = value.strip_prefix('[')?;
    let end = inner.rfind(']')?;
    let name = inner.get(..end)?;
    if name.is_empty() {
        None
    } else {
        Some(name)
    }
}

/// configparser's OPTCRE: the option ends at the first `=` or `:`.
fn split_option(value: &str) -> Option<(&str, &str)> {
    let p = value.find(['=', ':'])?;
    let key = value.get(..p)?.trim_end();
    let val = value.get(p + 1..)?.trim();
    Some((key, val))
}

#[cfg(test)]
#[path = "ini_tests.rs"]
mod tests;
