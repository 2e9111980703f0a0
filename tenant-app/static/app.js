// The storefront's live part: follows the queue status pushed by the server (server-sent
// events), and places, lists and cancels orders through the JSON API. While the shopper waits
// with a known place, it follows the public head instead (one cacheable answer for everyone),
// computes the position itself (place − head) and pings to keep the place; it asks for its own
// status again once the head reaches the place. All times come from the server: the page only
// measures how far the device clock is off.
"use strict";

const $ = (id) => document.getElementById(id);
const body = document.body;
const startsAt = Date.parse(body.dataset.startsAt);
const preQueueAt = Date.parse(body.dataset.preQueueAt);
const currency = body.dataset.currency;
let offset = Date.parse(body.dataset.serverTime) - Date.now();
let status = null;
let idempotencyKey = null;

const serverNow = () => Date.now() + offset;

function money(amount) {
  const digits = new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
  return (amount / 10 ** digits).toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits }) + " " + currency;
}

function duration(seconds) {
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
  const m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
  const two = (n) => String(n).padStart(2, "0");
  return (d ? d + "d " : "") + (d || h ? two(h) + ":" : "") + two(m) + ":" + two(s);
}

// "4–6 min", from the estimate's bounds; only a lower bound when the line stood still lately.
function waitRange(next) {
  const low = next.estimatedWaitLowSeconds, high = next.estimatedWaitHighSeconds;
  const words = (seconds) => seconds < 60 ? Math.max(1, Math.round(seconds)) + " s" : Math.round(seconds / 60) + " min";
  if (high == null) return "at least " + words(low);
  if (words(low) === words(high)) return "about " + words(high);
  const unit = (seconds) => seconds < 60 ? " s" : " min";
  if (unit(low) === unit(high)) return words(low).replace(unit(low), "") + "–" + words(high);
  return words(low) + "–" + words(high);
}

function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

const BANNERS = { upcoming: "Starts soon", live: "Live now", sold_out: "Sold out", ended: "This deal has ended", suspended: "Paused" };

function render(next) {
  status = next;
  offset = Date.parse(next.serverTime) - Date.now();
  body.dataset.state = next.deal;
  const banner = $("state-banner");
  banner.textContent = BANNERS[next.deal];
  banner.className = "state-" + next.deal;
  $("stock-remaining").textContent = next.stockRemaining;
  $("countdown-line").hidden = next.deal !== "upcoming";

  let message = "", detail = "", canJoin = false;
  switch (next.state) {
    case "outside":
      if (next.deal === "upcoming" && serverNow() < preQueueAt) {
        message = "The queue opens " + new Date(preQueueAt).toLocaleTimeString() + ".";
      } else {
        message = next.deal === "upcoming" ? "The pre-queue is open: join now, places are drawn at random at the start." : "Join the queue to buy.";
        canJoin = true;
      }
      break;
    case "done":
      message = "You have bought your limit of " + next.limit + " for this deal. Enjoy!";
      break;
    case "pre_queue":
      message = "You are in the pre-queue.";
      detail = "Places are drawn at random when the deal starts; refreshing does not change yours.";
      break;
    case "waiting":
      message = "You are number " + next.position + " in line (" + next.waiting + " waiting).";
      detail = next.estimateKnown ? "Estimated wait: " + waitRange(next) + "." : "The line is not moving right now; no estimate yet.";
      if (next.likelySoldOut) detail += " The deal will likely sell out before your turn.";
      break;
    case "admitted":
      message = "It's your turn!";
      break;
    case "paused":
      message = {
        units_reserved: "Paused: every unit left is in someone's checkout.",
        awaiting_cancellations: "Sold out for now.",
        suspended: "The deal is paused.",
      }[next.pausedBecause] || "The line is paused.";
      detail = {
        units_reserved: "Units not paid for come back within moments; you keep your place.",
        awaiting_cancellations: "If a buyer cancels, their units go to the line in order; you keep your place while this page is open.",
        suspended: "You keep your place; the line moves again when the deal resumes.",
      }[next.pausedBecause] || "You keep your place.";
      if (next.position != null) message += " You are number " + next.position + " in line.";
      break;
    case "closed":
      message = { sold_out: "Sold out: every unit has been sold.", ended: "This deal has ended. Your orders are below.", suspended: "The deal is paused. Please check back later." }[next.deal] || "The queue is closed.";
      break;
  }
  $("queue-message").textContent = message;
  $("queue-detail").textContent = detail;
  $("join-button").hidden = !canJoin;

  const admitted = next.state === "admitted";
  $("order-panel").hidden = !admitted;
  if (admitted && !idempotencyKey) idempotencyKey = newKey();
  if (admitted && next.admissionExpiresAt) {
    $("admission-left").textContent = "Your turn is kept while this page is open, until " + new Date(Date.parse(next.admissionExpiresAt) - offset).toLocaleTimeString() + " at the latest.";
  }
}

