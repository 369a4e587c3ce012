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

use coffer_cli::cluster::{Target, parse_recipients};
use coffer_cli::documents::{Edit, InPlace, Rewrite, is_sealed, read_one};
use coffer_cli::error::{Failure, Result};
use coffer_cli::io::{files_under, read_file, write_atomic};
use coffer_cli::rules::{self, Rules};
use coffer_core::SealedSecret;
use coffer_core::api::is_sealed_secret;
use coffer_core::ring::{KEY_ID_LABEL, KEY_STATE_LABEL};
use coffer_format::{KeyId, PublicKey, envelope};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};

use super::keys::request_rotation;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  coffer rotate k8s/                       # new key, then re-encrypt every SealedSecret under k8s/
  coffer rotate --dry-run k8s/             # show what would change
  coffer rotate --no-new-key k8s/          # only re-encrypt to the current active key
  coffer rotate -r other-cluster.txt k8s/  # keep values that also open in another cluster")]
pub(crate) struct RotateArgs {
    /// Files or directories (searched for *.yaml, *.yml, *.json); the current directory when none.
    paths: Vec<PathBuf>,
    /// Make every check of a real run and show what it would change; write nothing and request no key.
    #[arg(long)]
    dry_run: bool,
    /// Do not request a new key; re-encrypt to the active one.
    #[arg(long)]
    no_new_key: bool,
    /// Recipients of other clusters some values are also sealed to (besides those the file's .coffer.yaml rule names): they are kept.
    #[arg(long = "recipients", short = 'r', value_name = "FILE")]
    recipients: Vec<PathBuf>,
    /// How long to wait for the new key to become active.
    #[arg(long, default_value = "120s", value_parser = super::seal::parse_period)]
    timeout: Duration,
}

/// What rotate rewrites: the SealedSecrets of coffer.dev. A list holding
/// one is refused before anything changes (so the summary of key ids still
/// referenced is never wrong).
const IN_PLACE: InPlace = InPlace {
    command: "rotate",
    what: "SealedSecrets",
    edits: is_sealed_secret,
};

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
    /// Which document of the file, from 0.
    index: usize,
    label: String,
    sealed: SealedSecret,
    step: Step,
}

struct FilePlan {
    file: Rewrite,
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

impl Plan {
    /// How many files have a SealedSecret to re-encrypt.
    fn to_write(&self) -> usize {
        self.files
            .iter()
            .filter(|f| {
                f.docs
                    .iter()
                    .any(|d| matches!(d.step, Step::Reencrypt { .. }))
            })
            .count()
    }

    /// How many values are re-encrypted.
    fn values(&self) -> usize {
        self.files
            .iter()
            .flat_map(|f| &f.docs)
            .map(|d| match &d.step {
                Step::Reencrypt { items, .. } => items.len(),
                Step::Current => 0,
            })
            .sum()
    }
}

/// The SealedSecrets the controller re-encrypted, by file and document of
/// the plan.
type Answers = BTreeMap<(usize, usize), SealedSecret>;

pub(crate) async fn run(args: RotateArgs, target: &Target) -> Result<()> {
    let paths = files_under(&args.paths)?;
    let files = Rewrite::read_all(&paths, &IN_PLACE)?;
    let mut given = Vec::new();
    for f in &args.recipients {
        given.push(Rc::new(read_named(format!("-r {}", f.display()), f)?));
    }
    let before = active_key_id(&target.recipients_text().await?)?;
    let held = held_keys(target).await?;
    // With a new key every value of this cluster is re-encrypted; the
    // plan is checked against the current key, which the new one replaces.
    let new_key = !args.no_new_key;
    let plan = plan(files, &given, &held, &before, new_key)?;
    let client = match &target.controller_url {
        Some(_) => None,
        None => Some(target.client().await?),
    };
    let controller = Controller {
        target,
        client: client.as_ref(),
    };
    let mut answers = controller.check(&plan).await?;
    announce(&plan, args.dry_run);
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
            "would change {} of {} file(s); {} value(s) re-encrypted to {to}",
            plan.to_write(),
            paths.len(),
            plan.values()
        );
        summary(&plan, &answers, &held, None, true);
        return Ok(());
    }
    let active = if new_key {
        let now = new_active_key(target, &before, args.timeout).await?;
        // Sealed to the new key now: the answers for the old one are dropped.
        answers.clear();
        now
    } else {
        before
    };
    let written = controller.write(&plan, answers, &active).await?;
    refresh_own_files(target, &plan).await?;
    println!(
        "changed {} of {} file(s); {} value(s) re-encrypted to key {}",
        written.files,
        paths.len(),
        written.values,
        active.short()
    );
    summary(&plan, &written.after, &held, Some(&active), false);
    Ok(())
}

