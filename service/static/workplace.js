// The page as a workplace: upload a products file, walk it with the keyboard, export the decisions,
// and see the taxonomy with this session's counts. Uses api(), el(), $(), status(), scoreCell(),
// pathText(), fmt(), resolveTagName(), suggestTagNames(), tagNames and feedbackStored() from app.js.
"use strict";

const work = {
  products: [], pos: 0, selected: 0, active: false,
  tags: new Map(), // product id -> suggested tags (from /v1/tag), fetched when the product is shown
  hints: new Map(), // product id -> why every tag says "review", if so (thresholdHint in app.js)
  decisions: new Map(), // product id -> Map(tag id -> {action, id})
  firstFeedbackId: null, // the first decision stored in this session: the export starts there
};

// ---- upload --------------------------------------------------------------------------------------
// The file's columns, read in the browser, become suggestions for the column fields; a Shopify
// export (Handle, Title, Body (HTML)) is mapped without typing.
function headerColumns(text, isJsonl) {
  const first = text.split(/\r?\n/).find((line) => line.trim()) || "";
  if (isJsonl) {
    try { return Object.keys(JSON.parse(first)); } catch (_) { return []; }
  }
  const out = [];
  let cell = "", quoted = false;
  for (let i = 0; i < first.length; i++) {
    const c = first[i];
    if (quoted) {
      if (c === '"' && first[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false; else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { out.push(cell); cell = ""; } else cell += c;
  }
  out.push(cell);
  return out.map((c) => c.replace(/^\uFEFF/, "").trim()).filter(Boolean);
}

$("upload-file").addEventListener("change", async () => {
  const file = $("upload-file").files[0];
  if (!file || file.name.toLowerCase().endsWith(".parquet")) return;
  const columns = headerColumns(await file.slice(0, 65536).text(), /\.(jsonl|ndjson|json)$/i.test(file.name));
  $("upload-columns").replaceChildren(...columns.map((c) => el("option", {value: c})));
  // A column named exactly like the field needs no mapping; else the first known other name, any case.
  const pick = (field, ...names) => {
    if ($(field).value || columns.includes(names[0])) return;
    const hit = columns.find((c) => names.includes(c.toLowerCase()));
    if (hit) $(field).value = hit;
  };
  pick("col-id", "id", "handle", "sku", "product id", "product_id");
  pick("col-title", "title", "name", "product name");
  pick("col-description", "description", "body (html)", "body", "body_html", "description (html)");
  status("upload-status", columns.length ? `columns: ${columns.join(", ")}` : "");
});

$("upload-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) return;
  const params = new URLSearchParams({filename: file.name});
  for (const [field, id] of [["id_col", "col-id"], ["title_col", "col-title"], ["description_col", "col-description"]]) {
    if ($(id).value.trim()) params.set(field, $(id).value.trim());
  }
  status("upload-status", `reading ${file.name}…`);
  $("upload-errors").replaceChildren();
  try {
    const res = await fetch(`/v1/products/upload?${params}`, {method: "POST", body: file,
      headers: {"Content-Type": "application/octet-stream"}});
    let data = null;
    try { data = await res.json(); } catch (_) { /* not JSON */ }
    if (res.status === 413) {
      throw new Error(`${file.name} (${(file.size / 1e6).toFixed(1)} MB) is larger than this service accepts ` +
        `(${data ? detailText(data.detail) : "body too large"}): split it into smaller files.`);
    }
    if (!res.ok) throw new Error(errorText(res.status, data ? detailText(data.detail) : res.statusText));
    Object.assign(work, {products: data.products, pos: 0, selected: 0, active: true});
    work.tags.clear();
    work.hints.clear();
    review.active = false; // one keyboard queue at a time (review.js)
    status("upload-status", `${data.count} products from ${data.filename}` +
      (data.skipped ? `; ${data.skipped} row${data.skipped === 1 ? "" : "s"} left out:` : ""));
    $("upload-errors").replaceChildren(...data.errors.map((e) => el("li", {class: "error"}, `${e.where}: ${e.reason}`)));
    $("work-add-form").hidden = false;
    await showProduct();
    $("work-section").focus();
  } catch (e) {
    status("upload-status", e.message, true);
  }
});

// ---- the queue -----------------------------------------------------------------------------------
const current_ = () => work.products[work.pos] || null;

async function tagsFor(product) {
  if (!work.tags.has(product.id)) {
    const threshold = $("accept-threshold").value;
    const body = {product, top_k: 8, decide: threshold !== "" || (serviceInfo && serviceInfo.decider === "calibrated")};
    if (threshold !== "") body.accept_threshold = Number(threshold);
    const data = await api("POST", tagUrl(), kindOptions(body));
    work.tags.set(product.id, data.results[0].tags);
    work.hints.set(product.id, thresholdHint(data.results[0], body));
  }
  return work.tags.get(product.id);
}

function decided(productId) {
  if (!work.decisions.has(productId)) work.decisions.set(productId, new Map());
  return work.decisions.get(productId);
}

async function showProduct() {
  const product = current_();
  const total = work.products.length;
  const done = [...work.decisions.values()].filter((m) => m.size).length;
  $("work-progress").textContent = total ? `product ${work.pos + 1} of ${total} · ${done} with decisions` : "";
  $("work-bar").style.width = total ? `${(100 * done / total).toFixed(0)}%` : "0%";
  if (!product) { $("work-card").replaceChildren(); return; }
  let tags;
  try {
    tags = await tagsFor(product);
  } catch (e) {
    status("work-status", e.message, true);
    return;
  }
  if (product !== current_()) return; // moved on while tagging
  renderProduct(product, tags);
}

function renderProduct(product, tags) {
  const mine = decided(product.id);
  const shown = [...tags];
  for (const [tag, d] of mine) {
    if (d.action === "add" && !shown.some((t) => t.tag === tag)) shown.push({tag, name: d.name, path: d.path || [], score: null});
  }
  work.selected = Math.min(work.selected, Math.max(shown.length - 1, 0));
  const list = el("ol", {id: "work-tags", class: "tags", role: "listbox", "aria-label": "Suggested tags"});
  shown.forEach((t, i) => {
    const d = mine.get(t.tag);
    list.append(el("li", {role: "option", "data-tag": t.tag, "aria-selected": String(i === work.selected),
      class: (i === work.selected ? "selected " : "") + (d ? d.action : "")},
      t.score === null ? el("span", {class: "score"}, "added") : scoreCell(t.score), " ",
      el("strong", {}, t.name), " ", el("small", {class: "muted"}, pathText(t.path || [])), " ",
      t.decision ? el("span", {class: `badge ${t.decision}`, title: t.reason || ""}, t.decision) : "",
      el("span", {class: "verdict"}, d ? ` ${d.action === "add" ? "added" : d.action + "ed"} #${d.id}` : "")));
  });
  work.shown = shown;
  $("work-card").replaceChildren(
    el("h3", {id: "work-title"}, product.title, " ", el("small", {class: "muted"}, `id ${product.id}`)),
    product.description ? el("p", {class: "muted"}, product.description.slice(0, 300)) : "",
    work.hints.get(product.id) ? el("p", {class: "hint"}, work.hints.get(product.id)) : "",
    list);
}

async function judge(tag, action, extra = {}) {
  const product = current_();
  if (!product) return;
  const hit = (work.shown || []).find((t) => t.tag === tag);
  const body = {product, judgements: [{tag, action, score: hit && hit.score !== null ? hit.score : null}]};
  const user = sessionStorage.getItem("tagindex-user");
  if (user) body.user = user;
  try {
    const saved = await api("POST", "/v1/feedback", body);
    feedbackStored(saved);
    const id = saved.stored[0].id;
    if (work.firstFeedbackId === null) work.firstFeedbackId = id;
    decided(product.id).set(tag, {action, id, ...extra});
    status("work-status", `${action === "add" ? "added" : action + "ed"} ${extra.name || (hit && hit.name) || tag} (saved #${id})`);
    if (action !== "add") work.selected += 1;
    renderProduct(product, work.tags.get(product.id));
    showProduct(); // progress line
    refreshTreeCounts();
  } catch (e) {
    status("work-status", e.message, true);
  }
}

function move(step) {
  const next = work.pos + step;
  if (next < 0 || next >= work.products.length) {
    status("work-status", step > 0 ? "That was the last product: export the decisions below." : "This is the first product.");
    return;
  }
  work.pos = next;
  work.selected = 0;
  status("work-status", "");
  showProduct();
}

async function addMissed(tag) {
  const info = await api("GET", `/v1/tags/${encodeURIComponent(tag)}`);
  await judge(tag, "add", {name: info.name, path: info.path});
  $("work-add").value = "";
  $("work-section").focus();
}

$("work-add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("work-add").value.trim();
  if (!text) return;
  try {
    await addMissed(await resolveTagName(text));
  } catch (e) {
    status("work-status", e.message, true);
    if (e.choices) { // a name several tags share: offer each by its path
      $("work-status").append(" ", ...e.choices.map((t) => el("button", {type: "button", class: "link choice",
        onclick: () => addMissed(t.id).catch((err) => status("work-status", err.message, true))},
        pathText(t.path), " ", el("small", {}, t.id))));
    }
  }
});
suggestTagNames($("work-add"));
$("work-add").addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") { ev.preventDefault(); $("work-section").focus(); }
});

