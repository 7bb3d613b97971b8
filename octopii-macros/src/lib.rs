//! Procedural macros for Octopii. Use them through the `octopii` crate.
