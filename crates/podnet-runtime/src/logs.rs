//! CRI-format container logs, the format kubelet reads:
//! `2026-11-23T16:51:10.123456789Z stdout F line`, one entry per line, `P`
//! for a partial line (the rest follows in the next entry) and `F` for the
//! final piece. The shim writes them; the agent reads them back for
//! `kubectl logs` (tail, since, timestamps, follow, previous attempt).

use crate::error::{io_error, Result, RuntimeError};
use jiff::Timestamp;
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// Which output stream a log entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// The container's standard output (also TTY output).
    Stdout,
    /// The container's standard error.
    Stderr,
}

impl LogStream {
    fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One parsed CRI log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// When the shim read the bytes.
    pub timestamp: Timestamp,
    /// Source stream.
    pub stream: LogStream,
    /// `false` for `P` entries whose line continues in the next entry.
    pub complete: bool,
    /// The bytes without the trailing newline.
    pub content: Vec<u8>,
}

/// Formats a timestamp the way CRI logs carry it (RFC 3339, nanoseconds, UTC).
pub fn format_log_timestamp(timestamp: Timestamp) -> String {
    format!(
        "{}.{:09}Z",
        timestamp.strftime("%Y-%m-%dT%H:%M:%S"),
        timestamp.subsec_nanosecond()
    )
}

/// Renders one entry as a CRI log line, newline included.
pub fn format_log_entry(entry: &LogEntry) -> Vec<u8> {
    let mut line = format!(
        "{} {} {} ",
        format_log_timestamp(entry.timestamp),
        entry.stream.as_str(),
        if entry.complete { "F" } else { "P" }
    )
    .into_bytes();
    line.extend_from_slice(&entry.content);
    line.push(b'\n');
    line
}

/// Parses one CRI log line (without its newline).
pub fn parse_log_line(line: &[u8]) -> Option<LogEntry> {
    let mut parts = line.splitn(4, |byte| *byte == b' ');
    let timestamp = std::str::from_utf8(parts.next()?)
        .ok()?
        .parse::<Timestamp>()
        .ok()?;
    let stream = match parts.next()? {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return None,
    };
    let complete = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some(LogEntry {
        timestamp,
        stream,
        complete,
        content: parts.next().unwrap_or_default().to_vec(),
    })
}

/// Kubelet's log path: `<log_dir>/<ns>_<pod>_<uid>/<container>/<attempt>.log`.
pub fn container_log_path(
    log_dir: &Path,
    namespace: &str,
    pod: &str,
    pod_uid: &str,
    container: &str,
    attempt: u32,
) -> PathBuf {
    log_dir
        .join(format!("{namespace}_{pod}_{pod_uid}"))
        .join(container)
        .join(format!("{attempt}.log"))
}

/// Splits a stream's bytes into CRI entries: complete lines become `F`
/// entries; a line longer than `max_line` or still open when the stream is
/// flushed becomes `P` entries.
#[derive(Debug)]
pub struct LogLineSplitter {
    stream: LogStream,
    pending: Vec<u8>,
    max_line: usize,
}

impl LogLineSplitter {
    /// A splitter for `stream`; kubelet's maximum line is 16 KiB.
    pub fn new(stream: LogStream) -> LogLineSplitter {
        LogLineSplitter {
            stream,
            pending: Vec::new(),
            max_line: 16 * 1024,
        }
    }

    /// Feeds bytes and returns the entries they complete.
    pub fn push(&mut self, bytes: &[u8], now: Timestamp) -> Vec<LogEntry> {
        let mut entries = Vec::new();
        for byte in bytes {
            if *byte == b'\n' {
                let mut content = std::mem::take(&mut self.pending);
                if content.last() == Some(&b'\r') {
                    content.pop();
                }
                entries.push(LogEntry {
                    timestamp: now,
                    stream: self.stream,
                    complete: true,
                    content,
                });
            } else {
                self.pending.push(*byte);
                if self.pending.len() >= self.max_line {
                    entries.push(LogEntry {
                        timestamp: now,
                        stream: self.stream,
                        complete: false,
                        content: std::mem::take(&mut self.pending),
                    });
                }
            }
        }
        entries
    }

