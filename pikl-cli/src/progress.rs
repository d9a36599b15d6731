//! Progress on stderr for long reads: a `BufRead` wrapper that counts what was consumed and,
//! when stderr is a terminal and the work has run for over a second, redraws one status line.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

/// Counts consumed bytes of `inner` and reports them against `total` (when known).
pub struct Progress<R> {
    inner: R,
    name: String,
    total: Option<u64>,
    done: u64,
    start: Instant,
    next_report: Instant,
    shown: bool,
}

impl<R: BufRead> Progress<R> {
    /// Wraps `inner`; reports only if stderr is a terminal.
    pub fn new(inner: R, name: &str, total: Option<u64>) -> Self {
        let start = Instant::now();
        Progress {
            inner,
            name: name.to_owned(),
            total,
            done: 0,
            start,
            next_report: start + Duration::from_secs(1),
            shown: false,
        }
    }

    fn report(&mut self) {
        let now = Instant::now();
        if now < self.next_report {
            return;
        }
        self.next_report = now + Duration::from_millis(250);
        let mib = self.done as f64 / 1048576.0;
        let rate = mib / now.duration_since(self.start).as_secs_f64().max(1e-9);
        let line = match self.total {
            Some(t) if t > 0 => format!(
                "\rpikl: {}: {:5.1}% ({mib:.0} of {:.0} MiB, {rate:.0} MiB/s)",
                self.name,
                self.done as f64 * 100.0 / t as f64,
                t as f64 / 1048576.0
            ),
            _ => format!("\rpikl: {}: {mib:.0} MiB ({rate:.0} MiB/s)", self.name),
        };
        let _ = io::stderr().write_all(line.as_bytes());
        self.shown = true;
    }
}

impl<R> Drop for Progress<R> {
    fn drop(&mut self) {
        if self.shown {
            let _ = io::stderr().write_all(b"\r\x1b[K");
        }
    }
}

impl<R: BufRead> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        self.report();
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Progress<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        self.done += amt as u64;
        self.report();
    }
}

/// Wraps `reader` in a [`Progress`] when stderr is a terminal.
pub fn wrap(reader: Box<dyn BufRead>, name: &str, total: Option<u64>) -> Box<dyn BufRead> {
    if io::stderr().is_terminal() {
        Box::new(Progress::new(reader, name, total))
    } else {
        reader
    }
}
