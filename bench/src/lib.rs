//! `photon-bench`: PhotonCloud's load generators, each measured beside its
//! baseline in the same run and reported with hdrhistogram percentiles.
//! It drives servers from the outside (another process or another thread);
//! it must never be a dependency of a server crate.

pub mod calls;
pub mod child;
pub mod disk;
pub mod engine;
pub mod iam;
pub mod kv;
pub mod lb;
pub mod loadgen;
pub mod metrics;
pub mod report;
pub mod s3;
pub mod tokio_baseline;
pub mod vm;
pub mod volume;

/// Pins the calling thread to one CPU.
pub fn pin_current_thread(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= libc::CPU_SETSIZE as usize {
        anyhow::bail!("CPU {cpu} is out of range");
    }
    // SAFETY: cpu < CPU_SETSIZE was checked above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .map_err(|e| anyhow::anyhow!("cannot pin to CPU {cpu}: {e}"));
    }
    Ok(())
}

/// Voluntary context switches of this whole process so far, threads that
/// ended included (each one is a thread going to sleep in the kernel: a park,
/// an epoll_wait, a futex wait).
pub fn voluntary_context_switches() -> u64 {
    // SAFETY: a zeroed rusage is valid; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a pointer to a live rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc == 0 {
        usage.ru_nvcsw as u64
    } else {
        0
    }
}
