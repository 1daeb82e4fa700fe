// Merchandiser page: plain DOM + fetch against the /v1 API. No build step, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
let current = null; // the product last tagged: {id, title, description}
let serviceInfo = null; // /v1/info: the decider and the rerank stage, if any

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v; // CSSOM: allowed by the page's CSP, unlike attributes
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function detailText(detail) {
  if (Array.isArray(detail)) {
    return detail.map((e) => `${(e.loc || []).join(".")}: ${e.msg}`).join("; ");
  }
  return typeof detail === "string" ? detail : JSON.stringify(detail);
}

// What the person at the page can do about an error, in words; the service's reason follows.
function errorText(statusCode, reason) {
  if (statusCode === 401) {
    return sessionStorage.getItem("tagindex-key")
      ? "The API key was not accepted: check it in the “API key” box at the top and press Keep."
      : "This needs the API key: type it in the “API key” box at the top and press Keep.";
  }
  if (statusCode === 413) return `Too much text at once (${reason}).`;
  if (statusCode >= 500) return `The service failed (${statusCode}): ${reason}. Try again; if it persists, tell its operator.`;
  return `${reason} (${statusCode})`;
}

async function api(method, path, body) {
  const headers = {};
  const key = sessionStorage.getItem("tagindex-key");
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  let data = null;
  try { data = await res.json(); } catch (_) { /* empty or non-JSON body */ }
  if (!res.ok) throw new Error(errorText(res.status, data ? detailText(data.detail) : res.statusText));
  return data;
}

function status(id, text, isError = false) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle("error", isError);
}

const fmt = (x) => Number(x).toFixed(3);
const pathText = (path) => path.join(" › ");

function scoreCell(score) {
  const pct = Math.max(0, Math.min(1, score)) * 100;
  return el("span", {class: "score"}, fmt(score), " ",
    el("span", {class: "track", "aria-hidden": "true"}, el("span", {class: "fill", style: `width:${pct.toFixed(0)}%`})));
}

// ---- index info and key -------------------------------------------------------------------------
async function loadInfo() {
  try {
    const info = await api("GET", "/v1/info");
    serviceInfo = info;
    renderInfo();
    const stage = info.stage;
    $("rerank-label").hidden = !(stage && stage.reranker);
    if (info.accept_threshold !== null && $("accept-threshold").value === "") {
      $("accept-threshold").value = info.accept_threshold;
    }
  } catch (e) {
    $("index-info").textContent = `index not available (${e.message})`;
  }
}

function renderInfo() {
  const info = serviceInfo;
  const ix = info.index;
  const stage = info.stage;
  $("index-info").textContent =
    `${ix.n_tags} tags · ${ix.encoder_backend} encoder` +
    // Non-English text is translated for the encoder, or read by a second (multilingual) encoder too.
    (ix.translate ? ` (${ix.translate} text translated)` : "") +
    (ix.ensemble ? ` + ${ix.ensemble.backend} (weight ${ix.ensemble.weight})` : "") +
    ` · ${ix.index_kind} index · version ${ix.version} · ` +
    `${info.feedback_rows} feedback rows` +
    (stage && stage.reranker ? ` · reranker (depth ${stage.rerank_depth})` : "") +
    (stage && stage.calibration ? " · calibrated decisions" : "");
}

// Every stored judgement answers with the new total: the header counts it at once.
function feedbackStored(saved) {
  if (serviceInfo) {
    serviceInfo.feedback_rows = saved.total;
    renderInfo();
  }
}

$("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("tagindex-key", $("api-key").value);
  sessionStorage.setItem("tagindex-user", $("user").value);
  status("key-status", "kept for this browser tab");
});

// ---- tagging ------------------------------------------------------------------------------------
$("description").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
    ev.preventDefault();
    $("tag-form").requestSubmit();
  }
});