function tick() {
  const seconds = Math.max(0, Math.ceil((startsAt - serverNow()) / 1000));
  $("countdown").textContent = duration(seconds);
}

function showResult(text, isError) {
  const result = $("order-result");
  result.textContent = text;
  result.className = isError ? "error" : "";
}

async function api(method, path, payload, headers) {
  const init = { method, headers: Object.assign({}, headers) };
  if (payload !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(payload);
  }
  const response = await fetch(path, init);
  const json = response.status === 204 ? null : await response.json();
  if (!response.ok) {
    throw Object.assign(new Error(json.error.message), { code: json.error.code, fields: json.error.fields || {} });
  }
  return json;
}

// Delivery details: the inputs are named by their path in the order request, which is also how
// a refusal names the field that needs fixing.
const deliveryInputs = () => Array.from(document.querySelectorAll("#delivery input"));

function deliveryDetails() {
  if (!$("delivery")) return undefined;
  const details = { address: {} };
  for (const input of deliveryInputs()) {
    const path = input.name.split(".").slice(1);
    const value = input.value.trim();
    if (path[0] === "address") details.address[path[1]] = value;
    else details[path[0]] = value;
  }
  if (body.dataset.fulfilment !== "shipping") delete details.address;
  return details;
}

function showFieldErrors(fields, form) {
  const root = form || $("order-form");
  for (const slot of root.querySelectorAll(".field-error")) {
    const message = fields[slot.dataset.field] || "";
    slot.textContent = message;
    const input = root.querySelector('[name="' + slot.dataset.field + '"]');
    if (input) input.setAttribute("aria-invalid", message ? "true" : "false");
  }
}

// The details of the shopper's last order are offered again.
async function offerLastDetails() {
  if (!$("delivery")) return;
  let last;
  try {
    last = await api("GET", "/api/delivery");
  } catch (error) {
    return; // none yet
  }
  for (const input of deliveryInputs()) {
    const path = input.name.split(".").slice(1);
    const value = path[0] === "address" ? (last.address || {})[path[1]] : last[path[0]];
    if (!input.value && value) input.value = value;
  }
}

