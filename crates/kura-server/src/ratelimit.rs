//! Per-client-address token buckets for sign-in and unauthenticated
//! requests, and the per-user download window that triggers step-up.
//! Both live in the node's memory: with several nodes each enforces its
//! own share (the load balancer's stickiness decides how strict in sum).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept at most; beyond it, full (idle) buckets are dropped first.
const MAX_KEYS: usize = 100_000;

pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn per_minute(n: u32) -> Self {
        let n = f64::from(n.max(1));
        Self {
            per_sec: n / 60.0,
            burst: n,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `n` per second with a burst of two seconds' worth (a steady budget).
    pub fn per_second(n: u32) -> Self {
        let n = f64::from(n.max(1));
        Self {
            per_sec: n,
            burst: (2.0 * n).max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one token, waiting for it up to `max_wait` (a steady budget:
    /// callers queue instead of being refused at once, so a flood of
    /// clients slows down to the budget's pace). False if it did not come.
    pub async fn take_waiting(&self, key: IpAddr, max_wait: Duration) -> bool {
        let deadline = Instant::now() + max_wait;
        loop {
            let wait = {
                let Ok(mut map) = self.buckets.lock() else {
                    return true;
                };
                let now = Instant::now();
                let (tokens, at) = map.entry(key).or_insert((self.burst, now));
                *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec)
                    .min(self.burst);
                *at = now;
                if *tokens >= 1.0 {
                    *tokens -= 1.0;
                    return true;
                }
                Duration::from_secs_f64((1.0 - *tokens) / self.per_sec)
            };
            if Instant::now() + wait > deadline {
                return false;
            }
            // A little jitter so queued callers do not all wake together.
            let jitter = Duration::from_millis(u64::from(rand_u8()) % 50);
            tokio::time::sleep(wait + jitter).await;
        }
    }

    /// Take one token for `ip`; Err(seconds to wait) when it has none.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut map) = self.buckets.lock() else {
            return Ok(());
        };
        if map.len() >= MAX_KEYS {
            let (per_sec, burst) = (self.per_sec, self.burst);
            map.retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * per_sec < burst);
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        let (tokens, at) = map.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_sec).ceil().max(1.0) as u64)
        }
    }
}

fn rand_u8() -> u8 {
    // Jitter only: the low bits of the clock are random enough.
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        % 251) as u8
}

/// Recent downloads per user, to tell a bulk download from normal work.
#[derive(Default)]
pub struct DownloadWindow {
    users: Mutex<HashMap<kura_core::UserId, VecDeque<(Instant, u64)>>>,
}

impl DownloadWindow {
    /// Whether one more download of `bytes` would take the user past
    /// `files` files or `max_bytes` bytes within `window`; if not, it is counted.
    pub fn admit(
        &self,
        user: kura_core::UserId,
        bytes: u64,
        files: u32,
        max_bytes: u64,
        window: Duration,
    ) -> bool {
        let now = Instant::now();
        let Ok(mut map) = self.users.lock() else {
            return true;
        };
        if map.len() >= MAX_KEYS {
            map.retain(|_, q| {
                q.back()
                    .is_some_and(|(t, _)| now.duration_since(*t) < window)
            });
        }
        let q = map.entry(user).or_default();
        while q
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= window)
        {
            q.pop_front();
        }
        let total: u64 = q.iter().map(|(_, b)| b).sum();
        if q.len() + 1 > files as usize || total.saturating_add(bytes) > max_bytes {
            return false;
        }
        q.push_back((now, bytes));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_reports_wait() {
        let l = RateLimiter::per_minute(3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.check(ip).is_ok());
        assert!(l.check(ip).is_ok());
        assert!(l.check(ip).is_ok());
        let wait = l.check(ip).unwrap_err();
        assert!((1..=20).contains(&wait));
        assert!(l.check("192.0.2.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn window_counts_files_and_bytes() {
        let w = DownloadWindow::default();
        let u = kura_core::UserId::new();
        let min = Duration::from_secs(60);
        assert!(w.admit(u, 10, 2, 100, min));
        assert!(w.admit(u, 10, 2, 100, min));
        assert!(!w.admit(u, 10, 2, 100, min));
        let v = kura_core::UserId::new();
        assert!(!w.admit(v, 101, 2, 100, min));
    }
}
