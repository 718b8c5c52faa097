//! Containers themselves: cgroups, the clone and its setup steps, what
//! the process is given (environment, users), the monitor that owns a
//! running container, and its logs.

pub mod cgroup;
pub mod environment;
pub mod etc_files;
pub mod init;
pub mod logs;
pub mod monitor;
pub mod spawn;
pub mod users;