    /// Emits a still-open line as a partial entry (at end of stream, or
    /// when a prompt without newline has waited long enough).
    pub fn flush(&mut self, now: Timestamp) -> Option<LogEntry> {
        if self.pending.is_empty() {
            return None;
        }
        Some(LogEntry {
            timestamp: now,
            stream: self.stream,
            complete: false,
            content: std::mem::take(&mut self.pending),
        })
    }
}

/// Appends entries to a CRI log file.
pub fn append_log_entries(file: &mut std::fs::File, entries: &[LogEntry]) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    for entry in entries {
        buffer.extend_from_slice(&format_log_entry(entry));
    }
    file.write_all(&buffer)
}

/// How to render a log for `kubectl logs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only the last N lines (`--tail`).
    pub tail_lines: Option<usize>,
    /// Only entries at or after this instant (`--since`, `--since-time`).
    pub since: Option<Timestamp>,
    /// Prefix each line with its RFC 3339 timestamp (`--timestamps`).
    pub timestamps: bool,
    /// Keep streaming new entries until the container exits (`-f`).
    pub follow: bool,
    /// Stop after this many bytes of output (`--limit-bytes`).
    pub limit_bytes: Option<u64>,
}

fn render_entry(entry: &LogEntry, options: &LogOptions) -> Vec<u8> {
    let mut out = Vec::new();
    if options.timestamps {
        out.extend_from_slice(format_log_timestamp(entry.timestamp).as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(&entry.content);
    if entry.complete {
        out.push(b'\n');
    }
    out
}

/// Reads the whole log file and renders the entries selected by `options`
/// (ignoring `follow`).
pub fn read_log(path: &Path, options: &LogOptions) -> Result<Vec<u8>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(io_error("read log", path)(error)),
    };
    let entries = parse_log_bytes(path, &bytes)?;
    Ok(render_selection(&entries, options))
}

