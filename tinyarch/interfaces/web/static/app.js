// tinyarch serve: one page, four views (#/ runs, #/run/NAME live, #/run/NAME/trace, #/run/NAME/candidate/ID).
// Everything shown comes from the JSON API and is inserted as text, never as HTML: traces hold LLM output.
"use strict";

const params = new URLSearchParams(location.search);
if (params.get("token")) sessionStorage.setItem("tinyarch-token", params.get("token"));
const TOKEN = sessionStorage.getItem("tinyarch-token") || "";
const POLL_MS = 2000;
const FRESH_MS = 15000;
const EXAMPLE_CONFIG = `name: nats-${new Date().toISOString().slice(0, 16).replace(/[-:T]/g, "")}
space: nats-tss
dataset: cifar100
evaluator: nats
strategy: llm
batch: 2
budget_evals: 8
`;
const chatLogs = {}; // run name -> [[who, text]], kept while the page is open
let timer = null;

// ------------------------------------------------------------------ helpers

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

function withToken(path) {
  return TOKEN ? `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(TOKEN)}` : path;
}

async function api(path, body = undefined) {
  const options = { headers: {} };
  if (TOKEN) options.headers.Authorization = `Bearer ${TOKEN}`;
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    let detail = data.detail ?? response.statusText;
    if (Array.isArray(detail)) detail = detail.map((d) => (typeof d === "string" ? d : `${(d.loc || []).join(".")}: ${d.msg}`)).join("\n");
    if (response.status === 401) detail += " (open the address that `tinyarch serve` printed, with its ?token=)";
    throw new Error(detail);
  }
  return data;
}

function banner(message) {
  const node = document.getElementById("banner");
  node.textContent = message || "";
  node.hidden = !message;
}

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : el("td", {}, c)))))));
}

function facts(rows) {
  return el("table", { class: "facts" }, el("tbody", {}, rows.map(([key, value]) => el("tr", {}, el("th", {}, key), el("td", {}, value)))));
}

const pct = (v) => (v === null || v === undefined ? "-" : `${v.toFixed(2)} %`);
const num = (v) => el("td", { class: "num" }, v);
const runLink = (name, rest = "") => el("a", { href: `#/run/${encodeURIComponent(name)}${rest}` }, name);
const clock = (s) => `+${String(Math.floor(s / 60)).padStart(2, "0")}:${(s % 60).toFixed(1).padStart(4, "0")}`;

function crumbs(name) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren();
  if (name) nav.append(runLink(name), el("a", { href: `#/run/${encodeURIComponent(name)}/trace` }, "trace"),
    el("a", { href: withToken(`/api/runs/${encodeURIComponent(name)}/report`), target: "_blank" }, "report"));
}

// ------------------------------------------------------------------ #/  runs and the start form

async function showRuns(view) {
  crumbs(null);
  const list = el("div", {}, el("p", { class: "muted" }, "loading…"));
  const errors = el("pre", { id: "start-errors", class: "error", hidden: "" });
  const config = el("textarea", { id: "start-config", rows: "12", spellcheck: "false" }, EXAMPLE_CONFIG);
  const form = el("form", { id: "start-form" },
    el("p", { class: "muted" }, "A RUN.yaml: any key of `tinyarch search --config` (name, space, dataset, evaluator, strategy, llm, batch, budget_evals, sram, macs, …)."),
    config, el("p", {}, el("button", { type: "submit", id: "start" }, "Start search")), errors);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.hidden = true;
    try {
      const started = await api("/api/runs", { config: config.value });
      location.hash = `#/run/${encodeURIComponent(started.name)}`;
    } catch (e) {
      errors.textContent = e.message;
      errors.hidden = false;
    }
  });
  view.replaceChildren(el("h1", {}, "Runs"), list, el("h2", {}, "Start a search"), form);
  const refresh = async () => {
    const runs = await api("/api/runs");
    list.replaceChildren(runs.length ? table(["run", "status", "search", "iteration", "evaluated", "best"], runs.map((r) => [
      runLink(r.name), r.error ? el("span", { class: "error" }, r.error) : el("span", { class: `status ${r.status.replace(" ", "-")}` }, r.status),
      `${r.strategy} · ${r.space} · ${r.dataset}`, num(r.iteration), num(`${r.evaluated} / ${r.budget_evals}`),
      r.best_id ? el("span", {}, pct(r.best_accuracy), " ", el("a", { href: `#/run/${encodeURIComponent(r.name)}/candidate/${r.best_id}` }, r.best_id)) : "-",
    ])) : el("p", { class: "muted" }, "No runs yet."));
  };
  await refresh();
  timer = setInterval(() => refresh().catch((e) => banner(e.message)), POLL_MS * 2);
}

