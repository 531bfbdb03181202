// hidemo live view: one WebSocket carries JSON (state, predictions, transcript, monitor)
// and binary frames ([4-byte length][JSON header][JPEG]). window.hidemo holds what the
// page has shown, for tests and for the curious (frame age from capture to shown).
"use strict";

const hidemo = window.hidemo = {
  connected: false, framesShown: {}, lastFrame: {}, predictions: 0, monitorUpdates: 0,
  transcriptLines: 0, frameAgesMs: [], pipelineMsAtShow: [], timelinePoints: {},
  shownLines: {}, heldLines: {}, chips: {}, sightings: {}, timelineAxis: {},
};
const PALETTE = ["#39d353", "#58a6ff", "#ff7b72", "#d2a8ff", "#ffa657", "#79c0ff",
  "#f778ba", "#e3b341", "#56d4dd", "#a5d6ff"];
const MIN_AXIS_S = 30, LEGEND_MAX = 10, KEEP_SIGHTINGS = 2000;
const BODY = [[1, 8], [1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [8, 9], [9, 10],
  [10, 11], [8, 12], [12, 13], [13, 14], [1, 0], [0, 15], [15, 17], [0, 16], [16, 18]];
const HAND = [[0, 1], [1, 2], [2, 3], [3, 4], [0, 5], [5, 6], [6, 7], [7, 8], [0, 9], [9, 10],
  [10, 11], [11, 12], [0, 13], [13, 14], [14, 15], [15, 16], [0, 17], [17, 18], [18, 19], [19, 20]];
// video: per stream the last frame drawn (its generation, media time, capture wall time):
// the stream's clock, which transcript lines wait for and person chips age by
const state = { historyS: 300, personTimeoutS: 3, streams: {}, history: {},
  latest: {}, monitor: null, video: {}, seen: {}, held: {}, clocks: {} };
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
    legend: node.querySelector(".legend"), held: node.querySelector(".held"),
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
    ctx.font = TAG_FONT;
    const tags = meta.persons.map((person) => {
      const latest = state.latest[meta.stream + "/" + person.track_id];
      return "#" + person.track_id + (latest ? " " + latest.label + " " +
        latest.probs[latest.label].toFixed(2) : "");
    });
    const places = placeTags(meta.persons.map((p) => p.box),
      tags.map((tag) => ctx.measureText(tag).width + 8), canvas.width, canvas.height);
    meta.persons.forEach((person, i) => {
      const [x1, y1, x2, y2] = person.box, c = colour(person.track_id);
      ctx.strokeStyle = c;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
      if (person.keypoints) drawKeypoints(ctx, person.keypoints, c);
    });
    meta.persons.forEach((person, i) => {  // tags last: no box or skeleton over them
      const [x, y, w, h] = places[i];
      ctx.fillStyle = colour(person.track_id); ctx.fillRect(x, y, w, h);
      ctx.fillStyle = "#000"; ctx.fillText(tags[i], x + 4, y + h - 5);
    });
    onVideo(meta);
    const shown = nowS();
    const ageMs = (shown - meta.capture_wall) * 1000;
    const pipelineMs = (meta.analysed_wall - meta.capture_wall) * 1000;
    hidemo.framesShown[meta.stream] = (hidemo.framesShown[meta.stream] || 0) + 1;
    hidemo.lastFrame[meta.stream] = { ...meta, shown_wall: shown, age_ms: ageMs, tags: places,
                                      colours: meta.persons.map((p) => colour(p.track_id)) };
    hidemo.frameAgesMs.push(ageMs); hidemo.pipelineMsAtShow.push(pipelineMs);
    if (hidemo.frameAgesMs.length > 1000) { hidemo.frameAgesMs.shift(); hidemo.pipelineMsAtShow.shift(); }
    if (ws.readyState === WebSocket.OPEN) ws.send("ack");  // drawn: the server may send the next
    text(view.frameInfo, `frame ${meta.seq} · ${meta.persons.length} person(s) · ` +
      `age when shown ${ageMs.toFixed(0)} ms (analysed after ${pipelineMs.toFixed(0)} ms) · ` +
      `${meta.detector || ""}`);
  });
}

// Each box's tag [x, y, w, h] where it covers no other tag: above the box, else inside its
// top, below it, inside its bottom, else the free spot nearest to the box; on the canvas.
const TAG_FONT = "bold 15px system-ui, sans-serif", TAG_H = 20;

