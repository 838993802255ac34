// The review page: one item at a time, keyboard first, over the JSON API (no reloads).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const root = $("review");
  const multi = root.dataset.multi === "true";
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  const labelButtons = [...document.querySelectorAll("#labels .label")];
  const labelNames = labelButtons.map((b) => b.dataset.label);

  let item = null;
  let picked = new Set();
  let shownAt = 0;
  let busy = false;
  let done = 0;

  async function api(method, url, body) {
    const headers = { "X-CSRF-Token": csrf, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401) {
      window.location.assign("/login?next=/review");
      throw new Error("your session ended; log in again");
    }
    const data = await res.json().catch(() => ({}));
    if (!res.ok) {
      const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
      const err = new Error(detail || `request failed (${res.status})`);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function say(text, isError = false) {
    const box = $("message");
    box.textContent = text;
    box.classList.toggle("error", isError);
    box.hidden = !text;
  }

  function topSuggestion(it) {
    let best = null;
    for (const s of it?.suggestions ?? []) {
      if (s.status !== "ok" || !s.label || !labelNames.includes(s.label)) continue;
      if (best === null || (s.confidence ?? -1) > (best.confidence ?? -1)) best = s;
    }
    return best;
  }

  function showPicked() {
    for (const b of labelButtons) b.setAttribute("aria-pressed", String(picked.has(b.dataset.label)));
  }

  function renderSuggestions(it, top) {
    const list = $("suggestions");
    list.replaceChildren();
    if (!it.suggestions.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "none";
      list.append(li);
    }
    for (const s of it.suggestions) {
      const li = document.createElement("li");
      if (s === top) li.className = "top-pick";
      const name = document.createElement("strong");
      name.textContent = s.label ?? (s.status === "ok" ? "—" : s.status);
      const conf = document.createElement("span");
      conf.className = "conf";
      conf.textContent = s.confidence == null ? "" : `${(s.confidence * 100).toFixed(0)}%`;
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.style.width = `${Math.round((s.confidence ?? 0) * 100)}%`;
      bar.append(fill);
      const by = document.createElement("span");
      by.className = "by";
      by.textContent = `by ${s.labeler} ${s.labeler_version}` +
        (s.confidence_method ? ` · ${s.confidence_method}` : "");
      li.append(name, conf, bar, by);
      list.append(li);
    }
    for (const b of labelButtons) b.classList.toggle("suggested", !!top && b.dataset.label === top.label);
  }

  function render(it) {
    item = it;
    picked = new Set();
    showPicked();
    const box = $("item");
    $("empty").hidden = !!it;
    box.hidden = !it;
    box.dataset.itemId = it ? String(it.id) : "";
    if (!it) {
      $("item-info").textContent = "queue empty";
      renderSuggestions({ suggestions: [] }, null);
      return;
    }
    $("item-content").textContent = it.content;
    const img = $("item-media");
    if (it.media_url) { img.src = it.media_url; img.hidden = false; } else { img.removeAttribute("src"); img.hidden = true; }
    const meta = $("item-meta");
    meta.replaceChildren();
    for (const [k, v] of Object.entries(it.meta ?? {})) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = typeof v === "string" ? v : JSON.stringify(v);
      meta.append(dt, dd);
    }
    const until = new Date(it.lease_expires_at);
    $("item-info").textContent = `item ${it.id}` + (it.queue_reason ? ` · ${it.queue_reason}` : "") +
      ` · yours until ${until.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
    renderSuggestions(it, topSuggestion(it));
    shownAt = performance.now();
  }

  async function run(work) {
    if (busy) return;
    busy = true;
    root.setAttribute("aria-busy", "true");
    let stale = false;
    try { await work(); } catch (err) {
      // 409: the lease expired (or the item went elsewhere): say so, then ask for an item anew.
      stale = err.status === 409;
      say(stale ? `${err.message} (loading an item again)` : err.message, true);
    } finally {
      busy = false;
      if (!stale) root.removeAttribute("aria-busy");
    }
    if (stale) await next(true);
  }

  async function next(keepMessage = false) {
    busy = true;
    root.setAttribute("aria-busy", "true");
    try { render((await api("POST", "/api/queue/next")).item); } catch (err) {
      if (!keepMessage) say(err.message, true);
      else say(`${$("message").textContent} — ${err.message}`, true);
    } finally {
      busy = false;
      root.removeAttribute("aria-busy");
    }
  }

  function pick(index) {
    const name = labelNames[index];
    if (!item || name === undefined) return;
    if (multi) {
      if (picked.has(name)) picked.delete(name); else picked.add(name);
    } else {
      picked = picked.has(name) ? new Set() : new Set([name]);
    }
    showPicked();
  }

  function accept() {
    if (!item) return;
    let labels = [...picked];
    if (!labels.length) {
      const top = topSuggestion(item);
      if (!top) { say("Pick a label first (keys 1–9): this item has no machine suggestion.", true); return; }
      labels = [top.label];
    }
    const spent = Math.round(performance.now() - shownAt);
    run(async () => {
      const saved = item.id;
      await api("POST", `/api/items/${saved}/label`, { labels, time_spent_ms: spent });
      render((await api("POST", "/api/queue/next")).item);
      done += 1;
      $("done-count").textContent = String(done);
      say(`Saved item ${saved}: ${labels.join(", ")}`);
    });
  }

  function skip() {
    if (!item) return;
    run(async () => {
      const skipped = item.id;
      await api("POST", `/api/items/${skipped}/skip`);
      render((await api("POST", "/api/queue/next")).item);
      say(`Skipped item ${skipped}`);
    });
  }

  function undo() {
    run(async () => {
      const back = (await api("POST", "/api/undo")).item;
      if (!back) { say("Nothing to undo.", true); return; }
      done = Math.max(0, done - 1);
      $("done-count").textContent = String(done);
      say(`Undid your last answer on item ${back.id}`);
      render(back);
    });
  }

  function toggleHelp() {
    const dlg = $("help");
    if (dlg.open) dlg.close(); else dlg.showModal();
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLTextAreaElement) return;
    if ($("help").open && ev.key !== "?") return;
    if (/^[1-9]$/.test(ev.key)) { pick(Number(ev.key) - 1); ev.preventDefault(); }
    else if (ev.key === "Enter") { accept(); ev.preventDefault(); }
    else if (ev.key === "s" || ev.key === "S") { skip(); ev.preventDefault(); }
    else if (ev.key === "u" || ev.key === "U") { undo(); ev.preventDefault(); }
    else if (ev.key === "?") { toggleHelp(); ev.preventDefault(); }
  });
  labelButtons.forEach((b, i) => b.addEventListener("click", () => { pick(i); b.blur(); }));
  $("accept").addEventListener("click", accept);
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("help-toggle").addEventListener("click", toggleHelp);

  next();
})();
