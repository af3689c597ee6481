// The live view: verdicts and status over Server-Sent Events, the newest frame fetched when it changes.
"use strict";

const FEED_SIZE = 50;
const $ = (id) => document.getElementById(id);
let frameWanted = false;
let frameLoading = false;

function text(tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls) el.className = cls;
  return el;
}

function pill(el, content, state) {
  el.textContent = content;
  el.className = "pill" + (state === "ok" ? "" : state === "wait" ? " wait" : " off");
}

async function loadFrame() {
  frameWanted = false;
  frameLoading = true;
  try {
    const response = await fetch("/live/frame.jpg", { cache: "no-store" });
    if (response.status === 200) {
      const img = $("frame");
      const old = img.src;
      img.src = URL.createObjectURL(await response.blob());
      await img.decode(); // shown: now the number is the picture's
      img.dataset.number = response.headers.get("X-Feed-Number");
      if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    }
  } finally {
    frameLoading = false;
    if (frameWanted) loadFrame();
  }
}

function showVerdict(v) {
  const label = $("label");
  label.textContent = v.label;
  label.className = "label " + (v.is_defect ? "defect" : "ok");
  $("score").textContent = "score " + v.score.toFixed(3);
  $("latency").textContent = v.camera + " · seq " + v.seq + " · " + v.latency.total_ms.toFixed(0) + " ms";
  const item = document.createElement("li");
  item.dataset.seq = v.seq;
  item.append(text("span", "#" + v.seq), text("span", v.camera));
  item.append(text("span", v.label, v.is_defect ? "defect" : "ok"), text("span", v.score.toFixed(3)));
  item.append(text("span", new Date(v.captured_at).toLocaleTimeString(), "muted"));
  const feed = $("feed");
  feed.prepend(item);
  while (feed.children.length > FEED_SIZE) feed.lastChild.remove();
  frameWanted = true;
  if (!frameLoading) loadFrame();
}

function showStatus(s) {
  $("station").textContent = s.station;
  pill($("broker"), s.broker_connected ? "broker connected" : "broker away", s.broker_connected ? "ok" : "off");
  const cameras = $("cameras");
  cameras.replaceChildren();
  for (const c of s.cameras) {
    const state = c.state === "streaming" ? "ok" : c.state === "connecting" || c.state === "reconnecting" ? "wait" : "off";
    const el = document.createElement("span");
    pill(el, c.name + " " + c.state, state);
    cameras.append(el);
  }
  $("model").textContent = s.model ? s.model.name + " " + s.model.version + " · " + s.model.backend + " " + s.model.precision : "";
  const rows = $("counters").tBodies[0];
  rows.replaceChildren();
  for (const label of Object.keys(s.verdicts).sort()) {
    const row = rows.insertRow();
    row.append(text("td", label), text("td", String(s.verdicts[label]), "n"));
  }
}

const events = new EventSource("/live/events");
events.addEventListener("verdict", (e) => showVerdict(JSON.parse(e.data)));
events.addEventListener("status", (e) => showStatus(JSON.parse(e.data)));
events.onopen = () => pill($("link"), "live", "ok");
events.onerror = () => pill($("link"), "reconnecting", "wait");
