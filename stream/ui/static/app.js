// hidemo live view: one WebSocket carries JSON (state, predictions, transcript, monitor)
// and binary frames ([4-byte length][JSON header][JPEG]). window.hidemo holds what the
// page has shown, for tests and for the curious (frame age from capture to shown).
"use strict";

const hidemo = window.hidemo = {
  connected: false, framesShown: {}, lastFrame: {}, predictions: 0, monitorUpdates: 0,
  transcriptLines: 0, frameAgesMs: [], pipelineMsAtShow: [], timelinePoints: {},
};
const PALETTE = ["#39d353", "#58a6ff", "#ff7b72", "#d2a8ff", "#ffa657", "#79c0ff"];
const BODY = [[1, 8], [1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [8, 9], [9, 10],
  [10, 11], [8, 12], [12, 13], [13, 14], [1, 0], [0, 15], [15, 17], [0, 16], [16, 18]];
const HAND = [[0, 1], [1, 2], [2, 3], [3, 4], [0, 5], [5, 6], [6, 7], [7, 8], [0, 9], [9, 10],
  [10, 11], [11, 12], [0, 13], [13, 14], [14, 15], [15, 16], [0, 17], [17, 18], [18, 19], [19, 20]];
const state = { historyS: 300, streams: {}, history: {}, latest: {}, monitor: null };
const token = new URLSearchParams(location.search).get("token");

function colour(trackId) { return PALETTE[trackId % PALETTE.length]; }
function nowS() { return Date.now() / 1000; }
function text(el, value) { el.textContent = value; }

function streamView(stream) {
  if (state.streams[stream]) return state.streams[stream];
  const node = document.getElementById("stream-template").content.firstElementChild.cloneNode(true);
  node.dataset.stream = stream;
  document.getElementById("streams").appendChild(node);
  const view = {
    node, frame: node.querySelector("canvas.frame"), timeline: node.querySelector("canvas.timeline"),
    labels: node.querySelector(".labels"), frameInfo: node.querySelector(".frame-info"),
    latency: node.querySelector(".latency"), figures: node.querySelector(".figures"),
    transcript: node.querySelector(".transcript"),
  };
  state.streams[stream] = view;
  state.history[stream] = state.history[stream] || [];
  return view;
}

// -- frames ---------------------------------------------------------------------------

async function showFrame(buffer, ws) {
  const length = new DataView(buffer).getUint32(0);
  const meta = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
  const bitmap = await createImageBitmap(new Blob([new Uint8Array(buffer, 4 + length)],
                                                  { type: "image/jpeg" }));
  const view = streamView(meta.stream);
  requestAnimationFrame(() => {
    const canvas = view.frame, ctx = canvas.getContext("2d");
    if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
      canvas.width = bitmap.width; canvas.height = bitmap.height;
    }
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    ctx.lineWidth = 3;
    ctx.font = "bold 15px system-ui, sans-serif";
    for (const person of meta.persons) {
      const [x1, y1, x2, y2] = person.box, c = colour(person.track_id);
      ctx.strokeStyle = c; ctx.fillStyle = c;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      const latest = state.latest[meta.stream + "/" + person.track_id];
      const tag = "#" + person.track_id + (latest ? " " + latest.label + " " +
        latest.probs[latest.label].toFixed(2) : "");
      ctx.fillRect(x1, Math.max(0, y1 - 20), ctx.measureText(tag).width + 8, 20);
      ctx.fillStyle = "#000"; ctx.fillText(tag, x1 + 4, Math.max(15, y1 - 5));
      if (person.keypoints) drawKeypoints(ctx, person.keypoints, c);
    }
    const shown = nowS();
    const ageMs = (shown - meta.capture_wall) * 1000;
    const pipelineMs = (meta.analysed_wall - meta.capture_wall) * 1000;
    hidemo.framesShown[meta.stream] = (hidemo.framesShown[meta.stream] || 0) + 1;
    hidemo.lastFrame[meta.stream] = { ...meta, shown_wall: shown, age_ms: ageMs,
                                      colours: meta.persons.map((p) => colour(p.track_id)) };
    hidemo.frameAgesMs.push(ageMs); hidemo.pipelineMsAtShow.push(pipelineMs);
    if (hidemo.frameAgesMs.length > 1000) { hidemo.frameAgesMs.shift(); hidemo.pipelineMsAtShow.shift(); }
    if (ws.readyState === WebSocket.OPEN) ws.send("ack");  // drawn: the server may send the next
    text(view.frameInfo, `frame ${meta.seq} · ${meta.persons.length} person(s) · ` +
      `age when shown ${ageMs.toFixed(0)} ms (analysed after ${pipelineMs.toFixed(0)} ms) · ` +
      `${meta.detector || ""}`);
  });
}

