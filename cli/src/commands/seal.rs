//! `coffer seal`: Secret manifests -> SealedSecrets, or one raw value.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use coffer_core::SealedSecret;
use coffer_core::manifest::read_secrets;
use coffer_core::transform::{SealSecretError, merge_into, seal_secret};
use coffer_format::{Location, PublicKey, RecipientsFile, Scope};
use zeroize::Zeroizing;

use coffer_cli::cluster::{Target, parse_recipients};
use coffer_cli::error::{Failure, Result};
use coffer_cli::io::{Format, emit, read_file, read_inputs, read_stdin, render, write_atomic};
use coffer_cli::rules::Rules;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  coffer seal --recipients recipients.txt secret.yaml -w sealed.yaml
  kubectl create secret generic db --from-literal=password=s3cret --dry-run=client -o yaml \\
    | coffer seal --recipients prod.txt --recipients staging.txt
  coffer seal --recipients recipients.txt --merge-into sealed.yaml new-password.yaml
  printf 's3cret' | coffer seal --raw --recipients recipients.txt -n shop --name db --key password")]
pub(crate) struct SealArgs {
    /// Secret manifests (YAML, several documents, JSON, kind List); stdin when none or `-`.
    pub(crate) files: Vec<PathBuf>,
    /// Recipients file, `-` for stdin, an `https://` URL, or an `age1…` recipient itself (repeat for several clusters: the value opens in each). Fetched from the cluster when unset.
    #[arg(long = "recipients", short = 'r', value_name = "FILE|-|URL|age1…")]
    pub(crate) recipients: Vec<PathBuf>,
    /// Where the value may be opened: strict (this namespace and name), namespace (any name in it), cluster (anywhere) [default: the .coffer.yaml rule's; with --merge-into, the file's; else strict].
    #[arg(long, value_parser = parse_scope)]
    pub(crate) scope: Option<Scope>,
    /// Write here (atomically) instead of stdout.
    #[arg(short = 'w', long = "output", value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Re-seal only the given items into this SealedSecret file, keeping every other ciphertext byte for byte.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["raw", "output"])]
    pub(crate) merge_into: Option<PathBuf>,
    /// Seal one value (from --from-file or stdin) and print bare base64.
    #[arg(long, requires = "key")]
    pub(crate) raw: bool,
    /// With --raw: the SealedSecret name (needed by --scope strict).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// With --raw: the item key.
    #[arg(long)]
    pub(crate) key: Option<String>,
    /// With --raw: read the value from this file instead of stdin.
    #[arg(long, value_name = "FILE", requires = "raw")]
    pub(crate) from_file: Option<PathBuf>,
    /// Namespace of the Secrets (default: the manifest's, then the context's, then `default`).
    #[arg(short = 'n', long)]
    pub(crate) namespace: Option<String>,
    /// Output format [default: yaml].
    #[arg(short = 'o', long = "format", value_enum)]
    pub(crate) format: Option<Format>,
    /// Warn when the newest key in a recipients file is older than this.
    #[arg(long, env = "COFFER_KEY_RENEWAL_PERIOD", default_value = "720h", value_parser = parse_period)]
    pub(crate) renewal_period: Duration,
}

impl SealArgs {
    /// The scope: `--scope`, else the `.coffer.yaml` rule's (filled in by
    /// [`apply_rules`]), else strict.
    fn scope(&self) -> Scope {
        self.scope.unwrap_or(Scope::Strict)
    }
}

/// Where the scope used comes from: `--scope`, a `.coffer.yaml` rule, or
/// neither (strict, or with `--merge-into` the file's own scope).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ScopeFrom {
    Flag,
    Rule,
    Default,
}

impl ScopeFrom {
    fn of(args: &SealArgs, rule_gave: bool) -> Self {
        match (args.scope.is_some(), rule_gave) {
            (true, _) => ScopeFrom::Flag,
            (false, true) => ScopeFrom::Rule,
            (false, false) => ScopeFrom::Default,
        }
    }
}

