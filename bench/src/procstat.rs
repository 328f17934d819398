//! What a server process costs, read from /proc: CPU time (utime + stime) and memory (VmRSS, Pss), for a
//! process alone or with its direct children (nginx's master and workers).

use std::fs;
use std::io;

/// Clock ticks per second of the utime/stime fields.
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// utime + stime of `/proc/<pid>/stat` contents, in ticks. The command name may contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime is field 14 of the whole line, i.e. index 11 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn parse_ppid(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A `Key:   123 kB` line of /proc/<pid>/status or smaps_rollup, in kB.
pub fn parse_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

fn read(path: String) -> io::Result<String> {
    fs::read_to_string(path)
}

fn bad(what: &str, pid: i32) -> io::Error {
    io::Error::other(format!("cannot read {what} of process {pid}"))
}

pub fn cpu_ticks(pid: i32) -> io::Result<u64> {
    parse_cpu_ticks(&read(format!("/proc/{pid}/stat"))?).ok_or_else(|| bad("stat", pid))
}

pub fn vm_rss_kb(pid: i32) -> io::Result<u64> {
    parse_kb(&read(format!("/proc/{pid}/status"))?, "VmRSS").ok_or_else(|| bad("VmRSS", pid))
}

/// The peak resident set (VmHWM) since the process started or since `clear_refs` was written 5.
pub fn vm_hwm_kb(pid: i32) -> io::Result<u64> {
    parse_kb(&read(format!("/proc/{pid}/status"))?, "VmHWM").ok_or_else(|| bad("VmHWM", pid))
}

pub fn pss_kb(pid: i32) -> io::Result<u64> {
    parse_kb(&read(format!("/proc/{pid}/smaps_rollup"))?, "Pss").ok_or_else(|| bad("Pss", pid))
}

/// `pid` and its direct children (found by scanning /proc for their parent id).
pub fn with_children(pid: i32) -> Vec<i32> {
    let mut all = vec![pid];
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let is_child = read(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| parse_ppid(&s))
                == Some(pid);
            if is_child {
                all.push(child);
            }
        }
    }
    all
}

/// CPU seconds of this process (the load tool), for the record.
pub fn self_cpu_seconds() -> f64 {
    cpu_ticks(std::process::id() as i32).unwrap_or(0) as f64 / ticks_per_second() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_after_a_name_with_spaces() {
        let stat =
            "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_ppid(stat), Some(1));
    }

    #[test]
    fn kb_lines() {
        let status = "Name:\thalley\nVmRSS:\t   12345 kB\nRssAnon:\t 100 kB\n";
        assert_eq!(parse_kb(status, "VmRSS"), Some(12345));
        assert_eq!(parse_kb(status, "Pss"), None);
    }

    #[test]
    fn reads_its_own_process() {
        let me = std::process::id() as i32;
        assert!(cpu_ticks(me).is_ok());
        assert!(vm_rss_kb(me).unwrap() > 0);
        assert!(with_children(me).contains(&me));
    }
}
