//! Progress lines, figures and the Markdown report of a benchmark.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context as _;
use coffer_test_support::procfs::{cpu_model, mem_total_gib};

/// The progress prefix: the benchmark's name, and whether lines carry the time.
static SPEAKER: OnceLock<(&'static str, bool)> = OnceLock::new();

/// Names the benchmark in its progress lines (`NAME: …`, or with
/// `timestamps` `NAME [HH:MM:SS]: …`). Call once, first thing.
pub fn speak_as(name: &'static str, timestamps: bool) {
    let _ = SPEAKER.set((name, timestamps));
}

/// The exit status of benchmark `name` whose run ended with `outcome`
/// (whether every check passed); an error is printed first.
pub fn exit_code(name: &str, outcome: anyhow::Result<bool>) -> std::process::ExitCode {
    match outcome {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A progress line on stderr.
pub fn say(msg: impl AsRef<str>) {
    let (name, timestamps) = SPEAKER.get().copied().unwrap_or(("bench", false));
    if timestamps {
        eprintln!(
            "{name} [{}]: {}",
            jiff::Timestamp::now().strftime("%H:%M:%S"),
            msg.as_ref()
        );
    } else {
        eprintln!("{name}: {}", msg.as_ref());
    }
}

/// The CPUs this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |p| p.get())
}

/// When and on what: `DATE · N CPUS (MODEL) · M GiB RAM`, with `cpus` the
/// word for the CPUs ("CPUs", "vCPU").
pub fn machine(cpus: &str) -> String {
    format!(
        "{} · {} {cpus} ({}) · {:.0} GiB RAM",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        cores(),
        cpu_model(),
        mem_total_gib()
    )
}

/// `12.3 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// `1.23 s` under ten seconds, `12.3 s` above.
pub fn secs_fine(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `12.3 ms`.
pub fn ms_text(d: Duration) -> String {
    format!("{:.1} ms", ms(d))
}

/// KiB (as /proc reports memory) in MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `12.3 MiB`.
pub fn mib_text(kib: u64) -> String {
    format!("{:.1} MiB", mib(kib))
}

/// The q-quantile (nearest rank) of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// When the first, half and nine tenths of the objects were done.
#[derive(Default, Clone, Copy, Debug)]
pub struct Marks(pub [Option<Duration>; 3]);

impl Marks {
    /// Notes `done` of `n` at `elapsed`.
    pub fn note(&mut self, done: usize, n: usize, elapsed: Duration) {
        for (i, frac) in [0.0, 0.5, 0.9].into_iter().enumerate() {
            if self.0[i].is_none() && done > 0 && done as f64 >= frac * n as f64 {
                self.0[i] = Some(elapsed);
            }
        }
    }

    /// `first / 50 % / 90 %` with `fmt`, `none` for a mark not reached.
    pub fn render(&self, fmt: fn(Duration) -> String, none: &str) -> String {
        self.0
            .iter()
            .map(|m| m.map(fmt).unwrap_or_else(|| none.into()))
            .collect::<Vec<_>>()
            .join(" / ")
    }
}

/// A Markdown table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) {
        self.rows.push(cells.into_iter().collect());
    }

    pub fn render(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut s = line(&self.header);
        s.push_str(&line(&vec!["---".to_string(); self.header.len()]));
        for r in &self.rows {
            s.push_str(&line(r));
        }
        s
    }
}

/// Prints the report and writes it to `out` (its directory made first).
pub fn publish(text: &str, out: Option<&Path>) -> anyhow::Result<()> {
    print!("{text}");
    if let Some(out) = out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
        say(format!("report written to {}", out.display()));
    }
    Ok(())
}
