//! `spec.template.data`: Secret values built from templates over the
//! unsealed items, rendered with MiniJinja (Jinja2 syntax; see
//! `docs/parity.md` for the syntax and how bitnami's Go templates map to
//! it).
//!
//! A template is written by whoever writes the SealedSecret, so it is
//! treated as hostile input end to end:
//!
//! - **Structure first.** Before the engine sees it, a template must fit
//!   [`MAX_SOURCE`] bytes, [`MAX_TAG_TOKENS`] tokens in any one tag and
//!   [`MAX_TOKENS`] tokens in all (see [`structure`]). The engine's parser
//!   builds a long operator chain (`{{ 1 + 1 + … }}`, `x|f|f|…`,
//!   `a.b.c.…`) iteratively but compiles and drops it recursively; the
//!   bound keeps that depth a few hundred at most, and the compile and
//!   render run on a thread of their own with a [`STACK`] stack.
//! - **Memory and time.** One fuel budget, [`FUEL`], bounds the
//!   instructions and every byte and list slot the engine creates for all
//!   the templates of a SealedSecret together (MiniJinja 3.1 checks a
//!   known-size allocation against the fuel before making it), so one
//!   render creates at most [`FUEL`] × 64 bytes; the rendered values
//!   together may not exceed [`MAX_OUTPUT`].
//! - **No oracle.** The engine has no loader (no `include`, no files), no
//!   function that reads the environment, the network or another object.
//!   A failure while rendering says which template failed and nothing
//!   else (no line, no kind of error, not whether the fuel or the size ran
//!   out): all of these can depend on the values, and a status is read by
//!   more people than the Secret. Errors found before rendering (syntax,
//!   an undefined variable, a bound above) depend only on the template
//!   text and the item keys, and say precisely what is wrong.

use std::collections::BTreeMap;
use std::io;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use zeroize::Zeroizing;

use crate::reason::Reason;

/// The rendered values of one SealedSecret together may hold at most this
/// many bytes: a Secret holds at most 1 MiB.
pub const MAX_OUTPUT: usize = 1 << 20;

/// The engine's fuel for all the templates of one SealedSecret. Each
/// instruction costs one; each byte a template creates (strings, output)
/// costs 1/64 and each list slot 1/2 (MiniJinja's accounting, checked
/// before a known-size allocation). So the templates of one SealedSecret
/// run at most 131,072 instructions and create at most 8 MiB, whatever
/// they do; a template that joins a few items uses a few dozen.
pub const FUEL: u64 = 131_072;

/// The bytes of one template's source.
pub const MAX_SOURCE: usize = 64 * 1024;

/// Tokens (names, literals, operators, brackets) in one `{{ … }}` or
/// `{% … %}` tag: the longest operator chain a template can build.
pub const MAX_TAG_TOKENS: usize = 256;

/// Tokens in all the tags of one template.
pub const MAX_TOKENS: usize = 16 * 1024;

/// The stack of the thread that compiles and renders: well above what the
/// structural bounds let the engine's recursion use.
pub const STACK: usize = 16 << 20;

/// Names listed in an error at most; the rest are counted.
const MAX_NAMES: usize = 10;

/// The name under which every item is also reachable, for item keys that
/// are no identifiers (`items["tls.crt"]`).
pub const ITEMS_VARIABLE: &str = "items";