// ------------------------------------------------------------------ #/run/NAME  live view, plot, chat

async function showRun(view, name) {
  crumbs(name);
  const base = `/api/runs/${encodeURIComponent(name)}`;
  const head = el("div");
  const stats = el("div", { id: "stats" });
  const agents = el("div", { id: "agents" });
  const plot = el("div", { id: "plot" });
  const axisSelect = el("select", { id: "axis" });
  const board = el("div", { id: "leaderboard" });
  const logBox = el("pre", { id: "log", hidden: "" });
  const seen = new Map(); // candidate id -> when the page first saw it
  let first = true;
  let lastData = null;

  const chatLog = el("div", { class: "chat-log", id: "chat-log" });
  const input = el("input", { id: "chat-input", placeholder: "a directive (stay under 30 M MACs), a question, or /help", autocomplete: "off" });
  const send = el("button", { type: "submit", id: "chat-send" }, "Send");
  const log = (chatLogs[name] ||= []);
  const say = (who, text) => {
    log.push([who, text]);
    chatLog.append(el("div", { class: `msg ${who}` }, text));
    chatLog.scrollTop = chatLog.scrollHeight;
  };
  log.forEach(([who, text]) => chatLog.append(el("div", { class: `msg ${who}` }, text)));
  const chatForm = el("form", { id: "chat-form" }, input, send);
  chatForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const line = input.value.trim();
    if (!line) return;
    input.value = "";
    say("you", line);
    send.disabled = true;
    const waiting = el("div", { class: "msg muted" }, "…");
    chatLog.append(waiting);
    try {
      say("bot", (await api(`${base}/chat`, { line })).reply);
    } catch (e) {
      say("bot", `error: ${e.message}`);
    } finally {
      waiting.remove();
      send.disabled = false;
      refresh().catch(() => {});
    }
  });

  const control = (action) => async () => {
    try {
      if (action === "continue") {
        await api(`${base}/continue`, {}); // a POST: the search process starts again with --resume
        say("bot", "continue sent: the search process is starting");
      } else {
        say("bot", (await api(`${base}/control`, { action })).reply);
      }
      await refresh();
    } catch (e) {
      banner(e.message);
    }
  };
  const buttons = el("div", { class: "buttons" }, ["pause", "resume", "stop", "continue"].map((action) =>
    el("button", { id: `btn-${action}`, onclick: control(action), title: action === "continue" ? "restart a search process that is gone" : `${action} the search` }, action)));
  axisSelect.addEventListener("change", () => lastData && drawPlot(plot, lastData, axisSelect.value, seen, false));

  view.replaceChildren(head, el("div", { class: "columns" },
    el("div", {}, stats, el("h2", {}, "Pareto plot ", axisSelect), plot, el("h2", {}, "Agents"), agents, el("h2", {}, "Candidates"), board, logBox),
    el("div", {}, buttons, el("h2", {}, "Chat"), el("div", { class: "chat" }, chatLog, chatForm))));

  async function refresh() {
    const d = await api(base);
    lastData = d;
    head.replaceChildren(el("h1", {}, name, " ", el("span", { class: `status ${d.status.replace(" ", "-")}`, id: "run-status" }, d.status)));
    buttons.querySelector("#btn-pause").disabled = d.status !== "running";
    buttons.querySelector("#btn-resume").disabled = d.status !== "paused";
    buttons.querySelector("#btn-stop").disabled = !["running", "paused"].includes(d.status);
    buttons.querySelector("#btn-continue").disabled = d.status !== "not running";
    const hv = d.hypervolume.length ? d.hypervolume[d.hypervolume.length - 1].toFixed(4) : "-";
    stats.replaceChildren(facts([
      ...d.settings,
      ["iteration", String(d.iteration)],
      ["evaluations", `${d.evaluated} evaluated (${d.recalled} recalled from memory, no budget spent), ${d.failed} failed, ${d.rejected} rejected before evaluation (budget ${d.budget_evals})`],
      ["best", d.best_id ? el("span", {}, pct(d.best_accuracy), " ", el("a", { href: `#/run/${encodeURIComponent(name)}/candidate/${d.best_id}` }, d.best_id)) : "-"],
      ["hypervolume", `${hv} (last iterations: ${d.hypervolume.map((v) => v.toFixed(3)).join(" ") || "-"})`],
      ["now", el("span", { id: "now" }, d.now)],
      ["limits", d.limits],
      ["directives", d.directives.join("; ") || "(none)"],
      ...(d.waiting.length ? [["waiting for the next design step", d.waiting.join("; ")]] : []),
      ...(d.notes.length ? [["notes", d.notes.join("; ")]] : []),
    ]));
    agents.replaceChildren(d.agents.length ? table(["agent", "last step", "ago"], d.agents.map((a) => [
      a.agent, el("span", { class: a.error ? "error" : "" }, a.line), num(`${a.seconds_ago.toFixed(0)} s`)])) : el("p", { class: "muted" }, "no steps yet"));
    const keys = d.axes.map((a) => a.key);
    if (keys.join() !== [...axisSelect.options].map((o) => o.value).join()) {
      axisSelect.replaceChildren(...d.axes.map((a) => el("option", { value: a.key }, a.label)));
    }
    axisSelect.hidden = !d.axes.length;
    drawPlot(plot, d, axisSelect.value, seen, first);
    first = false;
    const ranked = [...d.points].sort((a, b) => b.accuracy - a.accuracy);
    board.replaceChildren(ranked.length ? table(["", "id", "accuracy", ...d.axes.map((a) => a.label), "iteration"], ranked.map((p) => [
      p.front ? el("span", { class: "front", title: "on the Pareto front" }, "●") : "",
      el("a", { href: `#/run/${encodeURIComponent(name)}/candidate/${p.id}` }, p.id), num(pct(p.accuracy)),
      ...d.axes.map((a) => num(`${(p.costs[a.key] / a.divisor).toFixed(2)} ${a.unit}`)),
      p.recalled ? el("span", { class: "muted", title: `recalled from run ${p.recalled}: no budget spent` }, "recalled") : num(p.iteration ?? "…"),
    ])) : el("p", { class: "muted" }, "no evaluated candidates yet"));
    logBox.hidden = !(d.status === "not running" && d.log_tail.length);
    logBox.textContent = `search.log:\n${d.log_tail.join("\n")}`;
  }
  await refresh();
  timer = setInterval(() => refresh().then(() => banner("")).catch((e) => banner(e.message)), POLL_MS);
}

