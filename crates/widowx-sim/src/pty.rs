//! The pseudo-terminal a client opens as if it were the U2D2 serial port.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{Mode, OFlags, fcntl_getfl, fcntl_setfl, open};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{OptionalActions, tcgetattr, tcsetattr};

/// How long a reply may wait for room in the terminal's buffer before it is dropped (a client
/// that stopped reading must not stall the server).
const WRITE_STALL_LIMIT: Duration = Duration::from_millis(100);

/// A pty pair: the server holds the master and one slave descriptor of its own, so the master
/// never sees a hang-up when a client closes and reopens the slave, and so the server can read
/// the line settings (baud) the client chose.
#[derive(Debug)]
pub(crate) struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    path: PathBuf,
}

impl Pty {
    /// Opens a pty in raw mode at `bps`.
    pub fn open(bps: u32) -> io::Result<Pty> {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let name = ptsname(&master, Vec::new())?;
        let path = PathBuf::from(OsString::from_vec(name.into_bytes()));
        let slave = open(
            &path,
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut termios = tcgetattr(&slave)?;
        termios.make_raw();
        termios.set_speed(bps)?;
        tcsetattr(&slave, OptionalActions::Now, &termios)?;
        fcntl_setfl(&master, fcntl_getfl(&master)? | OFlags::NONBLOCK)?;
        Ok(Pty {
            master,
            slave,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The baud rate the client set on the line, if it can be read.
    pub fn line_bps(&self) -> Option<u32> {
        tcgetattr(&self.slave)
            .ok()
            .map(|termios| termios.output_speed())
    }

    /// Waits up to `timeout` for bytes from the client.
    pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut fds = [PollFd::new(&self.master, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match poll(&mut fds, Some(&timeout)) {
            Ok(ready) => Ok(ready > 0 && fds[0].revents().contains(PollFlags::IN)),
            Err(rustix::io::Errno::INTR) => Ok(false),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Reads what the client sent (0 when nothing is there).
    pub fn read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        match rustix::io::read(&self.master, buffer) {
            Ok(n) => Ok(n),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(0),
            Err(errno) => Err(errno.into()),
        }
    }

    /// Sends `bytes` to the client; gives up if the client has not drained its buffer in time.
    pub fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        let give_up_at = Instant::now() + WRITE_STALL_LIMIT;
        while !bytes.is_empty() {
            match rustix::io::write(&self.master, bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR)
                    if Instant::now() < give_up_at =>
                {
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(errno) => return Err(errno.into()),
            }
        }
        Ok(())
    }
}