/// Why the templates of a SealedSecret did not render. Never holds a value,
/// nor anything that depends on one.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// The template does not parse; the detail quotes the template, which
    /// is plain text in git, never a value.
    #[error("template.data[{key:?}] does not parse: {detail}")]
    Syntax {
        /// The key of `template.data` whose template this is.
        key: String,
        /// The engine's message, with line and column.
        detail: String,
    },
    /// The template is over a structural bound (size, tokens in a tag,
    /// tokens in all): it is refused before the engine sees it.
    #[error("template.data[{key:?}] is too complex: {detail}")]
    TooComplex {
        /// The key of `template.data` whose template this is.
        key: String,
        /// Which bound, and by how much.
        detail: String,
    },
    /// The template names variables that are no item of the SealedSecret.
    #[error(
        "template.data[{key:?}] uses {names}, which {verb} no item of this SealedSecret (items: {items})"
    )]
    Undefined {
        /// The key of `template.data` whose template this is.
        key: String,
        /// The variables, quoted and comma-separated.
        names: String,
        /// `is` or `are`, to agree with `names`.
        verb: &'static str,
        /// The SealedSecret's item keys, for comparison.
        items: String,
    },
    /// Rendering failed. The message is the same whatever the cause, as
    /// the cause can depend on the values; `cause` is for tests and never
    /// shown.
    #[error(
        "template.data[{key:?}] did not render (a runtime error, or over the budget of {FUEL} fuel or {MAX_OUTPUT} bytes of output; the cause is not shown as it can depend on the values)"
    )]
    Failed {
        /// The key of `template.data` whose template this is.
        key: String,
        /// What made it fail: for tests, never shown.
        cause: Cause,
    },
}

/// What made a render fail: kept out of every message (see
/// [`TemplateError::Failed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// An error of the engine at run time (an undefined key of `items`,
    /// a type error, a filter's refusal).
    Runtime,
    /// The fuel ran out: a loop too long, or data too large.
    OutOfFuel,
    /// The rendered values together are over [`MAX_OUTPUT`].
    TooLarge,
    /// The engine panicked (a bug of the engine; the process goes on).
    Panicked,
}

impl TemplateError {
    /// The status reason and metric label of every template failure.
    pub const REASON: Reason = Reason::TemplateFailed;

    fn failed(key: &str, cause: Cause) -> Self {
        TemplateError::Failed {
            key: key.into(),
            cause,
        }
    }
}

/// The engine every template runs in: no loader, no auto-escaping, strict
/// undefined values, MiniJinja's builtin filters (pure functions over
/// their arguments) plus `b64encode` and `b64decode`.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // A value's last newline matters (a PEM block, a config file).
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    env.set_recursion_limit(32);
    env.add_filter("b64encode", |v: &str| -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(v)
    });
    env.add_filter("b64decode", |v: &str| -> Result<String, minijinja::Error> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|_| {
                minijinja::Error::new(ErrorKind::InvalidOperation, "b64decode: not base64")
            })?;
        String::from_utf8(bytes)
            .map_err(|_| minijinja::Error::new(ErrorKind::InvalidOperation, "b64decode: not UTF-8"))
    });
    env
}

/// An output buffer that holds at most the bytes left of [`MAX_OUTPUT`] and
/// is wiped when dropped.
struct Capped<'a> {
    out: Zeroizing<Vec<u8>>,
    left: &'a mut usize,
    over: bool,
}

impl io::Write for Capped<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > *self.left {
            self.over = true;
            return Err(io::Error::other("rendered value too large"));
        }
        *self.left -= buf.len();
        // Grow by hand so no reallocation leaves an unwiped copy behind.
        if self.out.capacity() - self.out.len() < buf.len() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                (self.out.len() + buf.len()).max(2 * self.out.capacity()),
            ));
            bigger.extend_from_slice(&self.out);
            self.out = bigger;
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `f` on a thread of its own with a [`STACK`] stack; a panic there
/// becomes `Cause::Panicked` of the first template.
fn isolated<T: Send>(
    templates: &[(&str, &str)],
    f: impl FnOnce() -> Result<T, TemplateError> + Send,
) -> Result<T, TemplateError> {
    let first = templates.first().map_or("", |(k, _)| *k);
    std::thread::scope(|scope| {
        let job = std::thread::Builder::new()
            .name("coffer-template".into())
            .stack_size(STACK)
            .spawn_scoped(scope, f);
        match job {
            Ok(job) => job
                .join()
                .unwrap_or_else(|_| Err(TemplateError::failed(first, Cause::Panicked))),
            // No thread to be had (the process is at its limit): refuse
            // rather than run the engine on a stack of unknown size.
            Err(_) => Err(TemplateError::failed(first, Cause::Panicked)),
        }
    })
}

