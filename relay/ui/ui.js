// relay's status page: polls /status and /history on this origin, renders with textContent
// only (names and errors are never parsed as HTML), and POSTs operator actions with the
// bearer token kept in sessionStorage (never in a URL or a cookie).
"use strict";

(function () {
  const REFRESH_MS = 2000;
  const TOKEN_KEY = "relay-admin-token";
  const SVG = "http://www.w3.org/2000/svg";
  let lastOk = 0;
  let busy = false;

  function $(id) { return document.getElementById(id); }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "never";
    if (seconds < 1) return "just now";
    if (seconds < 120) return Math.round(seconds) + " s ago";
    if (seconds < 7200) return Math.round(seconds / 60) + " min ago";
    return Math.round(seconds / 3600) + " h ago";
  }

  function bytes(n) {
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i ? n.toFixed(1) : Math.round(n)) + " " + units[i];
  }

  function tierText(t) { return t === -1 || t === null || t === undefined ? "none" : String(t); }

  function message(text, ok) {
    const m = $("message");
    m.textContent = text;
    m.className = ok ? "ok" : "error";
  }

  // -- rendering ----------------------------------------------------------------------

  function stateOf(b) {
    if (b.state === "up" && b.suspect) return "suspect";
    return b.state;
  }

  function actionButton(label, key, path) {
    const button = el("button", label);
    button.type = "button";
    button.dataset.key = key;
    button.dataset.path = path;
    button.disabled = !token();
    button.title = token() ? "POST " + path : "read-only: enter the admin token below";
    button.addEventListener("click", function () { act(path, button); });
    return button;
  }

  function cell(row, label, content, cls) {
    const td = el("td", null, cls);
    td.dataset.label = label;
    if (content instanceof Node) td.appendChild(content); else td.textContent = String(content);
    row.appendChild(td);
    return td;
  }

  function renderListener(l) {
    const section = el("section", null, "listener");
    section.setAttribute("aria-label", "listener " + l.name);
    const title = el("h2");
    title.appendChild(el("span", l.name));
    title.appendChild(el("span", l.listen + (l.accepting ? "" : " (not accepting)"), "meta muted"));
    const serving = tierText(l.active_tier);
    title.appendChild(el("span", "serving tier: " + serving, "meta serving"));
    title.appendChild(el("span", "failback: " + l.failback, "meta muted"));
    title.appendChild(el("span", "sessions: " + l.sessions, "meta muted"));
    const lname = encodeURIComponent(l.name);
    title.appendChild(actionButton("failback", "fb:" + l.name, "/listeners/" + lname + "/failback"));
    section.appendChild(title);

    const table = el("table");
    const head = el("tr");
    ["Backend", "State", "Admin", "Tier", "Address", "Sessions", "Last check", "Last error", "Actions"]
      .forEach(function (h) { head.appendChild(el("th", h)); });
    const thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    const body = el("tbody");
    l.backends.forEach(function (b) {
      const row = el("tr");
      row.dataset.backend = b.name;
      cell(row, "Backend", b.name, "name");
      const state = stateOf(b);
      cell(row, "State", el("span", state.toUpperCase(), "state state-" + state), "state-cell");
      cell(row, "Admin", b.admin_state, "admin admin-" + b.admin_state);
      cell(row, "Tier", b.tier + (b.tier === l.active_tier ? " (serving)" : ""));
      cell(row, "Address", b.address);
      cell(row, "Sessions", b.sessions);
      cell(row, "Last check", b.checked ? ago(b.last_check_seconds_ago) : "not checked");
      cell(row, "Last error", b.last_error || "–", "error");
      const actions = el("div", null, "actions");
      ["drain", "maint", "ready"].forEach(function (s) {
        const path = "/backends/" + lname + "/" + encodeURIComponent(b.name) + "/" + s;
        const button = actionButton(s, s + ":" + l.name + "/" + b.name, path);
        if (b.admin_state === s) button.setAttribute("aria-pressed", "true");
        actions.appendChild(button);
      });
      cell(row, "Actions", actions);
      body.appendChild(row);
    });
    table.appendChild(body);
    section.appendChild(table);
    return section;
  }

  function eventText(e) {
    const where = e.listener ? " (" + e.listener + ")" : "";
    switch (e.event) {
      case "backend_up": return e.backend + " UP" + where + ": " + e.cause;
      case "backend_down": return e.backend + " DOWN" + where + ": " + e.cause;
      case "tier_change":
        return "serving tier " + tierText(e.old) + " → " + tierText(e.new) + where + ": " + e.cause;
      case "backend_admin": return e.backend + " admin state " + e.state + where + ": " + e.cause;
      case "reload":
        return "reload " + e.cause + (e.problem ? ": " + e.problem : "");
      case "started": return "relay started: " + e.cause;
      default: return e.event + (e.cause ? ": " + e.cause : "");
    }
  }

  function renderEvents(events) {
    const list = $("events");
    list.replaceChildren();
    if (!events || !events.length) {
      list.appendChild(el("li", "no events yet", "muted"));
      return;
    }
    const now = Date.now() / 1000;
    events.forEach(function (e) {
      const li = el("li");
      li.dataset.event = e.event;
      const when = new Date(e.at * 1000);
      const time = el("time", when.toLocaleTimeString() + " · " + ago(now - e.at));
      time.dateTime = when.toISOString();
      li.appendChild(time);
      li.appendChild(el("span", eventText(e)));
      list.appendChild(li);
    });
  }

  function renderStatus(s) {
    $("version").textContent = s.version;
    const workers = s.workers ? " · workers: " + s.workers.length : "";
    $("summary").textContent = "pid " + s.pid + " · up " + ago(s.uptime_seconds).replace(" ago", "") +
      " · sessions " + s.sessions + workers + (s.stopping ? " · STOPPING" : "");
    const focused = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.key : undefined;
    const main = $("listeners");
    main.replaceChildren.apply(main, s.listeners.map(renderListener));
    if (focused) {  // keep the keyboard where it was across refreshes
      const again = main.querySelector('[data-key="' + CSS.escape(focused) + '"]');
      if (again) again.focus();
    }
    renderEvents(s.events);
  }

  function spark(svg, values) {
    svg.replaceChildren();
    if (!values.length) return;
    const max = Math.max.apply(null, values.concat([1]));
    const step = values.length > 1 ? 300 / (values.length - 1) : 0;
    const points = values.map(function (v, i) {
      return (i * step).toFixed(1) + "," + (39 - (v / max) * 37).toFixed(1);
    });
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.appendChild(line);
    const title = document.createElementNS(SVG, "title");
    title.textContent = "last " + values.length + " s, peak " + max;
    svg.appendChild(title);
  }

  function renderHistory(h) {
    spark($("spark-sessions"), h.sessions);
    spark($("spark-bytes"), h.bytes_per_second);
    const n = h.sessions.length;
    $("sessions-now").textContent = n ? String(h.sessions[n - 1]) : "–";
    $("bytes-now").textContent = n ? bytes(h.bytes_per_second[n - 1]) + "/s" : "–";
  }

  // -- polling and actions --------------------------------------------------------------

  async function getJson(path) {
    const response = await fetch(path, { cache: "no-store", credentials: "omit" });
    if (!response.ok) throw new Error(path + ": HTTP " + response.status);
    return response.json();
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const results = await Promise.all([getJson("/status"), getJson("/history")]);
      renderStatus(results[0]);
      renderHistory(results[1]);
      lastOk = Date.now();
      const f = $("freshness");
      f.textContent = "live · updated " + new Date(lastOk).toLocaleTimeString();
      f.className = "";
    } catch (err) {
      const f = $("freshness");
      f.textContent = "STALE: cannot reach relay (" + err.message + ")" +
        (lastOk ? "; last update " + ago((Date.now() - lastOk) / 1000) : "");
      f.className = "stale";
    } finally {
      busy = false;
    }
  }

  async function act(path, button) {
    const t = token();
    if (!t) { message("Read-only: enter the admin token first.", false); return; }
    button.disabled = true;
    try {
      const response = await fetch(path, {
        method: "POST", cache: "no-store", credentials: "omit",
        headers: { "Authorization": "Bearer " + t },
      });
      const text = (await response.text()).trim();
      if (response.ok) {
        message("OK: POST " + decodeURIComponent(path) + " → " + text.replace(/\s+/g, " "), true);
      } else if (response.status === 401) {
        message("401 Unauthorized: the token was refused. Check it and press “Use token” again.", false);
      } else if (response.status === 403) {
        message("403 Forbidden: " + text, false);
      } else if (response.status === 409) {
        message("409 Conflict: " + text, false);
      } else {
        message(response.status + ": " + text, false);
      }
    } catch (err) {
      message("The request failed: " + err.message, false);
    } finally {
      button.disabled = !token();
      refresh();
    }
  }

  function setToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage refused: the page stays read-only */ }
    $("token").value = "";
    $("token").placeholder = token() ? "token set for this tab" : "";
    message(token() ? "Token set for this tab: operator buttons are enabled."
                    : "No token: the page is read-only.", true);
    refresh();
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("token-save").addEventListener("click", function () { setToken($("token").value.trim()); });
    $("token").addEventListener("keydown", function (e) {
      if (e.key === "Enter") setToken($("token").value.trim());
    });
    $("token-forget").addEventListener("click", function () { setToken(""); });
    $("token").placeholder = token() ? "token set for this tab" : "";
    refresh();
    setInterval(refresh, REFRESH_MS);
  });
})();
