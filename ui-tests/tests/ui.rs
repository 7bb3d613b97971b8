//! `#[octopii::service]` at compile time: every file in `ui/pass` must build
//! (warning-free) and run, every file in `ui/fail` must fail with exactly the
//! diagnostics in the `.stderr` beside it.
//!
//! After changing the macro or a case, regenerate the expected output with
//! `TRYBUILD=overwrite cargo test -p octopii-ui-tests` and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
