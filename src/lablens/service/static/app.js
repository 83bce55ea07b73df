// lablens review page (served as a file: the Content-Security-Policy allows no inline script)
"use strict";
const $ = (id) => document.getElementById(id);
let classes = [], current = null, selected = 0, order = [], nCells = 0;
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

function say(text, ok = false) { $("message").textContent = text; $("message").className = ok ? "ok" : ""; }

async function api(path, options = {}) {
  const headers = Object.assign({"Authorization": "Bearer " + sessionStorage.getItem("token")}, options.headers || {});
  const r = await fetch(path, Object.assign({}, options, {headers}));
  if (!r.ok) {
    let detail = r.statusText;
    try { const j = await r.json(); detail = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail); } catch (e) {}
    throw new Error(r.status + ": " + detail);
  }
  return r;
}

async function signin() {
  sessionStorage.setItem("token", $("token").value.trim());
  try {
    const me = await (await api("/api/whoami")).json();
    $("who").textContent = me.name + " (" + me.role + ")";
    classes = (await (await fetch("/api/health")).json()).classes;
    $("keys").innerHTML = classes.map((c, i) => "<kbd>" + (i + 1) + "</kbd> " + esc(c)).join(", ");
    say("signed in as " + me.name, true);
    $("admin").hidden = me.role !== "admin";
    if (me.role === "admin") await loadUsers();
    await loadSamples();
    if (current) await openSample(current.id);
  } catch (e) { say(e.message); }
}

async function loadSamples() {
  const rows = await (await api("/api/samples")).json();
  $("samples").innerHTML = rows.map((s) =>
    `<tr class="sample${current && current.id === s.id ? " active" : ""}" data-id="${s.id}"><td>${s.id}</td><td>${esc(s.name)}</td>` +
    `<td>${esc(s.status)}</td><td>${s.n_cells}</td><td>${s.n_reviewed}</td></tr>`).join("");
  for (const tr of $("samples").querySelectorAll("tr")) tr.onclick = () => openSample(Number(tr.dataset.id));
}

const HELD = ["not_evaluable", "out_of_distribution", "unidentified"];  // queues where the model gave no call

function cellCard(c) {
  const status = HELD.includes(c.queue) ? c.queue : c.status;
  const src = $("gradcam").checked ? `/api/cells/${c.id}/gradcam` : c.image;
  return `<div class="cell" tabindex="0" data-id="${c.id}" data-testid="cell-${c.id}">` +
    `<img alt="cell ${c.id}" data-src="${src}">` +
    `<div><b>${esc(c.final || "—")}</b> <span class="badge ${status}">${status.replaceAll("_", " ")}</span></div>` +
    `<div class="p">model: ${esc(c.predicted)} ${(100 * c.confidence).toFixed(1)} %</div>` +
    (c.attention === null || c.attention === undefined ? "" :
      `<div class="p attention" data-testid="attention-${c.id}" title="share of the sample call this cell drove">` +
      `attention ${(100 * c.attention).toFixed(1)} % <meter min="0" max="2" value="${Math.min(2, c.attention * nCells)}"></meter></div>`) +
    c.flags.map((f) => `<span class="badge flag" title="quality flag">${esc(f)}</span>`).join(" ") + `</div>`;
}

async function loadImages() {  // images need the token, so they are fetched and shown as blobs
  for (const img of document.querySelectorAll("#groups img[data-src]")) {
    try { img.src = URL.createObjectURL(await (await api(img.dataset.src)).blob()); }
    catch (e) { img.alt = e.message; }
    img.removeAttribute("data-src");
  }
}

