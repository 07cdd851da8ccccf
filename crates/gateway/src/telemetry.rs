//! Structured logs on stderr. `RUST_LOG` filters them (default `info`). The format is `[log]
//! format` in the config (`text` or `json`); `PAYGATE_LOG_FORMAT=json|text` overrides it. Text
//! is coloured only when stderr is a terminal, so files and journald get plain lines; JSON is
//! one object per line for log shippers. Secrets never reach a log line: they live in `secrecy`
//! types whose Debug prints nothing.
//!
//! Logged values often come from outside (a notify's `return_msg`, a path, a user agent). In
//! text, every control character in a value is escaped (`\n`, `\r`, `\u{1b}`, …), so a value
//! can neither start a line that looks like paygate's own nor send escape sequences to a
//! terminal; JSON escapes them by construction.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use serde::{Deserialize, Serialize};
use tracing::field::Field;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{Writer, debug_fn};

/// How log lines are written.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines, control characters in values escaped.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber once; later calls (tests) are ignored.
pub fn init(configured: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let format = match std::env::var("PAYGATE_LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        Ok("text") => LogFormat::Text,
        _ => configured,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .fmt_fields(debug_fn(write_field).delimited(" "))
            .try_init(),
    };
}

/// Writes one field of an event or span as `name=value` (the message bare), escaped.
fn write_field(writer: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
    if field.name() != "message" {
        write!(writer, "{}=", field.name())?;
    }
    write!(Escaped(writer), "{value:?}")
}

/// A writer that passes text through with every control character escaped.
struct Escaped<W>(W);

impl<W: fmt::Write> fmt::Write for Escaped<W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for c in text.chars() {
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                // Line and paragraph separators end lines in some viewers.
                c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                    write!(self.0, "\\u{{{:x}}}", u32::from(c))?;
                }
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_values_are_escaped() {
        let mut out = String::new();
        write!(
            Escaped(&mut out),
            "ok\n2026 INFO forged\r\u{1b}[2K\u{2028}\t€"
        )
        .unwrap();
        assert_eq!(out, "ok\\n2026 INFO forged\\r\\u{1b}[2K\\u{2028}\\t€");
    }
}
