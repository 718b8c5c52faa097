//! eBPF for the device cgroup of cgroup2: a small assembler for the few
//! instructions a device program needs, and the bpf(2) calls that load a
//! BPF_PROG_TYPE_CGROUP_DEVICE program and attach it to a cgroup.
//!
//! A device program sees a `struct bpf_cgroup_dev_ctx` (uapi
//! linux/bpf.h): `access_type` (u32: the device type in the low 16 bits,
//! BPF_DEVCG_DEV_BLOCK = 1 or BPF_DEVCG_DEV_CHAR = 2; the access asked for
//! in the high 16 bits, BPF_DEVCG_ACC_MKNOD = 1, READ = 2, WRITE = 4),
//! then `major` and `minor` (u32 each). It returns 1 to allow, 0 to deny.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Offsets in `struct bpf_cgroup_dev_ctx`.
pub const CTX_ACCESS_TYPE: i16 = 0;
pub const CTX_MAJOR: i16 = 4;
pub const CTX_MINOR: i16 = 8;
/// Device types in the low 16 bits of `access_type`.
pub const DEV_BLOCK: i32 = 1;
pub const DEV_CHAR: i32 = 2;
/// Access bits in the high 16 bits of `access_type`.
pub const ACC_MKNOD: i32 = 1;
pub const ACC_READ: i32 = 2;
pub const ACC_WRITE: i32 = 4;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Programs of every cgroup on the way up run, and all must allow.
const BPF_F_ALLOW_MULTI: u32 = 2;

// Opcodes: class | operation | source.
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU64_MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const ALU64_MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const ALU64_AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const ALU64_RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// A register: r0 holds the result, r1 the context on entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(pub u8);

/// One instruction, laid out as `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// dst_reg:4 and src_reg:4, bit fields in the machine's order.
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        let regs = if cfg!(target_endian = "little") {
            (dst.0 & 0xf) | (src.0 << 4)
        } else {
            (dst.0 << 4) | (src.0 & 0xf)
        };
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }

    /// dst = *(u32 *)(src + off)
    pub fn load_u32(dst: Reg, src: Reg, off: i16) -> Insn {
        Insn::new(LDX_MEM_W, dst, src, off, 0)
    }

    /// dst = imm
    pub fn mov_imm(dst: Reg, imm: i32) -> Insn {
        Insn::new(ALU64_MOV_K, dst, Reg(0), 0, imm)
    }

    /// dst = src
    pub fn mov(dst: Reg, src: Reg) -> Insn {
        Insn::new(ALU64_MOV_X, dst, src, 0, 0)
    }

    /// dst &= imm
    pub fn and_imm(dst: Reg, imm: i32) -> Insn {
        Insn::new(ALU64_AND_K, dst, Reg(0), 0, imm)
    }

    /// dst >>= imm
    pub fn rsh_imm(dst: Reg, imm: i32) -> Insn {
        Insn::new(ALU64_RSH_K, dst, Reg(0), 0, imm)
    }

    /// if dst != imm, skip the next `skip` instructions
    pub fn jne_imm(dst: Reg, imm: i32, skip: i16) -> Insn {
        Insn::new(JMP_JNE_K, dst, Reg(0), skip, imm)
    }

    /// return r0
    pub fn exit() -> Insn {
        Insn::new(JMP_EXIT, Reg(0), Reg(0), 0, 0)
    }
}

/// The head of `union bpf_attr` for BPF_PROG_LOAD, up to
/// expected_attach_type (the kernel takes a prefix of the union).
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Why a program was refused: the error, and the verifier's last words if
/// it said any.
#[derive(Debug)]
pub struct LoadError {
    pub err: io::Error,
    pub verifier: String,
}

