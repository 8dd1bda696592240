// Rapport web UI: progressive enhancement only. Every page works without
// this file; it adds results while typing, keyboard shortcuts, drag and
// drop on the pipeline board, and live updates from peers.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);

  // ----- instant search -------------------------------------------------
  const input = $("#q");
  const list = $("#search-results");
  let active = -1;
  let timer = null;
  let seq = 0;

  function options() { return list ? Array.from(list.querySelectorAll("li[role=option]")) : []; }

  function close() {
    if (!list) return;
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  }

  function highlight(n) {
    const opts = options();
    if (!opts.length) return;
    active = (n + opts.length) % opts.length;
    opts.forEach((o, i) => o.setAttribute("aria-selected", i === active ? "true" : "false"));
    input.setAttribute("aria-activedescendant", opts[active].id);
    opts[active].scrollIntoView({ block: "nearest" });
  }

  function render(found, q) {
    list.textContent = "";
    found.hits.forEach((hit, i) => {
      const li = document.createElement("li");
      li.id = "search-opt-" + i;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", "false");
      li.dataset.href = hit.href;
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = hit.kind;
      const title = document.createElement("span");
      title.textContent = hit.title;
      li.append(kind, title);
      if (hit.detail) {
        const d = document.createElement("span");
        d.className = "detail";
        d.textContent = hit.detail;
        li.append(d);
      }
      li.addEventListener("mousedown", (e) => { e.preventDefault(); location.href = hit.href; });
      list.append(li);
    });
    const more = document.createElement("li");
    more.setAttribute("role", "option");
    more.id = "search-opt-all";
    more.setAttribute("aria-selected", "false");
    more.dataset.href = "/search?q=" + encodeURIComponent(q);
    more.textContent = found.total === 0 ? "No matches: press Enter to search anyway"
      : "All " + found.total + " results";
    more.className = "muted";
    more.addEventListener("mousedown", (e) => { e.preventDefault(); location.href = more.dataset.href; });
    list.append(more);
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    active = -1;
    input.removeAttribute("aria-activedescendant");
  }

  async function lookup() {
    const q = input.value.trim();
    if (!q) { close(); return; }
    const mine = ++seq;
    try {
      const r = await fetch("/search?format=json&q=" + encodeURIComponent(q), { credentials: "same-origin" });
      if (!r.ok || mine !== seq) return;
      render(await r.json(), q);
    } catch (_) { /* offline from our own node: nothing to show */ }
  }

  if (input && list) {
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(lookup, 40); });
    input.addEventListener("keydown", (e) => {
      if (e.key === "ArrowDown") { e.preventDefault(); if (list.hidden) lookup(); else highlight(active + 1); }
      else if (e.key === "ArrowUp") { e.preventDefault(); highlight(active - 1); }
      else if (e.key === "Escape") { close(); }
      else if (e.key === "Enter" && active >= 0) {
        e.preventDefault();
        location.href = options()[active].dataset.href;
      }
    });
    input.addEventListener("blur", () => setTimeout(close, 150));
  }

  // ----- keyboard shortcuts ----------------------------------------------
  let pendingG = false;
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing = t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "/") { e.preventDefault(); input && input.focus(); return; }
    if (e.key === "?") {
      const help = $("#help");
      if (help) { help.open = !help.open; if (help.open) $("summary", help).focus(); }
      return;
    }
    if (pendingG) {
      pendingG = false;
      const to = { w: "/", b: "/board", k: "/calendar", r: "/reports", s: "/spaces", c: "/k/company", p: "/k/person", d: "/k/deal", t: "/k/ticket" }[e.key];
      if (to) location.href = to;
      return;
    }
    if (e.key === "g") { pendingG = true; setTimeout(() => { pendingG = false; }, 1500); }
  });

  // ----- forms: remember edits in progress (live updates leave them be) --
  let dirty = false;
  document.addEventListener("input", (e) => {
    if (e.target !== input && e.target.closest("main form")) dirty = true;
  });
  document.addEventListener("submit", () => { dirty = false; });

  // ----- a new record's form: another space may have other fields --------
  // Without the script the form still works: the fields shown are the
  // private space's, and the node checks the chosen space's on save.
  document.addEventListener("change", (e) => {
    const select = e.target.closest && e.target.closest("select[data-refields]");
    if (!select) return;
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(select.form)) if (v !== "") params.append(k, v);
    dirty = false;
    location.href = select.dataset.refields + "?" + params.toString();
  });

  // ----- pipeline board: drag a card onto a column -----------------------
  function wireBoard(root) {
    root.querySelectorAll(".card[draggable=true]").forEach((card) => {
      card.addEventListener("dragstart", (e) => {
        e.dataTransfer.setData("text/plain", card.dataset.id);
        e.dataTransfer.effectAllowed = "move";
      });
    });
    root.querySelectorAll(".column[data-stage]").forEach((col) => {
      col.addEventListener("dragover", (e) => { e.preventDefault(); col.classList.add("drop-target"); });
      col.addEventListener("dragleave", () => col.classList.remove("drop-target"));
      col.addEventListener("drop", async (e) => {
        e.preventDefault();
        col.classList.remove("drop-target");
        const id = e.dataTransfer.getData("text/plain");
        if (!id) return;
        const body = new URLSearchParams({ stage: col.dataset.stage, back: location.pathname + location.search });
        const r = await fetch("/r/" + encodeURIComponent(id) + "/stage", {
          method: "POST", credentials: "same-origin", body,
          headers: { "Content-Type": "application/x-www-form-urlencoded" },
        });
        if (r.ok) refresh(true); else announce("The deal could not be moved: " + (await r.text()).slice(0, 200));
      });
    });
  }

  // ----- calendar: drag a meeting or task onto another day ---------------
  function wireCalendar(root) {
    root.querySelectorAll(".cal-entry[draggable=true]").forEach((item) => {
      item.addEventListener("dragstart", (e) => {
        e.dataTransfer.setData("text/plain", item.dataset.id + " " + item.dataset.from);
        e.dataTransfer.effectAllowed = "move";
      });
    });
    root.querySelectorAll(".cal-day[data-day]").forEach((day) => {
      day.addEventListener("dragover", (e) => { e.preventDefault(); day.classList.add("drop-target"); });
      day.addEventListener("dragleave", () => day.classList.remove("drop-target"));
      day.addEventListener("drop", async (e) => {
        e.preventDefault();
        day.classList.remove("drop-target");
        const [id, from] = e.dataTransfer.getData("text/plain").split(" ");
        if (!id) return;
        const body = new URLSearchParams({ id, from: from || "", day: day.dataset.day, back: location.pathname + location.search });
        const r = await fetch("/calendar/move", {
          method: "POST", credentials: "same-origin", body,
          headers: { "Content-Type": "application/x-www-form-urlencoded" },
        });
        if (r.ok) refresh(true); else announce("It could not be moved: " + (await r.text()).slice(0, 200));
      });
    });
  }

  // ----- reminders: a notification once per reminder on this device -----
  // Asked for only when the user presses the button (never on load).
  function notifyButton() {
    const on = $("#notify-on");
    if (!on || !("Notification" in window) || Notification.permission !== "default") return;
    on.hidden = false;
    on.addEventListener("click", async () => {
      const answer = await Notification.requestPermission();
      on.hidden = true;
      announce(answer === "granted" ? "Reminders will show as notifications" : "Notifications stay off");
      checkReminders();
    });
  }
  async function checkReminders() {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    let due;
    try {
      const r = await fetch("/reminders.json", { credentials: "same-origin" });
      if (!r.ok) return;
      due = await r.json();
    } catch (_) { return; }
    const shown = JSON.parse(localStorage.getItem("rapport.reminded") || "[]");
    for (const d of due) {
      const key = d.id + "@" + d.key;
      if (shown.includes(key)) continue;
      const n = new Notification(d.title, { body: d.kind + ", " + d.day + (d.start ? " " + d.start : ""), tag: key });
      n.onclick = () => { window.focus(); location.href = "/r/" + d.id; };
      shown.push(key);
    }
    localStorage.setItem("rapport.reminded", JSON.stringify(shown.slice(-200)));
  }
  if (!document.body.classList.contains("bare")) {
    notifyButton();
    checkReminders();
    setInterval(checkReminders, 60000);
  }

  // ----- live updates ----------------------------------------------------
  const status = $("#live");
  function announce(text) { if (status) status.textContent = text; }

  function watched(change) {
    const watch = (document.body.dataset.watch || "").split(" ").filter(Boolean);
    return watch.includes("*") || watch.includes(change.id) || watch.includes(change.kind);
  }

  async function refresh(force) {
    const main = $("main");
    if (!main) return;
    if (!force && (dirty || (document.activeElement && main.contains(document.activeElement) &&
        /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName)))) {
      announce("Changed by a peer: reload to see it");
      return;
    }
    const r = await fetch(location.href, { credentials: "same-origin" });
    if (!r.ok) return;
    const doc = new DOMParser().parseFromString(await r.text(), "text/html");
    const fresh = $("main", doc);
    if (!fresh) return;
    const helpOpen = $("#help") && $("#help").open;
    main.innerHTML = fresh.innerHTML;
    if (helpOpen && $("#help")) $("#help").open = true;
    document.body.dataset.watch = doc.body.dataset.watch || "";
    wireBoard(main);
    wireCalendar(main);
    notifyButton();
    announce("Updated " + new Date().toLocaleTimeString());
  }

  let refreshTimer = null;
  if (window.EventSource && document.body.dataset.watch !== undefined && !document.body.classList.contains("bare")) {
    // From the cursor the page was read at: nothing that lands meanwhile is missed.
    const since = document.body.dataset.since;
    const events = new EventSource(since ? "/events?since=" + encodeURIComponent(since) : "/events");
    events.addEventListener("open", () => announce("Live"));
    events.addEventListener("error", () => announce("Reconnecting…"));
    events.addEventListener("change", (e) => {
      let change;
      try { change = JSON.parse(e.data); } catch (_) { return; }
      if (!watched(change)) return;
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(() => refresh(false), 200);
    });
    events.addEventListener("reload", () => refresh(false));
  }

  wireBoard(document);
  wireCalendar(document);
})();