$("tag-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const threshold = $("accept-threshold").value;
  const body = {
    product: {title: $("title").value, description: $("description").value},
    top_k: Number($("top-k").value) || 8,
    include_ancestors: $("ancestors").checked,
    explain: true,
    decide: threshold !== "" || (serviceInfo !== null && serviceInfo.decider === "calibrated"),
  };
  if (threshold !== "") body.accept_threshold = Number(threshold);
  if (!$("rerank-label").hidden) body.rerank = $("rerank").checked;
  kindOptions(body);
  status("tag-status", "tagging…");
  try {
    const data = await api("POST", tagUrl(), body);
    const result = data.results[0];
    current = {id: result.id, title: body.product.title, description: body.product.description};
    renderSuggestions(result);
    status("tag-status", `${result.tags.length} tags in ${data.elapsed_ms.toFixed(0)} ms · product id ${result.id}` +
      (data.reranked ? ` · reranked top ${data.rerank_depth}` : ""));
    $("threshold-hint").textContent = thresholdHint(result, body);
    $("add-judgement-form").hidden = false;
  } catch (e) {
    status("tag-status", e.message, true);
  }
});

// The per-kind limits (`category=1,keyword=5`) and the names' language typed on the page, for /v1/tag.
function kindOptions(body) {
  const perKind = $("per-kind").value.trim();
  if (perKind !== "") body.per_kind = perKind;
  return body;
}

function tagUrl() {
  const lang = $("lang").value.trim();
  return lang === "" ? "/v1/tag" : `/v1/tag?lang=${encodeURIComponent(lang)}`;
}

// When a threshold leaves every tag at "review", say so and what threshold would accept the best one.
function thresholdHint(result, body) {
  const decided = result.tags.filter((t) => t.decision);
  if (!decided.length || decided.some((t) => t.decision === "accept")) return "";
  if (body.accept_threshold === undefined) {
    return "No tag reaches the calibrated confidence for this product: review them one by one.";
  }
  const best = Math.max(...decided.map((t) => t.score));
  return `Every tag is below the accept threshold ${body.accept_threshold} (best score ${fmt(best)}). ` +
    `Lower the threshold to ${(Math.floor(best * 100) / 100).toFixed(2)} to accept the best tag, or review them.`;
}

function renderSuggestions(result) {
  const table = el("table", {id: "suggestions"},
    el("caption", {}, "Suggested tags, best first"),
    el("thead", {}, el("tr", {},
      el("th", {scope: "col"}, "Score"), el("th", {scope: "col"}, "Tag"),
      el("th", {scope: "col"}, "Decision"), el("th", {scope: "col"}, "Why"),
      el("th", {scope: "col"}, "Your judgement"))));
  const tbody = el("tbody");
  for (const hit of result.tags) {
    const verdict = el("span", {class: "verdict", "aria-live": "polite"});
    const judge = (action) => async (ev) => {
      const buttons = ev.target.parentElement.querySelectorAll("button");
      try {
        const saved = await sendJudgement(hit.tag, action, hit.score);
        feedbackStored(saved);
        buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.action === action)));
        verdict.textContent = `${action}ed · saved #${saved.stored[0].id}`;
        verdict.classList.remove("error");
      } catch (e) {
        verdict.textContent = e.message;
        verdict.classList.add("error");
      }
    };
    tbody.append(el("tr", {"data-tag": hit.tag},
      el("td", {}, scoreCell(hit.score), stageScores(hit)),
      el("td", {}, el("strong", {}, hit.name), el("br"), el("small", {class: "muted"}, pathText(hit.path)),
        hit.ancestor_of ? el("small", {class: "muted"}, " (parent of a ranked tag)") : ""),
      el("td", {}, hit.decision ? el("span", {class: `badge ${hit.decision}`, title: hit.reason || ""}, hit.decision) : "–"),
      el("td", {}, hit.explanation ? explanationNode(hit.explanation) : ""),
      el("td", {class: "judge"},
        el("button", {type: "button", "data-action": "accept", "aria-pressed": "false", onclick: judge("accept"),
          "aria-label": `Accept ${hit.name}`}, "Accept"),
        el("button", {type: "button", "data-action": "reject", "aria-pressed": "false", onclick: judge("reject"),
          "aria-label": `Reject ${hit.name}`}, "Reject"),
        verdict)));
  }
  table.append(tbody);
  const nodes = [table];
  if (result.assigned) {
    nodes.unshift(el("p", {id: "assigned"}, el("strong", {}, "Assigned (calibrated): "),
      result.assigned.length
        ? result.assigned.map((a) => `${a.name} (p ${fmt(a.probability)})`).join(" › ")
        : "none reaches its level's threshold"));
  }
  $("tag-results").replaceChildren(...nodes);
}

