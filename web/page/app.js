// Coffer's web page. Sealing is coffer-web compiled to WebAssembly: the same
// Rust functions as `coffer seal` and `coffer inspect`. This file only moves
// text between the form and those functions. It makes one kind of request
// besides loading its own files: a GET of the controller's public keys
// (../v1/recipients), when the page is served by a controller.
import init, * as coffer from "./coffer_web.js";

const $ = (id) => document.getElementById(id);
// Every recipients file in use: {name, text, keys}.
const sources = [];

function say(el, text) { el.textContent = text || ""; }

function call(fn, request) {
  // The module answers JSON, or throws an Error whose message is for people
  // and never holds a value.
  return JSON.parse(fn(JSON.stringify(request)));
}

function addSource(name, text) {
  const keys = JSON.parse(coffer.recipients(name, text));
  const known = sources.find((s) => s.text === text);
  if (known) return known;
  const source = { name, text, keys };
  sources.push(source);
  renderSources();
  return source;
}

function renderSources() {
  const list = $("recipients-list");
  list.replaceChildren();
  for (const [i, s] of sources.entries()) {
    const li = document.createElement("li");
    const clusters = [...new Set(s.keys.map((k) => k.cluster).filter(Boolean))];
    li.textContent = `${s.name}: ${s.keys.length} key(s)` +
      (clusters.length ? ` of cluster ${clusters.join(", ")}` : "") +
      ` (${s.keys.map((k) => `${k.kind} ${k.id.slice(0, 12)}…`).join(", ")}) `;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove recipients ${s.name}`);
    remove.addEventListener("click", () => { sources.splice(i, 1); renderSources(); });
    li.append(remove);
    list.append(li);
  }
  if (!sources.length) {
    const li = document.createElement("li");
    li.textContent = "None yet: add the recipients file of each cluster that must open the values.";
    list.append(li);
  }
}

async function loadControllerKeys() {
  const status = $("controller-status");
  let response;
  try {
    response = await fetch("../v1/recipients", { method: "GET", cache: "no-store", credentials: "omit" });
  } catch {
    say(status, "Not served by a Coffer controller: add recipients files below.");
    return;
  }
  const text = await response.text();
  if (!response.ok || !text.includes("age1")) {
    say(status, response.status === 503
      ? "The controller has no active key yet; try again in a moment, or add recipients files below."
      : "Not served by a Coffer controller: add recipients files below.");
    return;
  }
  try {
    const source = addSource("this cluster's controller", text);
    const cluster = source.keys.find((k) => k.cluster)?.cluster;
    say(status, `Loaded the public keys of ${cluster ? `cluster ${cluster}` : "this controller's cluster"}.`);
  } catch (e) {
    say(status, `The controller's recipients file was refused: ${e.message}`);
  }
}

function addItemRow(key = "", value = "") {
  const row = $("item-template").content.firstElementChild.cloneNode(true);
  row.querySelector(".item-key").value = key;
  row.querySelector(".item-value").value = value;
  row.querySelector(".item-remove").addEventListener("click", () => {
    row.remove();
    $("items").querySelector(".item-key")?.focus();
  });
  $("items").append(row);
  return row;
}

function mode() { return document.querySelector("input[name=mode]:checked").value; }

// The form as a Secret manifest (JSON): what `kubectl create secret generic
// --from-literal` would give.
function formManifest() {
  const stringData = {};
  for (const row of $("items").querySelectorAll(".item")) {
    const key = row.querySelector(".item-key").value.trim();
    if (key) stringData[key] = row.querySelector(".item-value").value;
  }
  const metadata = { name: $("secret-name").value.trim() };
  const namespace = $("secret-namespace").value.trim();
  if (namespace) metadata.namespace = namespace;
  return JSON.stringify({ apiVersion: "v1", kind: "Secret", metadata, type: $("secret-type").value, stringData });
}

function seal() {
  say($("seal-error"));
  $("seal-notes").replaceChildren();
  const paste = mode() === "paste";
  if (!paste && !$("secret-name").value.trim()) {
    say($("seal-error"), "Give the Secret a name.");
    $("secret-name").focus();
    return;
  }
  const request = {
    secret: paste ? $("secret-text").value : formManifest(),
    namespace: paste ? $("paste-namespace").value : null,
    scope: $("scope").value || null,
    recipients: sources.map((s) => ({ name: s.name, text: s.text })),
    mergeInto: $("merge-text").value.trim() ? $("merge-text").value : null,
    json: $("format").value === "json",
  };
  let sealed;
  try {
    sealed = call(coffer.seal, request);
  } catch (e) {
    say($("seal-error"), e.message);
    return;
  } finally {
    request.secret = "";
  }
  $("output").value = sealed.output;
  for (const [kind, list] of [["note", sealed.notes], ["warning", sealed.warnings]]) {
    for (const text of list) {
      const p = document.createElement("p");
      p.className = kind;
      p.textContent = `${kind}: ${text}`;
      $("seal-notes").append(p);
    }
  }
  const done = document.createElement("p");
  done.textContent = `Sealed ${sealed.sealed.join(", ")} to ${sealed.key_ids.length} key(s).`;
  $("seal-notes").append(done);
  $("copy").disabled = $("download").disabled = false;
  $("output").focus();
}

