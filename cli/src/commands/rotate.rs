//! `coffer rotate`: a new key, then every value of a repository
//! re-encrypted to it in place by the controller (through the API server's
//! service proxy), so no plaintext leaves the cluster.
//!
//! It plans before it acts. Each file's other clusters come from its
//! `.coffer.yaml` rule (and `-r`); the cluster's key ring says which values
//! are this cluster's; and the controller re-encrypts every value once to
//! the current key before any new key is requested. A run that would stop
//! halfway therefore stops before it creates anything, and `--dry-run`
//! makes exactly the same checks, so it says what the run will do.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use coffer_core::SealedSecret;
use coffer_core::api::ring::{KEY_ID_LABEL, KEY_STATE_LABEL};
use coffer_format::{KeyId, PublicKey, envelope};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};

use coffer_cli::cluster::{Target, parse_recipients};
use coffer_cli::documents::{Chunk, chunks_of, is_sealed, read_sealed, split_yaml};
use coffer_cli::error::{Failure, Result};
use coffer_cli::io::{Input, read_file, write_atomic};
use coffer_cli::rules::Rules;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  coffer rotate k8s/                       # new key, then re-encrypt every SealedSecret under k8s/
  coffer rotate --dry-run k8s/             # show what would change
  coffer rotate --no-new-key k8s/          # only re-encrypt to the current active key
  coffer rotate -r other-cluster.txt k8s/  # keep values that also open in another cluster")]
pub struct RotateArgs {
    /// Files or directories (searched for *.yaml, *.yml, *.json); the current directory when none.
    pub paths: Vec<PathBuf>,
    /// Make every check of a real run and show what it would change; write nothing and request no key.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not request a new key; re-encrypt to the active one.
    #[arg(long)]
    pub no_new_key: bool,
    /// Recipients of other clusters some values are also sealed to (besides those the file's .coffer.yaml rule names): they are kept.
    #[arg(long = "recipients", short = 'r', value_name = "FILE")]
    pub recipients: Vec<PathBuf>,
    /// How long to wait for the new key to become active.
    #[arg(long, default_value = "120s", value_parser = super::seal::parse_period)]
    pub timeout: Duration,
}

/// Lists (`kind: List`, `SealedSecretList`) holding SealedSecrets are not rewritten in place
/// (their items have no text of their own to keep); refuse before anything
/// changes, so the summary of key ids still referenced is never wrong.
fn refuse_lists(files: &[PathBuf]) -> Result<()> {
    for f in files {
        let input = read_file(f)?;
        if let Ok(docs) = read_sealed(std::slice::from_ref(&input), true) {
            let listed = split_yaml(&input.text).iter().any(|(_, c)| {
                let v: Option<serde_json::Value> = serde_saphyr::from_str(&c.body).ok();
                v.is_some_and(|v| coffer_cli::documents::is_list(&v))
            });
            if listed && !docs.is_empty() {
                return Err(Failure::input(format!(
                    "{}: holds SealedSecrets inside a list (kind: List or SealedSecretList), which rotate does not rewrite",
                    input.name
                ))
                .hint("split the List into one document per SealedSecret (separated by ---), then run rotate again"));
            }
        }
    }
    Ok(())
}

fn active_key_id(text: &str) -> Result<KeyId> {
    let f = parse_recipients("the cluster's recipients file", text)?;
    // parse_recipients refuses a file without entries.
    f.entries
        .first()
        .map(|e| e.key.id())
        .ok_or_else(|| Failure::cluster("the cluster's recipients file lists no key"))
}

/// The keys the cluster holds, by the short id of their Secret's label,
/// with whether each is retired. Read from the key Secrets' metadata only
/// (no private key is fetched); listing them is a key admin's right.
async fn held_keys(target: &Target) -> Result<BTreeMap<String, bool>> {
    let client = target.client().await?;
    let api: Api<Secret> = Api::namespaced(client, &target.controller_namespace);
    let list = api
        .list_metadata(&ListParams::default().labels(KEY_ID_LABEL))
        .await
        .map_err(|e| {
            let forbidden = matches!(&e, kube::Error::Api(s) if s.code == 403);
            let f = Failure::from(e);
            if forbidden {
                f.hint(format!(
                    "rotate reads which keys the cluster holds from the key Secrets in namespace {}: it needs a key admin (docs/operations.md, \"Who may manage keys\")",
                    target.controller_namespace
                ))
            } else {
                f
            }
        })?;
    Ok(list
        .items
        .iter()
        .filter_map(|s| {
            let labels = s.metadata.labels.as_ref()?;
            let id = labels.get(KEY_ID_LABEL)?.clone();
            let retired = labels.get(KEY_STATE_LABEL).is_some_and(|v| v == "retired");
            Some((id, retired))
        })
        .collect())
}

