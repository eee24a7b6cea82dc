//! A progress bar on stderr for the preload and each round: done/total, rate, elapsed, ETA.
//! Drawn only when stderr is a terminal and `--quiet` is not given, so a pipe or a log file
//! never gets control sequences (indicatif also stays silent when TERM is unset or `dumb`).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the bar is redrawn from the shared counter: smooth to the eye, negligible work.
const REFRESH: Duration = Duration::from_millis(200);

/// What the bar counts towards.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Total {
    /// Items (keys preloaded, iterations of a count-bounded round).
    Items(u64),
    /// Time (a duration-bounded round): the bar shows seconds, the message the operations.
    Time(Duration),
}

/// Whether bars may be drawn at all: a terminal on stderr and no `--quiet`.
pub(crate) fn wanted(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// A counter the workers bump on each completion, and the bar that shows it.
pub(crate) struct Progress {
    done: Arc<AtomicU64>,
    shown: Option<Shown>,
}

struct Shown {
    bar: ProgressBar,
    total: Total,
    refresh: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Starts a bar labelled `what` if `enabled`; otherwise only the (cheap) counter exists.
    pub(crate) fn start(enabled: bool, what: &str, total: Total) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        if !enabled {
            return Progress { done, shown: None };
        }
        let (len, template) = match total {
            Total::Items(n) => (
                n,
                "{prefix} [{wide_bar}] {pos}/{len}  {per_sec}  elapsed {elapsed}  ETA {eta}",
            ),
            Total::Time(d) => (
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                "{prefix} [{wide_bar}] {msg}  elapsed {elapsed}  ETA {eta}",
            ),
        };
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(what.to_owned());
        let (counter, shown) = (done.clone(), bar.clone());
        let start = Instant::now();
        let refresh = tokio::spawn(async move {
            let mut every = tokio::time::interval(REFRESH);
            loop {
                every.tick().await;
                update(
                    &shown,
                    total,
                    counter.load(Ordering::Relaxed),
                    start.elapsed(),
                );
            }
        });
        Progress {
            done,
            shown: Some(Shown {
                bar,
                total,
                refresh,
            }),
        }
    }

    /// The counter to bump once per completed item.
    pub(crate) fn counter(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }

    /// Draws the final state and leaves it on its line.
    pub(crate) fn finish(mut self) {
        if let Some(s) = self.shown.take() {
            s.refresh.abort();
            update(
                &s.bar,
                s.total,
                self.done.load(Ordering::Relaxed),
                s.bar.elapsed(),
            );
            if let Some(len) = s.bar.length() {
                s.bar.set_position(s.bar.position().min(len));
            }
            s.bar.finish();
        }
    }
}

impl Drop for Progress {
    /// A run that fails midway stops its refresher and leaves the bar where it was.
    fn drop(&mut self) {
        if let Some(s) = self.shown.take() {
            s.refresh.abort();
            s.bar.abandon();
        }
    }
}

fn update(bar: &ProgressBar, total: Total, done: u64, elapsed: Duration) {
    match total {
        Total::Items(_) => bar.set_position(done),
        Total::Time(_) => {
            let secs = elapsed.as_secs_f64();
            let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
            bar.set_message(format!("{done} ops  {rate:.0}/s"));
            bar.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        }
    }
}
