//! Where the user PIN comes from and how it is read: a private file or an environment variable,
//! never the command line or a config value.

use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::BackendError;

/// Largest PIN file read: a PIN is short; this only stops a wrong path from loading a big file.
const MAX_PIN_FILE_BYTES: u64 = 4096;
/// Permission bits a PIN file must not have: any access for group or other (as the vault's
/// master key file).
const FORBIDDEN_PIN_MODE_BITS: u32 = 0o077;

/// Where the user PIN comes from. It is never taken from the command line or a config value.
#[derive(Debug, Clone)]
pub enum PinSource {
    /// A file holding the PIN; one trailing newline is ignored.
    File(PathBuf),
    /// An environment variable holding the PIN.
    Env(String),
}

impl PinSource {
    /// Reads the PIN. Errors name the source, never its content.
    pub fn resolve(&self) -> Result<Zeroizing<String>, BackendError> {
        let pin = match self {
            PinSource::File(path) => read_pin_file(path)?,
            PinSource::Env(name) => Zeroizing::new(std::env::var(name).map_err(|_| {
                BackendError::InvalidInput(format!(
                    "environment variable {name} (PKCS#11 PIN) is not set or not UTF-8"
                ))
            })?),
        };
        normalize_pin(pin)
    }
}

/// Reads a PIN file: a regular file with no group/other permission bits.
fn read_pin_file(path: &std::path::Path) -> Result<Zeroizing<String>, BackendError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let cannot = |e: std::io::Error| {
        BackendError::InvalidInput(format!("cannot read PIN file {}: {e}", path.display()))
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    // fstat on the open descriptor, so the checked file is the one read.
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(BackendError::InvalidInput(format!(
            "PIN file {} is not a regular file",
            path.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & FORBIDDEN_PIN_MODE_BITS != 0 {
        return Err(BackendError::InvalidInput(format!(
            "refusing PIN file {}: mode {mode:04o} gives group/other access; run chmod 600 on it",
            path.display()
        )));
    }
    if meta.len() > MAX_PIN_FILE_BYTES {
        return Err(BackendError::InvalidInput(format!(
            "PIN file {} is larger than {MAX_PIN_FILE_BYTES} bytes",
            path.display()
        )));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_PIN_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        BackendError::InvalidInput(format!("PIN file {} is not UTF-8", path.display()))
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// A PIN as read: one trailing newline dropped; empty is refused.
pub fn normalize_pin(mut pin: Zeroizing<String>) -> Result<Zeroizing<String>, BackendError> {
    if pin.ends_with('\n') {
        pin.pop();
        if pin.ends_with('\r') {
            pin.pop();
        }
    }
    if pin.is_empty() {
        return Err(BackendError::InvalidInput(
            "the PKCS#11 PIN is empty".into(),
        ));
    }
    Ok(pin)
}