/// A recipients file with its keys, as named (`-r FILE`, or as written in
/// a rule).
struct Named {
    name: String,
    keys: Vec<PublicKey>,
}

fn read_named(name: String, path: &Path) -> Result<Named> {
    let input = read_file(path)?;
    Ok(Named {
        keys: parse_recipients(&input.name, &input.text)?.keys(),
        name,
    })
}

/// The other clusters one file's values may also be sealed to: every `-r`
/// file and the recipients files of the file's `.coffer.yaml` rule.
struct Others {
    files: Vec<Rc<Named>>,
    /// The rule, as "rule N (\"glob\") of PATH", when one matched.
    rule: Option<String>,
}

impl Others {
    fn find(&self, id: &KeyId) -> Option<&PublicKey> {
        self.files
            .iter()
            .flat_map(|f| f.keys.iter())
            .find(|k| k.id() == *id)
    }

    fn named(&self) -> String {
        if self.files.is_empty() {
            "none".into()
        } else {
            self.files
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        }
    }
}

/// What rotate does with one SealedSecret.
enum Step {
    /// Every value is sealed to the key it would be re-encrypted to.
    Current,
    /// Re-encrypted: these items, with these other clusters' recipients.
    Reencrypt {
        items: Vec<String>,
        extra: Vec<String>,
    },
}

struct DocPlan {
    /// Which chunk of the file.
    chunk: usize,
    label: String,
    sealed: SealedSecret,
    step: Step,
}

struct FilePlan {
    path: PathBuf,
    input: Input,
    json: bool,
    chunks: Vec<(String, Chunk)>,
    docs: Vec<DocPlan>,
}

/// The plan of the whole run, made before anything is requested.
struct Plan {
    files: Vec<FilePlan>,
    /// SealedSecrets sealed to no key of this cluster: left as they are.
    foreign: Vec<String>,
    /// Recipients files of rules that list only keys of this cluster: the
    /// cluster's own, refreshed when they differ from what it publishes.
    own_files: BTreeSet<PathBuf>,
}

