//! Frames per second and latency, as a viewer experiences them.
//!
//! What counts for a live filter is not the effect's own speed but how
//! many frames reach the screen each second and how old they are when
//! they get there. So every output records, for each frame it finished
//! showing, the time it was shown and its capture-to-display latency.
//! A rolling window (the last two seconds) feeds the overlay and the
//! periodic log line; the whole run feeds the summary (median and 90th
//! percentile latency).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How far back the rolling figures look.
pub const WINDOW: Duration = Duration::from_secs(2);

/// Latencies kept for the summary (about an hour at 30 fps); later frames
/// only count towards the totals.
const MAX_SAMPLES: usize = 100_000;

/// Figures of one output.
#[derive(Debug)]
struct Output {
    name: String,
    shown: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    recent: VecDeque<(Instant, f64)>,
    latencies_ms: Vec<f64>,
}

#[derive(Debug)]
struct Inner {
    outputs: Vec<Output>,
    painted: u64,
    effect_ms: VecDeque<(Instant, f64)>,
    effect_total_ms: f64,
}

/// Shared statistics of a live session.
#[derive(Debug)]
pub struct LiveStats {
    inner: Mutex<Inner>,
}

/// The rolling figures of one output.
#[derive(Clone, Debug, Default)]
pub struct Rolling {
    /// Frames shown per second over the window.
    pub fps: f64,
    /// Median capture-to-display latency over the window, in ms.
    pub latency_ms: Option<f64>,
    /// Mean effect time per frame over the window, in ms.
    pub effect_ms: Option<f64>,
}

/// Whole-run figures of one output.
#[derive(Clone, Debug, Default)]
pub struct OutputSummary {
    pub name: String,
    pub shown: u64,
    /// Frames shown per second between the first and the last.
    pub fps: f64,
    pub latency_median_ms: Option<f64>,
    pub latency_p90_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
}

/// The `q`-quantile (0..=1) of `v` (sorted in place).
pub fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    Some(v[i])
}

impl LiveStats {
    /// Statistics for outputs named `names` (indices are used below).
    pub fn new(names: &[String]) -> Self {
        Self {
            inner: Mutex::new(Inner {
                outputs: names
                    .iter()
                    .map(|n| Output {
                        name: n.clone(),
                        shown: 0,
                        first: None,
                        last: None,
                        recent: VecDeque::new(),
                        latencies_ms: Vec::new(),
                    })
                    .collect(),
                painted: 0,
                effect_ms: VecDeque::new(),
                effect_total_ms: 0.0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Output `i` finished showing a frame captured at `captured`.
    pub fn shown(&self, i: usize, captured: Instant) {
        let now = Instant::now();
        let latency = now.saturating_duration_since(captured).as_secs_f64() * 1e3;
        let mut s = self.lock();
        let Some(o) = s.outputs.get_mut(i) else {
            return;
        };
        o.shown += 1;
        o.first.get_or_insert(now);
        o.last = Some(now);
        o.recent.push_back((now, latency));
        while o
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
        {
            o.recent.pop_front();
        }
        if o.latencies_ms.len() < MAX_SAMPLES {
            o.latencies_ms.push(latency);
        }
    }

    /// The effect painted a frame in `ms` milliseconds.
    pub fn painted(&self, ms: f64) {
        let now = Instant::now();
        let mut s = self.lock();
        s.painted += 1;
        s.effect_total_ms += ms;
        s.effect_ms.push_back((now, ms));
        while s
            .effect_ms
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
        {
            s.effect_ms.pop_front();
        }
    }

    /// Frames painted so far.
    pub fn painted_count(&self) -> u64 {
        self.lock().painted
    }

    /// Mean effect time over the whole run, in ms.
    pub fn effect_mean_ms(&self) -> Option<f64> {
        let s = self.lock();
        (s.painted > 0).then(|| s.effect_total_ms / s.painted as f64)
    }

    /// The rolling figures of output `i`.
    pub fn rolling(&self, i: usize) -> Rolling {
        let now = Instant::now();
        let s = self.lock();
        let effect_ms = {
            let recent: Vec<f64> = s
                .effect_ms
                .iter()
                .filter(|(t, _)| now.duration_since(*t) <= WINDOW)
                .map(|(_, ms)| *ms)
                .collect();
            (!recent.is_empty()).then(|| recent.iter().sum::<f64>() / recent.len() as f64)
        };
        let Some(o) = s.outputs.get(i) else {
            return Rolling::default();
        };
        let mut recent: Vec<f64> = o
            .recent
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= WINDOW)
            .map(|(_, l)| *l)
            .collect();
        // Over the window, or since the first frame when that is shorter.
        let span = o
            .first
            .map(|f| now.duration_since(f).min(WINDOW))
            .unwrap_or(WINDOW)
            .as_secs_f64()
            .max(0.25);
        Rolling {
            fps: recent.len() as f64 / span,
            latency_ms: quantile(&mut recent, 0.5),
            effect_ms,
        }
    }

    /// Whole-run figures of every output.
    pub fn summary(&self) -> Vec<OutputSummary> {
        let s = self.lock();
        s.outputs
            .iter()
            .map(|o| {
                let mut l = o.latencies_ms.clone();
                let fps = match (o.first, o.last) {
                    (Some(f), Some(l)) if o.shown > 1 && l > f => {
                        (o.shown - 1) as f64 / (l - f).as_secs_f64()
                    }
                    _ => 0.0,
                };
                OutputSummary {
                    name: o.name.clone(),
                    shown: o.shown,
                    fps,
                    latency_median_ms: quantile(&mut l, 0.5),
                    latency_p90_ms: quantile(&mut l, 0.9),
                    latency_max_ms: quantile(&mut l, 1.0),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let mut v = vec![5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&mut v, 0.5), Some(3.0));
        assert_eq!(quantile(&mut v, 1.0), Some(5.0));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn counts_frames_and_latency() {
        let stats = LiveStats::new(&["a".into()]);
        let t = Instant::now() - Duration::from_millis(40);
        for _ in 0..3 {
            stats.shown(0, t);
        }
        let s = &stats.summary()[0];
        assert_eq!(s.shown, 3);
        assert!(s.latency_median_ms.unwrap() >= 40.0);
        assert!(stats.rolling(0).fps > 0.0);
    }
}
