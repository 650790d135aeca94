//! Typed reads of single settings from the ini file and the environment, with the errors and
//! notes that go with them.

use std::path::{Path, PathBuf};

use super::error::{ConfigError, Origin};
use super::ini::{Ini, Value};
use super::{mask, ConfigNote, NoteLevel};

/// Options whose values must never appear in an error message.
const SECRET_KEYS: &[&str] = &["secret", "metrics_uid_secret_key", "master_secret"];

/// Everything needed to read settings, plus the notes gathered on the way.
pub(super) struct Ctx<'a> {
    pub(super) ini: &'a Ini,
    pub(super) file: Option<&'a Path>,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    /// The working directory: for env-only configs and env-given relative paths.
    pub(super) cwd: PathBuf,
    /// Where relative paths in the config resolve: the ini's directory, else `cwd`.
    pub(super) base_dir: PathBuf,
    pub(super) notes: Vec<ConfigNote>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        ini: &'a Ini,
        file: Option<&'a Path>,
        env: &'a dyn Fn(&str) -> Option<String>,
        cwd: &Path,
    ) -> Ctx<'a> {
        let base_dir = file
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| cwd.to_path_buf());
        Ctx {
            ini,
            file,
            env,
            cwd: cwd.to_path_buf(),
            base_dir,
            notes: Vec::new(),
        }
    }

    pub(super) fn note(&mut self, level: NoteLevel, message: String) {
        self.notes.push(ConfigNote { level, message });
    }

    pub(super) fn origin(&self, section: &str, key: &str) -> Origin {
        Origin::Ini {
            file: self.file.map(Path::to_path_buf),
            line: self.ini.line(section, key).unwrap_or(0),
            section: section.to_string(),
            key: key.to_string(),
        }
    }

    pub(super) fn invalid(&self, origin: Origin, value: &str, reason: &str) -> ConfigError {
        let secret = match &origin {
            Origin::Ini { key, .. } | Origin::Setting { key, .. } => {
                SECRET_KEYS.contains(&key.as_str())
            }
            Origin::Env { var } => var.contains("SECRET"),
        };
        ConfigError::Invalid {
            origin: Box::new(origin),
            value: if secret {
                mask(value)
            } else {
                value.to_string()
            },
            reason: reason.to_string(),
        }
    }

    /// The untyped lines of an option (see `ini::string_lines`).
    pub(super) fn strings(&self, section: &str, key: &str) -> Option<(Vec<String>, Origin)> {
        let lines = self.ini.get_strings(section, key)?;
        Some((lines, self.origin(section, key)))
    }

    /// A one-line string option (quotes removed, never typed).
    pub(super) fn single(
        &self,
        section: &str,
        key: &str,
    ) -> Result<Option<(String, Origin)>, ConfigError> {
        let Some((mut lines, origin)) = self.strings(section, key) else {
            return Ok(None);
        };
        if lines.len() != 1 {
            let raw = self.ini.get_raw(section, key).unwrap_or("");
            return Err(self.invalid(origin, raw, "it must fit on one line"));
        }
        Ok(lines.pop().map(|v| (v, origin)))
    }

    /// A whole number ≥ `min`; quoted numbers are accepted too.
    pub(super) fn uint(
        &self,
        section: &str,
        key: &str,
        min: u64,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(value) = self.ini.get(section, key) else {
            return Ok(None);
        };
        let n = match &value {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::Str(s) => s.parse::<u64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n >= min => Ok(Some(n)),
            _ => {
                let raw = self.ini.get_raw(section, key).unwrap_or("");
                let reason = format!(
                    "it must be a whole number, at least {min} (or remove the line to use the default)"
                );
                Err(self.invalid(self.origin(section, key), raw, &reason))
            }
        }
    }

    /// A boolean as konfig types it (true/false, 0/1), plus yes/no/on/off, which Python read
    /// as (always true) strings; we read them as the words say and note where that differs.
    pub(super) fn boolean(
        &mut self,
        section: &str,
        key: &str,
    ) -> Result<Option<bool>, ConfigError> {
        let Some(value) = self.ini.get(section, key) else {
            return Ok(None);
        };
        let word = match &value {
            Value::Str(s) => s.to_ascii_lowercase(),
            _ => String::new(),
        };
        let b = match value {
            Value::Bool(b) => Some(b),
            Value::Int(0) => Some(false),
            Value::Int(1) => Some(true),
            _ => match word.as_str() {
                "yes" | "on" => Some(true),
                "no" | "off" => {
                    let msg = format!(
                        "{} = {word}: read as false; the Python server read any word here, even `{word}`, as true",
                        self.origin(section, key)
                    );
                    self.note(NoteLevel::Info, msg);
                    Some(false)
                }
                _ => None,
            },
        };
        match b {
            Some(b) => Ok(Some(b)),
            None => {
                let raw = self.ini.get_raw(section, key).unwrap_or("");
                Err(self.invalid(
                    self.origin(section, key),
                    raw,
                    "it must be true or false (or remove the line to use the default)",
                ))
            }
        }
    }

    /// An environment variable, if set (empty counts as set).
    pub(super) fn env_str(&self, var: &str) -> Option<(String, Origin)> {
        let v = (self.env)(var)?;
        Some((
            v,
            Origin::Env {
                var: var.to_string(),
            },
        ))
    }

    /// A boolean environment variable: true/on/1/yes or false/off/0/no, any case; anything
    /// else is an error, as in the Python server.
    pub(super) fn env_bool(&self, var: &str) -> Result<Option<bool>, ConfigError> {
        let Some((v, origin)) = self.env_str(var) else {
            return Ok(None);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "1" | "yes" => Ok(Some(true)),
            "false" | "off" | "0" | "no" => Ok(Some(false)),
            _ => Err(self.invalid(origin, &v, "it must be true/false, on/off, yes/no or 1/0")),
        }
    }

    /// A flag: the environment variable, else the ini option, else `default`.
    pub(super) fn flag(
        &mut self,
        var: &str,
        section: &str,
        key: &str,
        default: bool,
    ) -> Result<bool, ConfigError> {
        let from_ini = self.boolean(section, key)?;
        Ok(self.env_bool(var)?.or(from_ini).unwrap_or(default))
    }

    /// Reads a UTF-8 text file named by the configuration.
    pub(super) fn read_text(&self, path: &Path, what: &str) -> Result<String, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            what: what.to_string(),
            source,
        })?;
        String::from_utf8(bytes).map_err(|_| ConfigError::NotUtf8 {
            path: path.to_path_buf(),
            what: what.to_string(),
        })
    }
}
