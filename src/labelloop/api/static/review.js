// The review page: one item at a time, keyboard first, over the JSON API (no reloads).
//
// Keys (also in the page's "?" help; codes and digits come from api/label_keys.py):
//   letters or "/"  filter the labels (a label's code first, then words of its name, then of its
//                   description); arrows move the highlight; Enter saves the highlighted label
//                   (multi-label: toggles it; Enter on an empty filter saves the set)
//   1..9            small taxonomy: select label n; large one: select machine candidate n (1..5)
//   Enter           save what is selected; nothing selected: nothing is saved, and the page says so
//                   (multi-label: the machine's whole set comes pre-selected, so Enter accepts it)
//   0               multi-label: save "none of these apply" (the empty set)
//   Shift+A/S/U/Z   accept the top candidate / skip / undo / zoom the image; "?" help
// Nothing is ever saved that is not visibly selected or explicitly accepted (Shift+A, 0).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const root = $("review");
  const multi = root.dataset.multi === "true";
  const scheme = root.dataset.scheme; // "positions" or "candidates"
  const candidateKeys = Number(root.dataset.candidateKeys) || 5;
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  const filterBox = $("filter");
  const panel = $("labels");

  const labels = [...panel.querySelectorAll(".label")].map((button, index) => {
    const name = button.dataset.label;
    const words = name.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean);
    return {
      index, button, name, words,
      code: button.dataset.code,
      flat: words.join(" "),
      initials: words.map((w) => w[0]).join(""),
      description: button.dataset.description ?? "",
      guidelines: button.dataset.guidelines ?? "",
      examples: JSON.parse(button.dataset.examples || "[]"),
      about: `${button.dataset.description ?? ""} ${button.dataset.guidelines ?? ""}`.toLowerCase(),
    };
  });
  const byName = new Map(labels.map((l) => [l.name, l]));

  // Readable names for the labelers' internal ids (the full id stays in the tooltip).
  const LABELER_NAMES = {
    ensemble: "ensemble",
    zeroshot: "zero-shot (embeddings)",
    student: "student model",
    self_training: "self-training model",
    prior: "prior (no model yet)",
    cascade: "cascade",
  };
  function labelerName(id) {
    if (id.startsWith("llm:")) {
      const model = id.slice(4).split("/").pop().replace(/\.gguf$/i, "")
        .replace(/[-_.](q\d[\w]*|f16|f32|bf16)$/i, "");
      return `LLM ${model}`;
    }
    return LABELER_NAMES[id] ?? id.replaceAll("_", " ");
  }

  let item = null;
  let picked = new Set();
  let candidates = []; // [{label, confidence, by: [labeler names]}], best first
  let machineSet = []; // multi-label: the lead suggestion's set [{label, p}], most probable first
  let order = labels; // the label list as shown (filtered and ranked)
  let highlight = -1; // index into `order`, -1: none
  let shownAt = 0;
  let busy = false;
  let savingNone = false; // the empty set is being saved ("none of these")

  // -- talking to the API ------------------------------------------------------------------
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

  function showProgress(p) {
    if (!p) return;
    $("done-count").textContent = p.mine.toLocaleString();
    $("rate").textContent = p.per_hour == null ? "–" : Math.round(p.per_hour).toLocaleString();
    $("left-count").textContent = p.left.toLocaleString();
    $("team-done").textContent = p.done.toLocaleString();
  }

  // -- the filter --------------------------------------------------------------------------
  function isSubsequence(needle, hay) {
    let k = 0;
    for (const ch of hay) if (ch === needle[k]) k += 1;
    return k === needle.length;
  }

  /** How well label `l` matches query `q` (0: not at all). The code wins, then the name. */
  function score(l, q) {
    const tokens = q.split(/[^a-z0-9]+/).filter(Boolean);
    const flatQ = tokens.join(" ");
    if (!flatQ) return 0;
    if (l.code === q) return 1000;
    if (l.flat === flatQ) return 900;
    if (l.flat.startsWith(flatQ)) return 800;
    if (tokens.every((t) => l.words.some((w) => w.startsWith(t)))) {
      return l.words[0].startsWith(tokens[0]) ? 700 : 600;
    }
    if (tokens.length === 1 && l.initials.startsWith(flatQ)) return 500;
    if (l.flat.includes(flatQ)) return 400;
    if (tokens.every((t) => l.about.includes(t))) return 300;
    const squashed = tokens.join("");
    if (squashed.length >= 3 && isSubsequence(squashed, l.words.join(""))) return 100;
    return 0;
  }

  /** Show the labels matching the filter, best first; highlight the best one. */
  function applyFilter(keepHighlight = false) {
    const q = filterBox.value.trim().toLowerCase();
    if (!q) {
      order = labels;
    } else {
      order = labels
        .map((l) => [score(l, q), l])
        .filter(([s]) => s > 0)
        .sort((a, b) => b[0] - a[0] || a[1].index - b[1].index)
        .map(([, l]) => l);
    }
    const rank = new Map(order.map((l, k) => [l, k]));
    for (const l of labels) {
      const k = rank.get(l);
      l.button.hidden = k === undefined;
      l.button.style.order = k === undefined ? "" : String(k);
    }
    $("no-match").hidden = order.length > 0;
    $("filter-info").textContent = q
      ? `${order.length} of ${labels.length} labels match` + (order.length ? " · Enter takes the highlighted one" : "")
      : "Type a label's code (or words of its name or description), then Enter.";
    setHighlight(q && order.length ? (keepHighlight ? Math.min(Math.max(highlight, 0), order.length - 1) : 0) : -1);
  }

  function setHighlight(k) {
    highlight = k;
    labels.forEach((l) => l.button.classList.remove("highlight"));
    for (const l of labels) l.button.setAttribute("aria-selected", "false");
    const l = order[k];
    if (l) {
      l.button.classList.add("highlight");
      l.button.setAttribute("aria-selected", "true");
      scrollPanelTo(l.button);
    }
    showGuide();
  }

  /** Scroll the label panel (and nothing else: the item stays where it is) to `button`. */
  function scrollPanelTo(button) {
    const top = button.offsetTop - panel.offsetTop;
    const bottom = top + button.offsetHeight;
    if (top < panel.scrollTop) panel.scrollTop = top;
    else if (bottom > panel.scrollTop + panel.clientHeight) panel.scrollTop = bottom - panel.clientHeight;
  }

  function moveHighlight(step) {
    if (!order.length) return;
    const k = highlight < 0 ? (step > 0 ? 0 : order.length - 1)
      : (highlight + step + order.length) % order.length;
    setHighlight(k);
  }

  function clearFilter(leave = true) {
    filterBox.value = "";
    applyFilter();
    if (leave && document.activeElement === filterBox) filterBox.blur();
  }

  // -- the item, its candidates and the selection ------------------------------------------
  /** The suggestion that ranks the candidates: the ensemble's, else the most confident one. */
  function leadSuggestion(suggestions) {
    const ok = suggestions.filter((s) => s.status === "ok" && s.probs && Object.keys(s.probs).length);
    return ok.find((s) => s.labeler === "ensemble") ??
      ok.reduce((best, s) => (best && (best.confidence ?? -1) >= (s.confidence ?? -1) ? best : s), null);
  }

  /** The newest ok suggestion of each labeler (the API sends newest first). */
  function latestPerLabeler(suggestions) {
    const seen = new Map();
    for (const s of suggestions) if (!seen.has(s.labeler)) seen.set(s.labeler, s);
    return [...seen.values()];
  }

  /** Top candidates: the lead's best labels by probability, plus every other labeler's top
   * label (so a disagreeing labeler is always one key away), at most `candidateKeys`. */
  function rankCandidates(suggestions) {
    const lead = leadSuggestion(suggestions);
    const per = latestPerLabeler(suggestions).filter((s) => s.status === "ok" && s.label && byName.has(s.label));
    const ranked = lead
      ? Object.entries(lead.probs).filter(([n]) => byName.has(n)).sort((a, b) => b[1] - a[1])
      : [];
    // Multi-label: the whole machine set is shown, however many labels it holds.
    const inSet = new Set(multi ? setOf(lead).map((e) => e.label) : []);
    const out = ranked.slice(0, Math.max(candidateKeys, inSet.size))
      .map(([label, p]) => ({ label, confidence: p, lead: true, inSet: inSet.has(label) }));
    for (const s of per) {
      if (out.some((c) => c.label === s.label)) continue;
      const entry = { label: s.label, confidence: lead ? (lead.probs[s.label] ?? null) : s.confidence };
      if (out.length < candidateKeys) { out.push(entry); continue; }
      // Full: it takes the place of the lead's lowest-ranked entry (the lead keeps its top 2
      // and, multi-label, its whole set).
      const slot = out.findLastIndex((c, k) => c.lead && k >= 2 && !c.inSet);
      if (slot >= 0) out[slot] = entry;
    }
    for (const c of out) {
      c.by = per.filter((s) => s.label === c.label).map((s) => labelerName(s.labeler));
    }
    return out;
  }

  /** Multi-label: the labels a suggestion says apply (p >= 0.5), most probable first. */
  function setOf(s) {
    if (!s) return [];
    return Object.entries(s.probs ?? {}).filter(([n, p]) => byName.has(n) && p >= 0.5)
      .sort((a, b) => b[1] - a[1]).map(([label, p]) => ({ label, p }));
  }

  const pct = (x) => `${(x * 100).toFixed(0)}%`;

  /** Multi-label: the machine's whole set, each label with its own probability, and the
   * probability of the set as a whole; "none of these" when the set is empty. */
  function renderMachineSet(lead) {
    const box = $("machine-set");
    if (!box) return;
    box.replaceChildren();
    box.hidden = !item || !lead;
    if (box.hidden) return;
    const head = document.createElement("span");
    head.className = "set-head";
    head.textContent = "Machine's set" + (lead.confidence == null ? "" : ` (${pct(lead.confidence)} as a whole)`) + ":";
    box.append(head);
    if (!machineSet.length) {
      const none = document.createElement("strong");
      none.className = "set-none";
      none.textContent = "none of these";
      box.append(" ", none);
      return;
    }
    for (const { label, p } of machineSet) {
      const tag = document.createElement("span");
      tag.className = "set-label";
      tag.dataset.label = label;
      const name = document.createElement("strong");
      name.textContent = label;
      const conf = document.createElement("span");
      conf.className = "conf";
      conf.textContent = pct(p);
      tag.append(name, " ", conf);
      box.append(" ", tag);
    }
  }

  function keyOfCandidate(k, label) {
    if (scheme === "candidates") return k < candidateKeys ? String(k + 1) : "";
    const l = byName.get(label);
    return l && l.index < 9 ? String(l.index + 1) : "";
  }

  function renderCandidates() {
    const list = $("candidates");
    list.replaceChildren();
    if (!candidates.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = item ? "no machine suggestion for this item" : "none";
      list.append(li);
      return;
    }
    candidates.forEach((c, k) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = c.inSet ? "candidate in-set" : "candidate";
      b.dataset.label = c.label;
      b.setAttribute("aria-pressed", String(picked.has(c.label)));
      const key = keyOfCandidate(k, c.label);
      if (key) { const kbd = document.createElement("kbd"); kbd.textContent = key; b.append(kbd); }
      const name = document.createElement("span");
      name.className = "cand-name";
      name.textContent = c.label;
      const conf = document.createElement("span");
      conf.className = "conf";
      conf.textContent = c.confidence == null ? "" : `${(c.confidence * 100).toFixed(0)}%`;
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.style.width = `${Math.round((c.confidence ?? 0) * 100)}%`;
      bar.append(fill);
      b.append(name, conf, bar);
      const notes = [];
      if (c.inSet) notes.push("in the machine's set");
      if (c.by.length) notes.push(`top pick of ${c.by.join(", ")}`);
      if (notes.length) {
        const by = document.createElement("small");
        by.className = "by";
        by.textContent = notes.join(" · ");
        b.append(by);
      }
      b.addEventListener("click", () => { choose(c.label); b.blur(); });
      li.append(b);
      list.append(li);
    });
  }

  function renderSuggestions(suggestions, top) {
    const list = $("suggestions");
    list.replaceChildren();
    const per = latestPerLabeler(suggestions);
    if (!per.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "none";
      list.append(li);
    }
    for (const s of per) {
      const li = document.createElement("li");
      if (top && s === top) li.className = "top-pick";
      li.title = `${s.labeler} ${s.labeler_version}` + (s.confidence_method ? ` · ${s.confidence_method}` : "");
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = labelerName(s.labeler);
      const what = document.createElement("strong");
      if (multi && s.status === "ok") {
        const set = setOf(s);
        what.textContent = set.length ? set.map((e) => `${e.label} ${pct(e.p)}`).join(", ") : "none of these";
      } else {
        what.textContent = s.label ?? (s.status === "ok" ? "—" : s.status);
      }
      const conf = document.createElement("span");
      conf.className = "conf";
      conf.textContent = s.confidence == null ? "" : `${(s.confidence * 100).toFixed(0)}%`;
      li.append(who, what, conf);
      list.append(li);
    }
  }

  function showPicked() {
    for (const l of labels) l.button.setAttribute("aria-pressed", String(picked.has(l.name)));
    for (const b of document.querySelectorAll("#candidates .candidate")) {
      b.setAttribute("aria-pressed", String(picked.has(b.dataset.label)));
    }
    $("selected").textContent = picked.size ? [...picked].join(", ") : (savingNone ? "none of these" : "nothing");
    showGuide();
  }

  /** Description, guidelines and examples of the label in focus: the highlighted one, else
   * the last picked, else the top candidate. */
  function showGuide() {
    const l = order[highlight] ?? byName.get([...picked].pop()) ?? byName.get(candidates[0]?.label);
    const box = $("guide");
    const has = l && (l.description || l.guidelines || l.examples.length);
    box.hidden = !has;
    if (!has) return;
    $("guide-name").textContent = l.name;
    $("guide-description").textContent = l.description;
    $("guide-guidelines").textContent = l.guidelines;
    const ex = $("guide-examples");
    ex.replaceChildren(...l.examples.map((e) => {
      const li = document.createElement("li");
      li.textContent = e;
      return li;
    }));
  }

  // A table row shows as a two-column table (column, value), not one line of JSON.
  function renderContent(it) {
    const box = $("item-content");
    if (!it.cells) { box.textContent = it.content; box.classList.remove("cells"); return; }
    const table = document.createElement("table");
    table.className = "cells";
    for (const [k, v] of Object.entries(it.cells)) {
      const tr = document.createElement("tr");
      const th = document.createElement("th"); th.scope = "row"; th.textContent = k;
      const td = document.createElement("td");
      td.textContent = v === null ? "(missing)" : String(v);
      if (v === null) td.className = "missing";
      tr.append(th, td);
      table.append(tr);
    }
    box.replaceChildren(table);
    box.classList.add("cells");
  }

  function render(it) {
    item = it;
    picked = new Set();
    const box = $("item");
    $("empty").hidden = !!it;
    box.hidden = !it;
    box.dataset.itemId = it ? String(it.id) : "";
    const suggestions = it?.suggestions ?? [];
    const lead = leadSuggestion(suggestions);
    candidates = it ? rankCandidates(suggestions) : [];
    // Multi-label: the machine's whole set comes pre-selected, so Enter accepts it as is.
    machineSet = it && multi ? setOf(lead) : [];
    picked = new Set(machineSet.map((e) => e.label));
    savingNone = false;
    renderCandidates();
    renderMachineSet(lead);
    renderSuggestions(suggestions, lead);
    showPicked();
    const img = $("item-media");
    const zoom = $("zoom");
    zoom.classList.remove("zoomed");
    if (!it) {
      $("item-info").textContent = "queue empty";
      zoom.hidden = true;
      return;
    }
    renderContent(it);
    if (it.media_url) { img.src = it.media_url; zoom.hidden = false; } else { img.removeAttribute("src"); zoom.hidden = true; }
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
    shownAt = performance.now();
  }

  // -- actions -----------------------------------------------------------------------------
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

  function showNext(data) {
    render(data.item);
    showProgress(data.progress);
    // A new item starts from the page: keys go to no button or box left focused before.
    if (document.activeElement instanceof HTMLElement) document.activeElement.blur();
  }

  async function next(keepMessage = false) {
    busy = true;
    root.setAttribute("aria-busy", "true");
    try { showNext(await api("POST", "/api/queue/next")); } catch (err) {
      if (!keepMessage) say(err.message, true);
      else say(`${$("message").textContent} — ${err.message}`, true);
    } finally {
      busy = false;
      root.removeAttribute("aria-busy");
    }
  }

  /** Select `name` (single-label: instead of what was selected; multi-label: toggle it). */
  function choose(name) {
    if (!item || !byName.has(name)) return;
    savingNone = false;
    if (multi) {
      if (picked.has(name)) picked.delete(name); else picked.add(name);
    } else {
      picked = picked.has(name) ? new Set() : new Set([name]);
    }
    showPicked();
  }

  /** Save `labels` for the item, in the order given (they are shown as selected first). An
   * empty list is saved only as the explicit multi-label answer "none of these" (`none`). */
  function save(chosen, none = false) {
    if (!item || busy) return;
    if (!chosen.length && !(multi && none)) {
      say("Nothing saved: no label is selected. Type to filter the labels" +
        (scheme === "candidates" ? `, press 1–${candidateKeys} for a candidate` : ", press a label's number") +
        (multi ? ", 0 for none of these," : "") + " or Shift+A to accept the top candidate.", true);
      return;
    }
    picked = new Set(chosen);
    savingNone = !chosen.length;
    showPicked();
    const spent = Math.round(performance.now() - shownAt);
    run(async () => {
      const saved = item.id;
      await api("POST", `/api/items/${saved}/label`, { labels: chosen, time_spent_ms: spent });
      clearFilter();
      showNext(await api("POST", "/api/queue/next"));
      say(`Saved item ${saved}: ${chosen.length ? chosen.join(", ") : "none of these"}`);
    });
  }

  /** Multi-label: the explicit answer "none of these labels apply" (saves the empty set). */
  function saveNone() {
    if (!item) return;
    if (!multi) {
      say("This project is single-label: pick one label, or Shift+S to skip the item.", true);
      return;
    }
    save([], true);
  }

  function saveSelected() { save([...picked]); }

  function acceptTop() {
    if (!item) return;
    const lead = leadSuggestion(item.suggestions ?? []);
    // Multi-label: the machine's whole set as shown ("none of these" when it is empty).
    if (multi && lead) { save(machineSet.map((e) => e.label), true); return; }
    const chosen = candidates.length ? [candidates[0].label] : [];
    if (!chosen.length) { say("Nothing saved: this item has no machine suggestion to accept.", true); return; }
    save(chosen);
  }

  /** A label taken by keyboard from the list (Enter on it, or on the filter's highlight). */
  function takeLabel(name) {
    if (!item) return;
    if (multi) { choose(name); return; }
    save([name]);
  }

  function skip() {
    if (!item) return;
    run(async () => {
      const skipped = item.id;
      await api("POST", `/api/items/${skipped}/skip`);
      clearFilter();
      showNext(await api("POST", "/api/queue/next"));
      say(`Skipped item ${skipped}`);
    });
  }

  function undo() {
    run(async () => {
      const data = await api("POST", "/api/undo");
      if (!data.item) { say("Nothing to undo.", true); return; }
      clearFilter();
      showNext(data);
      say(`Undid your last answer on item ${data.item.id}`);
    });
  }

  function toggleZoom() {
    const zoom = $("zoom");
    if (!zoom.hidden) zoom.classList.toggle("zoomed");
  }

  function toggleHelp() {
    const dlg = $("help");
    if (dlg.open) dlg.close(); else dlg.showModal();
  }

  // -- keys --------------------------------------------------------------------------------
  const COMMANDS = { A: acceptTop, S: skip, U: undo, Z: toggleZoom };

  function onFilterKey(ev) {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      moveHighlight(ev.key === "ArrowDown" ? 1 : -1);
    } else if (ev.key === "Enter") {
      const l = order[highlight];
      if (l) {
        takeLabel(l.name);
        if (multi) clearFilter(false);
      } else {
        saveSelected();
      }
    } else if (ev.key === "Escape") {
      if (filterBox.value) clearFilter(false); else filterBox.blur();
    } else if (!filterBox.value && /^[0-9]$/.test(ev.key)) {
      filterBox.blur(); // an empty filter: digits keep their meaning (candidates or labels)
      onPageKey(ev);
      return;
    } else {
      return; // typing: the input event filters
    }
    ev.preventDefault();
  }

  function onPageKey(ev) {
    const target = ev.target;
    const onLabel = target instanceof HTMLElement && target.matches("#labels .label, #candidates .candidate");
    if (onLabel && ev.key === "Enter") {
      takeLabel(target.dataset.label);
      ev.preventDefault();
      return;
    }
    // Enter or Space on any other button is that button's own click.
    if (target instanceof HTMLButtonElement && (ev.key === "Enter" || ev.key === " ")) return;
    if (ev.key === "?") { toggleHelp(); ev.preventDefault(); return; }
    if (ev.shiftKey && COMMANDS[ev.key]) { COMMANDS[ev.key](); ev.preventDefault(); return; }
    if (/^[a-z]$/.test(ev.key) || ev.key === "/") {
      filterBox.focus();
      if (ev.key !== "/") filterBox.value += ev.key; else filterBox.select();
      applyFilter();
      ev.preventDefault();
    } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      filterBox.focus();
      moveHighlight(ev.key === "ArrowDown" ? 1 : -1);
      ev.preventDefault();
    } else if (ev.key === "0") {
      saveNone();
      ev.preventDefault();
    } else if (/^[1-9]$/.test(ev.key)) {
      const n = Number(ev.key) - 1;
      const name = scheme === "candidates" ? (n < candidateKeys ? candidates[n]?.label : undefined)
        : labels[n]?.name;
      if (name) choose(name);
      else say(scheme === "candidates" ? `No candidate ${n + 1} for this item.` : `No label ${n + 1}.`, true);
      ev.preventDefault();
    } else if (ev.key === "Enter") {
      saveSelected();
      ev.preventDefault();
    } else if (ev.key === "Escape") {
      picked = new Set();
      savingNone = false;
      showPicked();
    }
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
    if ($("help").open) {
      if (ev.key === "?") { toggleHelp(); ev.preventDefault(); }
      return; // Esc closes the dialog by itself
    }
    if (ev.target === filterBox) { onFilterKey(ev); return; }
    if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLTextAreaElement) return;
    onPageKey(ev);
  });
  filterBox.addEventListener("input", () => applyFilter());
  labels.forEach((l) => l.button.addEventListener("click", (ev) => {
    // A mouse click selects; Enter on a focused label is handled above (it saves that label).
    choose(l.name);
    if (ev.detail > 0) l.button.blur();
  }));
  $("accept").addEventListener("click", saveSelected);
  $("accept-top").addEventListener("click", acceptTop);
  $("none")?.addEventListener("click", saveNone);
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("help-toggle").addEventListener("click", toggleHelp);
  $("zoom").addEventListener("click", toggleZoom);

  // For tests and the keystroke benchmark: the page's own filter, as the page ranks labels.
  window.labelloopReview = {
    rank: (q) => { filterBox.value = q; applyFilter(); const r = order.map((l) => l.name); clearFilter(); return r; },
    codes: () => Object.fromEntries(labels.map((l) => [l.name, l.code])),
  };

  next();
})();