/// The `.coffer.yaml` rule matching the file written (`-w` or
/// `--merge-into`), applied, and said on stderr in every case where it
/// could surprise (docs/decisions.md, "Day-2 edges"):
///
/// - a rule matches, no `-r`: its recipients, and its scope unless it has
///   none; the note names both and where the scope comes from. `--scope`
///   contradicting the rule's scope is refused (exit 2): the file would
///   fail `coffer check` as soon as it is written. `-r` is the one way
///   around a rule.
/// - a rule matches and `-r` is given: `-r` and `--scope` (else strict)
///   win, and the note says the rule was overridden.
/// - rules exist but none matches, no `-r`: the note says so and names
///   the cluster whose published recipients are used.
fn apply_rules(args: &mut SealArgs, target: &Target) -> Result<ScopeFrom> {
    let Some(written) = args
        .output
        .as_ref()
        .or(args.merge_into.as_ref())
        .filter(|p| p.as_os_str() != "-")
        .cloned()
    else {
        return Ok(ScopeFrom::of(args, false));
    };
    // With -r the rules are bypassed altogether: one that cannot be used
    // (refused, unreadable) is no error then, only nothing to note.
    let rules = match Rules::find(&written) {
        Ok(r) => r,
        Err(_) if !args.recipients.is_empty() => None,
        Err(e) => return Err(e),
    };
    let Some(rules) = rules else {
        return Ok(ScopeFrom::of(args, false));
    };
    let file = rules.root.join(coffer_cli::rules::FILE);
    let Some(rule) = rules.for_path(&written) else {
        if args.recipients.is_empty() {
            eprintln!(
                "note: {}: no rule of {} matches it; sealing to the recipients published by {}",
                written.display(),
                file.display(),
                target.describe()
            );
        }
        return Ok(ScopeFrom::of(args, false));
    };
    let rule_scope = rule
        .scope
        .map(|s| format!(", scope {s}"))
        .unwrap_or_default();
    if !args.recipients.is_empty() {
        let (scope, from) = match args.scope {
            Some(s) => (s, "--scope"),
            None => (Scope::Strict, "the default"),
        };
        let against = match rule.scope {
            Some(r) if r != scope => format!(", not the rule's {r}"),
            _ => String::new(),
        };
        eprintln!(
            "note: {}: -r overrides rule {:?} of {} (recipients {}{rule_scope}): sealing to the -r recipients, \
             scope {scope} ({from}{against}); `coffer check` will report what differs from the rule",
            written.display(),
            rule.path,
            file.display(),
            rule.recipients.join(", "),
        );
        return Ok(ScopeFrom::of(args, false));
    }
    if let (Some(given), Some(ruled)) = (args.scope, rule.scope)
        && given != ruled
    {
        return Err(Failure::usage(format!(
            "{}: --scope {given} contradicts rule {:?} of {}, which says scope {ruled}; \
             `coffer check` would report the file as soon as it is written",
            written.display(),
            rule.path,
            file.display()
        ))
        .hint(format!(
            "drop --scope to seal with scope {ruled}, change the rule's scope, \
             or pass the recipients with -r to seal outside the rule"
        )));
    }
    args.recipients = rules.recipients_paths(rule)?;
    let from = ScopeFrom::of(args, rule.scope.is_some());
    if args.scope.is_none() {
        args.scope = rule.scope;
    }
    let scope = match from {
        ScopeFrom::Rule => format!("scope {} from", args.scope()),
        ScopeFrom::Flag => format!("scope {} (--scope), agreeing with", args.scope()),
        ScopeFrom::Default if args.merge_into.is_some() => {
            "the file's scope (the rule names none), from".to_string()
        }
        ScopeFrom::Default => "scope strict (the rule names none), from".to_string(),
    };
    eprintln!(
        "note: {}: recipients {}, {scope} rule {:?} of {}",
        written.display(),
        rule.recipients.join(", "),
        rule.path,
        file.display()
    );
    Ok(from)
}

/// The namespace used when the manifest, `-n` and the kubeconfig context
/// name none, as kubectl does.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";

fn parse_scope(s: &str) -> std::result::Result<Scope, String> {
    s.parse()
}

pub(crate) fn parse_period(s: &str) -> std::result::Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 720h: {e}"))
}