async function loadOrders() {
  const orders = await api("GET", "/api/orders");
  const list = $("orders-list");
  list.replaceChildren();
  for (const order of orders) {
    const item = document.createElement("li");
    item.className = order.status;
    item.dataset.id = order.id;
    const text = document.createElement("span");
    text.textContent = "#" + order.id + " · " + order.quantity + " × " + money(order.unitPrice) + " · " + order.status;
    item.append(text);
    if (order.coupon && order.status === "confirmed") {
      const coupon = document.createElement("code");
      coupon.className = "coupon-code";
      coupon.textContent = order.coupon.code;
      const note = document.createElement("small");
      note.textContent = order.coupon.redeemedAt
        ? " redeemed " + new Date(order.coupon.redeemedAt).toLocaleString()
        : " valid until " + new Date(order.coupon.validUntil).toLocaleString();
      item.append(coupon, note);
    }
    if (order.delivery) {
      const to = document.createElement("small");
      to.className = "delivery-to";
      to.textContent = " to " + order.delivery.name + (order.delivery.address ? ", " + order.delivery.address.city : "");
      item.append(to);
    }
    if (order.status === "confirmed") {
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "secondary cancel-button";
      cancel.textContent = "Cancel";
      cancel.onclick = async () => {
        cancel.disabled = true;
        try {
          await api("POST", "/api/orders/" + order.id + "/cancel");
          showResult("Order #" + order.id + " is cancelled and refunded.", false);
        } catch (error) {
          showResult(error.message, true);
        }
        loadOrders();
      };
      item.append(cancel);
    }
    list.append(item);
  }
  $("orders-empty").hidden = orders.length > 0;
}

// When the deal asks for it, joining takes a solved puzzle: fetched, solved in a Web Worker (about
// a second on a phone), and sent with the join.
async function solvedChallenge() {
  if (!Number(body.dataset.joinChallenge)) return {};
  const puzzle = await api("GET", "/api/queue/challenge");
  if (!puzzle.required) return {};
  showResult("Getting you in line…", false);
  const solution = await new Promise((resolve, reject) => {
    const worker = new Worker("/static/pow.js");
    worker.onmessage = (event) => { worker.terminate(); resolve(event.data.solution); };
    worker.onerror = (error) => { worker.terminate(); reject(new Error("Your browser could not solve the join puzzle: " + error.message)); };
    worker.postMessage({ challenge: puzzle.challenge, difficulty: puzzle.difficulty });
  });
  showResult("", false);
  return { "X-Timedeal-Challenge": puzzle.challenge, "X-Timedeal-Solution": solution };
}

$("join-button").onclick = async () => {
  $("join-button").disabled = true;
  try {
    render(await api("POST", "/api/queue", undefined, await solvedChallenge()));
    // The stream follows the ticket it was opened with: open it again with the new one.
    follow();
  } catch (error) {
    showResult(error.message, true);
  }
  $("join-button").disabled = false;
};

$("order-form").onsubmit = async (event) => {
  event.preventDefault();
  if (!status || !status.admissionToken) return;
  $("buy-button").disabled = true;
  showResult("Placing your order…", false);
  try {
    const order = await api("POST", "/api/orders", {
      quantity: Number($("quantity").value),
      idempotencyKey,
      admissionToken: status.admissionToken,
      delivery: deliveryDetails(),
    });
    idempotencyKey = newKey();
    showFieldErrors({});
    const coupon = order.coupon ? " Your coupon: " + order.coupon.code + "." : "";
    showResult("Confirmed: order #" + order.id + ", " + order.quantity + " × " + money(order.unitPrice) + "." + coupon, false);
    loadOrders();
  } catch (error) {
    // A network error, or an answer that says "send the same order again" (also after queueing
    // again), keeps the key, so trying again carries the same order on and is charged at most
    // once.
    const sameAgain = ["unavailable", "outcome_unknown", "order_in_progress", "not_admitted", "units_reserved"];
    if (error.code && !sameAgain.includes(error.code)) idempotencyKey = newKey();
    showFieldErrors(error.fields || {});
    showResult(error.message, true);
  }
  $("buy-button").disabled = false;
};

