//! A hostile template cannot make one render hold much memory: the
//! second review found `{% set a = "x" * 60000000 %}` peaking at +58 MB,
//! so two or three concurrent renders passed the chart's memory limit.
//! This binary counts every byte allocated in the process (its only test
//! runs alone) and checks the peak of each render against the bound the
//! fuel gives: `FUEL` × 64 bytes created, plus the output and the items.

// A global allocator that counts: GlobalAlloc is an unsafe trait.
#![allow(
    unsafe_code,
    reason = "a counting GlobalAlloc over the system allocator"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use coffer_core::template::{self, FUEL, MAX_OUTPUT, TemplateError};
use zeroize::Zeroizing;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated at the peak of `f` beyond what was live before it.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed) - before)
}

#[test]
fn no_template_makes_a_render_hold_more_than_its_budget() {
    let mut items = BTreeMap::new();
    items.insert("x".to_string(), Zeroizing::new(b"x".to_vec()));
    items.insert("big".to_string(), Zeroizing::new(vec![b'b'; 256 * 1024]));
    // What the fuel lets a render create, the output, the items the engine
    // copies (twice: as variables and under `items`), and the engine's own
    // few hundred KiB (the template thread's stack is not on the heap).
    let bound = (FUEL as usize) * 64 + MAX_OUTPUT + 2 * 256 * 1024 + (2 << 20);
    let shapes = [
        r#"{% set a = "x" * 60000000 %}{{ a|length }}"#,
        r#"{{ (x * 1000000)|center(50000000)|length }}"#,
        r#"{{ ("a\n" * 100000)|indent(1000)|length }}"#,
        r#"{{ big|replace("", big)|length }}"#,
        r#"{{ ([big] * 10000000)|list|length }}"#,
        r#"{{ range(100000)|map("string")|join(big)|length }}"#,
        r#"{{ range(100000)|list|tojson|length }}"#,
        r#"{{ big|b64encode|b64encode|b64encode|b64encode|b64encode|b64encode|b64encode|b64encode|length }}"#,
        r#"{% set ns = namespace(a=big) %}{% for i in range(64) %}{% set ns.a = ns.a ~ ns.a %}{% endfor %}{{ ns.a|length }}"#,
        r#"{% for i in range(100) %}{% set a = big * 100 %}{{ a|length }}{% endfor %}"#,
        r#"{{ big * 3 }}{{ big * 3 }}"#,
        r#"{% for i in range(1000) %}{{ big }}{% endfor %}"#,
    ];
    let mut worst = 0;
    for t in shapes {
        let (r, peak) = peak_of(|| template::render(&[("out", t)], &items));
        assert!(
            matches!(r, Err(TemplateError::Failed { .. })),
            "{t}: rendered or refused otherwise: {:?}",
            r.map(|m| m.keys().cloned().collect::<Vec<_>>())
        );
        assert!(peak <= bound, "{t}: peak {peak} bytes, bound {bound}");
        worst = worst.max(peak);
    }
    eprintln!(
        "the worst render peaked at {:.1} MiB",
        worst as f64 / f64::from(1 << 20)
    );
}