function drawPlot(container, d, key, seen, first) {
  const axis = d.axes.find((a) => a.key === key) || d.axes[0];
  if (!axis || !d.points.length) {
    container.replaceChildren(el("p", { class: "muted" }, "the plot appears with the first evaluated candidate"));
    return;
  }
  const W = 620, H = 380, L = 56, R = 16, T = 14, B = 42;
  const xs = d.points.map((p) => p.costs[axis.key] / axis.divisor);
  const ys = d.points.map((p) => p.accuracy);
  const limit = axis.limit ? axis.limit / axis.divisor : null;
  const log = Math.min(...xs) > 0 && Math.max(...xs) / Math.min(...xs) > 30;
  const tx = log ? Math.log10 : (v) => v;
  let [x0, x1] = [Math.min(...xs.map(tx)), Math.max(...xs.map(tx), limit ? tx(limit) : -Infinity)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys, d.optimum ?? -Infinity)];
  const pad = (a, b) => (b - a || Math.abs(a) || 1) * 0.06;
  [x0, x1] = [x0 - pad(x0, x1), x1 + pad(x0, x1)];
  [y0, y1] = [y0 - pad(y0, y1), y1 + pad(y0, y1)];
  const px = (v) => L + ((tx(v) - x0) / (x1 - x0)) * (W - L - R);
  const py = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `accuracy against ${axis.label}` });
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + ((y1 - y0) * i) / 4, xv = x0 + ((x1 - x0) * i) / 4;
    const xLabel = log ? 10 ** xv : xv;
    root.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: py(yv), y2: py(yv) }),
      svg("text", { x: L - 6, y: py(yv) + 4, "text-anchor": "end" }, yv.toFixed(1)),
      svg("line", { class: "grid", x1: L + ((W - L - R) * i) / 4, x2: L + ((W - L - R) * i) / 4, y1: T, y2: H - B }),
      svg("text", { x: L + ((W - L - R) * i) / 4, y: H - B + 16, "text-anchor": "middle" }, xLabel.toPrecision(3)));
  }
  root.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }), svg("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }),
    svg("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, `${axis.label} (${axis.unit}${log ? ", log" : ""})`),
    svg("text", { x: 14, y: (T + H - B) / 2, transform: `rotate(-90 14 ${(T + H - B) / 2})`, "text-anchor": "middle" }, "accuracy (%)"));
  if (limit) root.append(svg("line", { class: "budget", x1: px(limit), x2: px(limit), y1: T, y2: H - B }, null));
  if (d.optimum !== null) root.append(svg("line", { class: "optimum", x1: L, x2: W - R, y1: py(d.optimum), y2: py(d.optimum) }));
  for (const p of [...d.points].sort((a, b) => a.front - b.front)) {
    const fresh = !first && Date.now() - (seen.get(p.id) ?? Date.now()) < FRESH_MS;
    const dot = svg("circle", { class: `pt${p.front ? " front" : ""}${fresh ? " new" : ""}`, cx: px(p.costs[axis.key] / axis.divisor), cy: py(p.accuracy), r: p.front ? 5.5 : 4, "data-id": p.id });
    dot.append(svg("title", {}, `${p.id}: ${p.accuracy.toFixed(2)} %, ${(p.costs[axis.key] / axis.divisor).toFixed(2)} ${axis.unit}`));
    dot.addEventListener("click", () => { location.hash = `#/run/${encodeURIComponent(d.name)}/candidate/${p.id}`; });
    root.append(dot);
  }
  d.points.forEach((p) => seen.has(p.id) || seen.set(p.id, first ? 0 : Date.now()));
  container.replaceChildren(root, el("p", { class: "muted", id: "plot-count" }, `${d.points.length} evaluated; orange: the Pareto front over accuracy and every cost${limit ? "; dashed red: the budget" : ""}${d.optimum !== null ? "; dotted green: the NATS table's optimum" : ""}; blue ring: arrived in the last ${FRESH_MS / 1000} s.`));
}

