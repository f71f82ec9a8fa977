//! What the harness measures about processes and the machine, from `/proc`: resident
//! memory (`VmRSS`), CPU time (utime + stime, in clock ticks), kernel slab, machine CPU.

use std::sync::OnceLock;

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux x86-64).
pub fn clk_tck() -> f64 {
    static TCK: OnceLock<f64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// Resident set, KiB.
    pub rss_kib: u64,
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    /// Threads.
    pub threads: u64,
}

impl ProcSample {
    /// CPU seconds.
    pub fn cpu_secs(&self) -> f64 {
        self.cpu_ticks as f64 / clk_tck()
    }
}

/// Reads `/proc/<pid>/status` and `/proc/<pid>/stat`; `None` when the process is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut s = ProcSample::default();
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("VmRSS:") {
            s.rss_kib = first_number(v);
        } else if let Some(v) = line.strip_prefix("Threads:") {
            s.threads = first_number(v);
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(3) ppid(4) ... utime(14) stime(15), i.e. indexes 11 and 12 here.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    s.cpu_ticks = utime + stime;
    Some(s)
}

/// The sum over several processes (RSS and CPU add up).
pub fn sample_all(pids: &[u32]) -> ProcSample {
    let mut t = ProcSample::default();
    for p in pids {
        if let Some(s) = sample(*p) {
            t.rss_kib += s.rss_kib;
            t.cpu_ticks += s.cpu_ticks;
            t.threads += s.threads;
        }
    }
    t
}

fn first_number(s: &str) -> u64 {
    s.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Kernel slab (`Slab:` of `/proc/meminfo`), KiB.
pub fn slab_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Slab:").map(first_number))
        })
        .unwrap_or(0)
}

/// Machine CPU counters from `/proc/stat`: (busy ticks, total ticks) over all cores.
pub fn machine_ticks() -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    // idle + iowait are not busy.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// Cores of the machine busy between two [`machine_ticks`] readings.
pub fn busy_cores(a: (u64, u64), b: (u64, u64), cores: usize) -> f64 {
    let busy = b.0.saturating_sub(a.0) as f64;
    let total = b.1.saturating_sub(a.1) as f64;
    if total <= 0.0 {
        0.0
    } else {
        busy / total * cores as f64
    }
}

/// Online cores.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_self() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 0);
        assert!(s.threads > 0);
        assert!(clk_tck() > 0.0);
    }
}
