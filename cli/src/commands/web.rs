//! `coffer web export DIR`: the web page that seals in the browser
//! (docs/web.md), as static files for any web server.

use std::path::PathBuf;

use coffer_cli::error::{Failure, Result};
use coffer_cli::io::write_atomic;

/// The web page.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum WebCmd {
    /// Write the page's files into DIR, for any static web server: recipients are pasted or uploaded there.
    #[command(after_help = "Example:\n  coffer web export ./site   # then serve ./site over https")]
    Export {
        /// Where to write index.html and its files (made if missing; files of the same names are replaced).
        dir: PathBuf,
    },
}

pub(crate) fn run(cmd: WebCmd) -> Result<()> {
    let WebCmd::Export { dir } = cmd;
    if dir.exists() && !dir.is_dir() {
        return Err(Failure::usage(format!(
            "{}: not a directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::input(format!("{}: cannot be made: {e}", dir.display())))?;
    for asset in coffer_web::assets::ASSETS {
        write_atomic(&dir.join(asset.name), asset.bytes, false)?;
    }
    println!(
        "wrote the page ({} files) to {}",
        coffer_web::assets::ASSETS.len(),
        dir.display()
    );
    eprintln!(
        "note: serve .wasm as application/wasm; the page carries its Content-Security-Policy in a <meta>, \
         and a host that can should also send it as a header with frame-ancestors 'none' (docs/web.md)"
    );
    Ok(())
}