function placeTags(boxes, widths, width, height) {
  const placed = [];
  const overlaps = (a) => placed.some((b) => a[0] < b[0] + b[2] && b[0] < a[0] + a[2] &&
                                              a[1] < b[1] + b[3] && b[1] < a[1] + a[3]);
  const fit = (x, y, w) => [Math.max(0, Math.min(x, width - w)),
                            Math.max(0, Math.min(y, height - TAG_H)), w, TAG_H];
  const near = (from, to, step, at) => {
    const out = [];
    for (let v = from; v <= to; v += step) out.push(v);
    return out.sort((a, b) => Math.abs(a - at) - Math.abs(b - at));
  };
  boxes.forEach(([x1, y1, , y2], i) => {
    const w = Math.min(widths[i], width);
    let place = [y1 - TAG_H, y1, y2, y2 - TAG_H].map((y) => fit(x1, y, w)).find((r) => !overlaps(r));
    if (!place) {  // a crowd: the free spot nearest to the box, if the canvas has one
      const xs = near(0, width - w, 4, x1);
      for (const y of near(0, height - TAG_H, 2, y1 - TAG_H)) {
        const x = xs.find((v) => !overlaps([v, y, w, TAG_H]));
        if (x !== undefined) { place = [x, y, w, TAG_H]; break; }
      }
    }
    placed.push(place || fit(x1, y1 - TAG_H, w));  // no room anywhere: over its box
  });
  return placed;
}
hidemo.placeTags = placeTags;

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

// -- the video's clock, persons seen ----------------------------------------------------

// A frame was drawn: it is now the stream's clock. The persons in it are seen at its media
// time; held transcript lines it has reached are shown; a file's timeline moves with it.
function onVideo(meta) {
  const stream = meta.stream, video = { generation: meta.generation,
    media: meta.media_time, wall: meta.capture_wall };
  state.video[stream] = video;
  const ids = meta.persons.map((p) => p.track_id);
  for (const id of ids) state.seen[stream + "/" + id] = { generation: video.generation, media: video.media };
  const log = hidemo.sightings[stream] = hidemo.sightings[stream] || [];
  log.push([video.generation, video.media, ids]);
  if (log.length > KEEP_SIGHTINGS) log.shift();
  releaseLines(stream);
  drawLabels(stream);
  if (state.clocks[stream] === "media") drawTimeline(stream);  // its axis follows the video
}

function seenRecently(stream, person) {
  const seen = state.seen[stream + "/" + person], video = state.video[stream];
  return !!(seen && video && seen.generation === video.generation &&
            video.media - seen.media <= state.personTimeoutS);
}

// -- predictions and timeline ---------------------------------------------------------

function onPrediction(record) {
  hidemo.predictions += 1;
  state.latest[record.stream + "/" + record.person] = record;
  const history = state.history[record.stream] = state.history[record.stream] || [];
  history.push([record.emit_wall, record.person, record.probs.positive || 0, record.label,
                record.window.end]);
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
  for (const [key, record] of Object.entries(state.latest)) {  // gone for history_s: forgotten
    if (record.stream === stream && record.emit_wall < cut) delete state.latest[key];
  }
}

// One chip per person seen in the last person_timeout_s of the stream's video; the others
// with a prediction fold into one "N earlier" chip, so an hour of passers-by stays one line.
function drawLabels(stream) {
  const view = streamView(stream);
  const people = Object.values(state.latest).filter((r) => r.stream === stream)
    .sort((a, b) => a.person - b.person);
  const recent = people.filter((r) => seenRecently(stream, r.person));
  const earlier = people.length - recent.length;
  const chips = recent.map((r) => {
    const el = document.createElement("div");
    el.className = "person";
    el.dataset.person = r.person;
    el.innerHTML = `<span style="color:${colour(r.person)}">#${r.person}</span> ` +
      `<b class="${r.label}">${r.label}</b> p=${r.probs[r.label].toFixed(2)} ` +
      `<span class="muted">${r.modalities.join("+")}</span>`;
    return el;
  });
  if (earlier) {
    const el = document.createElement("div");
    el.className = "person earlier muted";
    el.dataset.earlier = earlier;
    el.title = `predicted in the last ${Math.round(state.historyS / 60)} min, not seen in ` +
      `the last ${state.personTimeoutS} s of the video`;
    el.textContent = `${earlier} earlier`;
    chips.push(el);
  }
  view.labels.replaceChildren(...chips);
  hidemo.chips[stream] = { shown: recent.map((r) => r.person), earlier,
                           people: people.map((r) => r.person) };
}

