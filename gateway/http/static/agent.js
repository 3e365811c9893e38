/* The agent console: queue, conversations, replies with canned replies and FAQ suggestions, live events. */
"use strict";
(function () {
  const { el, sync, clock, duration, api, wsUrl } = window.kefu;
  const TOKEN_KEY = "kefu.agentToken";
  const $ = (id) => document.getElementById(id);

  const REASONS = {
    complaint: "客户投诉", asked_human: "客户要求转人工", no_match: "机器人无法回答", repeated_misses: "多次未答上",
    unsure: "机器人不确定", no_kb: "知识库未加载", handoff: "转人工",
  };
  const STATES = { queued: "排队中", assigned: "服务中", closed: "已结束", bot: "机器人服务" };
  const CHANNELS = { web: "网站", wechat: "微信公众号", onebot: "QQ", qqbot: "QQ 机器人", wecom: "微信客服" };
  const DECISIONS = { answer: "已回答", suggest: "给出猜测", handoff: "转人工", smalltalk: "寒暄" };

  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let me = null;
  let queue = [];
  let queueTotal = 0; // the API pages the queue: the first page is shown, the count is the whole queue
  let mine = [];
  let current = null; // the open conversation (GET /conversations/{id})
  let currentId = null;
  const drafts = new Map(); // conversation id -> unsent text (switching never loses it)
  const unread = new Map(); // conversation id -> customer messages not read yet (badges, tab title)
  const BASE_TITLE = document.title;
  let canned = [];
  let socket = null;
  let seq = 0;
  let resuming = false;
  let retry = 0;
  let known = new Set(); // conversation ids already announced (notification + beep once)
  let audio = null;

  // --- sign-in ---------------------------------------------------------------------------------
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    $("signin-error").textContent = "";
    try {
      await start();
    } catch (e) {
      $("signin-error").textContent = e.status === 401 ? "令牌无效或已停用，请向管理员确认。" : "登录失败：" + e.message;
    }
  });
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    if (socket) { socket.onclose = null; socket.close(); }
    location.reload();
  });

  async function start() {
    me = await api("GET", "/api/v1/me", token);
    sessionStorage.setItem(TOKEN_KEY, token);
    $("signin").classList.add("hidden");
    $("app").classList.remove("hidden");
    $("me").textContent = me.name;
    $("presence").value = me.declared_presence === "offline" ? "online" : me.declared_presence;
    $("presence").className = "presence " + $("presence").value;
    if ("Notification" in window && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});
    }
    try { canned = (await api("GET", "/api/v1/canned", token)).canned; } catch (e) { canned = []; }
    connect();
    await refreshLists(true);
    setInterval(() => tick(), 1000);
    // /agent#c=12 opens conversation 12 (links from the admin's drill-down and the customer panel).
    const linked = /^#c=(\d+)$/.exec(location.hash);
    if (linked) openConversation(Number(linked[1]));
  }

  // --- live events -----------------------------------------------------------------------------
  function connect() {
    // The token rides in the Sec-WebSocket-Protocol header, not the URL (proxies and access logs keep URLs).
    socket = new WebSocket(wsUrl("/api/v1/agent/ws"), ["kefu.agent", "token." + token]);
    let ping = null;
    socket.onopen = () => {
      retry = 0;
      setConn(true);
      resuming = seq > 0;
      if (resuming) socket.send(JSON.stringify({ type: "resume", after: seq }));
      // A ping is a heartbeat that brings an offline agent back online: none while 离线 is chosen.
      ping = setInterval(() => presence() !== "offline" && socket.readyState === WebSocket.OPEN &&
        socket.send('{"type":"ping"}'), 20000);
    };
    socket.onmessage = (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (data.type === "hello" && !seq) seq = data.seq;
      // Live events may come before the replay of older ones: the cursor moves on only once the replay is
      // complete, so a socket lost mid-replay resumes from where the replay began (nothing skipped).
      if (data.type === "event") { if (!resuming) seq = Math.max(seq, data.seq); onEvent(data); }
      if (data.type === "resumed") { resuming = false; seq = Math.max(seq, data.seq); }
      if (data.type === "typing" && window.kefuMedia) window.kefuMedia.typing(data); // agent_media.js
    };
    socket.onclose = () => {
      clearInterval(ping);
      setConn(false);
      retry += 1;
      setTimeout(connect, Math.min(10000, 500 * 2 ** Math.min(retry, 5)));
    };
  }

  function presence() { return $("presence").value; }

  function setConn(ok) {
    const badge = $("conn");
    badge.textContent = ok ? "已连接" : "重新连接中…";
    badge.className = "badge " + (ok ? "ok" : "warn");
  }

  let refreshTimer = null;
  function onEvent(ev) {
    const cid = ev.conversation_id;
    if (cid !== null && cid !== undefined) {
      if (ev.event === "message.customer") customerWrote(cid, ev.data || {});
      if (cid === currentId) openConversation(cid, { keepScroll: true });
    }
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => refreshLists(false), 60);
  }

  // --- lists -----------------------------------------------------------------------------------
  async function refreshLists(first) {
    const [q, m] = await Promise.all([
      api("GET", "/api/v1/queue", token),
      api("GET", "/api/v1/conversations?mine=1", token),
    ]);
    queue = q.queue;
    queueTotal = q.total ?? queue.length;
    mine = m.conversations;
    for (const item of queue.concat(mine)) {
      const id = item.conversation_id || item.id;
      if (!known.has(id)) {
        known.add(id);
        if (!first) announce(item);
      }
    }
    renderLists();
  }

  // --- unread counts, tab title, desktop notifications ---------------------------------------------
  // Counted per conversation while it is not the one in front of the agent; the tab title sums them.
  let focused = document.hasFocus();
  window.addEventListener("blur", () => { focused = false; });
  function away() { return document.hidden || !focused; }
  function customerWrote(cid, payload) {
    if (cid !== currentId || away()) unread.set(cid, (unread.get(cid) || 0) + 1);
    updateTitle();
    const item = mine.concat(queue).find((i) => (i.id || i.conversation_id) === cid);
    // The customer's own words and a display name; never the bot's reply or a raw visitor id.
    if (payload.text && away()) notify("客户 " + displayName(item && item.customer, item && item.channel, payload.sender_name), payload.text, cid);
  }
  function updateTitle() {
    const total = [...unread.values()].reduce((a, b) => a + b, 0);
    document.title = total ? "(" + total + ") " + BASE_TITLE : BASE_TITLE;
  }
  document.addEventListener("visibilitychange", () => {
    if (!away() && currentId !== null && unread.delete(currentId)) { updateTitle(); renderLists(); }
  });
  window.addEventListener("focus", () => {
    focused = true;
    if (currentId !== null && unread.delete(currentId)) { updateTitle(); renderLists(); }
  });
  function displayName(customer, channel, senderName) {
    return (customer && customer.name) || senderName || (CHANNELS[channel] || "") + "访客";
  }
  function notify(title, body, cid) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      const n = new Notification(title, { body, tag: "kefu-" + cid });
      n.onclick = () => { window.focus(); openConversation(cid); };
    } catch (e) { /* ignore */ }
  }

  async function announce(item) {
    beep();
    const cid = item.conversation_id || item.id;
    // The queue carries the customer's last line; an assigned conversation's last line may be the bot's.
    let words = typeof item.last_message === "string" ? item.last_message : null;
    if (words === null && item.last_message && item.last_message.sender === "customer") words = item.last_message.text;
    if (words === null) {
      try {
        const detail = await api("GET", "/api/v1/conversations/" + cid, token);
        const said = detail.messages.filter((m) => m.direction === "in" && m.text);
        words = said.length ? said[said.length - 1].text : "";
      } catch (e) { words = ""; }
    }
    if (away()) notify("新的客户会话 · " + displayName(item.customer, item.channel), words || "客户正在等待接入", cid);
  }

  function beep() {
    // WebAudio, no sound file: two short sine tones.
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      const t = audio.currentTime;
      [880, 1320].forEach((freq, i) => {
        const osc = audio.createOscillator();
        const gain = audio.createGain();
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, t + i * 0.18);
        gain.gain.exponentialRampToValueAtTime(0.2, t + i * 0.18 + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, t + i * 0.18 + 0.16);
        osc.connect(gain).connect(audio.destination);
        osc.start(t + i * 0.18);
        osc.stop(t + i * 0.18 + 0.17);
      });
    } catch (e) { /* no audio device */ }
  }

  function customerName(c) {
    // The last four characters only: a phone number as user id shows no more than its masked form.
    return (c && (c.name || (c.user_id && "访客 " + c.user_id.slice(-4)))) || "访客";
  }

  function renderLists() {
    $("queue-count").textContent = queueTotal;
    $("mine-count").textContent = mine.length;
    updateTitle();
    // Every event redraws the lists: sync keeps the items that did not change in place, so an agent
    // tabbing through the queue (an item, its 接入) keeps the focus, and a click half done still lands.
    const queued = queue.length ? queue.map(queueItem) : [el("li", { class: "empty-row", text: "暂无排队客户" })];
    const now = Date.now();
    tick(now);
    tick(now, queued); // the waits as the shown items say them, or no item would be the same
    sync($("queue"), queued);
    sync($("mine"), mine.length ? mine.map(mineItem) : [el("li", { class: "empty-row", text: "暂无进行中的会话" })]);
  }

  function queueItem(item) {
    const id = item.conversation_id;
    const li = el("li", { tabindex: "0", dataset: { id, queued: item.queued_at }, "aria-current": id === currentId ? "true" : "false" },
      el("div", { class: "row" },
        el("span", { class: "name", text: customerName(item.customer) }),
        item.priority === "high" ? el("span", { class: "badge high", text: "优先" }) : null,
        item.ticket ? el("span", { class: "badge warn", text: "留言" }) : null,
        unreadBadge(id),
        el("span", { class: "wait", text: "" })),
      el("div", { class: "last", text: item.last_message || "" }),
      el("div", { class: "row" },
        el("span", { class: "last", text: (REASONS[item.handoff_reason] || item.handoff_reason || "") + " · " + (item.group || "") }),
        el("span", { class: "spacer" }),
        el("button", { type: "button", class: "claim primary", text: "接入", "aria-label": "接入 " + customerName(item.customer),
          onclick: (e) => { e.stopPropagation(); claim(id); } })));
    li.addEventListener("click", () => openConversation(id));
    li.addEventListener("keydown", (e) => { if (e.key === "Enter" && e.target === li) openConversation(id); });
    return li;
  }

  function mineItem(item) {
    const id = item.id;
    const draft = drafts.get(id);
    const last = item.last_message;
    const li = el("li", { tabindex: "0", dataset: { id }, "aria-current": id === currentId ? "true" : "false" },
      el("div", { class: "row" },
        el("span", { class: "name", text: customerName(item.customer) }),
        unreadBadge(id),
        el("span", { class: "badge", text: CHANNELS[item.channel] || item.channel })),
      draft ? el("div", { class: "draft", text: "[草稿] " + draft }) : el("div", { class: "last", text: last ? last.text : "" }));
    li.addEventListener("click", () => openConversation(id));
    li.addEventListener("keydown", (e) => { if (e.key === "Enter" && e.target === li) openConversation(id); });
    return li;
  }

  function unreadBadge(id) {
    const n = unread.get(id);
    return n ? el("span", { class: "unread-count", text: n > 99 ? "99+" : String(n), "aria-label": n + " 条未读消息" }) : null;
  }

  function tick(now = Date.now(), items = document.querySelectorAll("#queue li")) {
    items.forEach((li) => {
      if (!li.dataset.queued) return;
      const waited = (now - Date.parse(li.dataset.queued)) / 1000;
      const label = li.querySelector(".wait");
      label.textContent = "等待 " + duration(waited);
      label.classList.toggle("late", waited >= 60);
    });
  }

  async function claim(id) {
    try {
      await api("POST", "/api/v1/conversations/" + id + "/claim", token);
      await refreshLists(false);
      await openConversation(id);
    } catch (e) {
      alert(e.status === 409 ? "该会话已被其他客服接入。" : "接入失败：" + e.message);
      refreshLists(false);
    }
  }

  // --- one conversation --------------------------------------------------------------------------
  const reply = $("reply");
  async function openConversation(id, opts) {
    if (currentId !== null && currentId !== id) drafts.set(currentId, reply.value);
    const switching = currentId !== id;
    currentId = id;
    unread.delete(id);
    let data;
    try { data = await api("GET", "/api/v1/conversations/" + id, token); } catch (e) { return; }
    if (currentId !== id) return;
    current = data;
    $("empty").classList.add("hidden");
    document.querySelector(".details").classList.remove("idle");
    $("chat").classList.remove("hidden");
    if (switching) {
      reply.value = drafts.get(id) || "";
      $("reply-error").textContent = "";
    }
    renderConversation(opts && opts.keepScroll);
    renderLists();
    loadSuggestions(id);
    // The customer panel, search and phone layout (agent_panel.js) follow the open conversation.
    document.dispatchEvent(new CustomEvent("kefu:conversation", { detail: { id, conversation: current, token, me, switching } }));
  }

  function renderConversation(keepScroll) {
    const c = current;
    const mineNow = c.assignment && c.assignment.agent_id === me.id && c.state === "assigned";
    $("conv-title").textContent = customerName(c.customer);
    $("conv-sub").textContent = [CHANNELS[c.channel] || c.channel, c.group, STATES[c.state] || c.state,
      c.assignment && c.assignment.agent_name ? "客服 " + c.assignment.agent_name : null].filter(Boolean).join(" · ");
    $("claim").classList.toggle("hidden", c.state !== "queued");
    $("close-open").disabled = !mineNow;
    $("transfer-open").disabled = !mineNow;
    $("send").disabled = false;
    reply.placeholder = mineNow ? "输入回复…" : "接入会话后才能回复客户（仍可写内部备注）";

    const items = c.messages.map((m) => ({ at: m.created_at, kind: "msg", m }))
      .concat(c.notes.map((n) => ({ at: n.created_at, kind: "note", n })))
      .sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
    const box = $("messages");
    // A refresh (every event of this conversation) keeps the agent's place in the history, unless it was at the end.
    const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    // Only new or changed bubbles are put in: a focused 重发 or picture link stays focused.
    sync(box, items.map((it) => {
      if (it.kind === "note") {
        return el("div", { class: "m note", dataset: { key: "n" + it.n.id } }, el("div", { class: "who", text: "内部备注 · " + (it.n.agent_name || "") + " · " + clock(it.at) }),
          el("div", { class: "bubble", text: it.n.text }));
      }
      const m = it.m;
      // A platform event (关注, 菜单点击) is a line, never an empty customer bubble.
      const kind = m.kind === "event" ? "system" : m.direction === "in" ? "customer" : m.sender;
      const who = { customer: customerName(c.customer), bot: "智能客服", agent: "客服 " + (m.sender_name || ""), system: "" }[kind];
      const delivery = window.kefu.delivery; // agent_delivery.js: 发送中 / 已送达 / 未送达 + reason, 重发
      // Keyed by the message: two alike (the same text in the same minute) are not taken for each other,
      // with the other's 重发 behind its button.
      return el("div", { class: "m " + kind + delivery.cls(m), dataset: { key: "m" + m.id } },
        kind === "system" ? null : el("div", { class: "who", text: who + " · " + clock(m.created_at) }),
        window.kefuMedia ? window.kefuMedia.bubble(m) : el("div", { class: "bubble", text: m.text }),
        delivery.mark(m, c.id, () => openConversation(c.id, { keepScroll: true })));
    }));
    if (!keepScroll || atEnd) box.scrollTop = box.scrollHeight;

    // why the bot handed off
    const why = $("why");
    why.replaceChildren(
      el("p", {}, el("span", { class: "badge" + (c.priority === "high" ? " high" : ""), text: REASONS[c.handoff_reason] || c.handoff_reason || "—" }),
        c.priority === "high" ? el("span", { class: "badge high", text: "高优先级" }) : null),
      ...c.bot_guesses.map((g) => el("p", { class: "guess" },
        "“" + g.text + "” → " + (DECISIONS[g.decision] || g.decision) +
        (g.confidence !== null && g.confidence !== undefined ? "（置信度 " + Math.round(g.confidence * 100) + "%）" : "") +
        (g.alternatives && g.alternatives.length ? "，猜测：" + g.alternatives.join(" / ") : ""))));

    // 客户信息 (name, masked identity, history, tags, 订单信息) is agent_panel.js's, on "kefu:conversation".
    $("notes").replaceChildren(...(c.notes.length ? c.notes.map((n) => el("li", {}, el("div", { text: n.text }),
      el("div", { class: "by", text: (n.agent_name || "") + " · " + clock(n.created_at) }))) : [el("li", { class: "muted", text: "暂无备注" })]));
  }

  async function loadSuggestions(id) {
    const list = $("suggestions");
    let data;
    try { data = await api("GET", "/agent/api/conversations/" + id + "/suggestions", token); } catch (e) { list.replaceChildren(); return; }
    if (currentId !== id) return;
    $("sugg-for").textContent = data.message ? "针对客户最后一句：“" + data.message + "”" : "";
    // Reloaded on every message of the conversation: a focused 插入回复 stays focused (sync).
    sync(list, data.suggestions.length ? data.suggestions.map((s) => el("li", {},
      el("div", { class: "q" }, el("span", { text: s.question }), el("span", { class: "badge score", text: Math.round(s.score * 100) + "%" })),
      el("div", { class: "a", text: s.answer }),
      el("button", { type: "button", class: "insert", text: "插入回复", "aria-label": "插入推荐回答：" + s.question,
        onclick: () => insert(s.answer) }))) : [el("li", { class: "muted", text: "知识库里没有相近的问题" })]);
  }

  function insert(text) {
    const start = reply.selectionStart ?? reply.value.length;
    const end = reply.selectionEnd ?? reply.value.length;
    reply.value = reply.value.slice(0, start) + text + reply.value.slice(end);
    reply.focus();
    reply.selectionStart = reply.selectionEnd = start + text.length;
  }

  // --- replying ---------------------------------------------------------------------------------
  const noteMode = $("note-mode");
  noteMode.addEventListener("change", () => {
    $("reply-form").classList.toggle("note-mode", noteMode.checked);
    $("send").textContent = noteMode.checked ? "添加备注" : "发送";
  });

  // 质检 as the agent types: the same rules as the score of the closed conversation (POST /api/v1/qa/check).
  // The phrase is underlined with a suggested wording; sending stays allowed unless a rule says block.
  const hints = $("qa-hints");
  let lint = { blocked: false, text: "" };
  let lintTimer = null;
  function firstReply() { return !!current && !current.messages.some((m) => m.sender === "agent"); }
  async function checkDraft() {
    const text = reply.value;
    if (!text.trim() || noteMode.checked) { lint = { blocked: false, text }; hints.classList.add("hidden"); return; }
    let result;
    try { result = await api("POST", "/api/v1/qa/check", token, { text, first_reply: firstReply() }); } catch (e) { return; }
    if (reply.value !== text) return; // typed on meanwhile: the next check renders
    lint = { blocked: result.blocked, text };
    const spans = result.hits.filter((h) => h.end > h.start);
    if (!result.hits.length) { hints.classList.add("hidden"); hints.replaceChildren(); return; }
    const parts = [];
    let at = 0;
    for (const h of spans) {
      if (h.start < at) continue;
      parts.push(text.slice(at, h.start), el("mark", { class: "qa-hit", title: h.suggestion || h.name, text: text.slice(h.start, h.end) }));
      at = h.end;
    }
    parts.push(text.slice(at));
    hints.replaceChildren(
      spans.length ? el("div", { class: "qa-draft" }, ...parts) : null,
      ...result.hits.map((h) => el("div", { class: "qa-tip" + (h.block ? " block" : "") },
        (h.block ? "禁止发送：" : "提示：") + h.name + (h.text ? "「" + h.text + "」" : "") + (h.suggestion ? "，建议：" + h.suggestion : ""))));
    hints.classList.remove("hidden");
  }
  reply.addEventListener("input", () => { clearTimeout(lintTimer); lintTimer = setTimeout(checkDraft, 250); });

  $("reply-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = reply.value.trim();
    if (!text || currentId === null) return;
    if (!noteMode.checked && lint.blocked && lint.text === reply.value) {
      $("reply-error").textContent = "这条回复包含禁止发送的内容，请按提示修改后再发送。";
      return;
    }
    const id = currentId;
    const path = "/api/v1/conversations/" + id + (noteMode.checked ? "/notes" : "/messages");
    $("send").disabled = true;
    try {
      await api("POST", path, token, { text });
      reply.value = "";
      hints.classList.add("hidden");
      lint = { blocked: false, text: "" };
      drafts.delete(id);
      $("reply-error").textContent = "";
      await openConversation(id);
    } catch (e) {
      $("reply-error").textContent = e.status === 403 ? "只有接入此会话的客服可以回复：" + e.message : "发送失败：" + e.message;
    } finally {
      $("send").disabled = false;
    }
  });

  // canned replies: "/" + words filters; ↑/↓ choose, Enter or Tab inserts, Esc closes
  const pop = $("canned-pop");
  let choices = [];
  let chosen = 0;
  function cannedQuery() {
    const before = reply.value.slice(0, reply.selectionStart);
    const match = /(^|\s)\/([^\s/]*)$/.exec(before);
    return match ? { query: match[2], start: before.length - match[2].length - 1 } : null;
  }
  function showCanned() {
    const q = cannedQuery();
    if (!q) { pop.classList.add("hidden"); return; }
    const needle = q.query.toLowerCase();
    choices = canned.filter((c) => !needle || c.title.toLowerCase().includes(needle) || c.text.toLowerCase().includes(needle)).slice(0, 8);
    if (!choices.length) { pop.replaceChildren(el("div", { class: "x", text: "没有匹配的快捷回复" })); pop.classList.remove("hidden"); return; }
    chosen = Math.min(chosen, choices.length - 1);
    pop.replaceChildren(...choices.map((c, i) => el("div", { role: "option", "aria-selected": i === chosen ? "true" : "false",
      onmousedown: (e) => { e.preventDefault(); chosen = i; useCanned(); } },
      el("div", { class: "t", text: "/" + c.title }), el("div", { class: "x", text: c.text }))));
    pop.classList.remove("hidden");
  }
  async function useCanned() {
    const q = cannedQuery();
    const item = choices[chosen];
    if (!q || !item) return;
    pop.classList.add("hidden");
    // Known placeholders are filled by the server, the rest asked for inline (canned.js); null = cancelled.
    const text = await window.kefu.canned.fill(item, currentId);
    if (text !== null) reply.value = reply.value.slice(0, q.start) + text + reply.value.slice(q.start + 1 + q.query.length);
    reply.focus();
  }
  document.addEventListener("kefu:canned-changed", async () => {
    try { canned = (await api("GET", "/api/v1/canned", token)).canned; } catch (e) { /* keep the old list */ }
  });
  reply.addEventListener("input", () => { chosen = 0; showCanned(); if (currentId !== null) drafts.set(currentId, reply.value); });
  reply.addEventListener("keydown", (e) => {
    const open = !pop.classList.contains("hidden") && choices.length;
    if (open && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
      e.preventDefault();
      chosen = (chosen + (e.key === "ArrowDown" ? 1 : choices.length - 1)) % choices.length;
      showCanned();
    } else if (open && (e.key === "Enter" || e.key === "Tab")) {
      e.preventDefault();
      useCanned();
    } else if (e.key === "Escape") {
      pop.classList.add("hidden");
    } else if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      $("reply-form").requestSubmit();
    }
  });

  // --- claim, transfer, close, presence ------------------------------------------------------------
  $("claim").addEventListener("click", () => currentId !== null && claim(currentId));

  const closeDialog = $("close-dialog");
  $("close-open").addEventListener("click", () => { $("close-tags").value = ""; closeDialog.showModal(); });
  $("close-cancel").addEventListener("click", () => closeDialog.close());
  $("close-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const tags = $("close-tags").value.split(/[,，、\s]+/).map((t) => t.trim()).filter(Boolean);
    const id = currentId;
    try {
      await api("POST", "/api/v1/conversations/" + id + "/close", token, { tags });
      closeDialog.close();
      drafts.delete(id);
      await refreshLists(false);
      await openConversation(id);
    } catch (e) {
      alert("结束失败：" + e.message);
    }
  });

  const transferDialog = $("transfer-dialog");
  $("transfer-open").addEventListener("click", () => { $("transfer-to").value = ""; transferDialog.showModal(); });
  $("transfer-cancel").addEventListener("click", () => transferDialog.close());
  $("transfer-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    body[$("transfer-kind").value] = $("transfer-to").value.trim();
    try {
      await api("POST", "/api/v1/conversations/" + currentId + "/transfer", token, body);
      transferDialog.close();
      await refreshLists(false);
      await openConversation(currentId);
    } catch (e) {
      alert("转接失败：" + e.message);
    }
  });

  $("presence").addEventListener("change", async (event) => {
    event.target.className = "presence " + event.target.value;
    try { me = { ...me, ...(await api("POST", "/api/v1/me/presence", token, { presence: event.target.value })) }; }
    catch (e) { alert("切换状态失败：" + e.message); }
  });

  // What agent_media.js (pictures, files, typing) needs from the console.
  window.kefuConsole = {
    current: () => currentId, token: () => token, open: (id) => openConversation(id),
    send: (frame) => socket && socket.readyState === WebSocket.OPEN && socket.send(JSON.stringify(frame)),
  };
  if (token) start().catch(() => { sessionStorage.removeItem(TOKEN_KEY); token = ""; });
})();