/// What the plan says before anything is requested: in a dry run, what
/// would be re-encrypted; always, what is left as it is.
fn announce(plan: &Plan, dry_run: bool) {
    if dry_run {
        for d in plan.files.iter().flat_map(|f| &f.docs) {
            if let Step::Reencrypt { items, .. } = &d.step {
                println!("{}: would re-encrypt {} value(s)", d.label, items.len());
            }
        }
    }
    for label in &plan.foreign {
        println!("{label}: sealed to no key of this cluster; left as it is");
    }
}

/// Asks the controller for a new key, and waits, up to `timeout`, until
/// it publishes it as the active key; returns its id.
async fn new_active_key(target: &Target, before: &KeyId, timeout: Duration) -> Result<KeyId> {
    let old = request_rotation(target, before).await?;
    eprintln!(
        "requested a new key to replace {}; waiting for it to become active",
        old.short()
    );
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = active_key_id(&target.recipients_text().await?)?;
        if now != old {
            eprintln!("new active key: {}", now.short());
            return Ok(now);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Failure::cluster(format!(
                "the controller did not publish a new key within {}; nothing was written",
                humantime::format_duration(timeout)
            ))
            .hint("check the controller's logs and that it runs as leader; once a new key is active, `coffer rotate --no-new-key` re-encrypts to it without asking for another"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Writes this cluster's recipients files that rules name where they
/// differ from what the cluster publishes, so `coffer check` passes.
async fn refresh_own_files(target: &Target, plan: &Plan) -> Result<()> {
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
    files: Vec<Rewrite>,
    given: &[Rc<Named>],
    held: &BTreeMap<String, bool>,
    active: &KeyId,
    new_key: bool,
) -> Result<Plan> {
    let mut planner = Planner {
        given,
        held,
        active,
        new_key,
        rules_of: BTreeMap::new(),
        rule_files: BTreeMap::new(),
        problems: Vec::new(),
        plan: Plan {
            files: Vec::new(),
            foreign: Vec::new(),
            own_files: BTreeSet::new(),
        },
    };
    for file in files {
        let others = planner.others(&file.path)?;
        let mut docs = Vec::new();
        for doc in file.documents() {
            if doc.body.trim().is_empty() || !is_sealed(doc.body) {
                continue;
            }
            let sealed = read_one(&doc.label, doc.body)?;
            if let Some(step) = planner.step(&doc.label, &sealed, &others) {
                docs.push(DocPlan {
                    index: doc.index,
                    label: doc.label,
                    sealed,
                    step,
                });
            }
        }
        planner.plan.files.push(FilePlan { file, docs });
    }
    if !planner.problems.is_empty() {
        return Err(stop_before_acting(
            &planner.problems,
            Failure::input(format!(
                "{} SealedSecret(s) cannot be re-encrypted as they are (above); nothing was written and no key was requested",
                planner.problems.len()
            ))
            .hint("name every other cluster a value is sealed to: add its recipients file to the value's rule in .coffer.yaml, or pass it with -r FILE"),
        ));
    }
    Ok(planner.plan)
}

/// The plan being made, with what it read once for every file.
struct Planner<'a> {
    given: &'a [Rc<Named>],
    held: &'a BTreeMap<String, bool>,
    active: &'a KeyId,
    new_key: bool,
    /// The rules of each directory, found and parsed once.
    rules_of: BTreeMap<PathBuf, Option<Rc<Rules>>>,
    /// The recipients files rules name, read once each.
    rule_files: BTreeMap<PathBuf, Rc<Named>>,
    /// Why SealedSecrets cannot be re-encrypted as they are.
    problems: Vec<String>,
    plan: Plan,
}

impl Planner<'_> {
    /// Whether the cluster holds key `id`.
    fn mine(&self, id: &KeyId) -> bool {
        self.held.contains_key(&id.short())
    }

    /// The other clusters the values of `path` may also be sealed to.
    /// A recipients file a rule names that lists only this cluster's keys
    /// is its own: the plan refreshes it.
    fn others(&mut self, path: &Path) -> Result<Others> {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let rules = match self.rules_of.get(&dir) {
            Some(r) => r.clone(),
            None => {
                let r = Rules::find(path)?.map(Rc::new);
                self.rules_of.insert(dir, r.clone());
                r
            }
        };
        let mut others = Others {
            files: self.given.to_vec(),
            rule: None,
        };
        let Some(rules) = &rules else {
            return Ok(others);
        };
        let Some(rule) = rules.for_path(path) else {
            return Ok(others);
        };
        others.rule = Some(format!(
            "rule {:?} of {}",
            rule.path,
            rules.root.join(rules::FILE).display()
        ));
        for (written, p) in rule.recipients.iter().zip(rules.recipients_paths(rule)?) {
            let named = match self.rule_files.get(&p) {
                Some(n) => n.clone(),
                None => {
                    let n = Rc::new(read_named(written.clone(), &p)?);
                    if !n.keys.is_empty() && n.keys.iter().all(|k| self.mine(&k.id())) {
                        self.plan.own_files.insert(p.clone());
                    }
                    self.rule_files.insert(p.clone(), n.clone());
                    n
                }
            };
            others.files.push(named);
        }
        Ok(others)
    }

    /// What happens to one SealedSecret; `None` when it is left as it is
    /// (sealed to no key of this cluster) or cannot be re-encrypted whole
    /// (a problem).
    fn step(&mut self, label: &str, sealed: &SealedSecret, others: &Others) -> Option<Step> {
        let mut ours = 0;
        let mut items = Vec::new();
        let mut needed: BTreeSet<KeyId> = BTreeSet::new();
        for (key, value) in &sealed.spec.encrypted_data {
            let ids = match envelope::inspect(value) {
                Ok((e, _)) => e.key_ids,
                Err(e) => {
                    self.problems
                        .push(format!("{label}: item {key:?} is not a sealed value: {e}"));
                    continue;
                }
            };
            if !ids.iter().any(|id| self.mine(id)) {
                continue;
            }
            ours += 1;
            if self.new_key || !ids.contains(self.active) {
                items.push(key.clone());
                needed.extend(ids.iter().filter(|k| !self.mine(k)));
            }
        }
        let all = sealed.spec.encrypted_data.len();
        if ours == 0 && all > 0 {
            self.plan.foreign.push(label.to_string());
            return None;
        }
        if ours < all {
            self.problems.push(format!(
                "{label}: {} of its {all} item(s) are sealed to no key of this cluster; the controller re-encrypts a SealedSecret whole",
                all - ours,
            ));
            return None;
        }
        let extra = self.extra_recipients(label, &needed, others);
        Some(if items.is_empty() {
            Step::Current
        } else {
            Step::Reencrypt { items, extra }
        })
    }

    /// The public keys of the other clusters' keys `needed` names, as the
    /// controller takes them; a key no file names is a problem.
    fn extra_recipients(
        &mut self,
        label: &str,
        needed: &BTreeSet<KeyId>,
        others: &Others,
    ) -> Vec<String> {
        let mut extra = Vec::new();
        for id in needed {
            match others.find(id) {
                Some(k) => extra.push(k.to_string()),
                None => self.problems.push(format!(
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
        extra
    }
}

/// The controller, which re-encrypts: through the API server's service
/// proxy with `client`, or at `--controller-url`.
struct Controller<'a> {
    target: &'a Target,
    client: Option<&'a kube::Client>,
}

/// What the run wrote.
struct Written {
    files: usize,
    values: usize,
    /// What each re-encrypted SealedSecret became, for the summary.
    after: Answers,
}

impl Controller<'_> {
    /// The controller re-encrypts every value once, to the current key,
    /// before any key is requested: a value it would refuse stops the run
    /// here, with nothing created and nothing written.
    async fn check(&self, plan: &Plan) -> Result<Answers> {
        let mut answers = Answers::new();
        let mut refusals = Vec::new();
        let bar = progress(plan.files.iter().map(|f| f.docs.len()).sum(), "checked");
        for (fi, f) in plan.files.iter().enumerate() {
            for (di, d) in f.docs.iter().enumerate() {
                if let Step::Reencrypt { extra, .. } = &d.step {
                    match self.reencrypt(&d.label, &d.sealed, extra).await? {
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
        Ok(answers)
    }

    /// Rewrites every file of the plan with a SealedSecret to re-encrypt,
    /// each value re-encrypted to `active`: from `answers` when they were
    /// sealed to it, else asked again. A refusal now (the new key is
    /// already active) stops with the files before it written.
    async fn write(&self, plan: &Plan, mut answers: Answers, active: &KeyId) -> Result<Written> {
        let to_write = plan.to_write();
        let bar = progress(to_write, "files");
        let mut written = Written {
            files: 0,
            values: 0,
            after: Answers::new(),
        };
        for (fi, f) in plan.files.iter().enumerate() {
            let files_before = written.files;
            let changed = f
                .file
                .rewrite(false, async |doc| {
                    let planned = f.docs.iter().enumerate().find(|(_, d)| d.index == doc.index);
                    let Some((di, d)) = planned else {
                        return Ok(Edit::Keep);
                    };
                    let Step::Reencrypt { items, extra } = &d.step else {
                        return Ok(Edit::Keep);
                    };
                    let reply = match answers.remove(&(fi, di)) {
                        Some(r) => r,
                        None => match self.reencrypt(&d.label, &d.sealed, extra).await? {
                            Ok(r) => r,
                            Err(why) => {
                                return Err(Failure::cluster(format!(
                                    "{why}\n{files_before} of {to_write} file(s) were re-encrypted to key {} before this one; this file was not written",
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
                            written.values += 1;
                        }
                    }
                    written.after.insert((fi, di), updated.clone());
                    Ok(Edit::Replace(Box::new(updated)))
                })
                .await?;
            if changed {
                written.files += 1;
                match &bar {
                    Some(b) => b.inc(1),
                    None => eprintln!("re-encrypted {}", f.file.input.name),
                }
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        Ok(written)
    }

    /// One SealedSecret re-encrypted by the controller, or why it refused
    /// (the file and document, the HTTP status and the controller's reason).
    async fn reencrypt(
        &self,
        label: &str,
        sealed: &SealedSecret,
        extra: &[String],
    ) -> Result<std::result::Result<SealedSecret, String>> {
        let body = serde_json::to_vec(
            &serde_json::json!({"sealedSecret": sealed, "additionalRecipients": extra}),
        )
        .map_err(|e| Failure::new(1, e.to_string()))?;
        let (code, text) = self
            .target
            .post_with_retry(self.client, "/v1/reencrypt", body)
            .await?;
        if code != 200 {
            return Ok(Err(format!(
                "{label}: the controller refused to re-encrypt (HTTP {code}): {}",
                text.trim()
            )));
        }
        Ok(Ok(coffer_cli::cluster::sealed_reply(label, &text)?))
    }
}

/// Prints every reason the run cannot go on, one a line, and returns the
/// failure that stops it before anything was requested or written.
fn stop_before_acting(reasons: &[String], failure: Failure) -> Failure {
    for r in reasons {
        eprintln!("{r}");
    }
    failure
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
