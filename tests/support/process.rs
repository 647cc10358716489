//! Child processes that cannot outlive the test binary.
//!
//! Every child started with [`spawn_tied`] asks the kernel for SIGKILL when its parent thread
//! ends (`PR_SET_PDEATHSIG`). The kernel ties that signal to the *thread* that forked the child,
//! so all such children are forked by one thread that lives as long as the test binary: they die
//! with the binary however it ends (a failed test, Ctrl-C, a runner's SIGKILL), even when they
//! belong to a shared instance that is never dropped. [`remove_at_exit`] removes the folders of
//! such shared instances when the binary exits normally.
#![allow(dead_code)]

use std::io;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};

type Job = (Command, Sender<io::Result<Child>>);

fn spawner() -> &'static Mutex<Sender<Job>> {
    static SPAWNER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("tied-child-spawner".into())
            .spawn(move || {
                // Never returns while the binary runs: the senders live in a static.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(spawn_with_death_signal(&mut cmd));
                }
            })
            .expect("spawn the child-process thread");
        Mutex::new(tx)
    })
}

fn spawn_with_death_signal(cmd: &mut Command) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only makes async-signal-safe
    // system calls (prctl, getppid).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have gone between fork and prctl.
            if libc::getppid() == 1 {
                return Err(io::Error::other("parent exited before the child started"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Spawns `cmd` so that the child is killed when this test binary ends.
pub fn spawn_tied(cmd: Command) -> io::Result<Child> {
    let (tx, rx) = channel();
    spawner()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((cmd, tx))
        .map_err(|_| io::Error::other("child-process thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("child-process thread is gone"))?
}

/// Processes to kill and the folder to remove at exit.
type AtExit = Mutex<Vec<(Vec<u32>, PathBuf)>>;

fn exit_dirs() -> &'static AtExit {
    static DIRS: OnceLock<AtExit> = OnceLock::new();
    DIRS.get_or_init(|| {
        extern "C" fn clean_up() {
            let Some(dirs) = DIRS.get() else { return };
            let dirs = dirs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (pids, dir) in dirs.iter() {
                for pid in pids {
                    if let Ok(pid) = libc::pid_t::try_from(*pid) {
                        // SAFETY: plain system call on a child this binary started.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        // SAFETY: registers a function without arguments that only touches a static.
        unsafe { libc::atexit(clean_up) };
        Mutex::new(Vec::new())
    })
}

/// At normal exit of the test binary: kills `pids` and removes `dir` (for shared instances that
/// are never dropped).
pub fn remove_at_exit(pids: Vec<u32>, dir: PathBuf) {
    exit_dirs()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push((pids, dir));
}