// Reranker probability and calibrated probability under the score, when the service has them.
function stageScores(hit) {
  const parts = [];
  if (hit.bi_encoder_score !== null && hit.bi_encoder_score !== undefined && hit.rerank_score !== null) {
    parts.push(`similarity ${fmt(hit.bi_encoder_score)}`);
  }
  if (hit.rerank_score !== null && hit.rerank_score !== undefined) parts.push(`reranker ${fmt(hit.score)}`);
  if (hit.probability !== null && hit.probability !== undefined) parts.push(`p ${fmt(hit.probability)}`);
  return parts.length ? el("small", {class: "muted stage-scores"}, el("br"), parts.join(" · ")) : "";
}

function explanationNode(x) {
  const parts = Object.entries(x.parts)
    .map(([k, v]) => `${k.replaceAll("_", " ")} ${k === "rank" ? v : fmt(v)}`).join(", ");
  const details = el("details", {}, el("summary", {}, parts));
  if (x.matched_terms.length) details.append(el("p", {}, "Shared words: ", x.matched_terms.join(", ")));
  if (x.words && x.words.length) {
    details.append(el("p", {class: "words"}, "Important words: ",
      x.words.map((w) => `${w.word} (${w.effect > 0 ? "+" : ""}${fmt(w.effect)})`).join(", ")));
  }
  if (x.examples && x.examples.length) {
    const list = el("ul", {class: "examples"});
    for (const e of x.examples) {
      list.append(el("li", {}, e.title || `product ${e.id}`, " ", el("small", {class: "muted"}, `similarity ${fmt(e.similarity)}`)));
    }
    details.append(el("p", {}, "Labelled products with this tag:"), list);
  }
  if (x.inherited_from) details.append(el("p", {}, `Parent of ${x.inherited_from}; carries its score.`));
  if (x.neighbours.length) {
    const list = el("ul");
    for (const n of x.neighbours) {
      list.append(el("li", {}, `${n.name}: product ${fmt(n.product_similarity)} (margin ${fmt(n.margin)}), ` +
        `tag-to-tag ${fmt(n.tag_similarity)} `, el("small", {class: "muted"}, n.tag)));
    }
    details.append(el("p", {}, "Closest alternative tags:"), list);
  }
  return details;
}

async function sendJudgement(tag, action, score) {
  if (!current) throw new Error("tag a product first");
  const body = {
    product: current,
    judgements: [{tag, action, score: score === null ? null : Number(score)}],
  };
  const user = sessionStorage.getItem("tagindex-user");
  if (user) body.user = user;
  return api("POST", "/v1/feedback", body);
}

// "A tag the service missed" is typed by NAME: the list offers the tags' paths (names from the root,
// unique where bare names repeat), and a typed name is resolved to its id when it names one tag.
const pathToId = new Map(); // option value (path text) -> tag id