function drawKeypoints(ctx, flat, c) {
  const at = (i) => [flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]];
  const line = (a, b) => {
    const [xa, ya, ca] = at(a), [xb, yb, cb] = at(b);
    if (ca > 0.05 && cb > 0.05) { ctx.beginPath(); ctx.moveTo(xa, ya); ctx.lineTo(xb, yb); ctx.stroke(); }
  };
  ctx.lineWidth = 2; ctx.strokeStyle = c;
  BODY.forEach(([a, b]) => line(a, b));
  for (const base of [95, 116]) HAND.forEach(([a, b]) => line(base + a, base + b));
  ctx.fillStyle = "#ffffff";
  for (let i = 0; i < 137; i++) {
    const [x, y, conf] = at(i);
    if (conf > 0.05) ctx.fillRect(x - 1, y - 1, i >= 25 && i < 95 ? 2 : 3, i >= 25 && i < 95 ? 2 : 3);
  }
}

// -- predictions and timeline ---------------------------------------------------------

function onPrediction(record) {
  hidemo.predictions += 1;
  state.latest[record.stream + "/" + record.person] = record;
  const history = state.history[record.stream] = state.history[record.stream] || [];
  history.push([record.emit_wall, record.person, record.probs.positive || 0, record.label]);
  trimHistory(record.stream);
  if (record.random_weights) {
    text(document.getElementById("random"),
         "random-weight engines: labels mean nothing (" + record.random_engines.join(", ") + ")");
  }
  drawLabels(record.stream);
  drawTimeline(record.stream);
  const view = streamView(record.stream);
  text(view.latency, "latency (ms, newest frame of the window): " + Object.entries(record.latency_ms)
    .map(([k, v]) => `${k} ${v.toFixed(0)}`).join(" · ") + ` · window ${record.window.seconds.toFixed(1)} s`);
}

function trimHistory(stream) {
  const history = state.history[stream], cut = nowS() - state.historyS;
  while (history.length && history[0][0] < cut) history.shift();
  hidemo.timelinePoints[stream] = history.length;
}

function drawLabels(stream) {
  const view = streamView(stream);
  const people = Object.values(state.latest).filter((r) => r.stream === stream)
    .sort((a, b) => a.person - b.person);
  view.labels.replaceChildren(...people.map((r) => {
    const el = document.createElement("div");
    el.className = "person";
    el.dataset.person = r.person;
    el.innerHTML = `<span style="color:${colour(r.person)}">#${r.person}</span> ` +
      `<b class="${r.label}">${r.label}</b> p=${r.probs[r.label].toFixed(2)} ` +
      `<span class="muted">${r.modalities.join("+")}</span>`;
    return el;
  }));
}

function drawTimeline(stream) {
  const view = streamView(stream), canvas = view.timeline, ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28, end = nowS(), start = end - state.historyS;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#30363d"; ctx.fillStyle = "#8b949e"; ctx.font = "11px system-ui";
  ctx.setLineDash([4, 4]);
  ctx.beginPath(); ctx.moveTo(pad, h / 2); ctx.lineTo(w, h / 2); ctx.stroke();
  ctx.setLineDash([]);
  ctx.fillText("p(positive) 1", 2, 10); ctx.fillText("0", 2, h - 2);
  ctx.fillText(`last ${Math.round(state.historyS / 60)} min`, w - 70, h - 2);
  const x = (t) => pad + (w - pad) * (t - start) / (end - start);
  const y = (p) => 4 + (h - 8) * (1 - p);
  const byPerson = {};
  for (const point of state.history[stream] || []) (byPerson[point[1]] = byPerson[point[1]] || []).push(point);
  for (const [person, points] of Object.entries(byPerson)) {
    ctx.strokeStyle = colour(Number(person)); ctx.lineWidth = 2; ctx.beginPath();
    points.forEach(([t, , p], i) => (i ? ctx.lineTo(x(t), y(p)) : ctx.moveTo(x(t), y(p))));
    ctx.stroke();
  }
}

