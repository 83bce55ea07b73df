// lablens review page (served as a file: the Content-Security-Policy allows no inline script)
"use strict";
const $ = (id) => document.getElementById(id);
let classes = [], current = null, selected = 0, order = [], nCells = 0, health = {tasks: {}};

function setClasses(list) {  // the keys 1…9 reclassify into the classes of the model in view
  classes = list || [];
  $("keys").innerHTML = classes.map((c, i) => "<kbd>" + (i + 1) + "</kbd> " + esc(c)).join(", ");
}
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
    $("welcome").hidden = true;
    $("app").hidden = false;
    health = await (await fetch("/api/health")).json();
    setClasses(health.classes);
    const tasks = Object.keys(health.tasks);
    $("task").innerHTML = tasks.map((t) => `<option value="${esc(t === "*" ? "blood" : t)}">${esc(t === "*" ? "any" : t)}</option>`).join("");
    $("f-task").innerHTML = `<option value="">all</option>` + tasks.map((t) => `<option>${esc(t)}</option>`).join("");
    say("signed in as " + me.name, true);
    $("admin").hidden = $("models").hidden = me.role !== "admin";
    if (me.role === "admin") { await loadUsers(); await loadModels(); }
    await loadSamples();
    await loadQueue();
    await loadMonitoring();
    if (current) await openSample(current.id);
  } catch (e) { say(e.message); }
}

async function loadSamples() {
  const q = new URLSearchParams();
  for (const [key, id] of [["task", "f-task"], ["status", "f-status"], ["since", "f-since"]]) if ($(id).value) q.set(key, $(id).value);
  const rows = await (await api("/api/samples?" + q)).json();
  $("samples").innerHTML = rows.map((s) =>
    `<tr class="sample${current && current.id === s.id ? " active" : ""}" data-id="${s.id}" data-testid="sample-${esc(s.name)}"><td>${s.id}</td><td>${esc(s.name)}</td>` +
    `<td>${esc(s.task)}</td><td>${esc(s.status)}</td><td>${s.n_cells}</td><td>${s.n_reviewed}</td>` +
    `<td>${s.n_not_evaluable + s.n_out_of_distribution}</td><td>${esc(s.created_at.slice(0, 10))}</td></tr>`).join("");
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
    c.flags.map((f) => `<span class="badge flag" title="${esc((c.flag_reasons || {})[f] || "quality flag")}">${esc(f)}</span>`).join(" ") + `</div>`;
}

async function loadImages() {  // images need the token, so they are fetched and shown as blobs
  for (const img of document.querySelectorAll("#groups img[data-src]")) {
    try { img.src = URL.createObjectURL(await (await api(img.dataset.src)).blob()); }
    catch (e) { img.alt = e.message; }
    img.removeAttribute("data-src");
  }
}

function render(doc) {
  if (!current || current.id !== doc.id) renderFields(doc);
  current = doc;
  const model = Object.values(health.tasks).find((t) => t.bundle_hash === doc.bundle_hash);
  if (model) setClasses(model.classes);
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

async function renderFields(doc) {  // whole fields with their detections; a click on a box selects that cell
  $("fields").innerHTML = "";
  let fields = [];
  try { fields = await (await api(`/api/samples/${doc.id}/fields`)).json(); } catch (e) { return; }
  $("fields").innerHTML = fields.map((f, k) =>
    `<figure class="field" data-testid="field-${k}"><div class="frame"><img alt="field ${esc(f.field)}" data-src="${f.image}">` +
    f.cells.map((c) => `<div class="box ${esc(c.queue)}" data-cell="${c.id}" data-box="${c.box.join(",")}" title="${esc(c.final || c.queue)}"></div>`).join("") +
    `</div><figcaption>${esc(f.field)}` + (f.evaluable === false ? ` — <b class="flag">not evaluable</b> (quality ${f.quality_score})` : "") +
    `</figcaption></figure>`).join("");
  for (const img of $("fields").querySelectorAll("img[data-src]")) {
    img.onload = () => {  // boxes in field pixels → percentages of the shown image
      const w = img.naturalWidth, h = img.naturalHeight;
      for (const box of img.parentElement.querySelectorAll(".box")) {
        const [x0, y0, x1, y1] = box.dataset.box.split(",").map(Number);
        Object.assign(box.style, {left: `${100 * x0 / w}%`, top: `${100 * y0 / h}%`, width: `${100 * (x1 - x0) / w}%`, height: `${100 * (y1 - y0) / h}%`});
      }
    };
    try { img.src = URL.createObjectURL(await (await api(img.dataset.src)).blob()); } catch (e) { img.alt = e.message; }
  }
}

function highlight() {
  for (const el of document.querySelectorAll(".field .box")) el.classList.toggle("selected", Number(el.dataset.cell) === order[selected]);
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
    `<div class="table-wrap"><table><thead><tr><th>class</th><th>cells</th><th>share</th></tr></thead><tbody>${rows}</tbody></table></div>` +
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
  const box = ev.target.closest(".field .box");
  if (box) { selected = order.indexOf(Number(box.dataset.cell)); highlight(); }
});
for (const id of ["f-task", "f-status", "f-since"]) $(id).onchange = () => loadSamples().catch((e) => say(e.message));
$("queue-kind").onchange = () => loadQueue().catch((e) => say(e.message));

