//! The page's files, compiled into the controller (`/ui`, with `--web`) and
//! the CLI (`coffer web export DIR`). `web/page/` is written by hand;
//! `web/dist/` is what `web/build` makes of this crate (the WebAssembly
//! module and wasm-bindgen's loader), committed so that building Coffer
//! needs no WebAssembly toolchain; `tests/run` checks it is current.

/// One file of the page.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its name, relative to the page's directory.
    pub name: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

/// Every file of the page; the first is the page itself.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../page/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../page/app.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../page/style.css"),
    },
    Asset {
        name: "coffer_web.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../dist/coffer_web.js"),
    },
    Asset {
        name: "coffer_web_bg.wasm",
        content_type: "application/wasm",
        bytes: include_bytes!("../dist/coffer_web_bg.wasm"),
    },
];

/// The file named `name` (`""` is the page).
pub fn get(name: &str) -> Option<&'static Asset> {
    if name.is_empty() {
        return ASSETS.first();
    }
    ASSETS.iter().find(|a| a.name == name)
}

/// The Content-Security-Policy the page is served with: its own files
/// only, WebAssembly compiled from them, no inline script or style, no
/// frames, and requests to its own origin only. `coffer web export`
/// writes it into the page's `<meta>` too, for static hosts that send no
/// header.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";
