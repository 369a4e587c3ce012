//! What the benchmarks read from /proc about processes and the machine.

// libc calls with no safe wrapper in std: sysconf, wait4 with rusage (a
// child's peak RSS and CPU), kill.
#![allow(unsafe_code, reason = "sysconf, wait4 and kill through libc")]

use std::path::Path;

/// Clock ticks per second (the unit of /proc CPU times).
pub fn clk_tck() -> f64 {
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of a process, in seconds.
pub fn proc_cpu(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clk_tck())
}

/// A `Name:  N kB` (or plain number) line of /proc/PID/status.
pub fn proc_status_kib(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A pid written in a file.
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The CPU model name.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default()
}

/// Total memory, GiB.
pub fn mem_total_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0)
}

/// A child process (a controller under benchmark) that dies with this
/// process (`PR_SET_PDEATHSIG`, even on panic) and is killed on drop.
pub struct Child {
    pub pid: i32,
    reaped: bool,
}

impl Child {
    pub fn spawn(cmd: &mut std::process::Command) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        Ok(Child {
            pid: child.id() as i32,
            reaped: false,
        })
    }

    /// Reaps the process if it has exited (waits for it with `block`):
    /// (exit description, CPU seconds). Its `ru_maxrss` is not used: with
    /// the pre_exec hook the child is a fork of this process until exec,
    /// and the kernel keeps that copy's RSS (the bench's, holding every
    /// sealed object) as the child's maximum. Read VmHWM instead.
    pub fn reap(&mut self, block: bool) -> Option<(String, f64)> {
        if self.reaped {
            return None;
        }
        let mut status = 0;
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if block { 0 } else { libc::WNOHANG };
        let r = unsafe { libc::wait4(self.pid, &mut status, flags, &mut ru) };
        if r != self.pid {
            return None;
        }
        self.reaped = true;
        let exit = if libc::WIFEXITED(status) {
            format!("exit {}", libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            format!("killed by signal {}", libc::WTERMSIG(status))
        } else {
            format!("status {status}")
        };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Some((exit, tv(ru.ru_utime) + tv(ru.ru_stime)))
    }

    /// The exit description, if it has exited.
    pub fn exited(&mut self) -> Option<String> {
        self.reap(false).map(|r| r.0)
    }

    /// SIGTERM, then SIGKILL after `grace`: (exit description, CPU
    /// seconds, whether it had to be killed).
    pub fn stop(&mut self, grace: std::time::Duration) -> (String, f64, bool) {
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let t = std::time::Instant::now();
        while t.elapsed() < grace {
            if let Some((exit, cpu)) = self.reap(false) {
                return (exit, cpu, false);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let (exit, cpu) = self.reap(true).unwrap_or_default();
        (exit, cpu, true)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = self.reap(true);
        }
    }
}