// Email reminders, where the storefront sends mail: the answer says when they will come, once
// the shopper confirms the address from the mail sent to it.
if ($("reminder-form")) {
  $("reminder-form").onsubmit = async (event) => {
    event.preventDefault();
    const form = $("reminder-form");
    const result = $("reminder-result");
    $("reminder-button").disabled = true;
    try {
      const answer = await api("POST", "/api/reminders", { email: $("reminder-email").value });
      showFieldErrors({}, form);
      const times = answer.remindersAt.map((at) => new Date(at).toLocaleString());
      result.textContent = "Check your inbox: confirm with the link we sent, and we will email you on " +
        times.join(" and ") + ". Each mail has a link to stop them.";
      result.className = "";
    } catch (error) {
      showFieldErrors(error.fields || {}, form);
      result.textContent = error.message;
      result.className = "error";
    }
    $("reminder-button").disabled = false;
  };
}

let events = null;
function follow() {
  if (events) events.close();
  events = new EventSource("/api/events");
  events.addEventListener("status", (event) => {
    const next = JSON.parse(event.data);
    render(next);
    if (next.state === "waiting" && next.ticket != null) followHead(next);
  });
  events.addEventListener("problem", (event) => showResult(JSON.parse(event.data).message, true));
}

// Waiting with a known place: the public head every second (a cache may answer it), a ping every
// pingAfterMs, and the position computed here (the README gives the rule). Back to the stream
// once the head reaches the place, the line pauses or closes, or the ticket holds no place; other
// failures are retried, and only after several in a row does the page go back to the stream.
let following = false, generation = 0;
function followHead(waiting) {
  if (following) return;
  following = true;
  const run = ++generation;
  const current = () => following && generation === run;
  if (events) { events.close(); events = null; }
  const place = waiting.ticket;
  let pingAt = 0, highest = 0, epoch = null, failures = 0;
  const back = () => { if (current()) { following = false; follow(); } };
  const step = async () => {
    if (!current()) return;
    try {
      if (Date.now() >= pingAt) {
        const pinged = await api("POST", "/api/queue/ping");
        pingAt = Date.now() + pinged.pingAfterMs;
        if (pinged.reached) return back();
      }
      // No cookie goes with it: it is the same for everyone, and caches keep it so.
      const response = await fetch("/api/queue/head", { credentials: "omit" });
      if (!response.ok) throw new Error("head " + response.status);
      const head = await response.json();
      if (epoch !== null && head.epoch !== epoch) return back();
      epoch = head.epoch;
      // A cache may hand back an older head than one already seen: the line never goes back.
      highest = Math.max(highest, head.head);
      const position = place - highest;
      if (position <= 0 || head.pausedBecause || head.deal !== "live") return back();
      const pace = head.pace;
      const wait = (rate) => rate > 0 ? position * 1000 / rate : null;
      if (!current()) return;
      render(Object.assign({}, status, {
        state: "waiting", deal: head.deal, position, ticket: place, waiting: head.waiting,
        stockRemaining: head.stockRemaining, serverTime: new Date(serverNow()).toISOString(),
        estimateKnown: !!pace,
        estimatedWaitSeconds: pace ? wait(pace.typical) : null,
        estimatedWaitLowSeconds: pace ? wait(Math.max(pace.fastest, pace.typical)) : null,
        estimatedWaitHighSeconds: pace ? wait(Math.min(pace.slowest, pace.typical)) : null,
        likelySoldOut: head.stockRemaining <= 0 || position - 1 + head.active >= head.stockRemaining,
      }));
      failures = 0;
    } catch (error) {
      // A ticket that holds no place: the stream says what is what. Anything else (a busy
      // origin, a cache's error page) is tried again, more slowly.
      if (error.code === "no_place" || ++failures >= 5) return back();
      // A ping that failed is tried again after the same wait as the rest.
      if (Date.now() >= pingAt) pingAt = Date.now() + 1000 * Math.min(8, 2 ** failures);
    }
    // A failing head slows the reads down, never a ping that is due: the place depends on it.
    const backoff = 1000 * Math.min(8, 2 ** failures);
    setTimeout(step, Math.min(backoff, Math.max(100, pingAt - Date.now())));
  };
  step();
}

follow();
tick();
setInterval(tick, 250);
loadOrders().catch(() => {});
offerLastDetails();
