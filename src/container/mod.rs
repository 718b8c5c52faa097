//! Containers themselves: cgroups, the clone and its setup steps, the
//! monitor that owns a running container, and its logs.

pub mod cgroup;
pub mod logs;
pub mod monitor;
pub mod spawn;
