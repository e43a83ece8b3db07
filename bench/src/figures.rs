//! One printed line per figure: `name  value unit  [target]  detail`, aligned so runs can be diffed.

use std::fmt::Display;

pub fn header() {
    println!(
        "# ado-sync bench on {} ({} cores available)",
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}

/// Prints one figure. `target` is the goal it is measured against, if the issue names one.
pub fn figure(name: &str, value: impl Display, unit: &str, target: Option<&str>, detail: &str) {
    let target = target
        .map(|t| format!("  [target {t}]"))
        .unwrap_or_default();
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!("  ({detail})")
    };
    println!("{name:<34} {value:>12} {unit:<10}{target}{detail}");
}

/// Peak resident set of a running process, from `/proc/<pid>/status` (`VmHWM`), in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// Resets a process's peak resident set to its current size, so the next reading covers only what
/// follows (Linux: writing 5 to `clear_refs`).
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`, in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at state; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux the Lambda and CI machines run.
    Some(ticks / 100.0)
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// The median of some durations' seconds.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(vec![5.0, 1.0, 3.0]), 3.0);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(0);
        }
        let used = cpu_secs(std::process::id()).expect("stat is readable on Linux");
        assert!(used > 0.0, "{used}");
    }

    #[test]
    fn this_process_has_a_peak_resident_set() {
        let peak = peak_rss(std::process::id()).expect("VmHWM is readable on Linux");
        assert!(peak > 1024 * 1024, "{peak}");
    }
}