// The axis spans the run so far (at least MIN_AXIS_S), up to history_s, on the stream's
// clock: a file's predictions at their window's end in media time (ticks m:ss into the
// file, like its transcript), a live source's at the time they came (ticks before now);
// a legend names each person on it.
function drawTimeline(stream) {
  const view = streamView(stream), canvas = view.timeline, ctx = canvas.getContext("2d");
  const media = state.clocks[stream] === "media", video = state.video[stream];
  const w = canvas.width, h = canvas.height, pad = 28, bottom = 14;
  const at = (point) => (media ? point[4] : point[0]);
  let points = state.history[stream] || [];
  let end = nowS();
  if (media) {
    end = Math.max(video ? video.media : 0, ...points.map(at));
    // a file analysed faster than real time keeps more than history_s of it: off the axis
    points = points.filter((point) => at(point) >= end - state.historyS);
  }
  const first = points.length ? Math.min(...points.map(at)) : end;
  const span = Math.min(state.historyS, Math.max(MIN_AXIS_S, end - first));
  const start = media ? Math.max(0, end - span) : end - span;
  const x = (t) => pad + (w - pad - 4) * (t - start) / span;
  const y = (p) => 4 + (h - bottom - 8) * (1 - p);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "11px system-ui"; ctx.lineWidth = 1;
  ctx.strokeStyle = "#30363d"; ctx.fillStyle = "#8b949e";
  ctx.setLineDash([4, 4]);
  ctx.beginPath(); ctx.moveTo(pad, y(0.5)); ctx.lineTo(w, y(0.5)); ctx.stroke();
  ctx.setLineDash([]);
  ctx.fillText("1", 2, y(1) + 8); ctx.fillText("0.5", 2, y(0.5) + 4); ctx.fillText("0", 2, y(0));
  const step = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].find((s) => span / s <= 6);
  const ticks = [];
  if (media) for (let t = Math.ceil(start / step) * step; t <= start + span; t += step) ticks.push([t, clockText(t)]);
  else for (let ago = 0; ago <= span; ago += step) ticks.push([end - ago, ago ? "-" + clockText(ago) : "now"]);
  for (const [t, label] of ticks) {
    const tx = x(t);
    ctx.strokeStyle = "#222933"; ctx.beginPath(); ctx.moveTo(tx, 4); ctx.lineTo(tx, h - bottom); ctx.stroke();
    ctx.fillText(label, Math.max(pad, Math.min(tx - ctx.measureText(label).width / 2,
                                                w - ctx.measureText(label).width)), h - 2);
  }
  hidemo.timelineAxis[stream] = { span, step, clock: media ? "media" : "wall", start,
                                  end: start + span, labels: ticks.map(([, label]) => label) };
  const byPerson = {};
  for (const point of points) (byPerson[point[1]] = byPerson[point[1]] || []).push(point);
  for (const [person, line] of Object.entries(byPerson)) {
    ctx.strokeStyle = colour(Number(person)); ctx.lineWidth = 2; ctx.beginPath();
    line.forEach((point, i) => (i ? ctx.lineTo(x(at(point)), y(point[2]))
                                      : ctx.moveTo(x(at(point)), y(point[2]))));
    ctx.stroke();
  }
  drawLegend(view, byPerson);
}

function drawLegend(view, byPerson) {
  const people = Object.entries(byPerson)  // the most recently predicted first
    .map(([person, line]) => [Number(person), line[line.length - 1][0]])
    .sort((a, b) => b[1] - a[1]).map(([person]) => person);
  const items = people.slice(0, LEGEND_MAX).sort((a, b) => a - b).map((person) => {
    const el = document.createElement("span");
    el.className = "key";
    el.dataset.person = person;
    el.innerHTML = `<i style="background:${colour(person)}"></i>#${person}`;
    return el;
  });
  if (people.length > LEGEND_MAX) {
    const more = document.createElement("span");
    more.className = "key muted";
    more.textContent = `+${people.length - LEGEND_MAX} more`;
    items.push(more);
  }
  view.legend.replaceChildren(...items);
}

// -- transcript and monitor -----------------------------------------------------------

function clockText(seconds) {  // m:ss, or h:mm:ss from an hour on
  const s = Math.floor(seconds), hours = Math.floor(s / 3600), minutes = Math.floor(s / 60) % 60;
  const mm = hours ? String(minutes).padStart(2, "0") : String(minutes);
  return (hours ? hours + ":" : "") + mm + ":" + String(s % 60).padStart(2, "0");
}

// A line waits until the frame on screen has reached it (the server holds it until its
// newest preview has; the page's frame may be a little behind that), then is stamped on the
// stream's clock: seconds into a file, wall time for a live source.
function onTranscript(line) {
  (state.held[line.stream] = state.held[line.stream] || []).push(line);
  streamView(line.stream);
  releaseLines(line.stream);
}

function lineTime(line) { return line.clock === "media" ? line.media_start : line.time_wall; }

function releaseLines(stream) {
  const held = state.held[stream] || [], video = state.video[stream];
  const reached = (line) => video && lineTime(line) <= (line.clock === "media" ? video.media : video.wall);
  const due = held.filter(reached).sort((a, b) => lineTime(a) - lineTime(b));
  state.held[stream] = held.filter((line) => !reached(line));
  hidemo.heldLines[stream] = state.held[stream].length;
  const view = streamView(stream);
  text(view.held, state.held[stream].length ? `${state.held[stream].length} line(s) ahead of the video` : "");
  const shown = hidemo.shownLines[stream] = hidemo.shownLines[stream] || [];
  for (const line of due) {
    hidemo.transcriptLines += 1;
    const li = document.createElement("li");
    const stamp = line.clock === "media" ? clockText(line.media_start)
      : new Date(line.time_wall * 1000).toLocaleTimeString();
    li.dataset.clock = line.clock;
    li.dataset.time = lineTime(line);
    li.innerHTML = `<span class="muted"></span> `;
    li.firstChild.textContent = stamp;
    li.append(line.text);
    view.transcript.prepend(li);
    shown.push({ clock: line.clock, time: lineTime(line), text: line.text,
                 video: line.clock === "media" ? video.media : video.wall });
    if (shown.length > 200) shown.shift();
  }
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
  state.personTimeoutS = hello.person_timeout_s;
  state.clocks = hello.clocks || {};
  hello.streams.forEach((s) => { streamView(s).transcript.replaceChildren(); state.held[s] = []; });
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
