//! macOS and FreeBSD by release (issue 26).

use super::Profile;

/// Releases this module answers to: (name, title).
pub const RELEASES: &[(&str, &str)] = &[];

/// The release profile called `name`.
pub fn named(_name: &str) -> Option<Profile> {
    None
}
