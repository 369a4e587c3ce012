//! The Git server of `githttp` answers stock git's smart-HTTP client: a
//! clone gets the served commit, a fetch after a new commit gets that one,
//! and a path that is no repository is a 404.

use coffer_test_support::git;
use coffer_test_support::githttp::{GitHttpServer, GitRepo};
use coffer_test_support::tools::Scratch;

#[test]
fn stock_git_clones_and_fetches_over_smart_http() {
    let scratch = Scratch::new("githttp");
    let served = scratch.0.join("served");
    let repo = GitRepo::init(&served, "platform");
    repo.write("a/b.yaml", "kind: ConfigMap\n");
    let first = repo.commit("first");
    let server = GitHttpServer::start(&served).unwrap();

    let clone = scratch.0.join("clone");
    std::fs::create_dir_all(&clone).unwrap();
    git(
        &clone,
        &[
            "-c",
            "protocol.version=2",
            "clone",
            "-q",
            &server.url("platform"),
            "c",
        ],
    );
    let c = clone.join("c");
    assert_eq!(git(&c, &["rev-parse", "HEAD"]).trim(), first);
    assert_eq!(
        std::fs::read_to_string(c.join("a/b.yaml")).unwrap(),
        "kind: ConfigMap\n"
    );

    repo.write("a/c.yaml", "kind: Secret\n");
    let second = repo.commit("second");
    // Protocol v0 this time (no Git-Protocol header).
    git(&c, &["-c", "protocol.version=0", "fetch", "-q", "origin"]);
    assert_eq!(git(&c, &["rev-parse", "origin/main"]).trim(), second);

    let missing = std::process::Command::new("git")
        .args(["ls-remote", &server.url("nothing-here")])
        .output()
        .unwrap();
    assert!(!missing.status.success(), "a path that is no repository");
}
