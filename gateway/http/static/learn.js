/* Learning from agents: "这个问题 = FAQ 条目 X" and "用这条回复新建 FAQ 条目", in the agent console (a panel
   for the open conversation) and on the admin dashboard (one more column of the unanswered groups).
   agent.js / admin.js only announce what they show (the kefu:conversation and kefu:unanswered events).
   Loaded in <head>, so the listeners exist before the pages' first announcement; the DOM parts (and
   common.js's helpers) are used once the document is parsed. */
"use strict";
(function () {
  const parsed = new Promise((resolve) => {
    if (document.readyState !== "loading") resolve();
    else document.addEventListener("DOMContentLoaded", () => resolve(), { once: true });
  });
  const el = (...args) => window.kefu.el(...args);
  const api = (...args) => window.kefu.api(...args);

  /** A searchable dropdown of FAQ entries: the bot's guesses first, then what the search finds. */
  function entryPicker(search, guesses, label) {
    const select = el("select", { class: "learn-entry", "aria-label": label });
    const input = el("input", { type: "search", class: "learn-search", placeholder: "搜索 FAQ 条目（问题或 id）…",
      "aria-label": "搜索 FAQ 条目" });
    const fill = (items, note) => {
      const keep = select.value;
      select.replaceChildren(...items.map((e) => el("option", { value: e.entry_id,
        text: (note ? note + " · " : "") + e.question + "（" + e.entry_id + (e.score !== null && e.score !== undefined ?
          "，" + Math.round(e.score * 100) + "%" : "") + "）" })));
      if (items.some((e) => e.entry_id === keep)) select.value = keep;
    };
    fill(guesses, "猜测");
    if (!guesses.length) select.append(el("option", { value: "", text: "（机器人没有猜测，请搜索）" }));
    // Says when a search failed or found nothing; an answer to an older search never overwrites a newer one.
    const note = el("span", { class: "learn-search-note small", role: "status", "aria-live": "polite" });
    let timer = null;
    let asked = 0;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const q = input.value.trim();
        const ticket = ++asked;
        note.textContent = "";
        if (!q) { fill(guesses, "猜测"); return; }
        let found;
        try { found = (await search(q)).entries; }
        catch (e) {
          if (ticket === asked) note.textContent = "搜索失败（" + (e.message || e.status || "网络错误") + "），请稍后再试";
          return;
        }
        if (ticket !== asked) return;
        if (!found.length) { note.textContent = "没有找到含“" + q + "”的条目，换个说法试试"; return; }
        fill(found, "");
      }, 200);
    });
    return { nodes: [input, select, note], value: () => select.value };
  }

  function categoryPicker(categories) {
    return el("select", { class: "learn-category", "aria-label": "分类" },
      el("option", { value: "", text: "（不分类）" }), ...categories.map((c) => el("option", { value: c, text: c })));
  }

  function said(status, ok, text) {
    status.className = "learn-status small " + (ok ? "ok" : "error");
    status.textContent = text;
  }

  function outcome(r) {
    if (r.kind === "similar") return r.added ? "已学会：以后这样问会直接回答「" + r.entry_id + "」" : "已经学过了，无需重复";
    return r.added ? "已新建 FAQ 条目 " + r.entry_id + "，机器人已开始使用" : "这个条目已经存在，无需重复";
  }

  function refusal(e) {
    const why = { 404: "找不到", 409: "冲突", 422: "FAQ 校验未通过", 400: "内容有误", 403: "无权操作" }[e.status] || "失败";
    return why + "：" + e.message;
  }

  // --- the agent console ------------------------------------------------------------------------------
  function installConsole() {
    let list = null;
    parsed.then(() => {
      const details = document.querySelector(".details");
      if (!details || !document.querySelector("#messages")) return; // not the console
      const panel = el("section", { class: "panel learn-panel", "aria-labelledby": "learn-title" },
        el("h2", { id: "learn-title", text: "教机器人" }),
        el("p", { class: "muted small", text: "机器人没答上的问题：选出它对应的 FAQ 条目，或用您的回复新建条目，下一位客户就能直接得到答案（写入 learned.yaml，可在 git 中审阅）。" }),
        el("ul", { id: "learn-list", class: "learn-list" }));
      const anchor = document.querySelector(".details .panel:nth-of-type(2)");
      details.insertBefore(panel, anchor || null);
      list = panel.querySelector("#learn-list");
    });
    // The open conversation's items by message id: a refresh (every new message) keeps what the agent
    // typed or picked, adds new questions and offers the newest reply as the answer where untouched.
    let shownId = null;
    let items = new Map();
    let asked = 0;

    document.addEventListener("kefu:conversation", async (event) => {
      const { id, token } = event.detail;
      const ticket = ++asked;
      await parsed;
      if (!list) return;
      let data;
      try { data = await api("GET", "/api/v1/conversations/" + id + "/learn", token); } catch (e) { return; }
      if (ticket !== asked) return; // a later refresh is on its way
      if (shownId !== id) { shownId = id; items = new Map(); }
      const search = (q) => api("GET", "/api/v1/faq/entries?q=" + encodeURIComponent(q), token);
      const latest = data.answers[0] ? data.answers[0].text : "";
      const nodes = data.questions.map((q) => {
        let node = items.get(q.message_id);
        if (!node) {
          const post = (body) => api("POST", "/api/v1/conversations/" + id + "/learn", token, { message_id: q.message_id, ...body });
          node = item(q.text, q.guesses, data.categories, latest, search, post);
          items.set(q.message_id, node);
        }
        const answer = node.querySelector(".learn-answer");
        if (!answer.dataset.edited) answer.value = latest;
        return node;
      });
      // Only what changed is moved (kefu.sync): an item taken out of the document (replaceChildren with the
      // same nodes) loses the focus, and what the agent types next goes nowhere, e.g. a search never sent.
      window.kefu.sync(list, nodes.length ? nodes : [el("li", { class: "muted small", text: "这个会话里没有机器人答不上的问题" })]);
    });
  }

  /** One unanswered question (or group): the two actions. `post(body)` sends kind + fields. */
  function item(text, guesses, categories, answer, search, post) {
    const picker = entryPicker(search, guesses, "对应的 FAQ 条目：" + text);
    const status = el("p", { class: "learn-status small", role: "status", "aria-live": "polite" });
    const same = el("button", { type: "button", class: "primary learn-same", text: "这个问题 = FAQ 条目" });
    same.addEventListener("click", async () => {
      if (!picker.value()) { said(status, false, "请先选择或搜索一个 FAQ 条目"); return; }
      same.disabled = true;
      try { said(status, true, outcome(await post({ kind: "similar", entry_id: picker.value() }))); }
      catch (e) { said(status, false, refusal(e)); }
      finally { same.disabled = false; }
    });
    const reply = el("textarea", { rows: "3", maxlength: "2000", class: "learn-answer", "aria-label": "新条目的答案",
      placeholder: "答案（默认是您最近一条回复）" });
    reply.value = answer;
    reply.addEventListener("input", () => { reply.dataset.edited = "1"; });
    const category = categoryPicker(categories);
    const entryId = el("input", { type: "text", class: "learn-id", maxlength: "64", "aria-label": "新条目 id（可不填）",
      placeholder: "条目 id（可不填，自动生成）" });
    const create = el("button", { type: "button", class: "learn-new", text: "用这条回复新建 FAQ 条目" });
    create.addEventListener("click", async () => {
      if (!reply.value.trim()) { said(status, false, "请先填写答案"); return; }
      create.disabled = true;
      const body = { kind: "entry", answer: reply.value.trim() };
      if (category.value) body.category = category.value;
      if (entryId.value.trim()) body.entry_id = entryId.value.trim();
      try { said(status, true, outcome(await post(body))); }
      catch (e) { said(status, false, refusal(e)); }
      finally { create.disabled = false; }
    });
    return el("li", { class: "learn-item" },
      el("div", { class: "learn-q", text: "“" + text + "”" }),
      el("div", { class: "learn-row" }, ...picker.nodes, same),
      el("details", { class: "learn-more" }, el("summary", { text: "用这条回复新建 FAQ 条目" }),
        reply, el("div", { class: "learn-row" }, category, entryId), create),
      status);
  }

  // --- the admin dashboard: one more column of the unanswered groups -----------------------------------
  function installDashboard() {
    let table = null;
    parsed.then(() => {
      table = document.getElementById("unanswered");
      const head = table && table.tHead && table.tHead.rows[0];
      if (head) head.append(el("th", { scope: "col", text: "教机器人" }));
    });
    document.addEventListener("kefu:unanswered", async (event) => {
      const { clusters, token } = event.detail;
      await parsed;
      if (!table) return;
      const rows = Array.from(table.tBodies[0].rows);
      // Rows of one cell (the empty note, a group's drill-down) span the new column too.
      rows.filter((r) => r.cells.length === 1).forEach((r) => { r.cells[0].colSpan = 6; });
      const search = (q) => api("GET", "/admin/api/faq/entries?q=" + encodeURIComponent(q), token);
      const byText = new Map(clusters.map((c) => [c.text, c]));
      for (const row of rows) {
        const c = row.cells.length > 1 ? byText.get(row.cells[0].textContent) : undefined;
        if (!c || row.querySelector(".learn-open")) continue; // a group unchanged since the last refresh keeps its rows
        const open = el("button", { type: "button", class: "learn-open", text: "教机器人", "aria-label": "教机器人：" + c.text });
        open.addEventListener("click", (e) => { e.stopPropagation(); dialog(c, search, token, table); });
        open.addEventListener("keydown", (e) => e.stopPropagation()); // Enter on the button is not the row's
        row.append(el("td", {}, open));
      }
    });
  }

  async function dialog(cluster, search, token, table) {
    let found = { entries: [], categories: [] };
    try { found = await search(cluster.text); } catch (e) { /* the search box still works */ }
    const wordings = cluster.examples.map((text) => ({ text, box: el("input", { type: "checkbox", checked: true, "aria-label": text }) }));
    const post = (body) => api("POST", "/admin/api/learn", token,
      { questions: wordings.filter((w) => w.box.checked).map((w) => w.text), ...body });
    const close = el("button", { type: "button", text: "关闭" });
    const box = el("dialog", { class: "learn-dialog", "aria-label": "教机器人：" + cluster.text },
      el("h2", { text: "教机器人：" + cluster.text }),
      el("p", { class: "muted small", text: "勾选的说法会写入 learned.yaml（不改动您自己的 FAQ 文件），并立即重新加载。" }),
      el("ul", { class: "learn-wordings" }, ...wordings.map((w) => el("li", {}, el("label", {}, w.box, " " + w.text)))),
      el("ul", { class: "learn-list" }, item(cluster.text, found.entries.slice(0, 3), found.categories, "", search, post)),
      el("div", { class: "dialog-actions" }, close));
    close.addEventListener("click", () => box.close());
    // Closed by 关闭 or Esc. The browser gives the focus back to the 教机器人 that opened it; but when the
    // 30-s refresh redrew that group meanwhile, the button is gone and the focus fell to <body>: the
    // group's new button takes it (or the table, if the group is gone).
    const label = "教机器人：" + cluster.text;
    box.addEventListener("close", () => {
      box.remove();
      if (document.activeElement && document.activeElement !== document.body) return;
      const again = Array.from(table.querySelectorAll(".learn-open")).find((b) => b.getAttribute("aria-label") === label);
      if (again) { again.focus(); return; }
      table.tabIndex = -1;
      table.focus();
    });
    document.body.append(box);
    box.showModal();
  }

  installConsole();
  installDashboard();
})();
