// calisim web: the page of one lab.  The server pushes the lab's state (server-sent events on
// /events); the layout and each host's rows come from the server (calisim graph's), cytoscape.js
// draws them.  window.calisim holds the page's state (the browser tests read it).
"use strict";

const page = { cy: null, snapshot: null, verbs: [], probe: null, down: null, imagesPending: 0 };
window.calisim = page;

const COLOURS = { established: "#2da44e", down: "#cf222e", link: "#6e7781", impaired: "#bf8700" };
const $ = (id) => document.getElementById(id);

function escapeXml(text) {
  return text.replace(/[<>&'"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" }[c]));
}

// A host's box as an SVG image: graph.host_rows, the rows `calisim graph` draws as a table.
function hostImage(data) {
  const w = data.w, h = data.h, rows = data.rows;
  const header = Math.min(26, h / rows.length * 1.3), step = (h - header) / Math.max(rows.length - 1, 1);
  let y = 0, body = "";
  rows.forEach((row, index) => {
    const height = index === 0 ? header : step;
    if (row.fill) body += `<rect x="0" y="${y}" width="${w}" height="${height}" fill="${row.fill}"/>`;
    const size = row.header ? 13 : 11, weight = row.header ? "bold" : "normal";
    body += `<text x="${w / 2}" y="${y + height / 2}" dy="0.35em" text-anchor="middle" font-size="${size}" ` +
      `font-weight="${weight}" fill="${row.colour}">${escapeXml(row.text)}</text>`;
    y += height;
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" ` +
    `font-family="Helvetica, Arial, sans-serif"><rect width="${w}" height="${h}" fill="white"/>${body}</svg>`;
  return "data:image/svg+xml;charset=utf-8," + encodeURIComponent(svg);
}

// A host's new picture replaces the old one once the browser has decoded it: no blank box between.
function swapImage(id, uri) {
  if (page.cy.getElementById(id).data("image") === uri) return;
  page.imagesPending += 1;
  const image = new Image();
  image.onload = image.onerror = () => {
    page.imagesPending -= 1;
    page.cy.getElementById(id).data("image", uri);
  };
  image.src = uri;
}

const STYLE = [
  { selector: "node[kind='host']", style: {
    shape: "rectangle", width: "data(w)", height: "data(h)", "background-image": "data(image)",
    "background-width": "100%", "background-height": "100%", "background-color": "white",
    "border-width": 1, "border-color": "#8c959f" } },
  { selector: "node[kind='host'][?troubled]", style: { "border-width": 3, "border-color": COLOURS.down } },
  { selector: "node[kind='host']:selected", style: { "border-width": 3, "border-color": "#0969da" } },
  { selector: "node[kind='segment']", style: {
    shape: "round-rectangle", width: "data(w)", height: "data(h)", "background-color": "#eef1f4",
    "border-width": 1, "border-color": "#afb8c1", label: "data(label)", "font-size": 11, "font-weight": "bold",
    "text-valign": "center", "text-halign": "center", color: "#24292f" } },
  { selector: "edge", style: { "curve-style": "straight", width: 1.6, "line-color": COLOURS.link, "font-size": 10,
    "text-background-color": "white", "text-background-opacity": 1, "text-background-padding": 2 } },
  { selector: "edge[kind='link']", style: { "source-endpoint": "data(source_endpoint)",
    "target-endpoint": "data(target_endpoint)" } },
  { selector: "edge[kind='link'][state='down']", style: {
    "line-color": COLOURS.down, "line-style": "dashed", label: "data(label)", color: COLOURS.down } },
  { selector: "edge[kind='link'][state='impaired']", style: {
    "line-color": COLOURS.impaired, width: 3, label: "data(label)", color: COLOURS.impaired } },
  { selector: "edge[kind='bgp']", style: { "line-style": "dashed", width: 2, label: "data(label)" } },
  { selector: "edge[kind='bgp'][state='established']", style: { "line-color": COLOURS.established, color: COLOURS.established } },
  { selector: "edge[kind='bgp'][state='down']", style: { "line-color": COLOURS.down, color: COLOURS.down } },
  { selector: "edge[kind='probe']", style: { "curve-style": "unbundled-bezier", "control-point-distances": "data(bend)",
    "z-index-compare": "manual", "z-index": 10, width: 4, opacity: 0.9, "target-arrow-shape": "triangle", label: "data(label)", "font-weight": "bold",
    "line-color": "data(colour)", "target-arrow-color": "data(colour)", color: "data(colour)" } },
];

function drawGraph(elements) {
  const cy = page.cy;
  const incoming = new Set(elements.map((e) => e.data.id));
  const before = cy.nodes().map((n) => n.id()).sort().join(" ");
  cy.batch(() => {
    cy.elements().forEach((el) => { if (!incoming.has(el.id()) && el.id() !== "probe") cy.remove(el); });
    for (const element of elements) {
      const data = { ...element.data };
      const existing = cy.getElementById(data.id);
      if (data.kind === "host") {
        data.w = Math.max(data.w || 120, 60);
        data.h = Math.max(data.h || 80, 30);
        data.troubled = data.faults.length > 0;
        data.image = existing.nonempty() ? existing.data("image") : "none";
        swapImage(data.id, hostImage(data));
      }
      const position = element.group === "nodes" ? { x: data.x || 0, y: data.y || 0 } : undefined;
      if (existing.nonempty()) {
        existing.data(data);
        if (position) existing.position(position);
      } else {
        cy.add({ group: element.group, data, position });
      }
    }
  });
  if (cy.nodes().map((n) => n.id()).sort().join(" ") !== before) cy.fit(undefined, 30);
}

function showState(snapshot) {
  page.snapshot = snapshot;
  page.down = null;
  $("banner").hidden = true;
  $("graph").classList.remove("stale");
  setStatus("live", "live");
  $("lab").textContent = `${snapshot.lab} (${snapshot.topology})`;
  document.title = `calisim web: ${snapshot.lab}`;
  const s = snapshot.summary;
  $("summary").textContent = `${s.hosts} hosts · calico-node running on ${s.calico_nodes}/${s.calico_hosts}` +
    ` · BGP sessions ${s.established}/${s.sessions} Established` +
    (s.every_session_drawn ? "" : " (only those not Established are drawn)") + " · " +
    `${snapshot.faults.length} fault${snapshot.faults.length === 1 ? "" : "s"} in force`;
  drawGraph(snapshot.elements);
  showFaults(snapshot.faults);
  fillNames(snapshot);
  fillWorkloads(snapshot.workloads);
}

function setStatus(kind, text) {
  $("status").className = `status ${kind}`;
  $("status").textContent = text;
}

function showBanner(text) {
  $("banner").textContent = text;
  $("banner").hidden = false;
  $("graph").classList.add("stale");
}

function showFaults(faults) {
  const list = $("faults");
  list.replaceChildren();
  if (!faults.length) list.innerHTML = '<li class="none">none</li>';
  for (const fault of faults) {
    const item = document.createElement("li");
    item.append(fault.text);
    if (fault.heal) {
      const heal = document.createElement("button");
      heal.textContent = "Heal";
      heal.title = "calisim fault " + fault.heal.join(" ");
      heal.onclick = () => sendFault(fault.heal);
      item.append(heal);
    }
    list.append(item);
  }
}

function fillNames(snapshot) {
  const names = snapshot.elements.filter((e) => e.group === "nodes").map((e) => e.data.id);
  $("names").innerHTML = names.map((n) => `<option value="${escapeXml(n)}">`).join("");
}

// From each workload; to each address of each (IPv4 and, on an --ipv6 network, IPv6).
function fillWorkloads(workloads) {
  const choices = { "probe-source": workloads.map((w) => ({ w, address: w.address })),
    "probe-destination": workloads.flatMap((w) => (w.addresses || [w.address]).map((address) => ({ w, address }))) };
  for (const [id, index] of [["probe-source", 0], ["probe-destination", 1]]) {
    const select = $(id), chosen = select.value, chosenAddress = select.selectedOptions[0]?.dataset.address;
    select.innerHTML = choices[id].map(({ w, address }) => `<option value="${escapeXml(w.host + "/" + w.name)}" ` +
      `data-address="${escapeXml(address)}">${escapeXml(w.name)} on ${escapeXml(w.host)} (${escapeXml(address)})</option>`)
      .join("") || "<option value=''>no workloads</option>";
    const again = [...select.options].findIndex((o) => o.value === chosen && o.dataset.address === chosenAddress);
    if (again >= 0) select.selectedIndex = again;
    else if (chosen && workloads.some((w) => w.host + "/" + w.name === chosen)) select.value = chosen;
    else if (workloads[index]) select.value = workloads[index].host + "/" + workloads[index].name;
  }
}

// -- the fault form: `calisim fault`'s verbs, checked by the lab as the command line is ----------
const SUGGESTIONS = { A: "names", B: "names", HOST: "names", PEER: "names", STATE: "states", DAEMON: "daemons" };

function showVerb() {
  const verb = page.verbs.find((v) => v.verb === $("verb").value);
  const fields = $("fault-args");
  fields.replaceChildren();
  for (const argument of verb.arguments) {
    let field;
    if (argument.flag) {
      field = document.createElement("input");
      field.type = "checkbox";
      field.title = argument.option;
    } else if (argument.choices) {
      field = document.createElement("select");
      field.innerHTML = (argument.optional ? "<option value=''></option>" : "") +
        argument.choices.map((c) => `<option>${escapeXml(c)}</option>`).join("");
    } else {
      field = document.createElement("input");
      field.placeholder = argument.name + (argument.optional ? " (optional)" : "");
      if (SUGGESTIONS[argument.name]) field.setAttribute("list", SUGGESTIONS[argument.name]);
    }
    field.name = argument.name;
    field.dataset.option = argument.option || "";
    field.setAttribute("aria-label", argument.name);
    fields.append(field);
  }
  $("verb-help").textContent = `calisim fault ${verb.verb} ` +
    verb.arguments.map((a) => a.flag ? `[${a.option}]` : (a.option ? `${a.option} ` : "") + (a.optional ? `[${a.name}]` : a.name)).join(" ") +
    `: ${verb.help}`;
}

function faultWords() {
  const words = [$("verb").value];
  for (const field of $("fault-args").children) {
    if (field.type === "checkbox") {
      if (field.checked) words.push(field.dataset.option);
      continue;
    }
    const value = field.value.trim();
    if (!value) continue;
    if (field.dataset.option) words.push(field.dataset.option, value);
    else words.push(...value.split(/\s+/));
  }
  return words;
}

async function sendFault(argv) {
  const message = $("fault-message");
  message.className = "message";
  message.textContent = `calisim fault ${argv.join(" ")} ...`;
  const answer = await postJson("/api/fault", { argv });
  message.className = answer.ok ? "message ok" : "message error";
  message.textContent = answer.ok ? answer.message : answer.error;
}

async function postJson(url, body) {
  try {
    const response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) });
    return await response.json();
  } catch (error) {
    return { ok: false, error: `calisim web does not answer: ${error}` };
  }
}

// -- the probe stream: one bar a window, coloured by the share of echoes answered ---------------
function showProbe(event) {
  const summary = $("probe-summary"), timeline = $("probe-timeline");
  if (event.state === "starting" || !page.probe || page.probe.id !== event.id) {
    page.probe = { ...event, windows: [] };
    timeline.replaceChildren();
  }
  const probe = page.probe;
  if (event.window) probe.windows.push(event.window);
  probe.state = event.state;
  const sent = probe.windows.reduce((n, w) => n + w.sent, 0);
  const received = probe.windows.reduce((n, w) => n + w.received, 0);
  const outage = Math.max(0, ...probe.windows.map((w) => w.longest_outage_ms));
  if (event.state === "failed") summary.textContent = event.error;
  else if (event.state === "stopped") summary.textContent = "stopped";
  else summary.textContent = `${probe.source} → ${probe.destination} (${probe.address}): ${probe.state}, ` +
    `${received}/${sent} echoes answered, longest outage ${Math.round(outage)} ms`;
  drawTimeline(probe);
  if (probe.windows.length) drawProbeEdge(probe, probe.windows[probe.windows.length - 1]);
}

// The probed pair in the picture: an arrow from host to host, coloured as the last window.
function drawProbeEdge(probe, last) {
  const source = probe.source.split("/")[0], target = probe.destination.split("/")[0], cy = page.cy;
  const share = last.sent ? last.received / last.sent : 0;
  const looks = { colour: share >= 0.99 ? COLOURS.established : share === 0 ? COLOURS.down : COLOURS.impaired,
    label: `probe ${probe.source.split("/")[1]} → ${probe.destination.split("/")[1]}: ${last.received}/${last.sent}` };
  let arrow = cy.getElementById("probe");
  if (arrow.nonempty() && (arrow.data("source") !== source || arrow.data("target") !== target)) {
    cy.remove(arrow);
    arrow = cy.collection();
  }
  if (arrow.nonempty()) {
    arrow.data(looks);
    return;
  }
  // a swoop below the two boxes (the control point twice as far as the curve's lowest point)
  const a = cy.getElementById(source), b = cy.getElementById(target);
  const bend = (Math.max(a.height(), b.height()) / 2 + 30) * 2 * (a.position("x") <= b.position("x") ? 1 : -1);
  cy.add({ group: "edges", data: { id: "probe", kind: "probe", source, target, bend, ...looks } });
  cy.fit(undefined, 30);  // the swoop in view too
}

function drawTimeline(probe) {
  const timeline = $("probe-timeline"), width = timeline.clientWidth || 400;
  if (!probe.windows.length) return;
  const start = probe.windows[0].started, span = probe.seconds + 1.5;
  timeline.innerHTML = probe.windows.map((w) => {
    const share = w.sent ? w.received / w.sent : 0;
    const colour = share >= 0.99 ? COLOURS.established : share === 0 ? COLOURS.down : COLOURS.impaired;
    const x = (w.started - start) / span * width, bar = Math.max((w.ended - w.started) / span * width - 1, 2);
    return `<rect class="window" data-share="${share.toFixed(2)}" x="${x}" y="4" width="${bar}" height="38" ` +
      `fill="${colour}"><title>${w.received}/${w.sent} answered</title></rect>`;
  }).join("");
}

// -- a host's details ----------------------------------------------------------------------------
const HOST_VIEWS = [["routes", "Routes", true], ["bird", "BIRD protocols", true],
  ["nftables", "nftables ruleset and counters", false], ["interfaces", "Interfaces and their counters", false]];

async function showHost(name) {
  $("host-section").hidden = false;
  $("host-name").textContent = name;
  const details = $("host-details");
  details.textContent = "asking the lab ...";
  let answer;
  try {
    answer = await (await fetch(`/api/hosts/${encodeURIComponent(name)}`)).json();
  } catch (error) {
    answer = { ok: false, error: String(error) };
  }
  if (!answer.ok) {
    details.innerHTML = `<div class="message error">${escapeXml(answer.error)}</div>`;
    return;
  }
  const workloads = (page.snapshot ? page.snapshot.workloads : []).filter((w) => w.host === name);
  const sections = HOST_VIEWS.map(([key, title, open]) =>
    `<details data-view="${key}" ${open ? "open" : ""}><summary>${title}</summary>` +
    `<pre>${escapeXml(answer[key] || "(nothing)")}</pre></details>`);
  sections.push(`<details data-view="workloads" open><summary>Workloads</summary><pre>` +
    escapeXml(workloads.map((w) => `${w.name} ${(w.addresses || [w.address]).join(" ")}`).join("\n") || "(none)") + "</pre></details>");
  details.innerHTML = sections.join("");
}

// -- start -----------------------------------------------------------------------------------------
function listen() {
  const events = new EventSource("/events");
  events.addEventListener("state", (e) => showState(JSON.parse(e.data)));
  events.addEventListener("down", (e) => {
    page.down = JSON.parse(e.data);
    setStatus("down", "lab down");
    showBanner(page.down);
  });
  events.addEventListener("viewers", (e) => {
    const count = JSON.parse(e.data);
    $("viewers").textContent = `${count} page${count === 1 ? "" : "s"} watching`;
  });
  events.addEventListener("probe", (e) => showProbe(JSON.parse(e.data)));
  events.onerror = () => {
    setStatus("down", "disconnected");
    showBanner("lost the connection to calisim web: is it still running? (retrying)");
  };
}

async function start() {
  page.cy = cytoscape({ container: $("graph"), style: STYLE, layout: { name: "preset" }, maxZoom: 1.4,
    boxSelectionEnabled: false });
  page.cy.on("tap", "node[kind='host']", (event) => showHost(event.target.id()));
  page.verbs = await (await fetch("/api/verbs")).json();
  $("verb").innerHTML = page.verbs.map((v) => `<option>${escapeXml(v.verb)}</option>`).join("");
  $("verb").onchange = showVerb;
  showVerb();
  $("fault-form").onsubmit = (event) => { event.preventDefault(); sendFault(faultWords()); };
  $("probe-form").onsubmit = async (event) => {
    event.preventDefault();
    const destination = $("probe-destination");
    const answer = await postJson("/api/probe", { source: $("probe-source").value, destination: destination.value,
      address: destination.selectedOptions[0]?.dataset.address, seconds: $("probe-seconds").value });
    $("probe-message").className = answer.ok ? "message" : "message error";
    $("probe-message").textContent = answer.ok ? "" : answer.error;
  };
  $("probe-stop").onclick = () => postJson("/api/probe/stop", {});
  window.addEventListener("resize", () => page.probe && drawTimeline(page.probe));
  listen();
}

start();
