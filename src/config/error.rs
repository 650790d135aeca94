//! Configuration errors: each says where the bad setting is and how to fix it.

use std::fmt;
use std::path::PathBuf;

use super::ini::IniError;

/// Where a setting came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of the ini file.
    Ini {
        /// The ini file, if known.
        file: Option<PathBuf>,
        /// The 1-based line of the option.
        line: usize,
        /// The section name.
        section: String,
        /// The option name.
        key: String,
    },
    /// An environment variable.
    Env {
        /// The variable name.
        var: String,
    },
    /// A setting named without a location (e.g. a value parsed on its own).
    Setting {
        /// The section name.
        section: String,
        /// The option name.
        key: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Ini {
                file,
                line,
                section,
                key,
            } => match file {
                Some(p) => write!(f, "[{section}] {key} ({}:{line})", p.display()),
                None => write!(f, "[{section}] {key} (line {line})"),
            },
            Origin::Env { var } => write!(f, "the environment variable {var}"),
            Origin::Setting { section, key } => write!(f, "[{section}] {key}"),
        }
    }
}

/// Why the configuration cannot be used; the server must not start.
#[derive(Debug)]
pub enum ConfigError {
    /// The ini file itself is malformed.
    Ini(IniError),
    /// A file named by the configuration could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// What the file is for (e.g. "config file").
        what: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file named by the configuration is not UTF-8 text.
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// What the file is for.
        what: String,
    },
    /// A required setting is absent.
    Missing {
        /// The section it belongs in.
        section: String,
        /// The option name.
        key: String,
        /// The environment variable that can provide it instead, if any.
        env_var: Option<String>,
        /// An unknown option in the file that looks like a misspelling of it.
        near_miss: Option<String>,
    },
    /// A setting has a value we cannot use.
    Invalid {
        /// Where it was set (boxed: keeps the error small).
        origin: Box<Origin>,
        /// The value as written (masked for secrets, passwords removed from URIs).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `sqluri` names a database engine (or driver) we do not read.
    UnsupportedDatabase {
        /// Where it was set (boxed: keeps the error small).
        origin: Box<Origin>,
        /// The URI with any password masked.
        uri: String,
    },
    /// `secret` is set but empty, which would let anyone forge tokens.
    EmptySecret {
        /// Where it was set (boxed: keeps the error small).
        origin: Box<Origin>,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Ini(e) => write!(f, "{e}"),
            ConfigError::Io { path, what, source } => write!(
                f,
                "cannot read the {what} {}: {source}; check the path and its permissions",
                path.display()
            ),
            ConfigError::NotUtf8 { path, what } => write!(
                f,
                "the {what} {} is not UTF-8 text; save it as UTF-8",
                path.display()
            ),
            ConfigError::Missing {
                section,
                key,
                env_var,
                near_miss,
            } => {
                write!(f, "`{key}` is not set")?;
                if let Some(near) = near_miss {
                    write!(f, " ({near} is there: did you mean {key}?)")?;
                }
                write!(
                    f,
                    ": add `{key} = ...` to the [{section}] section of the config file"
                )?;
                match env_var {
                    Some(v) => write!(f, " (or set the environment variable {v})"),
                    None => Ok(()),
                }
            }
            ConfigError::Invalid {
                origin,
                value,
                reason,
            } => write!(
                f,
                "{origin} = `{value}` cannot be used: {reason}"
            ),
            ConfigError::UnsupportedDatabase { origin, uri } => write!(
                f,
                "{origin} = `{uri}` names a database this server does not support: use SQLite \
                 (sqlite:////absolute/path/syncserver.db), MySQL/MariaDB ({}://user:password@host/database) \
                 or PostgreSQL ({}://user:password@host/database)",
                super::MYSQL_SCHEMES.join("://, "),
                super::POSTGRES_SCHEMES.join("://, ")
            ),
            ConfigError::EmptySecret { origin } => write!(
                f,
                "{origin} is empty, which would let anyone forge tokens: set it to a long random string \
                 (e.g. the output of `head -c 32 /dev/urandom | base64`), or remove it to have one generated once and stored in the database"
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Ini(e) => Some(e),
            ConfigError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<IniError> for ConfigError {
    fn from(e: IniError) -> ConfigError {
        ConfigError::Ini(e)
    }
}