function render(doc) {
  current = doc;
  $("sample").hidden = false;
  $("sample-title").textContent = `Sample ${doc.name} — ${doc.status}` + (doc.signed_by ? ` by ${doc.signed_by}` : "");
  const groups = {};
  for (const c of doc.cells) {
    const key = HELD.includes(c.queue) ? c.queue : c.final;
    (groups[key] = groups[key] || []).push(c);
  }
  const rank = (k) => (HELD.includes(k) ? HELD.indexOf(k) - HELD.length : 0);  // held-back queues first
  const keys = Object.keys(groups).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  nCells = doc.cells.length;
  if (doc.call) for (const k of keys) groups[k].sort((a, b) => b.attention - a.attention);  // drivers first
  order = keys.flatMap((k) => groups[k].map((c) => c.id));
  const call = doc.call ? `<p class="call" data-testid="sample-call">Sample call: <b>${esc(doc.call.predicted)}</b> ` +
    `${(100 * doc.call.probabilities[doc.call.predicted]).toFixed(1)} % — ${esc(doc.call.method)}; ` +
    `within each class the cells that drove the call come first (meter: attention against an even share, full at twice that).</p>` : "";
  $("groups").innerHTML = call + keys.map((k) =>
    `<div class="group" data-class="${esc(k)}"><h3>${esc(k)} (${groups[k].length})</h3>` +
    `<div class="cells">${groups[k].map(cellCard).join("")}</div></div>`).join("");
  selected = Math.min(selected, order.length - 1);
  highlight();
  loadImages();
  renderReport(doc);
}

function highlight() {
  for (const el of document.querySelectorAll(".cell")) el.classList.toggle("selected", Number(el.dataset.id) === order[selected]);
  const el = document.querySelector(".cell.selected");
  if (el) el.focus({preventScroll: false});
}

let reportSeq = 0;  // renders overlap (sign, then reopen): only the newest one writes the report

async function renderReport(doc) {
  const seq = ++reportSeq;
  const ag = await (await api("/api/agreement")).json();
  const events = await (await api(`/api/samples/${doc.id}/audit`)).json();
  if (seq !== reportSeq) return;
  $("report").hidden = false;
  const rows = Object.entries(doc.percent).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${doc.counts[k]}</td><td>${v.toFixed(1)} %</td></tr>`).join("");
  $("report-body").innerHTML = `<p data-testid="report-status">Status: <b>${esc(doc.status)}</b>` +
    (doc.signed_by ? ` — signed by ${esc(doc.signed_by)} at ${esc(doc.signed_at)}` : "") +
    `; ${doc.n_reviewed} of ${doc.n_cells} cells reviewed, ${doc.n_unidentified} unidentified` +
    `, ${doc.n_not_evaluable} not evaluable, ${doc.n_out_of_distribution} out of distribution.</p>` +
    (doc.ood && doc.ood.flagged ? `<p class="flag" data-testid="ood-verdict">Out of distribution: ${doc.ood.reasons.map(esc).join("; ")}</p>` : "") +
    `<table><thead><tr><th>class</th><th>cells</th><th>share</th></tr></thead><tbody>${rows}</tbody></table>` +
    (ag.n_reviewed
      ? `<p data-testid="agreement">Model vs technicians, all reviewed cells: ${ag.n_reviewed} cells, agreement ${(100 * ag.agreement).toFixed(1)} %, Cohen's kappa ${ag.cohen_kappa.toFixed(2)}.</p>`
      : "");
  $("audit").innerHTML = events.map((e) =>
    `<tr><td>${esc(e.at.slice(0, 19).replace("T", " "))}</td><td>${esc(e.actor)}</td><td>${esc(e.action)}</td>` +
    `<td>${esc(e.entity)} ${e.entity_id}</td><td>${esc(JSON.stringify(e.before))} → ${esc(JSON.stringify(e.after))}</td></tr>`).join("");
}

async function openSample(id) {
  try { render(await (await api(`/api/samples/${id}`)).json()); await loadSamples(); }
  catch (e) { say(e.message); }
}

async function review(cellId, body) {
  try {
    const c = await (await api(`/api/cells/${cellId}/review`, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})).json();
    say(`cell ${cellId}: ${c.status} as ${c.final}`, true);
    await openSample(current.id);
  } catch (e) { say(e.message); }
}

