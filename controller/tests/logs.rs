//! The controller's own output, without a cluster: its text logs carry
//! colour escapes only for a terminal (issue 27: redirected to a file or a
//! log collector, they kept them).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_coffer-controller");

#[test]
fn text_logs_redirected_have_no_colour_escapes() {
    let missing = std::env::temp_dir().join(format!("coffer-no-kubeconfig-{}", std::process::id()));
    for format in ["text", "json"] {
        let out = Command::new(BIN)
            .arg("--kubeconfig")
            .arg(&missing)
            .args(["--log-format", format])
            // Nothing that would turn colours off but the fix itself.
            .env_remove("NO_COLOR")
            .env_remove("COFFER_LOG_FORMAT")
            .env("TERM", "xterm-256color")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("ERROR") || err.contains("\"ERROR\""), "{err}");
        assert!(err.contains("reading kubeconfig"), "{err}");
        assert!(
            !err.contains('\u{1b}'),
            "{format} logs with escapes: {err:?}"
        );
    }
}
