//! Every file of the fuzz corpora (`fuzz/corpus/<target>/`, seeds and what the fuzzers
//! found and minimised) run through the same entry points as the cargo-fuzz targets,
//! so CI replays them without a nightly toolchain.

use std::path::Path;

#[test]
fn every_corpus_file_runs_through_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus");
    for (name, target) in ferrocable::fuzzing::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        files.sort();
        assert!(
            files.len() >= 5,
            "{name}: the corpus is missing or nearly empty ({} files)",
            files.len()
        );
        for file in files {
            let data = std::fs::read(&file).expect("corpus file");
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name} panics on {}", file.display());
        }
    }
    // Every target has a fuzz target file and a corpus, and nothing else is there.
    let targets = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("fuzz_targets");
    for (name, _) in ferrocable::fuzzing::TARGETS {
        assert!(targets.join(format!("{name}.rs")).exists(), "{name}.rs");
    }
}

#[test]
fn the_seed_vectors_authenticate_so_mutations_reach_past_the_mac() {
    // A corpus of cookies that all fail the MAC would only exercise the splitter.
    let jar = ferrocable::auth::rails::CookieJar::parse(
        "user_id=eyJfcmFpbHMiOnsibWVzc2FnZSI6Ik1RPT0iLCJleHAiOm51bGwsInB1ciI6ImNvb2tpZS51c2VyX2lkIn19--acadec505568632a9396988991be9679b1a80001",
    );
    let secrets = ferrocable::auth::rails::RailsSecrets {
        secret_key_base: vec![ferrocable::fuzzing::SECRET_KEY_BASE.to_owned()],
        key_digest: ferrocable::auth::rails::DigestMode::Auto,
        ..Default::default()
    };
    let v = ferrocable::auth::rails::CookieVerifier::new(&secrets).expect("verifier");
    let value = v.signed(&jar, "user_id").expect("the seed authenticates");
    assert_eq!(ferrocable::auth::rails::user_id_from_value(&value), Some(1));
}
