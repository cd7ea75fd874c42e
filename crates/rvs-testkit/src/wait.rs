//! Bounded polling: every wait in a test has both a deadline and a limit on the number of tries, and
//! says what it was waiting for when it gives up.

use std::time::{Duration, Instant};

/// A wait that ran out of time or tries.
#[derive(Debug, thiserror::Error)]
#[error("gave up waiting for {what} after {tries} tries in {elapsed:?}{}", last.as_ref().map(|l| format!(" (last: {l})")).unwrap_or_default())]
pub struct Timeout {
    /// What was awaited.
    pub what: String,
    /// How many times the condition was checked.
    pub tries: u32,
    /// How long it took.
    pub elapsed: Duration,
    /// The last failure, when the condition gave one.
    pub last: Option<String>,
}

/// Calls `f` every `every` until it returns `Ok`, for at most `timeout` (and `timeout / every + 1`
/// tries). `Err` values are kept to explain a timeout.
///
/// # Errors
/// [`Timeout`] with the last `Err`.
pub fn until<T, E: std::fmt::Display>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<T, Timeout> {
    let start = Instant::now();
    let max_tries = u32::try_from(timeout.as_millis() / every.as_millis().max(1))
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    let mut tries = 0;
    loop {
        tries += 1;
        let last = match f() {
            Ok(v) => return Ok(v),
            Err(e) => e.to_string(),
        };
        if start.elapsed() >= timeout || tries >= max_tries {
            return Err(Timeout {
                what: what.to_owned(),
                tries,
                elapsed: start.elapsed(),
                last: Some(last),
            });
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_up_with_the_last_error() {
        let mut n = 0;
        let r: Result<(), _> = until(
            "nothing",
            Duration::from_millis(30),
            Duration::from_millis(10),
            || {
                n += 1;
                Err(format!("try {n}"))
            },
        );
        let e = r.unwrap_err();
        assert!(e.tries <= 4, "{e}");
        assert_eq!(e.last.as_deref(), Some(format!("try {}", e.tries).as_str()));
    }

    #[test]
    fn returns_the_first_success() {
        let mut n = 0;
        let v = until(
            "third try",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                if n == 3 { Ok(n) } else { Err("not yet") }
            },
        )
        .unwrap();
        assert_eq!(v, 3);
    }
}
