//! What the harness's processes do alike about the operating system: the orchestrator and the
//! two child processes it starts (`agents`, `floor`) each hold thousands of sockets, so each
//! raises its open-file limit; the children take their commands (`quit`, …) one per line on stdin.

use tokio::sync::mpsc;
use tracing::warn;

/// Raises the soft open-file limit to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the `rlimit` we pass, which is valid for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads the `rlimit` we pass, which is valid for the whole call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// Lines read from stdin by a plain thread (so no blocking read is left inside the runtime); the
/// channel closes at EOF.
pub fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut line = String::new();
            loop {
                line.clear();
                match stdin.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let quit = line.trim() == "quit";
                        if tx.send(line.trim().to_string()).is_err() || quit {
                            return;
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        // Without stdin nobody can stop us; the closed channel reads as EOF.
        warn!("cannot start the stdin reader: {e}");
    }
    rx
}
