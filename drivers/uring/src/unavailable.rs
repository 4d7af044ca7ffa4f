//! Why io_uring cannot be used here, in words.

use std::io;

/// The error a failed ring set-up becomes: [`Unsupported`](io::ErrorKind::Unsupported), with
/// the cause named.
pub(crate) fn explain(e: io::Error) -> io::Error {
    let setting = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
    explain_with(&e, setting.as_deref().map(str::trim))
}

/// [`explain`], given the value of `/proc/sys/kernel/io_uring_disabled` (if the kernel has it).
fn explain_with(e: &io::Error, disabled: Option<&str>) -> io::Error {
    let cause = match (e.raw_os_error(), disabled) {
        (_, Some("2")) => "it is disabled on this machine (/proc/sys/kernel/io_uring_disabled = 2)".to_owned(),
        (Some(libc::EPERM), Some("1")) => "it is restricted to the group in /proc/sys/kernel/io_uring_group (io_uring_disabled = 1)".to_owned(),
        (Some(libc::EPERM | libc::EACCES), _) => "io_uring_setup was refused: a seccomp filter or container policy forbids it".to_owned(),
        (Some(libc::ENOSYS), _) => "the kernel has no io_uring (older than 5.1, or built without it)".to_owned(),
        (Some(libc::EINVAL), _) => "the kernel lacks a feature this driver needs (multishot receive and provided-buffer rings: Linux 6.0 or later)".to_owned(),
        (Some(libc::ENOMEM), _) => "the kernel refused the ring's memory (RLIMIT_MEMLOCK on kernels before 5.12)".to_owned(),
        _ => format!("setting up a ring failed: {e}"),
    };
    io::Error::new(
        io::ErrorKind::Unsupported,
        format!("io_uring is unavailable: {cause}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_named() {
        let cases = [
            (libc::EPERM, Some("2"), "io_uring_disabled = 2"),
            (libc::EPERM, Some("1"), "io_uring_group"),
            (libc::EPERM, Some("0"), "seccomp"),
            (libc::ENOSYS, None, "older than 5.1"),
            (libc::EINVAL, Some("0"), "Linux 6.0"),
            (libc::EBADF, None, "setting up a ring failed"),
        ];
        for (errno, setting, words) in cases {
            let e = explain_with(&io::Error::from_raw_os_error(errno), setting);
            assert_eq!(e.kind(), io::ErrorKind::Unsupported);
            let message = e.to_string();
            assert!(
                message.starts_with("io_uring is unavailable: "),
                "{message}"
            );
            assert!(message.contains(words), "{errno}: {message}");
        }
    }
}