async function resolveTagName(text) {
  if (pathToId.get(text)) return pathToId.get(text);
  const folded = text.toLocaleLowerCase();
  const tags = await api("GET", `/v1/tags?q=${encodeURIComponent(text)}&limit=50`);
  const exact = tags.filter((t) => t.name.toLocaleLowerCase() === folded || t.id === text);
  for (const t of exact) tagNames.set(t.id, t.name);
  if (exact.length === 1) return exact[0].id;
  if (exact.length > 1) {
    const error = new Error(`${exact.length} tags are named “${text}”: pick one of them from the list (it shows their paths).`);
    error.choices = exact; // the caller may offer them as buttons
    return Promise.reject(error);
  }
  throw new Error(`No tag is named “${text}”: pick one from the list that appears as you type.`);
}

$("add-judgement-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("missing-tag").value.trim();
  if (!text) return;
  try {
    const tag = await resolveTagName(text);
    const saved = await sendJudgement(tag, "add", null);
    feedbackStored(saved);
    status("tag-status", `added ${text} for this product · saved #${saved.stored[0].id}`);
    $("missing-tag").value = "";
  } catch (e) {
    status("tag-status", e.message, true);
  }
});

// Suggestions as you type: tag names (by path) for a missed tag, tag ids for the id fields.
const tagNames = new Map(); // tag id -> name, for tags picked by name
let suggestTimer = null;

function suggest(input, list) {
  input.addEventListener("input", (ev) => {
    clearTimeout(suggestTimer);
    const q = ev.target.value.trim();
    if (q.length < 2 || pathToId.has(q)) return;
    suggestTimer = setTimeout(async () => {
      try {
        const tags = await api("GET", `/v1/tags?q=${encodeURIComponent(q)}&limit=20`);
        if (list === "tag-name-options") {
          for (const t of tags) {
            // Two tags may show the same path (GS1's "Footwear" > "Footwear" collapses to "Footwear"):
            // such a path names no tag by itself, and resolving it falls back to the name lookup.
            const key = pathText(t.path);
            pathToId.set(key, pathToId.has(key) && pathToId.get(key) !== t.id ? null : t.id);
            tagNames.set(t.id, t.name);
          }
          $(list).replaceChildren(...tags.map((t) => el("option", {value: pathText(t.path)}, t.id)));
        } else {
          $(list).replaceChildren(...tags.map((t) => el("option", {value: t.id}, pathText(t.path))));
        }
      } catch (_) { /* suggestions are a convenience */ }
    }, 150);
  });
}

const suggestTagNames = (input) => suggest(input, "tag-name-options");
suggestTagNames($("missing-tag"));
suggest($("new-parent"), "tag-options");
suggest($("retire-id"), "tag-options");

// ---- vocabulary ---------------------------------------------------------------------------------
function tagItem(t, score) {
  return el("li", {"data-tag": t.tag || t.id},
    score === undefined ? "" : scoreCell(score), " ",
    el("strong", {}, t.name), " ", el("small", {class: "muted"}, pathText(t.path)), " ",
    el("button", {type: "button", class: "link", onclick: () => showSimilar(t.tag || t.id, t.name),
      "aria-label": `Tags similar to ${t.name}`}, "Similar"));
}

$("search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = $("query").value.trim();
  if (!q) return;
  status("search-status", "searching…");
  try {
    const [lexical, semantic] = await Promise.all([
      api("GET", `/v1/tags?q=${encodeURIComponent(q)}&limit=20`),
      api("POST", "/v1/tags/similar", {text: q, top_k: 10}),
    ]);
    $("search-results").replaceChildren(...lexical.map((t) => tagItem(t)));
    if (!lexical.length) $("search-results").append(el("li", {class: "muted"}, "no tag name contains these words"));
    $("semantic-results").replaceChildren(...semantic.tags.map((t) => tagItem(t, t.score)));
    status("search-status", `${lexical.length} by name, ${semantic.tags.length} by meaning`);
  } catch (e) {
    status("search-status", e.message, true);
  }
});