/// Loads `insns` as a cgroup device program named `name` (at most 15
/// bytes kept, any but letters, digits and '.' turned into '_'). On failure the load is tried again with the verifier's log
/// to say why.
pub fn load_device_program(insns: &[Insn], name: &str) -> Result<OwnedFd, LoadError> {
    match prog_load(insns, name, None) {
        Ok(fd) => Ok(fd),
        Err(err) => {
            let mut log = vec![0u8; 64 * 1024];
            let verifier = match prog_load(insns, name, Some(&mut log)) {
                Ok(_) => String::new(),
                Err(_) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]);
                    let last: Vec<&str> = text.lines().rev().take(3).collect();
                    last.into_iter().rev().collect::<Vec<_>>().join("; ")
                }
            };
            Err(LoadError { err, verifier })
        }
    }
}

fn prog_load(insns: &[Insn], name: &str, log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let mut prog_name = [0u8; 16];
    // The kernel takes letters, digits, '_' and '.' only.
    for (dst, src) in prog_name.iter_mut().take(15).zip(name.bytes()) {
        *dst = if src.is_ascii_alphanumeric() || src == b'.' {
            src
        } else {
            b'_'
        };
    }
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
    };
    // SAFETY: `attr` is a valid prefix of union bpf_attr for BPF_PROG_LOAD
    // of the size passed; the instructions, license and log buffer it
    // points to outlive the call, and the log's size is its length.
    let fd = super::cvt(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    })?;
    // SAFETY: the fd is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches a loaded device program to the cgroup2 directory `cgroup`
/// (BPF_F_ALLOW_MULTI: programs attached above still run, and all must
/// allow). The cgroup holds the program from then on; it goes with the
/// cgroup when that is removed.
pub fn attach_device_program(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: `attr` is union bpf_attr's BPF_PROG_ATTACH member, of the
    // size passed; both fds are borrowed for the call.
    super::cvt(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    })?;
    Ok(())
}

/// Runs a program of the instructions above on a device context
/// (`access_type`, `major`, `minor`) in user space: how the tests of a
/// program's logic check every case without the kernel.
#[cfg(test)]
pub fn interpret(insns: &[Insn], ctx: [u32; 3]) -> u64 {
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = insns[pc];
        let (dst, src) = if cfg!(target_endian = "little") {
            ((i.regs & 0xf) as usize, (i.regs >> 4) as usize)
        } else {
            ((i.regs >> 4) as usize, (i.regs & 0xf) as usize)
        };
        let imm = i64::from(i.imm) as u64;
        pc += 1;
        match i.code {
            LDX_MEM_W => {
                assert_eq!(src, 1, "loads from the context only");
                r[dst] = u64::from(ctx[i.off as usize / 4]);
            }
            ALU64_MOV_K => r[dst] = imm,
            ALU64_MOV_X => r[dst] = r[src],
            ALU64_AND_K => r[dst] &= imm,
            ALU64_RSH_K => r[dst] >>= imm,
            JMP_JNE_K => {
                if r[dst] != imm {
                    pc += i.off as usize;
                }
            }
            JMP_EXIT => return r[0],
            code => panic!("opcode {code:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // r2 = *(u32 *)(r1 + 4): 61 12 04 00 00 00 00 00
        let i = Insn::load_u32(Reg(2), Reg(1), 4);
        let bytes: [u8; 8] = [i.code, i.regs, 4, 0, 0, 0, 0, 0];
        assert_eq!(bytes[..2], [0x61, 0x12]);
        assert_eq!(i.off, 4);
        let j = Insn::jne_imm(Reg(3), 200, 5);
        assert_eq!((j.code, j.regs, j.off, j.imm), (0x55, 0x03, 5, 200));
        assert_eq!(Insn::exit().code, 0x95);
        assert_eq!(std::mem::size_of::<ProgAttachAttr>(), 20);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
    }

    #[test]
    fn a_program_that_never_exits_is_refused_with_the_verifiers_words() {
        // r0 = 1 with no exit: the verifier rejects falling off the end.
        let err = load_device_program(&[Insn::mov_imm(Reg(0), 1)], "berth-test").unwrap_err();
        assert_eq!(err.err.raw_os_error(), Some(libc::EINVAL), "{err:?}");
        assert!(err.verifier.contains("exit"), "{err:?}");
    }
}