async function loadQueue() {
  const rows = await (await api(`/api/queue?kind=${$("queue-kind").value}`)).json();
  $("queue").innerHTML = rows.map((c) =>
    `<tr class="clickable" data-sample="${c.sample_id}" data-cell="${c.id}" data-testid="queued-${c.id}"><td>${esc(c.sample)}</td><td>${esc(c.name)}</td>` +
    `<td>${esc(c.task)}</td><td>${c.quality_score ?? ""}</td><td>${c.ood_score ?? ""}</td></tr>`).join("") ||
    `<tr><td colspan="5">none waiting</td></tr>`;
}
$("queue").onclick = async (ev) => {
  const tr = ev.target.closest("tr[data-sample]");
  if (!tr) return;
  await openSample(Number(tr.dataset.sample));
  selected = order.indexOf(Number(tr.dataset.cell));
  highlight();
};

async function loadMonitoring() {
  const rows = await (await api("/api/monitoring?bootstrap=200")).json();
  const pct = (x) => `${(100 * x).toFixed(1)} %`;
  $("monitor").innerHTML = rows.map((r) => {
    const k = r.agreement && r.agreement.kappa;
    const kappa = k && k.value !== null ? `${k.value.toFixed(2)}` + (k.ci ? ` (${k.ci[0].toFixed(2)}–${k.ci[1].toFixed(2)})` : "") : "—";
    const worst = Object.entries(r.correction_rate).sort((a, b) => b[1].rate - a[1].rate)[0];
    return `<tr data-testid="monitor-${esc(r.task)}-v${r.model_version}-${esc(r.week)}"><td>${esc(r.task)}</td><td>v${r.model_version ?? "?"} ${esc(r.bundle_hash.slice(0, 8))}</td>` +
      `<td>${esc(r.week)}</td><td>${r.n_cells}</td><td>${r.n_reviewed}</td><td>${kappa}</td><td>${pct(r.share.not_evaluable)}</td>` +
      `<td>${pct(r.share.out_of_distribution)}</td><td>${pct(r.share.unidentified)}</td>` +
      `<td>${worst ? `${esc(worst[0])} ${pct(worst[1].rate)} of ${worst[1].reviewed}` : ""}</td></tr>`;
  }).join("");
}

// --- models (admins) ---
async function loadModels() {
  const rows = await (await api("/api/models")).json();
  $("model-rows").innerHTML = rows.map((m) => {
    const p = m.promotion, d = p && p.decision;
    const acc = p && p.accuracy ? `${p.accuracy.candidate.toFixed(3)} vs ${p.accuracy.current.toFixed(3)} in service` : "?";
    const report = p ? `${d && d.promote ? "promote" : "refuse"}: accuracy ${acc} on ${p.n} locked cases` : "";
    return `<tr data-model="${m.id}" data-testid="model-${esc(m.task)}-v${m.version}"><td>${esc(m.task)}</td><td>v${m.version}</td>` +
      `<td>${esc(m.bundle_hash.slice(0, 12))}</td><td>${esc(m.registered_at.slice(0, 16).replace("T", " "))}</td>` +
      `<td>${m.active ? "<b>active</b>" : ""}</td><td>${esc(report)}</td><td>` +
      (m.active ? "" : `<input class="reason" placeholder="reason"> <input class="report" type="file" accept=".json"> <button data-act="activate">Activate</button>`) +
      `</td></tr>`;
  }).join("");
}
$("model-rows").onclick = async (ev) => {
  const button = ev.target.closest("button[data-act=activate]");
  if (!button) return;
  const tr = button.closest("tr");
  const file = tr.querySelector(".report").files[0];
  try {
    const body = {reason: tr.querySelector(".reason").value, promotion: file ? JSON.parse(await file.text()) : null};
    const doc = await (await api(`/api/admin/models/${tr.dataset.model}/activate`, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)})).json();
    say(`${doc.task} v${doc.version}: ${doc.action.replace("_model", "")} done`, true);
    health = await (await fetch("/api/health")).json();
    await loadModels();
  } catch (e) { say(e.message); }
};
$("scan").onclick = async () => {
  try {
    const added = await (await api("/api/admin/models/scan", {method: "POST"})).json();
    say(`${added.length} new model(s) registered`, true);
    await loadModels();
  } catch (e) { say(e.message); }
};
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
  form.append("kind", $("kind").value);
  if ($("task").value) form.append("task", $("task").value);
  if ($("um-per-px").value) form.append("um_per_px", $("um-per-px").value);
  for (const f of $("files").files) form.append("files", f);
  try {
    const doc = await (await api("/api/samples", {method: "POST", body: form})).json();
    say(`sample ${doc.name}: ${doc.n_cells} cells` + (doc.skipped.length ? `, ${doc.skipped.length} skipped` : ""), true);
    selected = 0; render(doc); await loadSamples(); await loadQueue();
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
