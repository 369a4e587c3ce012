//! `spec.template.data`: Secret values built from templates over the
//! unsealed items, rendered with MiniJinja (Jinja2 syntax; see
//! `docs/parity.md` for the syntax and how bitnami's Go templates map to
//! it).
//!
//! A template is written by whoever writes the SealedSecret, so it is
//! treated as hostile: the engine has no loader (no `include`, no files),
//! no function that reads the environment, the network or another object;
//! it sees only the items of its own SealedSecret. One fuel budget bounds
//! the instructions and the bytes it may produce for all templates of a
//! SealedSecret together, and the rendered values together may not exceed
//! [`MAX_OUTPUT`]. An undefined variable is an error, never an empty string.
//! Errors name the template key, the kind of failure and the line, never a
//! value.

use std::collections::BTreeMap;
use std::io;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use zeroize::Zeroizing;

/// The rendered values of one SealedSecret together may hold at most this
/// many bytes: a Secret holds at most 1 MiB.
pub const MAX_OUTPUT: usize = 1 << 20;

/// The engine's fuel for all the templates of one SealedSecret: each
/// instruction costs one, and every 64 bytes a template creates cost one
/// (MiniJinja's accounting). Using it all up takes about 0.2 s in a debug
/// build on a 2-core test machine; a template that joins a few items uses
/// a few dozen.
pub const FUEL: u64 = 1_000_000;

/// The name under which every item is also reachable, for item keys that
/// are no identifiers (`items["tls.crt"]`).
pub const ITEMS_VARIABLE: &str = "items";

/// Why the templates of a SealedSecret did not render. Never holds a value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    /// The template does not parse; the detail quotes the template, which
    /// is plain text in git, never a value.
    #[error("template.data[{key:?}] does not parse: {detail}")]
    Syntax { key: String, detail: String },
    /// The template names variables that are no item of the SealedSecret.
    #[error(
        "template.data[{key:?}] uses {names}, which {verb} no item of this SealedSecret (items: {items})"
    )]
    Undefined {
        key: String,
        names: String,
        verb: &'static str,
        items: String,
    },
    /// The fuel ran out: a loop too long, or data too large.
    #[error(
        "template.data[{key:?}] used up the templates' budget of {FUEL} fuel (a loop too long or data too large)"
    )]
    OutOfFuel { key: String },
    /// The rendered values together are over [`MAX_OUTPUT`].
    #[error("template.data[{key:?}]: the rendered values exceed {MAX_OUTPUT} bytes")]
    TooLarge { key: String },
    /// Rendering failed; the kind of failure and the line only (the
    /// engine's own text may quote a value).
    #[error("template.data[{key:?}] failed at line {line}: {kind}")]
    Render {
        key: String,
        line: usize,
        kind: String,
    },
}

impl TemplateError {
    /// The status reason and metric label of every template failure.
    pub const REASON: &'static str = "TemplateFailed";
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

/// Renders each `(key, template)` with the unsealed `items` as variables:
/// an item `password` is `{{ password }}`, and every item is also
/// `{{ items["tls.crt"] }}`. Items that are not UTF-8 text are not
/// variables. All or nothing: the first failure is returned, and no value.
pub fn render(
    templates: &[(&str, &str)],
    items: &BTreeMap<String, Zeroizing<Vec<u8>>>,
) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, TemplateError> {
    let mut out = BTreeMap::new();
    if templates.is_empty() {
        return Ok(out);
    }
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
    for &(key, source) in templates {
        let err = |kind: ErrorKind, line: Option<usize>| match kind {
            ErrorKind::OutOfFuel => TemplateError::OutOfFuel { key: key.into() },
            _ => TemplateError::Render {
                key: key.into(),
                line: line.unwrap_or(0),
                kind: kind.to_string(),
            },
        };
        env.set_fuel(Some(fuel));
        let names: Vec<&str> = text.keys().copied().collect();
        let template = compile(&env, key, source, &names)?;
        let mut w = Capped {
            out: Zeroizing::new(Vec::new()),
            left: &mut left,
            over: false,
        };
        let rendered = template.render_captured_to(context.clone(), &mut w);
        if w.over {
            return Err(TemplateError::TooLarge { key: key.into() });
        }
        let captured = rendered.map_err(|e| err(e.kind(), e.line()))?;
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
/// offline: each must parse and name only the given item keys (or
/// `items`). Rendering can still fail on the values.
pub fn check(templates: &[(&str, &str)], item_keys: &[&str]) -> Result<(), TemplateError> {
    let env = environment();
    for &(key, source) in templates {
        compile(&env, key, source, item_keys)?;
    }
    Ok(())
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
            names: missing.join(", "),
            items: names.join(", "),
        });
    }
    Ok(template)
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
        assert!(
            matches!(&e, TemplateError::Render { kind, .. } if kind == "undefined value"),
            "{e:?}"
        );
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
            assert!(
                matches!(
                    e,
                    TemplateError::OutOfFuel { .. }
                        | TemplateError::TooLarge { .. }
                        | TemplateError::Render { .. }
                ),
                "{t}: {e:?}"
            );
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
        assert_eq!(e, TemplateError::OutOfFuel { key: "out".into() });
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
        assert_eq!(e, TemplateError::OutOfFuel { key: "out".into() });
        let e = one(r#"{{ x * 100000000 }}"#, &[("x", &x)]).unwrap_err();
        assert!(
            matches!(
                e,
                TemplateError::OutOfFuel { .. } | TemplateError::Render { .. }
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
        assert_eq!(e, TemplateError::TooLarge { key: "b".into() });
        let e = render(&[("a", "{{ big }}{{ big }}")], &v).unwrap_err();
        assert_eq!(e, TemplateError::TooLarge { key: "a".into() });
    }

    /// The fuel is one budget for all the templates of a SealedSecret, so
    /// many templates cannot multiply it.
    #[test]
    fn the_fuel_is_shared_by_all_templates() {
        let t = "{% for a in range(1000) %}{% for b in range(200) %}{% endfor %}{% endfor %}";
        assert!(render(&[("a", t)], &items(&[])).is_ok());
        let many: Vec<(String, &str)> = (0..20).map(|i| (format!("k{i}"), t)).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, t)| (k.as_str(), *t)).collect();
        assert!(matches!(
            render(&many, &items(&[])),
            Err(TemplateError::OutOfFuel { .. })
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
}
