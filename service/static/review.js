// Review mode: walk the active-learning queue (GET /v1/review/next) with the keyboard.
// a = accept the selected suggestion, r = reject it, t = add a missing tag, n = next product,
// j / k (or arrow keys) = move the selection. Uses api(), el(), $() and status() from app.js.
"use strict";

const review = {queue: [], pos: 0, selected: 0, judged: 0, judgements: 0, active: false};

function reviewItem() {
  return review.queue[review.pos] || null;
}

function renderReview() {
  const item = reviewItem();
  const total = review.queue.length;
  $("review-progress").textContent = total
    ? `product ${Math.min(review.pos + 1, total)} of ${total} · ${review.judged} judged · ${review.judgements} judgements`
    : "";
  $("review-bar").style.width = total ? `${(100 * review.judged / total).toFixed(0)}%` : "0%";
  if (!item) {
    $("review-card").replaceChildren(el("p", {class: "muted"}, total ? "Queue done. Load more to go on." : ""));
    return;
  }
  const list = el("ol", {id: "review-tags", class: "tags"});
  item.tags.forEach((t, i) => {
    list.append(el("li", {"data-tag": t.tag, "aria-selected": String(i === review.selected),
      class: i === review.selected ? "selected" : ""},
      scoreCell(t.score), " ", el("strong", {}, t.name), " ", el("small", {class: "muted"}, pathText(t.path || [])),
      el("span", {class: "verdict", "data-verdict": t.tag}, t.verdict || "")));
  });
  $("review-card").replaceChildren(
    el("h3", {id: "review-title", tabindex: "-1"}, item.product.title),
    item.product.description ? el("p", {class: "muted"}, item.product.description.slice(0, 300)) : "",
    el("p", {class: "reason"}, el("strong", {}, "Why this product: "), item.reason),
    list);
}

async function loadReview() {
  const n = Number($("review-n").value) || 20;
  status("review-status", "choosing products…");
  try {
    const data = await api("GET", `/v1/review/next?n=${n}`);
    review.queue = data.items;
    Object.assign(review, {pos: 0, selected: 0, judged: 0, judgements: 0, active: true});
    work.active = false; // one keyboard queue at a time (workplace.js)
    status("review-status", `${data.items.length} products chosen from ${data.pool} · index version ${data.index_version}`);
    renderReview();
    $("review-section").focus();
  } catch (e) {
    status("review-status", e.message, true);
  }
}

async function judgeReview(tag, action) {
  const item = reviewItem();
  if (!item) return;
  try {
    const body = {product: item.product, judgements: [{tag, action}]};
    const user = sessionStorage.getItem("tagindex-user");
    if (user) body.user = user;
    const saved = await api("POST", "/v1/feedback", body);
    feedbackStored(saved);
    if (!item.done) { item.done = true; review.judged += 1; }
    review.judgements += 1;
    const hit = item.tags.find((t) => t.tag === tag);
    if (hit) hit.verdict = ` ${action}ed #${saved.stored[0].id}`;
    else item.tags.push({tag, name: tagNames.get(tag) || tag, score: 0, path: [], verdict: ` added #${saved.stored[0].id}`});
    review.selected = Math.min(review.selected + 1, item.tags.length - 1);
    status("review-status", `${action}: ${tag} (saved #${saved.stored[0].id}, learned at once)`);
    renderReview();
  } catch (e) {
    status("review-status", e.message, true);
  }
}

function nextReview() {
  if (review.pos < review.queue.length) review.pos += 1;
  review.selected = 0;
  renderReview();
}

$("review-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadReview(); });

$("review-add-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("review-add").value.trim();
  if (!text) return;
  try {
    await judgeReview(await resolveTagName(text), "add");
  } catch (e) {
    status("review-status", e.message, true);
    return;
  }
  $("review-add").value = "";
  $("review-section").focus();
});

$("review-add").addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") { ev.preventDefault(); $("review-section").focus(); }
});

document.addEventListener("keydown", (ev) => {
  if (!review.active || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const target = ev.target;
  if (target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement) return;
  const item = reviewItem();
  const key = ev.key;
  if (key === "n") { ev.preventDefault(); nextReview(); return; }
  if (!item) return;
  const hit = item.tags[review.selected];
  if (key === "a" && hit) { ev.preventDefault(); judgeReview(hit.tag, "accept"); }
  else if (key === "r" && hit) { ev.preventDefault(); judgeReview(hit.tag, "reject"); }
  else if (key === "t") { ev.preventDefault(); $("review-add").focus(); }
  else if (key === "j" || key === "ArrowDown") {
    ev.preventDefault(); review.selected = Math.min(review.selected + 1, item.tags.length - 1); renderReview();
  } else if (key === "k" || key === "ArrowUp") {
    ev.preventDefault(); review.selected = Math.max(review.selected - 1, 0); renderReview();
  }
});

suggestTagNames($("review-add"));