/// Resolves the recipients: every `--recipients` file, or the cluster's.
pub(crate) async fn recipients(
    files: &[PathBuf],
    target: &Target,
    period: Duration,
) -> Result<Vec<PublicKey>> {
    let mut keys: Vec<PublicKey> = Vec::new();
    let mut add = |name: &str, file: RecipientsFile| {
        warn_if_stale(name, &file, period);
        for k in file.keys() {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    };
    if files.is_empty() {
        let text = target.recipients_text().await?;
        add(
            "the cluster's recipients file",
            parse_recipients("the cluster's recipients file", &text)?,
        );
    } else {
        for f in files {
            let given = f.to_string_lossy();
            let input = if f.as_os_str() == "-" {
                read_stdin()?
            } else if given.starts_with("http://") {
                return Err(Failure::usage(format!(
                    "-r {given}: recipients are fetched over https only, so they cannot be swapped in transit"
                )));
            } else if given.starts_with("https://") {
                let url = given.to_string();
                let text = tokio::task::spawn_blocking({
                    let url = url.clone();
                    move || coffer_cli::cluster::fetch_recipients(&url)
                })
                .await
                .map_err(|e| Failure::new(1, e.to_string()))??;
                coffer_cli::io::Input {
                    name: url,
                    text: Zeroizing::new(text),
                }
            } else if given.starts_with("age1") && !f.exists() {
                // A recipient given literally, as `age -r` takes it.
                let name = format!("-r {given}");
                let file = parse_recipients(&name, &given).map_err(|e| {
                    Failure::input(e.message)
                        .hint("give an age1… recipient, a recipients file, or - for stdin")
                })?;
                add(&name, file);
                continue;
            } else {
                read_file(f)?
            };
            add(&input.name, parse_recipients(&input.name, &input.text)?);
        }
    }
    warn_if_mixed(&keys);
    Ok(keys)
}

/// Values sealed to X25519 and post-quantum recipients at once are allowed
/// (a cluster not moved yet), but the file key sits in every stanza: such a
/// value is only as strong as X25519, so it says so.
fn warn_if_mixed(keys: &[PublicKey]) {
    let pq = keys.iter().filter(|k| k.kind().is_post_quantum()).count();
    if pq > 0 && pq < keys.len() {
        eprintln!(
            "warning: sealing to {pq} post-quantum (mlkem768x25519) and {} X25519 recipient(s): \
             these values are not protected against a quantum computer, since breaking X25519 \
             opens them; move every cluster to mlkem768x25519 keys to get that protection",
            keys.len() - pq
        );
    }
}

fn warn_if_stale(name: &str, file: &RecipientsFile, period: Duration) {
    let Some(newest) = file.newest() else { return };
    if period.is_zero() {
        return;
    }
    let age = jiff::Timestamp::now().duration_since(newest);
    if age.as_secs() > 0 && age.unsigned_abs() > period {
        eprintln!(
            "warning: {name}: its newest key was created {} ago, longer than the renewal period ({}); \
             fetch a fresh one with `coffer recipients -w FILE`",
            human_duration(age.unsigned_abs()),
            human_duration(period)
        );
    }
}

/// A duration in its largest whole unit, for people: "45 seconds",
/// "1 minute", "3 hours", "30 days". Never "0 days".
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = match secs {
        0..60 => (secs, "second"),
        60..3_600 => (secs / 60, "minute"),
        3_600..86_400 => (secs / 3_600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

pub(crate) async fn run(
    mut args: SealArgs,
    target: &Target,
    namespace: Option<String>,
    format: Format,
) -> Result<()> {
    let scope_from = apply_rules(&mut args, target)?;
    if args.recipients.iter().any(|r| r.as_os_str() == "-") {
        let stdin_taken = if args.raw {
            args.from_file.is_none().then_some("the --raw value")
        } else {
            (args.files.is_empty() || args.files.iter().any(|f| f.as_os_str() == "-"))
                .then_some("the Secret manifest")
        };
        if let Some(what) = stdin_taken {
            return Err(Failure::usage(format!(
                "-r - reads recipients from stdin, but {what} is read from stdin too"
            ))
            .hint("give the manifest as a file (or the --raw value with --from-file), or the recipients as a file"));
        }
    }
    if args.raw {
        return raw(&args, target, namespace).await;
    }
    if args.name.is_some() || args.key.is_some() {
        return Err(Failure::usage(
            "--name and --key are only for --raw; a manifest names its Secret and items",
        ));
    }
    let inputs = read_inputs(&args.files)?;
    // Parse everything before fetching keys: a typo fails fast and offline.
    let mut manifests = Vec::new();
    for input in &inputs {
        let secrets = read_secrets(&input.text).map_err(|e| {
            Failure::input(format!("{}: {e}", input.name)).hint("give Secret manifests, e.g. from `kubectl create secret … --dry-run=client -o yaml`")
        })?;
        for s in secrets {
            if s.data.is_empty() {
                let name = s.metadata.name.clone().unwrap_or_default();
                return Err(Failure::input(format!(
                    "{}: document {} ({name}): the Secret has no data or stringData; there is nothing to seal",
                    input.name, s.index
                )));
            }
            manifests.push((input.name.clone(), s));
        }
    }
    let (mut ns, explicit) = match namespace {
        Some(n) => (Some(n), true),
        None => (target.context_namespace(), false),
    };
    // Last, as kubectl and kubeseal do: `default`, said once on stderr.
    if ns.is_none() {
        ns = Some(DEFAULT_NAMESPACE.to_string());
        if manifests
            .iter()
            .any(|(_, m)| m.metadata.namespace.is_none())
        {
            eprintln!(
                "note: no namespace in the manifest, -n or the kubeconfig context; using namespace \"{DEFAULT_NAMESPACE}\""
            );
        }
    }
    // --merge-into: the file is read, and the scope settled, before any
    // key is fetched.
    let existing = match &args.merge_into {
        Some(path) => {
            if manifests.len() != 1 {
                return Err(Failure::usage(format!(
                    "--merge-into takes exactly one Secret, got {}",
                    manifests.len()
                )));
            }
            let input = read_file(path)?;
            let existing: SealedSecret = coffer_cli::documents::read_one(&input.name, &input.text)?;
            merge_scope(
                &mut args,
                scope_from,
                &input.name,
                &existing,
                &manifests[0].1,
            )?;
            Some((input, existing))
        }
        None => None,
    };
    let keys = recipients(&args.recipients, target, args.renewal_period).await?;
    let mut sealed = Vec::new();
    for (file, m) in &manifests {
        let s = seal_secret(m, ns.as_deref(), explicit, args.scope(), &keys)
            .map_err(|e| seal_failure(file, e))?;
        sealed.push(s);
    }
    if let (Some(path), Some((input, existing))) = (&args.merge_into, existing) {
        return merge(path, &input, &existing, sealed, format);
    }
    emit(args.output.as_deref(), &render(&sealed, format)?)
}

fn seal_failure(file: &str, e: SealSecretError) -> Failure {
    let hint = match &e {
        SealSecretError::NoNamespace { .. } => {
            "add metadata.namespace, pass -n NAMESPACE, or set a namespace in your kubeconfig context"
        }
        SealSecretError::NamespaceConflict { .. } => {
            "drop -n, or change metadata.namespace in the manifest"
        }
        SealSecretError::Item { .. } => "fix the name or value named above",
    };
    Failure::input(format!("{file}: {e}")).hint(hint)
}

/// The scope of the items `--merge-into` re-seals, so that one
/// SealedSecret never mixes scopes (which `inspect` and `check` report):
/// without `--scope` or a rule's scope, the scope of the file's values that
/// stay; a scope given that differs from theirs is refused. Values that
/// are all replaced leave the choice free.
fn merge_scope(
    args: &mut SealArgs,
    from: ScopeFrom,
    name: &str,
    existing: &SealedSecret,
    update: &coffer_core::manifest::SecretManifest,
) -> Result<()> {
    if existing.metadata.name != update.metadata.name {
        // Another SealedSecret: `merge` refuses it once the namespace is known.
        return Ok(());
    }
    let kept = coffer_core::transform::kept_scopes(existing, |item| update.data.contains_key(item));
    let listed = |kept: &[(Scope, Vec<&str>)]| {
        kept.iter()
            .map(|(s, items)| format!("{} with scope {s}", items.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match (&kept[..], from) {
        ([], _) => Ok(()),
        ([(theirs, _)], ScopeFrom::Default) => {
            if *theirs != args.scope() {
                eprintln!(
                    "note: {name}: its other values are sealed with scope {theirs}; sealing the given items with scope {theirs} too"
                );
            }
            args.scope = Some(*theirs);
            Ok(())
        }
        ([(theirs, _)], _) if *theirs == args.scope() => Ok(()),
        ([_], _) => {
            let given = args.scope();
            let by = if from == ScopeFrom::Flag {
                "--scope".to_string()
            } else {
                format!("the {} rule", coffer_cli::rules::FILE)
            };
            let failure = format!(
                "{name}: the values it keeps ({}) would stay as they are, but {by} seals the given items with scope {given}: \
                 one SealedSecret would mix scopes, which `coffer inspect` reports as a problem",
                listed(&kept)
            );
            Err(if from == ScopeFrom::Flag {
                Failure::usage(failure).hint(format!(
                    "drop --scope to seal with the file's scope, or give every item of the Secret to re-seal them all with scope {given}"
                ))
            } else {
                Failure::input(failure).hint(format!(
                    "the file does not follow its rule: give every item of the Secret to re-seal them all with scope {given}"
                ))
            })
        }
        (_, _) => Err(Failure::input(format!(
            "{name}: its values already mix scopes ({}), which `coffer inspect` reports as a problem; merging into it would keep them mixed",
            listed(&kept)
        ))
        .hint("give every item of the Secret to re-seal them all with one scope (--merge-into, or seal the whole Secret with -w)")),
    }
}

fn merge(
    path: &std::path::Path,
    input: &coffer_cli::io::Input,
    existing: &SealedSecret,
    sealed: Vec<SealedSecret>,
    format: Format,
) -> Result<()> {
    let update = &sealed[0];
    if existing.metadata.name != update.metadata.name
        || existing.metadata.namespace != update.metadata.namespace
    {
        return Err(Failure::input(format!(
            "{}: holds SealedSecret {}/{}, but the Secret is {}/{}",
            input.name,
            existing.metadata.namespace.as_deref().unwrap_or("?"),
            existing.metadata.name.as_deref().unwrap_or("?"),
            update.metadata.namespace.as_deref().unwrap_or("?"),
            update.metadata.name.as_deref().unwrap_or("?"),
        ))
        .hint("merge into the file of the same SealedSecret"));
    }
    let merged = merge_into(existing, update);
    let text = if input.text.trim_start().starts_with('{') {
        render(&[merged], Format::Json)?
    } else {
        render(
            &[merged],
            if format == Format::Json {
                Format::Json
            } else {
                Format::Yaml
            },
        )?
    };
    write_atomic(path, text.as_bytes(), false)
}

async fn raw(args: &SealArgs, target: &Target, namespace: Option<String>) -> Result<()> {
    let key = args.key.clone().unwrap_or_default();
    let namespace = namespace.or_else(|| target.context_namespace());
    let ns = match (args.scope(), namespace) {
        (Scope::Cluster, n) => n.unwrap_or_default(),
        (_, Some(n)) => n,
        (_, None) => {
            return Err(Failure::usage(
                "--raw with --scope strict or namespace needs -n NAMESPACE",
            ));
        }
    };
    let name = match (args.scope(), &args.name) {
        (Scope::Strict, None) => {
            return Err(Failure::usage("--raw with --scope strict needs --name"));
        }
        (_, n) => n.clone().unwrap_or_default(),
    };
    let mut value = Zeroizing::new(Vec::new());
    match &args.from_file {
        Some(p) => {
            let f = std::fs::File::open(p).map_err(|e| {
                Failure::input(format!(
                    "{}: cannot open: {}",
                    p.display(),
                    coffer_cli::io::io_reason(&e)
                ))
            })?;
            f.take(coffer_format::envelope::MAX_VALUE_LEN as u64 + 1)
                .read_to_end(&mut value)
                .map_err(|e| Failure::input(format!("{}: {e}", p.display())))?;
        }
        None => {
            use std::io::IsTerminal;
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!(
                    "Type the value to seal for item {key:?}, then press Ctrl-D \
                     (twice if not at the start of a line). A final newline is sealed too."
                );
            }
            stdin
                .take(coffer_format::envelope::MAX_VALUE_LEN as u64 + 1)
                .read_to_end(&mut value)
                .map_err(|e| Failure::input(format!("<stdin>: {e}")))?;
            if value.is_empty() {
                return Err(Failure::input(
                    "<stdin>: no value to seal: --raw reads the value from stdin and got nothing",
                )
                .hint("pipe the value in, e.g. `printf '%s' \"$VALUE\" | coffer seal --raw …`, or use --from-file FILE"));
            }
            if value.ends_with(b"\n") {
                eprintln!(
                    "warning: the value read from stdin ends with a newline, which is sealed as part of it; \
                     to leave it out, use `printf '%s' \"$VALUE\"` or `echo -n` instead of `echo`"
                );
            }
        }
    }
    let keys = recipients(&args.recipients, target, args.renewal_period).await?;
    let at = Location {
        namespace: &ns,
        name: &name,
        key: &key,
    };
    let sealed = coffer_format::seal(&value, args.scope(), at, &keys)
        .map_err(|e| Failure::input(format!("item {key:?}: {e}")))?;
    emit(args.output.as_deref(), &format!("{sealed}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_in_their_largest_whole_unit() {
        let s = Duration::from_secs;
        assert_eq!(human_duration(s(0)), "0 seconds");
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(45)), "45 seconds");
        assert_eq!(human_duration(s(60)), "1 minute");
        assert_eq!(human_duration(s(3_599)), "59 minutes");
        assert_eq!(human_duration(s(2 * 3_600 + 5)), "2 hours");
        assert_eq!(human_duration(s(86_400)), "1 day");
        assert_eq!(human_duration(s(720 * 3_600)), "30 days");
    }
}