// ------------------------------------------------------------------ #/run/NAME/trace

async function showTrace(view, name) {
  crumbs(name);
  const base = `/api/runs/${encodeURIComponent(name)}/traces`;
  const iteration = el("select", { id: "trace-iteration" }, el("option", { value: "" }, "all iterations"));
  const agent = el("select", { id: "trace-agent" }, el("option", { value: "" }, "all agents"));
  const errors = el("input", { type: "checkbox", id: "trace-errors" });
  const list = el("div", { id: "trace" });
  const count = el("span", { class: "muted" });
  view.replaceChildren(el("h1", {}, "Trace of ", runLink(name)),
    el("div", { class: "filters" }, iteration, agent, el("label", {}, errors, " errors only"), count), list);
  async function load() {
    const query = new URLSearchParams({ limit: "500" });
    if (iteration.value) query.set("iteration", iteration.value);
    if (agent.value) query.set("agent", agent.value);
    if (errors.checked) query.set("errors", "true");
    const page = await api(`${base}?${query}`);
    if (iteration.options.length === 1) page.iterations.forEach((i) => iteration.append(el("option", { value: i }, `iteration ${i}`)));
    if (agent.options.length === 1) page.agents.forEach((a) => agent.append(el("option", { value: a }, a)));
    count.textContent = `${page.steps.length} of ${page.total} steps`;
    let current = null;
    list.replaceChildren();
    for (const s of page.steps) {
      if (s.iteration !== current) {
        current = s.iteration;
        list.append(el("h2", {}, `iteration ${current}`));
      }
      const line = el("div", { class: `step${s.llm ? " llm" : ""}${s.error ? " bad" : ""}`, "data-agent": s.agent },
        el("span", { class: "clock" }, clock(s.seconds)), el("span", { class: "agent" }, s.agent), el("span", { class: s.error ? "error" : "" }, s.title));
      if (s.llm) {
        line.append(el("details", {}, el("summary", {}, "conversation"),
          s.messages.map((m) => el("div", {}, el("b", {}, `[${m.role}]`), el("pre", {}, m.content))),
          el("b", {}, "[answer]"), el("pre", {}, s.raw), s.errors.map((e) => el("div", { class: "error" }, `error: ${e}`))));
      } else if (s.detail) {
        line.append(el("details", {}, el("summary", {}, "details"), el("pre", {}, s.detail)));
      }
      list.append(line);
    }
  }
  [iteration, agent, errors].forEach((c) => c.addEventListener("change", () => load().catch((e) => banner(e.message))));
  await load();
}

