//! Replays the fuzz targets' seed corpora (`fuzz/corpus/<target>/`) and
//! every input that once crashed a decoder (`fuzz/artifacts/<target>/`)
//! through the same entry points the targets call, so that a stable
//! `cargo test` catches a regression without a fuzzer.

use std::path::{Path, PathBuf};

use octopii::fuzzing::{TARGETS, seeds};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Where the seed `name` of `target` is kept.
fn seed_path(target: &str, name: &str) -> PathBuf {
    let kind = if name.starts_with("crash-") {
        "artifacts"
    } else {
        "corpus"
    };
    fuzz_dir().join(kind).join(target).join(name)
}

#[test]
fn fuzz_corpora_and_crash_inputs_replay_without_a_panic() {
    let mut replayed = 0;
    for (target, run) in TARGETS {
        for kind in ["corpus", "artifacts"] {
            let dir = fuzz_dir().join(kind).join(target);
            let Ok(listing) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in listing {
                let path = entry.expect("directory entry").path();
                let bytes = std::fs::read(&path).expect("read input");
                run(&bytes);
                replayed += 1;
            }
        }
    }
    assert!(
        replayed >= seeds().len(),
        "replayed {replayed} inputs, fewer than the {} seeds",
        seeds().len()
    );
}

#[test]
fn fuzz_seed_files_are_the_generated_seeds() {
    for (target, name, bytes) in seeds() {
        let path = seed_path(target, name);
        let stored = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with `cargo test -p octopii --test fuzz_corpus -- --ignored`",
                path.display()
            )
        });
        assert_eq!(stored, bytes, "{} is stale", path.display());
    }
}

/// Writes the seed files; run when the seeds change.
#[test]
#[ignore = "writes the seed files into fuzz/"]
fn write_fuzz_seeds() {
    for (target, name, bytes) in seeds() {
        let path = seed_path(target, name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("create dir");
        std::fs::write(&path, bytes).expect("write seed");
    }
}

#[test]
fn every_entry_point_has_a_fuzz_target_and_seeds() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz manifest");
    for (target, _) in TARGETS {
        let source = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        let code = std::fs::read_to_string(&source).expect("target source");
        assert!(
            code.contains(&format!("octopii::fuzzing::{target}(")),
            "{}",
            source.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "{target} is a bin of the fuzz crate"
        );
        assert!(
            seeds().iter().any(|(t, _, _)| t == target),
            "{target} has seeds"
        );
    }
}
