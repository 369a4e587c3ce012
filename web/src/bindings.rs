//! What the page calls: JSON in, JSON out, errors as JavaScript `Error`s.
//! Each request string is zeroized once read (it holds the plaintext);
//! the strings JavaScript keeps are out of reach (docs/web.md).

use wasm_bindgen::prelude::*;
use zeroize::Zeroize;

fn parse<T: serde::de::DeserializeOwned>(mut request: String) -> Result<T, JsError> {
    // serde_json's message names a field or a position, never a value.
    let parsed =
        serde_json::from_str(&request).map_err(|e| JsError::new(&format!("bad request: {e}")));
    request.zeroize();
    parsed
}

fn answer<T: serde::Serialize>(r: Result<T, String>) -> Result<String, JsError> {
    let v = r.map_err(|e| JsError::new(&e))?;
    serde_json::to_string(&v).map_err(|e| JsError::new(&e.to_string()))
}

/// Seals: a [`crate::SealRequest`] as JSON in, [`crate::Sealed`] as JSON out.
#[wasm_bindgen]
pub fn seal(request: String) -> Result<String, JsError> {
    let req: crate::SealRequest = parse(request)?;
    answer(crate::seal(&req))
}

/// Inspects: [`crate::InspectRequest`] in, [`crate::Inspection`] out.
#[wasm_bindgen]
pub fn inspect(request: String) -> Result<String, JsError> {
    let req: crate::InspectRequest = parse(request)?;
    answer(crate::inspect(&req))
}

/// The keys of a recipients file: [`crate::KeyInfo`]s as JSON.
#[wasm_bindgen]
pub fn recipients(name: String, text: String) -> Result<String, JsError> {
    answer(crate::recipients_info(&crate::Named { name, text }))
}

/// Coffer's version, for the page's footer.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