document.addEventListener("keydown", (ev) => {
  if (!work.active || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const target = ev.target;
  if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return;
  const key = ev.key;
  const shown = work.shown || [];
  const hit = shown[work.selected];
  const keys = {
    n: () => move(1), ArrowRight: () => move(1), p: () => move(-1), ArrowLeft: () => move(-1),
    a: () => hit && judge(hit.tag, "accept"), r: () => hit && judge(hit.tag, "reject"),
    t: () => $("work-add").focus(),
    j: () => select(1), ArrowDown: () => select(1), k: () => select(-1), ArrowUp: () => select(-1),
  };
  if (!(key in keys)) return;
  ev.preventDefault();
  keys[key]();
});

function select(step) {
  const shown = work.shown || [];
  work.selected = Math.max(0, Math.min(work.selected + step, shown.length - 1));
  const product = current_();
  if (product) renderProduct(product, work.tags.get(product.id));
}

// ---- export --------------------------------------------------------------------------------------
async function exportDecisions(format) {
  const scope = $("export-scope").value;
  if (scope === "session" && work.firstFeedbackId === null) {
    status("export-status", "No decisions in this session yet: accept, reject or add a tag first, or export all stored.", true);
    return;
  }
  const after = scope === "session" ? work.firstFeedbackId - 1 : 0;
  const headers = {};
  const key = sessionStorage.getItem("tagindex-key");
  if (key) headers["X-API-Key"] = key;
  try {
    const res = await fetch(`/v1/feedback/export?format=${format}&after_id=${after}&latest=true`, {headers});
    if (!res.ok) {
      let data = null;
      try { data = await res.json(); } catch (_) { /* not JSON */ }
      throw new Error(errorText(res.status, data ? detailText(data.detail) : res.statusText));
    }
    const blob = await res.blob();
    const rows = (await blob.text()).split("\n").filter(Boolean).length - (format === "csv" ? 1 : 0);
    const link = el("a", {href: URL.createObjectURL(blob), download: `tagindex-decisions.${format}`});
    document.body.append(link);
    link.click();
    link.remove();
    status("export-status", `exported ${rows} decisions as tagindex-decisions.${format}`);
  } catch (e) {
    status("export-status", e.message, true);
  }
}
$("export-csv").addEventListener("click", () => exportDecisions("csv"));
$("export-jsonl").addEventListener("click", () => exportDecisions("jsonl"));

// ---- taxonomy tree -------------------------------------------------------------------------------
let treeCounts = {};

function treeNode(n) {
  const count = el("span", {class: "count", "data-count": n.id});
  const label = el("span", {class: "label"}, n.name, " ", el("small", {class: "muted"}, `${n.tags.toLocaleString()} tag${n.tags === 1 ? "" : "s"}`), " ", count);
  const item = el("li", {role: "treeitem", "data-id": n.id});
  if (n.children) {
    const toggle = el("button", {type: "button", class: "twisty", "aria-expanded": "false",
      "aria-label": `${n.name}: show ${n.children} children`}, "▸");
    toggle.addEventListener("click", () => toggleNode(item, n, toggle));
    item.append(toggle, label);
  } else {
    item.append(el("span", {class: "leaf", "aria-hidden": "true"}, "·"), label);
  }
  paintCount(count, n.id);
  return item;
}

function paintCount(node, id) {
  const n = treeCounts[id] || 0;
  node.textContent = n ? `${n} product${n === 1 ? "" : "s"}` : "";
  node.classList.toggle("has", n > 0);
}

async function toggleNode(item, n, toggle) {
  const open = toggle.getAttribute("aria-expanded") === "true";
  const group = item.querySelector(":scope > ul");
  if (open) {
    toggle.setAttribute("aria-expanded", "false");
    toggle.textContent = "▸";
    if (group) group.hidden = true;
    return;
  }
  toggle.setAttribute("aria-expanded", "true");
  toggle.textContent = "▾";
  if (group) { group.hidden = false; return; }
  try {
    const data = await api("GET", `/v1/taxonomy?parent=${encodeURIComponent(n.id)}`);
    item.append(el("ul", {role: "group"}, ...data.nodes.map(treeNode)));
  } catch (e) {
    status("tree-status", e.message, true);
  }
}

async function loadTree() {
  try {
    const data = await api("GET", "/v1/taxonomy");
    $("tree").replaceChildren(...data.nodes.map(treeNode));
    status("tree-status", `${data.nodes.length} top-level tags`);
  } catch (e) {
    status("tree-status", e.message, true);
  }
}

async function refreshTreeCounts() {
  const assignments = [];
  for (const [product, tags] of work.decisions) {
    for (const [tag, d] of tags) if (d.action !== "reject") assignments.push({product, tag});
  }
  try {
    treeCounts = (await api("POST", "/v1/taxonomy/counts", {assignments})).counts;
    document.querySelectorAll("#tree [data-count]").forEach((node) => paintCount(node, node.dataset.count));
  } catch (e) {
    status("tree-status", e.message, true);
  }
}

loadTree();
