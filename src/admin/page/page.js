// vitalsd status page: refreshes the page in place without losing what someone is typing,
// and keeps "3 min ago" current. Served as /static/page.js (the page's CSP allows only
// scripts from the daemon itself). Without this script the page still works; it just does
// not refresh by itself.
"use strict";

(function () {
  const live = () => document.getElementById("live");
  let skew = 0; // server clock minus this device's clock, in ms

  function setSkew(root) {
    const now = Number(root && root.dataset.now);
    if (now) skew = now - Date.now();
  }

  // The same wording as the server (src/admin/page/when.rs).
  function relative(deltaS) {
    const s = Math.abs(Math.trunc(deltaS));
    if (s < 10) return "just now";
    let span;
    if (s < 60) span = s + " s";
    else if (s < 3600) span = Math.floor(s / 60) + " min";
    else if (s < 48 * 3600)
      span = Math.floor(s / 3600) + " h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + " min";
    else span = Math.floor(s / 86400) + " days";
    return deltaS < 0 ? span + " ago" : "in " + span;
  }

  function tick() {
    const now = Date.now() + skew;
    for (const t of document.querySelectorAll("time[data-rel]")) {
      const at = Date.parse(t.getAttribute("datetime"));
      const rel = t.querySelector(".rel");
      if (rel && !Number.isNaN(at)) rel.textContent = relative((at - now) / 1000);
    }
  }

  // Whether someone is working in `el`: focus inside it, or a field whose value differs
  // from what the server rendered.
  function busy(el) {
    const a = document.activeElement;
    if (a && a !== document.body && el.contains(a)) return true;
    for (const f of el.querySelectorAll("input, textarea, select")) {
      if (f.type === "hidden") continue;
      if (f.value !== f.defaultValue) return true;
    }
    return false;
  }

  // Brings `cur` up to date with `next`: replaced whole when nobody works in it; else its
  // children with an id are brought up to date one by one (new ones inserted in order), and
  // the rest of it is left as it is until the person is done.
  function patch(cur, next) {
    if (!busy(cur)) {
      if (cur.outerHTML !== next.outerHTML) cur.replaceWith(document.importNode(next, true));
      return;
    }
    const seen = new Set();
    let prev = null;
    for (const n of Array.from(next.children)) {
      if (!n.id) continue;
      seen.add(n.id);
      let c = document.getElementById(n.id);
      if (c && c.parentElement === cur) {
        patch(c, n);
      } else {
        const imp = document.importNode(n, true);
        if (prev) prev.after(imp);
        else cur.prepend(imp);
      }
      prev = document.getElementById(n.id);
    }
    for (const c of Array.from(cur.children)) {
      if (c.id && !seen.has(c.id) && !busy(c)) c.remove();
    }
  }

  // A patient lookup may add `patient.name` and `patient.birth_date` to a room in
  // /api/status (shown only to a signed-in session). Cards the server rendered with the
  // masked tag only get them here; text only, never markup.
  async function names() {
    if (!document.getElementById("signed-in")) return;
    try {
      const res = await fetch("/api/status", { credentials: "same-origin", cache: "no-store" });
      if (!res.ok) return;
      const st = await res.json();
      for (const r of st.rooms || []) {
        const p = r && (r.name ? r : r.patient);
        if (!p || typeof p !== "object" || !p.name) continue;
        const card = document.querySelector('article.card[data-room="' + CSS.escape(String(r.room)) + '"]');
        const line = card && card.querySelector("p.patient");
        if (!line || line.querySelector(".name")) continue;
        const b = document.createElement("b");
        b.className = "name";
        b.textContent = String(p.name);
        const parts = [b];
        if (p.birth_date) {
          const born = document.createElement("span");
          born.className = "born";
          born.textContent = " born " + String(p.birth_date);
          parts.push(born);
        }
        parts.push(document.createTextNode(" "));
        line.prepend(...parts);
      }
    } catch (e) {
      // No lookup data: the masked tag stays.
    }
  }

  let running = false;
  async function refresh() {
    if (running) return;
    running = true;
    try {
      const res = await fetch("/", { credentials: "same-origin", cache: "no-store" });
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      const next = doc.getElementById("live");
      if (!next) return;
      setSkew(next);
      patch(live(), next);
      tick();
      // Counted as soon as the page is patched (in the same task), before the name lookup.
      document.documentElement.dataset.refreshed = String(Number(document.documentElement.dataset.refreshed || 0) + 1);
      await names();
    } catch (e) {
      // Offline for a moment: try again at the next round.
    } finally {
      running = false;
    }
  }

  function start() {
    const root = live();
    if (!root) return;
    setSkew(root);
    tick();
    names();
    const every = Math.max(2, Number(root.dataset.refresh) || 10) * 1000;
    setInterval(refresh, every);
    setInterval(tick, 5000);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
