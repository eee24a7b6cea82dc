//! `[log]`: how the gateway's own log lines are written (for journald, files or a collector).

/// The form of the gateway's log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (`key=value` fields); colours only when stderr is a terminal.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`), for log collectors.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json` (the config key and `--log-format`).
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}
