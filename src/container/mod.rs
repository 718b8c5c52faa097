//! Containers themselves: cgroups, the clone and its setup steps, what
//! the process is given (environment, users), a process joining a running
//! one (exec), the monitor that owns a
//! running container, its root (image, writable layer) and its logs.

pub mod cgroup;
pub mod devices;
pub mod environment;
pub mod etc_files;
pub mod exec;
pub mod health;
pub mod init;
pub mod logs;
pub mod monitor;
pub mod root;
pub mod spawn;
pub mod users;
pub mod verity;