/// Renders each `(key, template)` with the unsealed `items` as variables:
/// an item `password` is `{{ password }}`, and every item is also
/// `{{ items["tls.crt"] }}`. Items that are not UTF-8 text are not
/// variables. All or nothing: the first failure is returned, and no value.
pub fn render(
    templates: &[(&str, &str)],
    items: &BTreeMap<String, Zeroizing<Vec<u8>>>,
) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, TemplateError> {
    if templates.is_empty() {
        return Ok(BTreeMap::new());
    }
    for &(key, source) in templates {
        structure(key, source)?;
    }
    isolated(templates, || render_here(templates, items))
}

fn render_here(
    templates: &[(&str, &str)],
    items: &BTreeMap<String, Zeroizing<Vec<u8>>>,
) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, TemplateError> {
    let mut out = BTreeMap::new();
    // The engine copies what it is given into strings of its own, which
    // are not wiped; they live only while this call runs.
    let text: BTreeMap<&str, Value> = items
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), Value::from(std::str::from_utf8(v).ok()?))))
        .collect();
    let mut context: BTreeMap<&str, Value> = text.clone();
    context.insert(
        ITEMS_VARIABLE,
        Value::from_pairs(text.iter().map(|(k, v)| (*k, v.clone()))),
    );
    let context = Value::from_pairs(context);
    let mut env = environment();
    let mut fuel = FUEL;
    let mut left = MAX_OUTPUT;
    let names: Vec<&str> = text.keys().copied().collect();
    for &(key, source) in templates {
        env.set_fuel(Some(fuel));
        let template = compile(&env, key, source, &names)?;
        let mut w = Capped {
            out: Zeroizing::new(Vec::new()),
            left: &mut left,
            over: false,
        };
        let rendered = template.render_captured_to(context.clone(), &mut w);
        if w.over {
            return Err(TemplateError::failed(key, Cause::TooLarge));
        }
        let captured = rendered.map_err(|e| {
            TemplateError::failed(
                key,
                match e.kind() {
                    ErrorKind::OutOfFuel => Cause::OutOfFuel,
                    _ => Cause::Runtime,
                },
            )
        })?;
        if let Some((_, remaining)) = captured.state().fuel_levels() {
            fuel = remaining;
        }
        drop(captured);
        let value = std::mem::take(&mut w.out);
        out.insert(key.to_string(), value);
    }
    Ok(out)
}

/// Checks the templates without any value, as `coffer inspect` does
/// offline: each must fit the structural bounds, parse and name only the
/// given item keys (or `items`). Rendering can still fail on the values.
pub fn check(templates: &[(&str, &str)], item_keys: &[&str]) -> Result<(), TemplateError> {
    for &(key, source) in templates {
        structure(key, source)?;
    }
    isolated(templates, || {
        let env = environment();
        for &(key, source) in templates {
            compile(&env, key, source, item_keys)?;
        }
        Ok(())
    })
}

/// The structural bounds, checked on the source alone before the engine
/// parses it: [`MAX_SOURCE`] bytes, [`MAX_TAG_TOKENS`] tokens in any tag,
/// [`MAX_TOKENS`] in all. A token is a name or number, a string literal,
/// or one byte of anything else (operators, brackets, dots), so a count
/// is never below the engine's own. Comments and `{% raw %}` blocks are
/// text.
pub fn structure(key: &str, source: &str) -> Result<(), TemplateError> {
    let too_complex = |detail: String| TemplateError::TooComplex {
        key: key.into(),
        detail,
    };
    if source.len() > MAX_SOURCE {
        return Err(too_complex(format!(
            "{} bytes, over the limit of {MAX_SOURCE}",
            source.len()
        )));
    }
    let b = source.as_bytes();
    let mut total = 0usize;
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] != b'{' || !matches!(b[i + 1], b'{' | b'%' | b'#') {
            i += 1;
            continue;
        }
        if b[i + 1] == b'#' {
            i = find(b, i + 2, b"#}").map_or(b.len(), |e| e + 2);
            continue;
        }
        let close: &[u8] = if b[i + 1] == b'{' { b"}}" } else { b"%}" };
        let (tokens, end, first) = tag_tokens(b, i + 2, close);
        if tokens > MAX_TAG_TOKENS {
            return Err(too_complex(format!(
                "a tag has {tokens} tokens, over the limit of {MAX_TAG_TOKENS} (split a long expression with {{% set %}})"
            )));
        }
        total += tokens;
        if total > MAX_TOKENS {
            return Err(too_complex(format!("over {MAX_TOKENS} tokens in all")));
        }
        i = end;
        if close == b"%}" && first == Some(b"raw".as_slice()) {
            // Text up to `{% endraw %}`; an unclosed raw block is the
            // parser's to report.
            i = find(b, i, b"endraw").map_or(b.len(), |e| e + 6);
        }
    }
    Ok(())
}