function clearValues() {
  for (const v of document.querySelectorAll(".item-value")) v.value = "";
  $("secret-text").value = "";
  say($("seal-notes"));
}

function download() {
  const json = $("output").value.trimStart().startsWith("{");
  const first = ($("output").value.match(/^\s+name: (\S+)$/m) || [])[1]
    || ($("output").value.match(/"name": "([^"]+)"/) || [])[1] || "sealed";
  const blob = new Blob([$("output").value], { type: json ? "application/json" : "application/yaml" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `${first}.sealed.${json ? "json" : "yaml"}`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.append(td);
}

function inspect() {
  say($("inspect-error"));
  const out = $("inspect-result");
  out.replaceChildren();
  let found;
  try {
    found = call(coffer.inspect, {
      text: $("inspect-text").value,
      recipients: sources.map((s) => ({ name: s.name, text: s.text })),
    });
  } catch (e) {
    say($("inspect-error"), e.message);
    return;
  }
  for (const doc of found.documents) {
    const h = document.createElement("h3");
    h.textContent = `SealedSecret ${doc.namespace ?? "?"}/${doc.name ?? "?"}: scope ${doc.scopes.join(", ") || "?"}`;
    out.append(h);
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    for (const t of ["Item", "Size", "Recipients", "Post-quantum", "Key ids", "Opens in"]) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = t;
      head.append(th);
    }
    const body = table.createTBody();
    for (const item of doc.items) {
      const row = body.insertRow();
      cell(row, item.key);
      cell(row, item.size_bucket ? `≤ ${item.size_bucket} B` : "-");
      cell(row, String(item.recipients));
      cell(row, item.post_quantum == null ? "-" : item.post_quantum ? "yes"
        : item.key_kinds.includes("mlkem768x25519") ? "mixed" : "no");
      cell(row, item.key_ids.join(", ") || "-", "id");
      const files = [...new Set(item.key_ids.flatMap((id) => found.key_files[id] || []))];
      cell(row, files.join(", ") || (sources.length ? "none of the recipients above" : "add recipients to tell"));
    }
    out.append(table);
    problems(out, doc.problems);
  }
  problems(out, found.problems);
  for (const text of found.notes) {
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = `note: ${text}`;
    out.append(p);
  }
  if (!found.problems.length && found.documents.every((d) => !d.problems.length)) {
    const p = document.createElement("p");
    p.textContent = "No problem found.";
    out.append(p);
  }
}

function problems(out, list) {
  if (!list.length) return;
  const ul = document.createElement("ul");
  ul.className = "error";
  for (const text of list) {
    const li = document.createElement("li");
    li.textContent = `problem: ${text}`;
    ul.append(li);
  }
  out.append(ul);
}

async function readFileInto(input, target) {
  const file = input.files[0];
  if (file) target.value = await file.text();
}

async function main() {
  await init();
  say($("loading"), "");
  $("version").textContent = coffer.version();
  renderSources();
  addItemRow();
  for (const radio of document.querySelectorAll("input[name=mode]")) {
    radio.addEventListener("change", () => {
      $("form-mode").hidden = mode() !== "form";
      $("paste-mode").hidden = mode() !== "paste";
    });
  }
  $("item-add").addEventListener("click", () => addItemRow().querySelector(".item-key").focus());
  $("recipients-file").addEventListener("change", async (ev) => {
    say($("recipients-error"));
    for (const file of ev.target.files) {
      try { addSource(file.name, await file.text()); } catch (e) { say($("recipients-error"), e.message); }
    }
    ev.target.value = "";
  });
  $("recipients-add").addEventListener("click", () => {
    say($("recipients-error"));
    try {
      addSource($("recipients-name").value.trim() || "pasted recipients", $("recipients-text").value);
      $("recipients-text").value = "";
    } catch (e) { say($("recipients-error"), e.message); }
  });
  $("merge-file").addEventListener("change", (ev) => readFileInto(ev.target, $("merge-text")));
  $("inspect-file").addEventListener("change", (ev) => readFileInto(ev.target, $("inspect-text")));
  $("seal").addEventListener("click", seal);
  $("clear").addEventListener("click", clearValues);
  $("inspect").addEventListener("click", inspect);
  $("download").addEventListener("click", download);
  $("copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("output").value);
      say($("copy-status"), "Copied.");
    } catch {
      $("output").select();
      say($("copy-status"), "Select the text and copy it (the browser refused the clipboard).");
    }
  });
  document.body.dataset.ready = "true";
  await loadControllerKeys();
}

main().catch((e) => say($("loading"), `The sealing code did not load: ${e.message}`));
