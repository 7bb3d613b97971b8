//! The names of the receiver's own files, reserved from peers.
//!
//! A receiver writes each transfer into a temporary file next to its
//! destination: `.octopii-XXXXXX.tmp` (random, created exclusively), or
//! `.NAME.octopii-partial` for a resumable transfer to `NAME`. A peer that
//! could name one of those as its destination could replace another
//! transfer's bytes before they are renamed into place, so any path whose
//! component looks like one is refused.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// How a fresh temporary file's name begins.
pub(crate) const TEMP_PREFIX: &str = ".octopii-";
/// How a fresh temporary file's name ends.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";
/// How a resumable transfer's partial file's name ends.
pub(crate) const PARTIAL_SUFFIX: &str = ".octopii-partial";

/// Whether a path component sent by a peer is one of the reserved names.
pub(crate) fn is_reserved(component: &OsStr) -> bool {
    let name = component.to_string_lossy();
    name.starts_with(TEMP_PREFIX) || name.ends_with(PARTIAL_SUFFIX)
}

/// Whether `name` is a fresh temporary file (never worth keeping once
/// the receiver that made it is gone; partial files are kept to resume).
pub(crate) fn is_temp_file(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.len() > TEMP_PREFIX.len() + TEMP_SUFFIX.len()
        && name.starts_with(TEMP_PREFIX)
        && name.ends_with(TEMP_SUFFIX)
}

/// The partial file of a resumable transfer to `dest`.
pub(crate) fn partial_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}{PARTIAL_SUFFIX}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receivers_own_names_are_reserved_and_others_are_not() {
        let partial = partial_path(Path::new("/r/foo"));
        assert_eq!(partial, Path::new("/r/.foo.octopii-partial"));
        let reserved = [
            ".foo.octopii-partial",
            "x.octopii-partial",
            ".octopii-a1b2c3.tmp",
            ".octopii-",
        ];
        for name in reserved {
            assert!(is_reserved(OsStr::new(name)), "{name}");
        }
        for name in [
            "foo",
            ".foo",
            "octopii-x.tmp",
            ".octopii",
            "a.octopii-partial.bak",
        ] {
            assert!(!is_reserved(OsStr::new(name)), "{name}");
        }
        assert!(is_temp_file(OsStr::new(".octopii-a1b2c3.tmp")));
        assert!(!is_temp_file(OsStr::new(".foo.octopii-partial")));
        assert!(!is_temp_file(OsStr::new(".octopii-.tmp")));
    }
}