// ------------------------------------------------------------------ #/run/NAME/candidate/ID

async function showCandidate(view, name, id) {
  crumbs(name);
  const c = await api(`/api/runs/${encodeURIComponent(name)}/candidates/${id}`);
  const file = (path) => withToken(`/api/runs/${encodeURIComponent(name)}/files/${path.split("/").map(encodeURIComponent).join("/")}`);
  const sections = [
    el("h1", {}, `Candidate ${c.id}`, c.front ? el("span", { class: "front" }, " (on the Pareto front)") : ""),
    el("p", {}, c.summary),
    facts([["status", `${c.status}${c.reason ? `: ${c.reason}` : ""}`], ["proposed by", `${c.source || "-"} in iteration ${c.iteration ?? "-"}`],
      ...Object.entries(c.metrics).map(([k, v]) => [k, v.toFixed(4)]), ...c.costs]),
    el("h2", {}, "Spec"), el("pre", { id: "spec" }, JSON.stringify(c.spec, null, 1)),
  ];
  if (c.layers.length) {
    sections.push(el("h2", {}, "Profile"), el("details", { id: "layers" }, el("summary", {}, `${c.layers.length} operators: MACs, parameters, live SRAM and estimated latency of each`),
      table(["layer", "kind", "output", "MACs", "params", "live bytes", "latency"], c.layers.map((l) => [
        l.name, l.kind, l.out_shape.join("×"), num(l.macs.toLocaleString()), num(l.params.toLocaleString()), num(l.live_bytes.toLocaleString()), num(`${l.latency_ms.toFixed(3)} ms`)]))));
  }
  for (const [dir, history] of Object.entries(c.curves)) {
    sections.push(el("h2", {}, `Training curve: ${dir}`), table(["epoch", "train loss", "val loss", "val acc", "lr", "s"], history.map((h) => [
      num(h.epoch), num(h.train_loss?.toFixed(4)), num(h.val_loss?.toFixed(4)), num(pct(h.val_acc)), num(h.lr?.toExponential(2)), num(h.seconds?.toFixed(1))])));
  }
  if (c.explanation) sections.push(el("h2", {}, "Explanation"), el("pre", {}, c.explanation));
  if (c.images.length) sections.push(el("div", { class: "images" }, c.images.map((path) => el("figure", {}, el("img", { src: file(path), alt: path }), el("figcaption", { class: "muted" }, path)))));
  for (const fw of c.firmware) {
    sections.push(el("h2", {}, `Firmware: ${fw.id}`), fw.ok ? facts(fw.figures) : el("p", { class: "muted" }, fw.reason));
  }
  if (c.files.length) {
    sections.push(el("h2", {}, "Downloads"), el("p", {}, el("a", { href: withToken(`/api/runs/${encodeURIComponent(name)}/candidates/${c.id}/archive`), id: "archive" }, "everything as a zip")),
      table(["file", "size"], c.files.map((f) => [el("a", { href: file(f.path) }, f.path), num(`${(f.bytes / 1024).toFixed(1)} KB`)])));
  }
  view.replaceChildren(...sections);
}

// ------------------------------------------------------------------ router

async function route() {
  clearInterval(timer);
  banner("");
  const view = document.getElementById("view");
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "run" && parts[1] && parts[2] === "trace") await showTrace(view, parts[1]);
    else if (parts[0] === "run" && parts[1] && parts[2] === "candidate" && parts[3]) await showCandidate(view, parts[1], parts[3]);
    else if (parts[0] === "run" && parts[1]) await showRun(view, parts[1]);
    else await showRuns(view);
  } catch (e) {
    banner(e.message);
  }
}

window.addEventListener("hashchange", route);
route();
