//! Where the SoftHSM2 PKCS#11 module is: `$SOFTHSM2_MODULE` when set, as for
//! `deploy/softhsm/setup-token.sh`, else Debian's path. `backends/tests/pkcs11.rs` includes this
//! file too (that crate cannot depend on this one), so it uses only `std`.

use std::path::PathBuf;

/// The module's path in Debian's `softhsm2` package.
pub const DEFAULT_SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The SoftHSM2 module the tests load: `$SOFTHSM2_MODULE` if set and not empty, else
/// [`DEFAULT_SOFTHSM_MODULE`].
pub fn softhsm_module() -> PathBuf {
    std::env::var_os("SOFTHSM2_MODULE")
        .filter(|m| !m.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_SOFTHSM_MODULE), PathBuf::from)
}
