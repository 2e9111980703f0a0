// Ticks the countdowns. Times come from the server: the page is cached, so the clock offset is
// measured against the Date header of a fresh answer.
"use strict";
let offset = 0;
fetch("/healthz", { cache: "no-store" }).then((response) => {
  const server = Date.parse(response.headers.get("Date"));
  if (!Number.isNaN(server)) offset = server - Date.now();
}).catch(() => {});

function left(ms) {
  if (ms <= 0) return "now";
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const hms = [Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60, s % 60]
    .map((n) => String(n).padStart(2, "0")).join(":");
  return d > 0 ? d + "d " + hms : hms;
}

function tick() {
  const now = Date.now() + offset;
  for (const time of document.querySelectorAll("time.countdown")) {
    time.textContent = left(Date.parse(time.getAttribute("datetime")) - now);
  }
}
// "Today" starts at the shopper's midnight: send their offset with the filters.
const tz = document.getElementById("tz");
if (tz && !tz.value) {
  const minutes = -new Date().getTimezoneOffset();
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  tz.value = sign + String(Math.floor(abs / 60)).padStart(2, "0") + ":" + String(abs % 60).padStart(2, "0");
}
tick();
setInterval(tick, 1000);
