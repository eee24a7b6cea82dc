//! Taking a secret out of the process environment: the gateway's one foreign-function call, and
//! so its one module where `unsafe` is allowed (the workspace denies it everywhere but here and
//! the backends' `asym/oaep_ffi.rs`).
#![allow(unsafe_code)]

use zeroize::Zeroizing;

/// Takes one variable out of the environment: its value, blanked in place first. Removing a
/// variable only unlinks it from `environ`; the process's initial environment block, which
/// `/proc/PID/environ` shows, would keep the value.
pub(crate) fn take_secret(name: &str) -> Option<Zeroizing<String>> {
    let value = Zeroizing::new(std::env::var(name).ok()?);
    if let Ok(c_name) = std::ffi::CString::new(name) {
        // SAFETY: FFI to getenv/strlen; called before any other thread exists, so nothing reads
        // or changes the environment meanwhile. getenv returns the NUL-terminated value inside
        // the environment block (writable process memory that stays allocated), and exactly its
        // strlen bytes are overwritten, keeping the terminator.
        unsafe {
            let p = libc::getenv(c_name.as_ptr());
            if !p.is_null() {
                std::ptr::write_bytes(p, 0, libc::strlen(p));
            }
        }
    }
    std::env::remove_var(name);
    Some(value)
}
