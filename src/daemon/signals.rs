//! The signals component: the daemon's signals, blocked before anything
//! else and read from a signalfd it owns, turned into what the loop acts
//! on. Children (monitors) are reaped here.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use log::error;
use mio::unix::SourceFd;
use mio::{Interest, Registry};

use super::tokens::{self, Tag};
use crate::errors;
use crate::sys::{process, signal};

/// The signals read from the signalfd, blocked for everything else.
pub const HANDLED: &[i32] = &[libc::SIGHUP, libc::SIGTERM, libc::SIGINT, libc::SIGCHLD];

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Reload,
    /// SIGTERM or SIGINT, by number.
    Shutdown(i32),
}

pub struct Signals {
    fd: OwnedFd,
}

/// Blocks the handled signals in this (the only) thread; call before
/// anything else, so that none is delivered the default way.
pub fn block() -> io::Result<()> {
    signal::block(HANDLED)
}

impl Signals {
    pub fn new(registry: &Registry) -> Result<Signals, String> {
        let fd = signal::signalfd(HANDLED)
            .map_err(|e| format!("create signalfd: {err}", err = errors::io_text(&e)))?;
        registry
            .register(
                &mut SourceFd(&fd.as_raw_fd()),
                tokens::fixed(Tag::Signals),
                Interest::READABLE,
            )
            .map_err(|e| format!("register signalfd: {err}", err = errors::io_text(&e)))?;
        Ok(Signals { fd })
    }

    /// Reads every pending signal: reaps children on SIGCHLD, returns what
    /// the others ask for, in order.
    pub fn drain(&self) -> Vec<Request> {
        let mut requests = Vec::new();
        loop {
            match signal::read_signalfd(&self.fd) {
                Ok(None) => break,
                Ok(Some(libc::SIGCHLD)) => while process::reap_any().is_some() {},
                Ok(Some(libc::SIGHUP)) => requests.push(Request::Reload),
                Ok(Some(sig)) => requests.push(Request::Shutdown(sig)),
                Err(e) => {
                    error!("read signalfd: {err}", err = errors::io_text(&e));
                    break;
                }
            }
        }
        requests
    }
}
