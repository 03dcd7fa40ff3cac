// rlhf serve: the labeling page. Gets a claimed prompt from /api/next, shows its completions in a
// shuffled order, and lets the labeler order them best first: by dragging the cards, or by typing
// the cards' numbers (1..K) in order; "=" before a number ties that card with the one before it.
// Texts are set with textContent (shown as text, never parsed as HTML). Every POST carries the
// session's CSRF token from the page's <meta name="csrf-token">.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  let item = null;          // {prompt_id, prompt, completions: [{id, text}]}
  let order = [];           // indices into item.completions, best first
  let tied = [];            // tied[p]: position p ties with position p - 1
  let typed = 0;            // positions placed by the keyboard so far
  let pendingTie = false;   // "=" typed: the next card typed ties with the one before
  let flags = {};           // completion index -> {unsafe: bool, broken: bool}
  let busy = false;

  function say(text, bad) {
    $("message").textContent = text;
    $("message").className = bad ? "error" : "";
  }

  function showProgress(p) {
    if (!p) return;
    $("progress").textContent = "Your rankings: " + p.mine + " \u00b7 prompts done: " + p.done +
      " of " + p.queued + (p.overlap > 1 ? " (" + p.overlap + " labelers each)" : "");
  }

  function ranks() {   // dense ranks by position: 1 for the best, equal for ties
    const r = [];
    for (let p = 0; p < order.length; p++) r.push(p === 0 ? 1 : r[p - 1] + (tied[p] ? 0 : 1));
    return r;
  }

  function render() {
    const list = $("cards");
    list.textContent = "";
    const r = ranks();
    order.forEach((ci, p) => {
      const c = item.completions[ci];
      const li = document.createElement("li");
      li.className = "card" + (tied[p] ? " tied" : "") + (p < typed ? " typed" : "");
      li.draggable = true;
      li.dataset.index = String(ci);
      li.dataset.rank = String(r[p]);
      const rank = document.createElement("div");
      rank.className = "rank";
      rank.textContent = "#" + r[p];
      const key = document.createElement("span");
      key.className = "key";
      key.textContent = String(ci + 1);
      rank.appendChild(document.createElement("br"));
      rank.appendChild(key);
      const body = document.createElement("div");
      body.className = "body";
      const pre = document.createElement("pre");
      pre.textContent = c.text;
      body.appendChild(pre);
      const side = document.createElement("div");
      side.className = "flags";
      if (p > 0) {
        const tie = document.createElement("button");
        tie.className = "tie";
        tie.textContent = tied[p] ? "untie" : "= tie with above";
        tie.addEventListener("click", () => { tied[p] = !tied[p]; render(); });
        side.appendChild(tie);
      }
      for (const f of ["unsafe", "broken"]) {
        const lab = document.createElement("label");
        const box = document.createElement("input");
        box.type = "checkbox";
        box.className = "flag-" + f;
        box.checked = !!(flags[ci] && flags[ci][f]);
        box.addEventListener("change", () => {
          flags[ci] = flags[ci] || {};
          flags[ci][f] = box.checked;
        });
        lab.appendChild(box);
        lab.appendChild(document.createTextNode(" " + f));
        side.appendChild(lab);
      }
      li.appendChild(rank);
      li.appendChild(body);
      li.appendChild(side);
      addDrag(li);
      list.appendChild(li);
    });
  }

  // Drag and drop: a card dropped on another takes its place; ties stay with positions.
  let dragFrom = -1;
  function addDrag(li) {
    li.addEventListener("dragstart", (e) => {
      dragFrom = order.indexOf(Number(li.dataset.index));
      li.classList.add("dragging");
      e.dataTransfer.effectAllowed = "move";
      e.dataTransfer.setData("text/plain", li.dataset.index);
    });
    li.addEventListener("dragend", () => li.classList.remove("dragging"));
    li.addEventListener("dragover", (e) => e.preventDefault());
    li.addEventListener("drop", (e) => {
      e.preventDefault();
      const to = order.indexOf(Number(li.dataset.index));
      if (dragFrom < 0 || to < 0 || dragFrom === to) return;
      const [ci] = order.splice(dragFrom, 1);
      order.splice(to, 0, ci);
      dragFrom = -1;
      render();
    });
  }

  function reset() {
    order = item.completions.map((_, i) => i);
    tied = order.map(() => false);
    typed = 0;
    pendingTie = false;
  }

  // Typing card number n: it takes the next typed position.
  function typeCard(n) {
    const ci = n - 1;
    const p = order.indexOf(ci);
    if (p < 0 || p < typed) return;
    order.splice(p, 1);
    order.splice(typed, 0, ci);
    tied[typed] = typed > 0 && pendingTie;
    pendingTie = false;
    typed++;
    render();
  }

  async function call(method, url, body) {
    // every call carries the CSRF token: /api/next (a GET) claims a prompt, a change too
    const opt = {method: method, headers: {"X-CSRF-Token": csrf}, credentials: "same-origin"};
    if (method === "POST") {
      opt.headers["Content-Type"] = "application/json";
      opt.body = JSON.stringify(body || {});
    }
    const r = await fetch(url, opt);
    if (r.status === 401) { window.location.href = "/login"; throw new Error("logged out"); }
    const j = await r.json();
    if (!r.ok) throw new Error(j.error || ("HTTP " + r.status));
    return j;
  }

  async function next(want) {
    const j = await call("GET", "/api/next" + (want ? "?prompt=" + Number(want) : ""));
    showProgress(j.progress);
    item = j;
    flags = {};
    $("note").value = "";
    if (!j.prompt_id) {
      $("label").hidden = true;
      $("done").hidden = false;
      return;
    }
    $("label").hidden = false;
    $("done").hidden = true;
    $("prompt").textContent = j.prompt;
    $("label").dataset.promptId = String(j.prompt_id);
    reset();
    render();
  }

  async function act(fn) {
    if (busy) return;
    busy = true;
    try { await fn(); } catch (e) { say(e.message, true); }
    busy = false;
  }

  function submit() {
    return act(async () => {
      if (!item || !item.prompt_id) return;
      const r = ranks();
      const items = order.map((ci, p) => ({id: item.completions[ci].id, rank: r[p]}));
      const fl = [];
      for (const ci in flags)
        for (const f of ["unsafe", "broken"])
          if (flags[ci][f]) fl.push({id: item.completions[Number(ci)].id, flag: f});
      const j = await call("POST", "/api/rank",
                           {prompt_id: item.prompt_id, items: items, flags: fl,
                            note: $("note").value});
      say("Saved (ranking " + j.ranking_id + ").");
      await next();
    });
  }

  function skip() {
    return act(async () => {
      if (!item || !item.prompt_id) return;
      await call("POST", "/api/skip", {prompt_id: item.prompt_id});
      say("Skipped: you will not see that prompt again.");
      await next();
    });
  }

  function undo() {
    return act(async () => {
      const j = await call("POST", "/api/undo", {});
      say("Undone: ranking " + j.undone + " deleted; rank its prompt again.");
      await next(j.prompt_id);
    });
  }

  document.addEventListener("keydown", (e) => {
    if (e.target && e.target.id === "note") {
      if (e.key === "Enter") { e.preventDefault(); submit(); }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || !item || !item.prompt_id) return;
    if (e.key >= "1" && e.key <= "9" && Number(e.key) <= item.completions.length) {
      typeCard(Number(e.key));
    } else if (e.key === "=") {
      pendingTie = typed > 0;
    } else if (e.key === "Enter") {
      submit();
    } else if (e.key === "Escape") {
      reset(); render();
    } else if (e.key === "s" || e.key === "S") {
      skip();
    } else if (e.key === "u" || e.key === "U") {
      undo();
    } else return;
    e.preventDefault();
  });
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", skip);
  $("undo").addEventListener("click", undo);
  $("reset").addEventListener("click", () => {
    if (item && item.prompt_id) { reset(); render(); }
  });
  act(() => next());
})();