fn parse_log_bytes(path: &Path, bytes: &[u8]) -> Result<Vec<LogEntry>> {
    let mut entries = Vec::new();
    for line in bytes
        .split(|byte| *byte == b'\n')
        .filter(|line| !line.is_empty())
    {
        let entry = parse_log_line(line).ok_or_else(|| RuntimeError::MalformedLog {
            path: path.to_path_buf(),
            reason: format!("cannot parse {:?}", String::from_utf8_lossy(line)),
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

fn render_selection(entries: &[LogEntry], options: &LogOptions) -> Vec<u8> {
    let selected: Vec<&LogEntry> = entries
        .iter()
        .filter(|entry| options.since.is_none_or(|since| entry.timestamp >= since))
        .collect();
    let start = match options.tail_lines {
        Some(tail) => {
            // Count whole lines from the end: a line is a run of P entries closed by F.
            let mut lines = 0;
            let mut start = selected.len();
            for (index, entry) in selected.iter().enumerate().rev() {
                if entry.complete {
                    if lines == tail {
                        break;
                    }
                    lines += 1;
                }
                start = index;
            }
            if tail == 0 {
                selected.len()
            } else {
                start
            }
        }
        None => 0,
    };
    let mut out = Vec::new();
    for entry in &selected[start..] {
        out.extend_from_slice(&render_entry(entry, options));
    }
    if let Some(limit) = options.limit_bytes {
        out.truncate(limit as usize);
    }
    out
}

/// Writes the log at `path` to `out` as `kubectl logs` shows it. With
/// `follow`, keeps reading appended entries until `is_finished()` returns
/// true and the file has been read to its end.
pub async fn write_log<W, F>(
    path: &Path,
    options: &LogOptions,
    mut is_finished: F,
    out: &mut W,
) -> Result<()>
where
    W: AsyncWrite + Unpin,
    F: FnMut() -> bool,
{
    let write_failed = |error| io_error("write log output for", path)(error);
    let initial = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(io_error("read log", path)(error)),
    };
    // Only whole lines count; a line still being written is read on the next pass.
    let complete_length = initial
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let entries = parse_log_bytes(path, &initial[..complete_length])?;
    let rendered = render_selection(&entries, options);
    out.write_all(&rendered).await.map_err(write_failed)?;
    out.flush().await.map_err(write_failed)?;
    if !options.follow {
        return Ok(());
    }
    let mut written = rendered.len() as u64;
    let mut offset = complete_length as u64;
    loop {
        let finished = is_finished();
        let mut file = match tokio::fs::File::open(path).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && !finished => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(io_error("read log", path)(error)),
        };
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(io_error("read log", path))?;
        let mut reader = tokio::io::BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            let count = reader
                .read_until(b'\n', &mut line)
                .await
                .map_err(io_error("read log", path))?;
            if count == 0 || line.last() != Some(&b'\n') {
                break;
            }
            offset += count as u64;
            let Some(entry) = parse_log_line(&line[..line.len() - 1]) else {
                continue;
            };
            if options.since.is_some_and(|since| entry.timestamp < since) {
                continue;
            }
            let mut rendered = render_entry(&entry, options);
            if let Some(limit) = options.limit_bytes {
                let room = limit.saturating_sub(written) as usize;
                rendered.truncate(room);
                if room == 0 {
                    return Ok(());
                }
            }
            written += rendered.len() as u64;
            out.write_all(&rendered).await.map_err(write_failed)?;
        }
        out.flush().await.map_err(write_failed)?;
        if finished {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::new(1_795_000_000 + seconds, 123_456_789).unwrap()
    }

    #[test]
    fn splits_lines_into_cri_entries() {
        let mut splitter = LogLineSplitter::new(LogStream::Stdout);
        let mut entries = splitter.push(b"hello\nwor", at(0));
        entries.extend(splitter.push(b"ld\r\nprompt> ", at(1)));
        entries.extend(splitter.flush(at(2)));
        let rendered: Vec<u8> = entries.iter().flat_map(format_log_entry).collect();
        expect![[r#"
            2026-11-18T11:06:40.123456789Z stdout F hello
            2026-11-18T11:06:41.123456789Z stdout F world
            2026-11-18T11:06:42.123456789Z stdout P prompt> 
        "#]]
        .assert_eq(&String::from_utf8(rendered).unwrap());
        for entry in &entries {
            let line = format_log_entry(entry);
            assert_eq!(
                parse_log_line(&line[..line.len() - 1]).as_ref(),
                Some(entry)
            );
        }
    }

    #[test]
    fn renders_tail_since_and_timestamps() {
        let entries = vec![
            LogEntry {
                timestamp: at(0),
                stream: LogStream::Stdout,
                complete: true,
                content: b"one".to_vec(),
            },
            LogEntry {
                timestamp: at(1),
                stream: LogStream::Stderr,
                complete: false,
                content: b"tw".to_vec(),
            },
            LogEntry {
                timestamp: at(1),
                stream: LogStream::Stderr,
                complete: true,
                content: b"o".to_vec(),
            },
            LogEntry {
                timestamp: at(2),
                stream: LogStream::Stdout,
                complete: true,
                content: b"three".to_vec(),
            },
        ];
        let render =
            |options: LogOptions| String::from_utf8(render_selection(&entries, &options)).unwrap();
        expect![[r#"
            one
            two
            three
        "#]]
        .assert_eq(&render(LogOptions::default()));
        expect![[r#"
            two
            three
        "#]]
        .assert_eq(&render(LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        }));
        expect![""].assert_eq(&render(LogOptions {
            tail_lines: Some(0),
            ..Default::default()
        }));
        expect![[r#"
            2026-11-18T11:06:42.123456789Z three
        "#]]
        .assert_eq(&render(LogOptions {
            since: Some(at(2)),
            timestamps: true,
            ..Default::default()
        }));
        expect!["one\ntw"].assert_eq(&render(LogOptions {
            limit_bytes: Some(6),
            ..Default::default()
        }));
    }
}