document.addEventListener("keydown", (ev) => {
  if (!current || ev.target.tagName === "INPUT") return;
  if (ev.key === "ArrowRight") { selected = Math.min(selected + 1, order.length - 1); highlight(); ev.preventDefault(); }
  else if (ev.key === "ArrowLeft") { selected = Math.max(selected - 1, 0); highlight(); ev.preventDefault(); }
  else if (ev.key === "Enter" || ev.key === "c") { review(order[selected], {action: "confirm"}); ev.preventDefault(); }
  else if (ev.key === "g") { $("gradcam").checked = !$("gradcam").checked; render(current); }
  else if (/^[1-9]$/.test(ev.key) && Number(ev.key) <= classes.length) {
    review(order[selected], {action: "reclassify", label: classes[Number(ev.key) - 1]}); ev.preventDefault();
  }
});
document.addEventListener("click", (ev) => {
  const card = ev.target.closest(".cell");
  if (card) { selected = order.indexOf(Number(card.dataset.id)); highlight(); }
});
$("gradcam").onchange = () => current && render(current);
$("signin").onclick = signin;
$("token").addEventListener("keydown", (ev) => { if (ev.key === "Enter") signin(); });
$("sign").onclick = async () => {
  try { const doc = await (await api(`/api/samples/${current.id}/sign`, {method: "POST"})).json(); render(doc); say("sample signed", true); await loadSamples(); }
  catch (e) { say(e.message); }
};
$("upload").onsubmit = async (ev) => {
  ev.preventDefault();
  const form = new FormData();
  form.append("name", $("sample-name").value);
  for (const f of $("files").files) form.append("files", f);
  try {
    const doc = await (await api("/api/samples", {method: "POST", body: form})).json();
    say(`sample ${doc.name}: ${doc.n_cells} cells` + (doc.skipped.length ? `, ${doc.skipped.length} skipped` : ""), true);
    selected = 0; render(doc); await loadSamples();
  } catch (e) { say(e.message); }
};
if (sessionStorage.getItem("token")) { $("token").value = sessionStorage.getItem("token"); signin(); }

// --- users (admins) ---
async function loadUsers() {
  const users = await (await api("/api/admin/users")).json();
  $("users").innerHTML = users.map((u) =>
    `<tr data-user="${u.id}" data-testid="user-${esc(u.name)}"><td>${esc(u.name)}</td><td>${esc(u.role)}</td>` +
    `<td>${u.active ? "active" : "deactivated"}</td><td>${u.has_token ? "set" : "revoked"}</td><td>` +
    `<button data-act="rotate-token">Rotate token</button><button data-act="revoke">Revoke</button>` +
    `<button data-act="${u.active ? "deactivate" : "activate"}">${u.active ? "Deactivate" : "Activate"}</button>` +
    `</td></tr>`).join("");
}
function showToken(doc) {
  $("new-token").textContent = doc.token ? `API token of ${doc.name} (shown once, store it now): ${doc.token}` : "";
}
$("users").onclick = async (ev) => {
  const button = ev.target.closest("button");
  if (!button) return;
  const id = button.closest("tr").dataset.user;
  try {
    const doc = await (await api(`/api/admin/users/${id}/${button.dataset.act}`, {method: "POST"})).json();
    showToken(doc);
    say(`${doc.name}: ${button.dataset.act} done`, true);
    await loadUsers();
  } catch (e) { say(e.message); }
};
$("new-user").onsubmit = async (ev) => {
  ev.preventDefault();
  const body = JSON.stringify({name: $("new-user-name").value, role: $("new-user-role").value});
  try {
    const doc = await (await api("/api/admin/users", {method: "POST", headers: {"Content-Type": "application/json"}, body})).json();
    showToken(doc);
    say(`user ${doc.name} (${doc.role}) created`, true);
    await loadUsers();
  } catch (e) { say(e.message); }
};