/// The first index at or after `from` where `needle` starts.
fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Counts the tokens of the tag starting at `from` up to `close` outside
/// strings and brackets; returns the count, the index past the tag (or the
/// end), and the tag's first name.
fn tag_tokens<'a>(b: &'a [u8], from: usize, close: &[u8]) -> (usize, usize, Option<&'a [u8]>) {
    let mut tokens = 0usize;
    let mut depth = 0usize;
    let mut first = None;
    let mut j = from;
    while j < b.len() {
        let c = b[j];
        if depth == 0 && b[j..].starts_with(close) {
            return (tokens, j + close.len(), first);
        }
        if c.is_ascii_whitespace() {
            j += 1;
            continue;
        }
        tokens += 1;
        if c == b'"' || c == b'\'' {
            j += 1;
            while j < b.len() && b[j] != c {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            j += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            let start = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] >= 0x80) {
                j += 1;
            }
            if first.is_none() {
                first = Some(&b[start..j]);
            }
        } else {
            match c {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            j += 1;
        }
    }
    (tokens, b.len(), first)
}

/// Parses one template and checks that every variable it reads is an item
/// (`names`), `items`, or one of the engine's functions.
fn compile<'env, 'source>(
    env: &'env Environment<'static>,
    key: &str,
    source: &'source str,
    names: &[&str],
) -> Result<minijinja::Template<'env, 'source>, TemplateError> {
    let template = env
        .template_from_str(source)
        .map_err(|e| TemplateError::Syntax {
            key: key.into(),
            detail: match e.line() {
                Some(line) => format!("{} at line {line}", syntax_detail(&e)),
                None => syntax_detail(&e),
            },
        })?;
    let mut missing: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| {
            v != ITEMS_VARIABLE
                && !names.contains(&v.as_str())
                && !env.globals().any(|(g, _)| g == v)
        })
        .collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(TemplateError::Undefined {
            key: key.into(),
            verb: if missing.len() == 1 { "is" } else { "are" },
            names: listed(&missing),
            items: listed(names),
        });
    }
    Ok(template)
}

/// At most [`MAX_NAMES`] names, then how many more.
fn listed<S: AsRef<str>>(names: &[S]) -> String {
    let mut out: Vec<&str> = names.iter().take(MAX_NAMES).map(AsRef::as_ref).collect();
    let more = names.len().saturating_sub(MAX_NAMES);
    let more = format!("and {more} more");
    if names.len() > MAX_NAMES {
        out.push(&more);
    }
    out.join(", ")
}