// -- transcript and monitor -----------------------------------------------------------

function onTranscript(line) {
  hidemo.transcriptLines += 1;
  const view = streamView(line.stream), li = document.createElement("li");
  li.textContent = new Date(line.time_wall * 1000).toLocaleTimeString() + "  " + line.text;
  view.transcript.prepend(li);
  while (view.transcript.children.length > 50) view.transcript.lastChild.remove();
}

function onMonitor(monitor) {
  hidemo.monitorUpdates += 1;
  state.monitor = monitor;
  const rows = Object.entries(monitor.stages).sort().map(([label, s]) => {
    const c = s.counters, perItem = c.processed ? (1000 * c.busy_s / c.processed).toFixed(1) : "";
    const preview = s.extra && s.extra.preview;
    const notes = preview ? `preview ${preview.published} sent, ${preview.skipped} skipped, ` +
      `${preview.encode_ms} ms each` : "";
    return `<tr data-stage="${label}"><td>${label}</td><td>${s.pid}</td>` +
      `<td class="state-${s.state}">${s.state}</td><td>${c.received}</td><td>${c.sent}</td>` +
      `<td>${c.dropped_in}/${c.dropped_out}</td><td>${c.malformed}</td><td>${perItem}</td>` +
      `<td>${monitor.restarts[label] || 0}</td><td class="muted">${notes}</td></tr>`;
  });
  document.querySelector("#stages tbody").innerHTML = rows.join("");
  const events = monitor.events.filter((e) => e.event !== "started" && e.event !== "stopped");
  text(document.getElementById("events"), events.length ? events.slice(-5)
    .map((e) => `${e.stage}[${e.index}] ${e.event} ${e.detail}`).join(" · ") : "none");
  const classify = monitor.stages["classify[0]"];
  const streams = (classify && classify.extra && classify.extra.streams) || {};
  for (const [stream, f] of Object.entries(streams)) {
    const lat = f.latency_ms || {}, rates = f.rates || {};
    text(streamView(stream).figures, `e2e p50 ${(lat.p50 || 0).toFixed(0)} / p95 ` +
      `${(lat.p95 || 0).toFixed(0)} ms · frames ${f.frames || 0} · dropped ${f.dropped || 0} · ` +
      `lost ${f.lost || 0} · rates fps frames ${(rates.frames || 0).toFixed(1)}, image ` +
      `${(rates.image || 0).toFixed(1)}, keypoints ${(rates.keypoints || 0).toFixed(1)}`);
  }
}

function onHello(hello) {
  state.historyS = hello.history_s;
  hello.streams.forEach(streamView);
  for (const [stream, points] of Object.entries(hello.history)) state.history[stream] = points;
  for (const record of hello.predictions) state.latest[record.stream + "/" + record.person] = record;
  hello.streams.forEach((s) => { trimHistory(s); drawLabels(s); drawTimeline(s); });
  for (const lines of Object.values(hello.transcript)) lines.forEach(onTranscript);
  if (hello.monitor) onMonitor(hello.monitor);
}

// -- connection -----------------------------------------------------------------------

function connect() {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  url.search = token ? "?token=" + encodeURIComponent(token) : "";
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { hidemo.connected = true; text(document.getElementById("connection"), "live"); };
  ws.onclose = () => {
    hidemo.connected = false;
    text(document.getElementById("connection"), "disconnected, retrying…");
    setTimeout(connect, 1000);
  };
  ws.onmessage = (event) => {
    if (typeof event.data !== "string") { showFrame(event.data, ws); return; }
    const message = JSON.parse(event.data);
    if (message.type === "hello") onHello(message);
    else if (message.type === "prediction") onPrediction(message.record);
    else if (message.type === "transcript") onTranscript(message.line);
    else if (message.type === "monitor") onMonitor(message.monitor);
  };
}

setInterval(() => Object.keys(state.streams).forEach((s) => { trimHistory(s); drawTimeline(s); }), 1000);
connect();
