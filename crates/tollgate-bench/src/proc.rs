//! What Linux's `/proc` says about a process: CPU time and memory.

use std::io;
use std::time::Duration;

/// A process's memory, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now (`VmRSS`), in KiB.
    pub rss_kib: u64,
    /// The largest resident set size since start or the last
    /// [`reset_peak`] (`VmHWM`), in KiB.
    pub peak_kib: u64,
}

/// CPU time used by the process so far, user and system, all threads (those
/// that ended included).
///
/// # Errors
///
/// When `/proc/<pid>/stat` cannot be read or parsed (the process is gone).
pub fn cpu_time(pid: u32, ticks_per_second: u64) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_cpu_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/pid/stat"))?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / ticks_per_second.max(1) as f64,
    ))
}

/// `utime + stime` from a `/proc/<pid>/stat` line.
pub(crate) fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name, field 2, is in parentheses and may hold spaces and
    // parentheses itself: the fields after it start after the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace();
    // After the name: state (3), ... utime (14) and stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The process's memory now and at its peak.
///
/// # Errors
///
/// When `/proc/<pid>/status` cannot be read or has no `VmRSS` (the process
/// is gone or a zombie).
pub fn memory(pid: u32) -> io::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_memory(&status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in /proc/pid/status"))
}

pub(crate) fn parse_memory(status: &str) -> Option<Memory> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_ascii_whitespace().next())
            .and_then(|kib| kib.parse().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// Resets the process's peak RSS to its current RSS (writes `5` to
/// `/proc/<pid>/clear_refs`, Linux 4.0 and later), so that each load run
/// reports its own peak.
///
/// # Errors
///
/// When the kernel refuses (an older kernel, another user's process): the
/// peak then covers the process's whole life.
pub fn reset_peak(pid: u32) -> io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on
/// every Linux this runs on, which is the fallback).
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// The soft limit on open files of this process, from `/proc/self/limits`.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194304 1520 0 0 0 \
                    731 269 0 0 20 0 3 0 123 45678 910 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some(1000));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn memory_reads_rss_and_peak() {
        let status =
            "Name:\ttollgate\nVmPeak:\t  99999 kB\nVmHWM:\t   12345 kB\nVmRSS:\t    9876 kB\n";
        assert_eq!(
            parse_memory(status),
            Some(Memory {
                rss_kib: 9876,
                peak_kib: 12345
            })
        );
        assert_eq!(parse_memory("Name:\tzombie\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let pid = std::process::id();
        assert!(memory(pid).unwrap().rss_kib > 0);
        cpu_time(pid, ticks_per_second()).unwrap();
        assert!(open_files_limit().is_some());
    }
}
