//! How failures read in messages: one formatter for an errno and one for an
//! `io::Error`, so a failed system call is named the same way everywhere
//! ("No such file or directory", without Rust's " (os error 2)").

use std::io;

/// strerror-like text for an errno, without Rust's " (os error N)".
pub fn errno_text(errno: i32) -> String {
    let s = io::Error::from_raw_os_error(errno).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// An `io::Error` as [`errno_text`] words it when it carries an errno;
/// otherwise its own message.
pub fn io_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(errno) => errno_text(errno),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_without_the_os_error_tail() {
        assert_eq!(errno_text(libc::ENOENT), "No such file or directory");
        assert_eq!(errno_text(libc::EROFS), "Read-only file system");
        assert_eq!(errno_text(libc::EPERM), "Operation not permitted");
    }

    #[test]
    fn io_error_with_and_without_errno() {
        let os = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(io_text(&os), "Permission denied");
        assert_eq!(
            io_text(&io::Error::other("job is too large")),
            "job is too large"
        );
    }
}
