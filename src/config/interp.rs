//! configparser's `ExtendedInterpolation` as konfig configures it: `$$`, `${name}`,
//! `${section:option}`, `${HERE}` and `${ENVVAR}`.

use super::ini::{Ini, IniErrorKind, DEFAULT_SECTION};

/// configparser's MAX_INTERPOLATION_DEPTH.
const MAX_DEPTH: usize = 10;

/// Expands references against the raw values of one parsed file.
pub(super) struct Resolver<'a> {
    /// The file with raw (unexpanded) values.
    pub(super) ini: &'a Ini,
    /// `${HERE}`: the ini file's directory.
    pub(super) here: &'a str,
    /// `${NAME}`: the process environment.
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

impl Resolver<'_> {
    /// Expands the value of `[section] key`; errors name that option.
    pub(super) fn expand(
        &self,
        section: &str,
        key: &str,
        value: &str,
    ) -> Result<String, IniErrorKind> {
        let mut out = String::with_capacity(value.len());
        self.expand_into(&Site { section, key }, section, value, 1, &mut out)?;
        Ok(out)
    }

    /// `context` is the section that bare `${name}` references resolve in: the section of the
    /// value being expanded, which changes when following `${other:option}`.
    fn expand_into(
        &self,
        site: &Site<'_>,
        context: &str,
        value: &str,
        depth: usize,
        out: &mut String,
    ) -> Result<(), IniErrorKind> {
        if depth > MAX_DEPTH {
            return Err(site.too_deep());
        }
        let mut rest = value;
        while let Some(p) = rest.find('$') {
            out.push_str(rest.get(..p).unwrap_or(""));
            let after = rest.get(p + 1..).unwrap_or("");
            if let Some(r) = after.strip_prefix('$') {
                out.push('$');
                rest = r;
            } else if let Some(inner) = after.strip_prefix('{') {
                let end = match inner.find('}') {
                    Some(end) if end > 0 => end,
                    _ => return Err(site.bad_reference("")),
                };
                let name = inner.get(..end).unwrap_or("");
                rest = inner.get(end + 1..).unwrap_or("");
                self.resolve(site, context, name, depth, out)?;
            } else {
                return Err(site.lone_dollar());
            }
        }
        out.push_str(rest);
        Ok(())
    }

    fn resolve(
        &self,
        site: &Site<'_>,
        context: &str,
        name: &str,
        depth: usize,
        out: &mut String,
    ) -> Result<(), IniErrorKind> {
        let parts: Vec<&str> = name.split(':').collect();
        match parts.as_slice() {
            [single] => {
                if *single == "HERE" {
                    out.push_str(self.here);
                    return Ok(());
                }
                // Environment values are literal (konfig escapes their `$`).
                if let Some(v) = (self.env)(single) {
                    out.push_str(&v);
                    return Ok(());
                }
                match self.option(context, single) {
                    Some(v) => self.expand_into(site, context, v, depth + 1, out),
                    None => Err(site.missing(name)),
                }
            }
            [section, option] => match self.option(section, option) {
                Some(v) => self.expand_into(site, section, v, depth + 1, out),
                None => Err(site.missing(name)),
            },
            _ => Err(site.bad_reference(name)),
        }
    }

    /// An option's raw value in `section`, else in `[DEFAULT]` (only if the section exists).
    fn option(&self, section: &str, option: &str) -> Option<&str> {
        let s = self.ini.section(section)?;
        let own = s.entries.iter().find(|e| e.key == option);
        let fallback = || {
            self.ini
                .section(DEFAULT_SECTION)?
                .entries
                .iter()
                .find(|e| e.key == option)
        };
        own.or_else(fallback).map(|e| e.value.as_str())
    }
}

/// The option whose value is being expanded, for error messages.
struct Site<'a> {
    section: &'a str,
    key: &'a str,
}

impl Site<'_> {
    fn too_deep(&self) -> IniErrorKind {
        IniErrorKind::TooDeep {
            section: self.section.to_string(),
            key: self.key.to_string(),
        }
    }

    fn lone_dollar(&self) -> IniErrorKind {
        IniErrorKind::LoneDollar {
            section: self.section.to_string(),
            key: self.key.to_string(),
        }
    }

    /// `reference` is empty for an unclosed `${`: what follows may be the rest of a secret.
    fn bad_reference(&self, reference: &str) -> IniErrorKind {
        IniErrorKind::BadReference {
            section: self.section.to_string(),
            key: self.key.to_string(),
            reference: reference.to_string(),
        }
    }

    fn missing(&self, reference: &str) -> IniErrorKind {
        IniErrorKind::MissingReference {
            section: self.section.to_string(),
            key: self.key.to_string(),
            reference: reference.to_string(),
        }
    }
}
