//! Signal names: the standard Linux signals spelled as container files and
//! the client spell them ("SIGTERM", "term", "15") and as messages print
//! them. Pure lookups, no signal is ever sent from here.

/// Highest signal number on Linux (SIGRTMAX).
pub const MAX_SIGNAL: i32 = 64;

/// The standard Linux signals, by name without "SIG". Where two names share
/// a number the first one is what `signal_name` prints.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// "SIGTERM", "TERM", "term" or "15"; numbers 1 to 64.
pub fn parse_signal(s: &str) -> Option<i32> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let n: i32 = s.parse().ok()?;
        return (1..=MAX_SIGNAL).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(name, _)| *name == bare)
        .map(|&(_, n)| n)
}

/// "SIGTERM" for 15; the number itself for signals without a name.
pub fn signal_name(sig: i32) -> String {
    match SIGNALS.iter().find(|&&(_, n)| n == sig) {
        Some((name, _)) => format!("SIG{name}"),
        None => sig.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        for text in ["SIGTERM", "TERM", "term", "SigTerm", "15"] {
            assert_eq!(parse_signal(text), Some(libc::SIGTERM), "{text}");
        }
        assert_eq!(parse_signal("KILL"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("sighup"), Some(libc::SIGHUP));
        assert_eq!(parse_signal("POLL"), Some(libc::SIGIO));
        assert_eq!(parse_signal("SIGIO"), Some(libc::SIGIO));
        assert_eq!(parse_signal("STKFLT"), Some(libc::SIGSTKFLT));
        assert_eq!(parse_signal("SIGSYS"), Some(libc::SIGSYS));
        assert_eq!(parse_signal("1"), Some(1));
        assert_eq!(parse_signal("64"), Some(64));
        assert_eq!(parse_signal("034"), Some(34));
        for bad in [
            "",
            "0",
            "65",
            "-1",
            "+15",
            "SIG",
            "SIGFOO",
            "SIG15",
            "99999999999",
        ] {
            assert_eq!(parse_signal(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_name_round_trips() {
        for &(name, n) in SIGNALS {
            assert_eq!(parse_signal(name), Some(n));
            assert_eq!(parse_signal(&signal_name(n)), Some(n));
        }
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(libc::SIGIO), "SIGIO");
        assert_eq!(signal_name(40), "40");
        // No two entries spell the same name, and every number is in range.
        for (i, &(name, n)) in SIGNALS.iter().enumerate() {
            assert!((1..=MAX_SIGNAL).contains(&n), "{name}");
            assert!(
                SIGNALS[..i].iter().all(|&(other, _)| other != name),
                "{name}"
            );
        }
    }
}