/// What a syntax error says, without the source excerpt the engine may
/// append (the template is public, but the detail alone is clearer).
fn syntax_detail(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn items(pairs: &[(&str, &str)]) -> BTreeMap<String, Zeroizing<Vec<u8>>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Zeroizing::new(v.as_bytes().to_vec())))
            .collect()
    }

    fn one(template: &str, values: &[(&str, &str)]) -> Result<String, TemplateError> {
        let out = render(&[("out", template)], &items(values))?;
        Ok(String::from_utf8(out["out"].to_vec()).unwrap())
    }

    const SECRET: &str = "hunter2-template";

    #[test]
    fn items_are_variables_and_reachable_by_any_key() {
        let v = [("user", "admin"), ("password", SECRET), ("tls.crt", "CERT")];
        assert_eq!(
            one("postgres://{{ user }}:{{ password }}@db:5432/shop", &v).unwrap(),
            format!("postgres://admin:{SECRET}@db:5432/shop")
        );
        assert_eq!(one(r#"{{ items["tls.crt"] }}"#, &v).unwrap(), "CERT");
        assert_eq!(
            one("{{ user | upper }}/{{ user | b64encode }}", &v).unwrap(),
            "ADMIN/YWRtaW4="
        );
        assert_eq!(one(r#"{{ "YWRtaW4=" | b64decode }}"#, &v).unwrap(), "admin");
        // No HTML escaping: values are copied as they are.
        assert_eq!(one("{{ v }}", &[("v", "<a&'\">")]).unwrap(), "<a&'\">");
        assert_eq!(one("line\n", &v).unwrap(), "line\n");
        assert_eq!(
            one(
                "{% for k in items | sort %}{{ k }};{% endfor %}",
                &[("b", "1"), ("a", "2")]
            )
            .unwrap(),
            "a;b;"
        );
    }

    /// The right-hand column of docs/parity.md's table of Go templates.
    #[test]
    fn the_documented_translations_of_bitnami_templates_work() {
        let v = [
            ("user", "admin"),
            ("password", "p@ss word"),
            ("tls.crt", "A\nB"),
            ("debug", "true"),
        ];
        for (t, want) in [
            (r#"{{ user ~ ":" ~ password }}"#, "admin:p@ss word"),
            (
                r#"{{ "%s:%s" | format(user, password) }}"#,
                "admin:p@ss word",
            ),
            ("{{ user | tojson }}", r#""admin""#),
            ("{{ password | urlencode }}", "p%40ss%20word"),
            (r#"{{ user | default("x") }}"#, "admin"),
            (r#"{% if debug == "true" %}on{% endif %}"#, "on"),
            (
                "{% for k, v in items | dictsort %}{{ k }}={{ v | length }};{% endfor %}",
                "debug=4;password=9;tls.crt=3;user=5;",
            ),
            (r#"{{ items["tls.crt"] | indent(2) }}"#, "A\n  B"),
            ("{{ user | upper }}{{ user | trim | lower }}", "ADMINadmin"),
        ] {
            assert_eq!(one(t, &v).unwrap(), want, "{t}");
        }
    }

    #[test]
    fn an_undefined_variable_is_an_error_that_names_it_and_no_value() {
        let e = one("{{ pasword }}", &[("password", SECRET)]).unwrap_err();
        assert!(matches!(e, TemplateError::Undefined { .. }));
        let msg = e.to_string();
        assert!(msg.contains("pasword") && msg.contains("out"), "{msg}");
        assert!(!msg.contains(SECRET), "{msg}");
        // A missing key of `items` is an error too, not an empty string.
        let e = one(r#"{{ items["nope"] }}"#, &[("password", SECRET)]).unwrap_err();
        assert_eq!(e, TemplateError::failed("out", Cause::Runtime));
    }

    #[test]
    fn errors_never_quote_a_value() {
        let v = [("password", SECRET)];
        for t in [
            "{{ password | int }}",
            "{{ password + 1 }}",
            "{{ password | b64decode }}",
            "{{ password() }}",
            "{{ password.x.y }}",
            "{{ items[password] }}",
        ] {
            let e = one(t, &v).unwrap_err();
            let msg = e.to_string();
            assert!(
                !msg.contains(SECRET) && !msg.contains("hunter2"),
                "{t}: {msg}"
            );
            assert!(!format!("{e:?}").contains("hunter2"), "{t}");
            assert_eq!(TemplateError::REASON, "TemplateFailed");
        }
    }

    /// `coffer inspect` finds a mistyped variable or a syntax error
    /// without a key.
    #[test]
    fn templates_are_checked_offline_against_the_item_keys() {
        assert!(check(&[("url", "{{ user }}:{{ items[\"tls.crt\"] }}")], &["user"]).is_ok());
        let e = check(&[("url", "{{ usr }}")], &["user"]).unwrap_err();
        assert!(e.to_string().contains("usr"), "{e}");
        assert!(matches!(
            check(&[("url", "{% if %}")], &["user"]),
            Err(TemplateError::Syntax { .. })
        ));
    }

    #[test]
    fn a_syntax_error_says_where() {
        let e = one("{% if x %}never closed", &[("x", "1")]).unwrap_err();
        let TemplateError::Syntax { detail, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(detail.contains("line 1"), "{detail}");
    }

    /// A hostile template cannot keep the controller busy: loops, however
    /// nested, stop when the fuel runs out, quickly.
    #[test]
    fn endless_loops_run_out_of_fuel_quickly() {
        let start = Instant::now();
        for t in [
            "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            "{% for i in [1] recursive %}{{ loop([1, 1]) }}{% endfor %}",
        ] {
            let e = one(t, &[("x", "1")]).unwrap_err();
            assert!(matches!(e, TemplateError::Failed { .. }), "{t}: {e:?}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        // The first loop alone is stopped by the fuel, not by luck.
        let e = one(
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
            &[],
        )
        .unwrap_err();
        assert_eq!(e, TemplateError::failed("out", Cause::OutOfFuel));
    }

    /// Doubling a string in a few statements would need terabytes; the
    /// engine charges fuel for every byte it creates, so it stops first.
    #[test]
    fn exponential_data_runs_out_of_fuel_before_it_is_allocated() {
        let mut t = String::from("{% set s0 = x %}");
        for i in 1..=60 {
            t.push_str(&format!("{{% set s{i} = s{p} ~ s{p} %}}", p = i - 1));
        }
        t.push_str("{{ s60 | length }}");
        let x = "x".repeat(1000);
        let e = one(&t, &[("x", &x)]).unwrap_err();
        assert_eq!(e, TemplateError::failed("out", Cause::OutOfFuel));
        let e = one(r#"{{ x * 100000000 }}"#, &[("x", &x)]).unwrap_err();
        assert!(
            matches!(
                e,
                TemplateError::Failed {
                    cause: Cause::OutOfFuel | Cause::Runtime,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    /// The rendered values together stay under a Secret's size.
    #[test]
    fn output_over_one_mebibyte_is_refused() {
        let big = "y".repeat(600 * 1024);
        let v = items(&[("big", &big)]);
        assert!(render(&[("a", "{{ big }}")], &v).is_ok());
        let e = render(&[("a", "{{ big }}"), ("b", "{{ big }}")], &v).unwrap_err();
        assert_eq!(e, TemplateError::failed("b", Cause::TooLarge));
        let e = render(&[("a", "{{ big }}{{ big }}")], &v).unwrap_err();
        assert_eq!(e, TemplateError::failed("a", Cause::TooLarge));
    }

    /// The fuel is one budget for all the templates of a SealedSecret, so
    /// many templates cannot multiply it.
    #[test]
    fn the_fuel_is_shared_by_all_templates() {
        // About a quarter of the fuel: one fits, twenty do not.
        let t = "{% for a in range(150) %}{% for b in range(200) %}{% endfor %}{% endfor %}";
        assert!(render(&[("a", t)], &items(&[])).is_ok());
        let many: Vec<(String, &str)> = (0..20).map(|i| (format!("k{i}"), t)).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, t)| (k.as_str(), *t)).collect();
        assert!(matches!(
            render(&many, &items(&[])),
            Err(TemplateError::Failed {
                cause: Cause::OutOfFuel,
                ..
            })
        ));
    }

    /// Templates see their own items and nothing else: no files, no
    /// environment variables, no other template.
    #[test]
    fn templates_reach_no_file_environment_or_other_object() {
        for t in [
            r#"{% include "/etc/passwd" %}"#,
            r#"{% import "/etc/passwd" as p %}"#,
            r#"{% extends "/etc/hostname" %}"#,
            "{{ env.HOME }}",
            r#"{{ env("HOME") }}"#,
            r#"{{ lookup("v1", "Secret", "kube-system", "x") }}"#,
            "{{ self }}",
        ] {
            assert!(one(t, &[("x", "1")]).is_err(), "{t}");
        }
    }

    /// The operator and suffix chains that overflowed the stack of the
    /// thread compiling them (an abort of the whole process), each at the
    /// length the review used: refused before the engine sees them, by
    /// `render` and by `check` (`coffer inspect`) alike.
    fn hostile_chains(n: usize) -> Vec<(&'static str, String)> {
        let chain = |head: &str, link: &str, tail: &str| {
            format!("{{{{ {head}{}{tail} }}}}", link.repeat(n))
        };
        vec![
            ("+", chain("1", " + 1", "")),
            ("-", chain("1", " - 1", "")),
            ("*", chain("1", " * 1", "")),
            ("~", chain("x", " ~ x", "")),
            ("and", chain("x", " and x", "")),
            ("or", chain("x", " or x", "")),
            ("|filter", chain("x", "|lower", "")),
            ("not", chain("", "not ", "x")),
            ("is", chain("x", " is defined", "")),
            (".attr", chain("items", ".a", "")),
            ("[0]", chain("x", "[0]", "")),
            ("()", chain("range", "()", "")),
            ("if-else", chain("x", " if x else x", "")),
            (
                "(nested)",
                format!("{{{{ {}x{} }}}}", "(".repeat(n), ")".repeat(n)),
            ),
        ]
    }

    #[test]
    fn long_operator_chains_are_refused_before_compiling() {
        let v = items(&[("x", "1")]);
        for (shape, t) in hostile_chains(10_000) {
            let e = render(&[("out", &t)], &v).unwrap_err();
            assert!(
                matches!(&e, TemplateError::TooComplex { key, .. } if key == "out"),
                "{shape}: {e:?}"
            );
            let e = check(&[("out", &t)], &["x"]).unwrap_err();
            assert!(matches!(e, TemplateError::TooComplex { .. }), "{shape}");
        }
        // The filter chain of the review, 30,000 long.
        let t = format!("{{{{ x{} }}}}", "|lower".repeat(30_000));
        assert!(matches!(
            render(&[("out", &t)], &v),
            Err(TemplateError::TooComplex { .. })
        ));
        // Many short tags add up too, and so does a large source.
        let t = "{{ x ~ x ~ x }}".repeat(4_000);
        let e = check(&[("out", &t)], &["x"]).unwrap_err();
        assert!(e.to_string().contains("tokens in all"), "{e}");
        let t = "x".repeat(MAX_SOURCE + 1);
        assert!(matches!(
            check(&[("out", &t)], &[]),
            Err(TemplateError::TooComplex { .. })
        ));
    }

    /// Just under the bound every shape reaches the engine, which compiles
    /// (and renders or refuses) it on the template thread without running
    /// out of stack, in a debug build too.
    #[test]
    fn chains_at_the_bound_compile_and_render_without_overflowing() {
        let v = items(&[("x", "1")]);
        for (i, (shape, _)) in hostile_chains(0).into_iter().enumerate() {
            // The longest chain of this shape that passes.
            let t = (1..=MAX_TAG_TOKENS)
                .rev()
                .map(|n| hostile_chains(n).swap_remove(i).1)
                .find(|t| structure("out", t).is_ok())
                .unwrap();
            let r = render(&[("out", &t)], &v);
            assert!(
                !matches!(
                    r,
                    Err(TemplateError::TooComplex { .. })
                        | Err(TemplateError::Failed {
                            cause: Cause::Panicked,
                            ..
                        })
                ),
                "{shape}: {r:?}"
            );
        }
    }

    /// The deepest tree the bounds allow: statements nested as deep as the
    /// engine's parser lets them, each tag a chain at the bound.
    #[test]
    fn nested_statements_of_chains_at_the_bound_do_not_overflow() {
        let link = " ~ x".repeat((MAX_TAG_TOKENS - 10) / 2);
        let short = " ~ x".repeat(40);
        let mut t = String::new();
        for _ in 0..140 {
            t.push_str(&format!("{{% if x{short} %}}"));
        }
        t.push_str(&format!("{{{{ x{link} }}}}"));
        t.push_str(&"{% endif %}".repeat(140));
        assert!(structure("out", &t).is_ok());
        let r = render(&[("out", &t)], &items(&[("x", "1")]));
        assert!(r.is_ok(), "{r:?}");
        assert!(check(&[("out", &t)], &["x"]).is_ok());
    }

    /// The bound counts code, not text: long comments, string literals and
    /// raw blocks are not chains.
    #[test]
    fn comments_strings_and_raw_blocks_are_not_counted_as_code() {
        let ops = "+ ".repeat(2 * MAX_TAG_TOKENS);
        for t in [
            format!("{{# {ops} #}}{{{{ x }}}}"),
            format!("{{{{ \"{ops}\" ~ x }}}}"),
            format!("{{{{ '{ops}\\' }}}}' ~ x }}}}"),
            format!("{{% raw %}}{{{{ {ops} }}}}{{% endraw %}}{{{{ x }}}}"),
            format!("{{{{ {{\"a\": {{\"b\": x}}}}[\"a\"][\"b\"] }}}}text {ops}"),
        ] {
            assert!(structure("out", &t).is_ok(), "{t}");
            assert!(one(&t, &[("x", "1")]).is_ok(), "{t}");
        }
    }

    /// Finding 3 of the second review: with one line per candidate
    /// character, the line of the error told the character. Every probe
    /// now gets the same message, whatever the value.
    #[test]
    fn a_render_failure_tells_nothing_about_the_value() {
        let alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        let mut messages = std::collections::BTreeSet::new();
        for secret in ["hunter2", "s3cr3t9", "zzzzzzz", "a"] {
            for i in 0..7 {
                let probe: String = alphabet
                    .chars()
                    .map(|c| {
                        format!(
                            "{{% if password|length > {i} and password[{i}] == \"{c}\" %}}{{{{ password + 1 }}}}{{% endif %}}\n"
                        )
                    })
                    .collect();
                // A probe that fails on no line renders; one that fails
                // says only that it failed.
                if let Err(e) = one(&(probe + "{{ password + 1 }}"), &[("password", secret)]) {
                    messages.insert(e.to_string());
                }
                // Fuel and size: a loop or an output as long as a value
                // fails the same way as a type error.
                let costly = format!(
                    "{{% if password[{i}:{i}+1] == \"z\" %}}{{% for a in range(100000) %}}{{% for b in range(100000) %}}{{% endfor %}}{{% endfor %}}{{% else %}}{{{{ password + 1 }}}}{{% endif %}}"
                );
                if let Err(e) = one(&costly, &[("password", secret)]) {
                    messages.insert(e.to_string());
                }
            }
        }
        assert_eq!(messages.len(), 1, "{messages:#?}");
        let msg = messages.into_iter().next().unwrap();
        assert!(!msg.contains("line"), "{msg}");
        assert!(
            !msg.contains("hunter2") && !msg.contains("s3cr3t9"),
            "{msg}"
        );
    }

    /// A template naming thousands of undefined variables gives a short
    /// message (it went whole into the status before).
    #[test]
    fn an_error_lists_a_few_names_and_counts_the_rest() {
        let t: String = (0..5_000).map(|i| format!("{{{{v{i}}}}}")).collect();
        let keys: Vec<String> = (0..2_000).map(|i| format!("item{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let e = check(&[("out", &t)], &keys).unwrap_err();
        let msg = e.to_string();
        assert!(msg.len() < 600, "{} bytes: {msg}", msg.len());
        assert!(
            msg.contains("and 4990 more") && msg.contains("and 1990 more"),
            "{msg}"
        );
    }
}