async function showSimilar(tagId, name) {
  try {
    const data = await api("GET", `/v1/tags/${encodeURIComponent(tagId)}/similar?top_k=10`);
    $("similar-h").textContent = `Similar to ${name || tagId}`;
    $("similar-results").replaceChildren(...data.tags.map((t) => tagItem(t, t.score)));
    $("similar-panel").hidden = false;
    $("similar-h").focus();
  } catch (e) {
    status("search-status", e.message, true);
  }
}

// ---- duplicates ---------------------------------------------------------------------------------
// A scan runs in the background on the server (POST .../scan); the page polls its progress, then
// reads the pairs, which the server keeps until the vocabulary changes.
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function scanDuplicates(query) {
  const bar = $("dup-progress");
  let job = await api("POST", `/v1/tags/duplicates/scan?${query}`);
  bar.hidden = job.state !== "running";
  while (job.state === "running") {
    bar.max = job.total || 1;
    bar.value = job.done;
    status("dup-status", `scanning: ${job.done.toLocaleString()} of ${job.total.toLocaleString()} tags ` +
      `(${job.elapsed_s.toFixed(1)} s)…`);
    await sleep(300);
    job = await api("GET", `/v1/tags/duplicates/scan?${query}`);
  }
  bar.hidden = true;
  if (job.state === "failed") throw new Error(`The scan failed: ${job.error}`);
  return job;
}

function dupTagCell(id, name, path) {
  return el("td", {}, el("strong", {}, name), el("br"), el("small", {class: "muted"}, `${pathText(path)} · ${id}`));
}

$("dup-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const query = `min_score=${encodeURIComponent($("min-score").value)}&include_siblings=${$("dup-siblings").checked}`;
  status("dup-status", "starting the scan…");
  try {
    const job = await scanDuplicates(query);
    const data = await api("GET", `/v1/tags/duplicates?${query}&limit=${encodeURIComponent($("dup-limit").value)}`);
    const rows = data.pairs.map((p) => el("tr", {"data-relation": p.relation},
      el("td", {}, scoreCell(p.evidence)),
      el("td", {class: "score"}, fmt(p.score)),
      dupTagCell(p.a, p.a_name, p.a_path),
      dupTagCell(p.b, p.b_name, p.b_path),
      el("td", {class: "reasons"}, p.reasons.join(" · "))));
    $("dup-table").querySelector("tbody").replaceChildren(...rows);
    $("dup-table").hidden = !rows.length;
    status("dup-status", `${data.total} pairs at similarity ≥ ${data.min_score}` +
      (data.include_siblings ? " (siblings included)" : " (parent/child and siblings left out)") +
      `; showing ${rows.length} · ` + (job.cached
        ? `from the cache of index version ${data.index_version}`
        : `scanned in ${job.elapsed_s.toFixed(1)} s, kept for index version ${data.index_version}`));
  } catch (e) {
    $("dup-progress").hidden = true;
    status("dup-status", e.message, true);
  }
});

// ---- vocabulary changes -------------------------------------------------------------------------
$("new-tag-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const tag = {id: $("new-id").value.trim(), name: $("new-name").value.trim()};
  const parent = $("new-parent").value.trim();
  if (parent) tag.parent = parent;
  try {
    const data = await api("POST", "/v1/tags", {tags: [tag]});
    status("edit-status", `added ${data.changed.join(", ")} · ${data.n_tags} tags now`);
    loadInfo();
  } catch (e) {
    status("edit-status", e.message, true);
  }
});

$("retire-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const id = $("retire-id").value.trim();
  try {
    const data = await api("DELETE", `/v1/tags/${encodeURIComponent(id)}?cascade=${$("cascade").checked}`);
    status("edit-status", `retired ${data.changed.join(", ")} · ${data.n_tags} tags now`);
    loadInfo();
  } catch (e) {
    status("edit-status", e.message, true);
  }
});

$("api-key").value = sessionStorage.getItem("tagindex-key") || "";
$("user").value = sessionStorage.getItem("tagindex-user") || "";
loadInfo();
