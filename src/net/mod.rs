//! Bridge networks on the host: the addresses containers hold on them.

pub mod ipam;