pub async fn run(args: RotateArgs, target: &Target) -> Result<()> {
    let files = coffer_cli::io::files_under(&args.paths)?;
    refuse_lists(&files)?;
    let mut given = Vec::new();
    for f in &args.recipients {
        given.push(Rc::new(read_named(format!("-r {}", f.display()), f)?));
    }
    let before = active_key_id(&target.recipients_text().await?)?;
    let held = held_keys(target).await?;
    // With a new key every value of this cluster is re-encrypted; the
    // plan is checked against the current key, which the new one replaces.
    let new_key = !args.no_new_key;
    let plan = plan(&files, &given, &held, &before, new_key)?;

    // The controller re-encrypts every value once, to the current key,
    // before any key is requested: a value it would refuse stops the run
    // here, with nothing created and nothing written.
    let client = match &target.controller_url {
        Some(_) => None,
        None => Some(target.client().await?),
    };
    let mut answers: BTreeMap<(usize, usize), SealedSecret> = BTreeMap::new();
    let mut refusals = Vec::new();
    let bar = progress(plan.files.iter().map(|f| f.docs.len()).sum(), "checked");
    for (fi, f) in plan.files.iter().enumerate() {
        for (di, d) in f.docs.iter().enumerate() {
            if let Step::Reencrypt { extra, .. } = &d.step {
                match reencrypt(target, client.as_ref(), &d.label, &d.sealed, extra).await? {
                    Ok(s) => {
                        answers.insert((fi, di), s);
                    }
                    Err(why) => refusals.push(why),
                }
            }
            if let Some(b) = &bar {
                b.inc(1);
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if !refusals.is_empty() {
        return Err(stop_before_acting(
            &refusals,
            Failure::cluster(format!(
                "the controller refused to re-encrypt {} SealedSecret(s) (above); nothing was written and no key was requested",
                refusals.len()
            ))
            .hint("a value that does not open here (wrong place, retired key, altered) must be re-sealed from its plaintext with `coffer seal --merge-into FILE`"),
        ));
    }

    for f in &plan.files {
        for d in &f.docs {
            if let Step::Reencrypt { items, .. } = &d.step
                && args.dry_run
            {
                println!("{}: would re-encrypt {} value(s)", d.label, items.len());
            }
        }
    }
    for label in &plan.foreign {
        println!("{label}: sealed to no key of this cluster; left as it is");
    }

    let to_write = plan
        .files
        .iter()
        .filter(|f| {
            f.docs
                .iter()
                .any(|d| matches!(d.step, Step::Reencrypt { .. }))
        })
        .count();
    let values: usize = plan
        .files
        .iter()
        .flat_map(|f| &f.docs)
        .map(|d| match &d.step {
            Step::Reencrypt { items, .. } => items.len(),
            Step::Current => 0,
        })
        .sum();

    if args.dry_run {
        let to = if new_key {
            "a new key".to_string()
        } else {
            format!("key {}", before.short())
        };
        for p in &plan.own_files {
            println!(
                "would refresh {} (this cluster's recipients file, named by .coffer.yaml)",
                p.display()
            );
        }
        println!(
            "would change {to_write} of {} file(s); {values} value(s) re-encrypted to {to}",
            files.len()
        );
        summary(&plan, &answers, &held, None, true);
        return Ok(());
    }

    let active = if new_key {
        let old = super::keys::request_rotation(target, &before).await?;
        eprintln!(
            "requested a new key to replace {}; waiting for it to become active",
            old.short()
        );
        let deadline = tokio::time::Instant::now() + args.timeout;
        let now = loop {
            let now = active_key_id(&target.recipients_text().await?)?;
            if now != old {
                eprintln!("new active key: {}", now.short());
                break now;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Failure::cluster(format!(
                    "the controller did not publish a new key within {}; nothing was written",
                    humantime::format_duration(args.timeout)
                ))
                .hint("check the controller's logs and that it runs as leader; once a new key is active, `coffer rotate --no-new-key` re-encrypts to it without asking for another"));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        // Sealed to the new key now: the answers for the old one are dropped.
        answers.clear();
        now
    } else {
        before
    };

    let bar = progress(to_write, "files");
    let (mut changed, mut done_values) = (0usize, 0usize);
    // What each re-encrypted SealedSecret became, for the summary.
    let mut after: BTreeMap<(usize, usize), SealedSecret> = BTreeMap::new();
    for (fi, f) in plan.files.iter().enumerate() {
        let mut out = String::new();
        let mut file_changed = false;
        for (ci, (sep, c)) in f.chunks.iter().enumerate() {
            out.push_str(sep);
            out.push_str(&c.prefix);
            let planned = f.docs.iter().enumerate().find(|(_, d)| d.chunk == ci);
            let Some((di, d)) = planned else {
                out.push_str(&c.body);
                out.push_str(&c.suffix);
                continue;
            };
            let Step::Reencrypt { items, extra } = &d.step else {
                out.push_str(&c.body);
                out.push_str(&c.suffix);
                continue;
            };
            let reply = match answers.remove(&(fi, di)) {
                Some(r) => r,
                None => match reencrypt(target, client.as_ref(), &d.label, &d.sealed, extra).await?
                {
                    Ok(r) => r,
                    Err(why) => {
                        return Err(Failure::cluster(format!(
                            "{why}\n{changed} of {to_write} file(s) were re-encrypted to key {} before this one; this file was not written",
                            active.short()
                        ))
                        .hint("fix it, then finish with `coffer rotate --no-new-key` on the same paths: it re-encrypts only what is not sealed to the active key, and asks for no other key"));
                    }
                },
            };
            let mut updated = d.sealed.clone();
            for k in items {
                if let Some(v) = reply.spec.encrypted_data.get(k) {
                    updated.spec.encrypted_data.insert(k.clone(), v.clone());
                    done_values += 1;
                }
            }
            let format = if f.json {
                coffer_cli::io::Format::Json
            } else {
                coffer_cli::io::Format::Yaml
            };
            out.push_str(&coffer_cli::io::render(std::slice::from_ref(&updated), format)?);
            out.push_str(&c.suffix);
            after.insert((fi, di), updated);
            file_changed = true;
        }
        if file_changed {
            write_atomic(&f.path, out.as_bytes(), false)?;
            changed += 1;
            match &bar {
                Some(b) => b.inc(1),
                None => eprintln!("re-encrypted {}", f.input.name),
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let published = target.recipients_text().await?;
    for p in &plan.own_files {
        let current = std::fs::read_to_string(p).unwrap_or_default();
        if current != published {
            write_atomic(p, published.as_bytes(), false)?;
            println!(
                "refreshed {} (this cluster's recipients file, named by .coffer.yaml)",
                p.display()
            );
        }
    }
    println!(
        "changed {changed} of {} file(s); {done_values} value(s) re-encrypted to key {}",
        files.len(),
        active.short()
    );
    summary(&plan, &after, &held, Some(&active), false);
    Ok(())
}

/// A progress bar on a terminal, else nothing.
fn progress(len: usize, what: &str) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() || len == 0 {
        return None;
    }
    let b = indicatif::ProgressBar::new(len as u64);
    b.set_style(
        indicatif::ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {what}"))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(b)
}

/// Decides, offline, what happens to every SealedSecret under the paths:
/// whether it is this cluster's, which values are re-encrypted, and which
/// other clusters' recipients each needs. Every value the controller could
/// not re-seal for lack of a recipient is reported here, all at once,
/// before the cluster is asked anything.
fn plan(
    files: &[PathBuf],
    given: &[Rc<Named>],
    held: &BTreeMap<String, bool>,
    active: &KeyId,
    new_key: bool,
) -> Result<Plan> {
    let mine = |id: &KeyId| held.contains_key(&id.short());
    let mut rules_of: BTreeMap<PathBuf, Option<Rc<Rules>>> = BTreeMap::new();
    let mut rule_files: BTreeMap<PathBuf, Rc<Named>> = BTreeMap::new();
    let mut out = Plan {
        files: Vec::new(),
        foreign: Vec::new(),
        own_files: BTreeSet::new(),
    };
    let mut problems = Vec::new();
    for path in files {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let rules = match rules_of.get(&dir) {
            Some(r) => r.clone(),
            None => {
                let r = Rules::find(path)?.map(Rc::new);
                rules_of.insert(dir, r.clone());
                r
            }
        };
        let mut others = Others {
            files: given.to_vec(),
            rule: None,
        };
        if let Some(rules) = &rules
            && let Some(rule) = rules.for_path(path)
        {
            others.rule = Some(format!(
                "rule {:?} of {}",
                rule.path,
                rules.root.join(coffer_cli::rules::FILE).display()
            ));
            for (written, p) in rule.recipients.iter().zip(rules.recipients_paths(rule)?) {
                let named = match rule_files.get(&p) {
                    Some(n) => n.clone(),
                    None => {
                        let n = Rc::new(read_named(written.clone(), &p)?);
                        if !n.keys.is_empty() && n.keys.iter().all(|k| mine(&k.id())) {
                            out.own_files.insert(p.clone());
                        }
                        rule_files.insert(p.clone(), n.clone());
                        n
                    }
                };
                others.files.push(named);
            }
        }
        let input = read_file(path)?;
        let (json, chunks) = chunks_of(&input.text);
        let mut docs = Vec::new();
        for (i, (_, c)) in chunks.iter().enumerate() {
            if c.body.trim().is_empty() || !is_sealed(&c.body) {
                continue;
            }
            let label = format!("{}: document {}", input.name, i + 1);
            let sealed = coffer_cli::documents::read_one(&label, &c.body)?;
            let mut ours = 0;
            let mut items = Vec::new();
            let mut needed: BTreeSet<KeyId> = BTreeSet::new();
            for (key, value) in &sealed.spec.encrypted_data {
                let ids = match envelope::inspect(value) {
                    Ok((e, _)) => e.key_ids,
                    Err(e) => {
                        problems.push(format!("{label}: item {key:?} is not a sealed value: {e}"));
                        continue;
                    }
                };
                if !ids.iter().any(&mine) {
                    continue;
                }
                ours += 1;
                if new_key || !ids.contains(active) {
                    items.push(key.clone());
                    for id in ids.iter().filter(|k| !mine(k)) {
                        needed.insert(*id);
                    }
                }
            }
            if ours == 0 && !sealed.spec.encrypted_data.is_empty() {
                out.foreign.push(label);
                continue;
            }
            if ours < sealed.spec.encrypted_data.len() {
                problems.push(format!(
                    "{label}: {} of its {} item(s) are sealed to no key of this cluster; the controller re-encrypts a SealedSecret whole",
                    sealed.spec.encrypted_data.len() - ours,
                    sealed.spec.encrypted_data.len()
                ));
                continue;
            }
            let mut extra = Vec::new();
            for id in &needed {
                match others.find(id) {
                    Some(k) => extra.push(k.to_string()),
                    None => problems.push(format!(
                        "{label}: also sealed to key {id}, which this cluster does not hold and no recipients file given names (looked in: {}{})",
                        others.named(),
                        others
                            .rule
                            .as_ref()
                            .map(|r| format!(", from {r}"))
                            .unwrap_or_else(|| ", no .coffer.yaml rule matches".into())
                    )),
                }
            }
            let step = if items.is_empty() {
                Step::Current
            } else {
                Step::Reencrypt { items, extra }
            };
            docs.push(DocPlan {
                chunk: i,
                label,
                sealed,
                step,
            });
        }
        out.files.push(FilePlan {
            path: path.clone(),
            input,
            json,
            chunks,
            docs,
        });
    }
    if !problems.is_empty() {
        return Err(stop_before_acting(
            &problems,
            Failure::input(format!(
                "{} SealedSecret(s) cannot be re-encrypted as they are (above); nothing was written and no key was requested",
                problems.len()
            ))
            .hint("name every other cluster a value is sealed to: add its recipients file to the value's rule in .coffer.yaml, or pass it with -r FILE"),
        ));
    }
    Ok(out)
}

/// Prints every reason the run cannot go on, one a line, and returns the
/// failure that stops it before anything was requested or written.
fn stop_before_acting(reasons: &[String], failure: Failure) -> Failure {
    for r in reasons {
        eprintln!("{r}");
    }
    failure
}

/// One SealedSecret re-encrypted by the controller, or why it refused
/// (the file and document, the HTTP status and the controller's reason).
async fn reencrypt(
    target: &Target,
    client: Option<&kube::Client>,
    label: &str,
    sealed: &SealedSecret,
    extra: &[String],
) -> Result<std::result::Result<SealedSecret, String>> {
    let body = serde_json::to_vec(
        &serde_json::json!({"sealedSecret": sealed, "additionalRecipients": extra}),
    )
    .map_err(|e| Failure::new(1, e.to_string()))?;
    let (code, text) = target
        .post_with_retry(client, "/v1/reencrypt", body)
        .await?;
    if code != 200 {
        return Ok(Err(format!(
            "{label}: the controller refused to re-encrypt (HTTP {code}): {}",
            text.trim()
        )));
    }
    Ok(Ok(coffer_cli::cluster::sealed_reply(label, &text)?))
}

/// Which of this cluster's keys the values under the paths still need,
/// and what that means for retiring them. It speaks of the paths given
/// only: other files, branches and live SealedSecrets may need a key too,
/// which `coffer keys retire` asks the controller about.
fn summary(
    plan: &Plan,
    docs: &BTreeMap<(usize, usize), SealedSecret>,
    held: &BTreeMap<String, bool>,
    active: Option<&KeyId>,
    dry_run: bool,
) {
    let mut referenced: BTreeMap<KeyId, usize> = BTreeMap::new();
    for (fi, f) in plan.files.iter().enumerate() {
        for (di, d) in f.docs.iter().enumerate() {
            let s = if dry_run {
                &d.sealed
            } else {
                docs.get(&(fi, di)).unwrap_or(&d.sealed)
            };
            count_ids(s, &mut referenced);
        }
    }
    if referenced.is_empty() {
        println!("no SealedSecret of this cluster found");
        return;
    }
    if dry_run {
        return;
    }
    println!("key ids referenced under the paths given:");
    for (k, n) in &referenced {
        let note = if Some(k) == active {
            "  (active)"
        } else if held.contains_key(&k.short()) {
            "  (this cluster)"
        } else {
            ""
        };
        println!("  {k}  {n} value(s){note}");
    }
    let older: Vec<&String> = held
        .iter()
        .filter(|(id, retired)| !**retired && active.is_none_or(|a| a.short() != **id))
        .map(|(id, _)| id)
        .collect();
    let still: Vec<&String> = older
        .iter()
        .copied()
        .filter(|id| referenced.keys().any(|k| k.short() == **id))
        .collect();
    if older.is_empty() {
    } else if still.is_empty() {
        println!(
            "no value under the paths given needs this cluster's older key(s) {}; apply or sync these files and wait until they are Ready, then `coffer keys retire ID` (it refuses while live SealedSecrets still need the key)",
            older
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    } else {
        println!(
            "values under the paths given still need this cluster's older key(s) {}: do not retire them yet",
            still
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

fn count_ids(s: &SealedSecret, into: &mut BTreeMap<coffer_format::KeyId, usize>) {
    for v in s.spec.encrypted_data.values() {
        if let Ok((e, _)) = envelope::inspect(v) {
            for k in e.key_ids {
                *into.entry(k).or_default() += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_split_keeps_separators_and_comments() {
        let text = "# top\na: 1\n# after a\n---\n# before b\nb: 2\n";
        let parts = split_yaml(text);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].1.prefix, "# top\n");
        assert_eq!(parts[0].1.body, "a: 1\n");
        assert_eq!(parts[0].1.suffix, "# after a\n");
        assert_eq!(parts[1].0, "---\n");
        assert_eq!(parts[1].1.prefix, "# before b\n");
        let joined: String = parts
            .iter()
            .map(|(s, c)| format!("{s}{}{}{}", c.prefix, c.body, c.suffix))
            .collect();
        assert_eq!(joined, text);
    }
}
