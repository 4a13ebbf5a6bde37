// bwvisu portal: live session cards (server-sent events), log tails, countdowns, and browser
// notifications (a session ready while the tab is in the background, a session about to end) for
// those who asked for them with "Notify me". No build step.
"use strict";

(function () {
  const LOG_REFRESH_MS = 5000;
  const COUNTDOWN_MS = 10000;
  const NOTIFIED = "bwvisu-notified"; // sessionStorage: what was notified already ("<job>:<what>")
  const ON_NODES = ["running", "available"];

  function mayNotify() {
    return "Notification" in window && Notification.permission === "granted";
  }

  // One notification per job and kind, and only with the person's permission: never a prompt here.
  function notifyOnce(key, title, body) {
    if (!mayNotify()) return;
    let seen = [];
    try { seen = JSON.parse(sessionStorage.getItem(NOTIFIED) || "[]"); } catch (e) { seen = []; }
    if (seen.includes(key)) return;
    seen.push(key);
    try { sessionStorage.setItem(NOTIFIED, JSON.stringify(seen.slice(-200))); } catch (e) { /* private mode */ }
    try {
      const n = new Notification(title, { body: body, tag: key });
      n.onclick = () => { window.focus(); n.close(); };
    } catch (e) { /* a browser that allows notifications only from a service worker */ }
  }

  function appName(card) {
    const h = card.querySelector("h2");
    return h ? h.textContent.trim() : "Your session";
  }

  // The card turns to "ends soon" by itself as its end comes near (the server's word may be older).
  function warnIfEnding(el, left) {
    const card = el.closest(".card");
    const warn = Number(el.dataset.warn || 0);
    if (!card || !(warn > 0) || left > warn || !ON_NODES.includes(card.dataset.state)) return;
    card.classList.add("ending-soon");
    const note = card.querySelector(".ending-note");
    if (note) note.hidden = false;
    const extend = card.querySelector("form.extend") ? " or extend it" : "";
    notifyOnce(`${card.dataset.job}:ending`, `${appName(card)} ends soon`,
      `${duration(Math.max(left, 0))} left. Save your work${extend}.`);
  }

  function setUpNotifyMe() {
    const button = document.querySelector("button.notify-me");
    const state = document.querySelector(".notify-state");
    if (!button || !("Notification" in window)) return;
    const show = () => {
      const permission = Notification.permission;
      button.hidden = permission !== "default"; // asked once; a "no" is never asked again
      if (state) {
        state.hidden = permission !== "granted";
        state.textContent = permission === "granted" ? "Notifications are on." : "";
      }
    };
    // Only on the person's own click: browsers (and people) dislike a prompt out of nowhere.
    button.addEventListener("click", async () => {
      try { await Notification.requestPermission(); } catch (e) { /* dismissed */ }
      show();
    });
    show();
  }

  function duration(seconds) {
    if (seconds < 60) return "less than a minute";
    const minutes = Math.floor(seconds / 60);
    const h = Math.floor(minutes / 60), m = minutes % 60;
    return h ? `${h} h ${String(m).padStart(2, "0")} min` : `${m} min`;
  }

  function tickCountdowns() {
    for (const el of document.querySelectorAll(".time-left[data-ends]")) {
      if (!el.dataset.ends) continue;
      const left = (Date.parse(el.dataset.ends) - Date.now()) / 1000;
      el.textContent = `${duration(Math.max(left, 0))} left`;
      warnIfEnding(el, left);
    }
  }

  async function loadLog(details) {
    const pre = details.querySelector("pre");
    try {
      const r = await fetch(details.dataset.url, { credentials: "same-origin", cache: "no-store" });
      pre.textContent = await r.text();
      pre.scrollTop = pre.scrollHeight;
    } catch (e) {
      pre.textContent = "The log cannot be read right now.";
    }
  }

  function watchLog(details) {
    details.addEventListener("toggle", () => {
      if (!details.open) return;
      loadLog(details);
      const timer = setInterval(() => {
        if (!details.open || !details.isConnected) { clearInterval(timer); return; }
        loadLog(details);
      }, LOG_REFRESH_MS);
    });
  }

  function fromHtml(html) {
    const t = document.createElement("template");
    t.innerHTML = html.trim();
    return t.content.firstElementChild;
  }

  // What a screen reader hears when a card changes: its application and state in words (and why),
  // only when those change, never the whole card on each refresh. A failure is told at once.
  function summary(card) {
    const part = (selector) => (card.querySelector(selector)?.textContent || "").trim();
    const why = part(".live .why");
    return `${part("h2")}: ${part(".live .badge")}${why ? `. ${why}` : ""}`;
  }

  function announce(said) {
    for (const [id, lines] of [["announce", said.polite], ["announce-alert", said.urgent]]) {
      const region = document.getElementById(id);
      if (!region || !lines.length) continue;
      // An added line is read even when it repeats an earlier one; a few stay for context.
      const line = document.createElement("p");
      line.textContent = lines.join(" ");
      region.append(line);
      while (region.children.length > 3) region.firstElementChild.remove();
    }
  }

  function tell(said, card) {
    const urgent = card.querySelector(".live").dataset.trouble === "yes";
    (urgent ? said.urgent : said.polite).push(summary(card));
  }

  // A refresh replaces a card's live part: the control that had the focus gets it back (or the
  // card's title, when the control is gone), so keyboard users do not lose their place.
  function replaceLive(card, fresh) {
    const live = card.querySelector(".live");
    const focused = live.contains(document.activeElement) ? document.activeElement : null;
    live.replaceWith(fresh.querySelector(".live"));
    if (!focused) return;
    const key = focused.dataset.testid;
    const same = key && card.querySelector(`.live [data-testid="${CSS.escape(key)}"]`);
    (same || card.querySelector("h2 a")).focus();
  }

  function applyCards(list, cards) {
    const wanted = new Set(cards.map((c) => c.id));
    for (const el of Array.from(list.children)) {
      if (!wanted.has(el.dataset.job)) el.remove();
    }
    let previous = null;
    const said = { polite: [], urgent: [] };
    for (const c of cards) {
      const fresh = fromHtml(c.html);
      let el = document.getElementById(`s-${c.id}`);
      if (!el) {
        el = fresh;
        watchLog(el.querySelector("details.log"));
        list.insertBefore(el, previous ? previous.nextSibling : list.firstChild);
        tell(said, el);
      } else {
        const changed = el.dataset.state !== c.state;
        if (summary(el) !== summary(fresh)) tell(said, fresh);
        replaceLive(el, fresh);
        el.className = fresh.className;
        el.dataset.state = c.state;
        if (changed && c.state === "available" && document.visibilityState === "hidden") {
          notifyOnce(`${c.id}:ready`, `${appName(el)} is ready`, "Your session is ready: connect to it now.");
        }
        const log = el.querySelector("details.log");
        if (changed && log.open) loadLog(log);
      }
      previous = el;
    }
    const empty = document.querySelector(".empty");
    if (empty) empty.hidden = cards.length > 0;
    tickCountdowns();
    announce(said);
  }

  function start() {
    // A form sent back with mistakes: the first field in error has the focus (its error is read with it).
    const invalid = document.querySelector("[aria-invalid=true]");
    if (invalid) invalid.focus();
    for (const d of document.querySelectorAll("details.log")) watchLog(d);
    setUpNotifyMe();
    tickCountdowns();
    setInterval(tickCountdowns, COUNTDOWN_MS);
    const list = document.getElementById("sessions");
    if (!list || !window.EventSource) return;
    const events = new EventSource(list.dataset.events);
    events.addEventListener("sessions", (e) => {
      applyCards(list, JSON.parse(e.data).cards);
      document.body.dataset.live = "yes";
    });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
