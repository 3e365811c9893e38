/* The customer chat: one WebSocket to /web/ws, history on connect, resend of unacknowledged lines,
 * pictures and files (button, paste, drag), typing notices, and — inside the widget's frame — close and
 * unread counts for the launcher. */
"use strict";
(function () {
  const { el, clock, randomId, wsUrl } = window.kefu;
  const VISITOR_KEY = "kefu.visitor";
  const PENDING_KEY = "kefu.pending";
  const TYPING_EVERY_MS = 2000; // at most one typing notice this often while the visitor types
  const TYPING_SHOWN_MS = 4000; // how long "客服正在输入…" stays after the last notice

  const log = document.getElementById("log");
  const statusLine = document.getElementById("status");
  const form = document.getElementById("composer");
  const input = document.getElementById("input");
  const humanButton = document.getElementById("human");
  const csat = document.getElementById("csat");
  const fileInput = document.getElementById("file");
  const typingLine = document.getElementById("typing");
  const framed = window.parent !== window;

  // data-kefu-title of the embed snippet arrives as ?title= (widget.js); the page's own title otherwise.
  const title = new URLSearchParams(location.search).get("title");
  if (title && title.trim()) {
    document.getElementById("chat-title").textContent = title.trim().slice(0, 40);
    document.title = title.trim().slice(0, 40);
  }

  function store(key, value) {
    try { localStorage.setItem(key, value); } catch (e) { /* private mode: this tab only */ }
  }
  function load(key) {
    try { return localStorage.getItem(key); } catch (e) { return null; }
  }

  let visitor = load(VISITOR_KEY);
  if (!visitor || !/^[A-Za-z0-9_-]{16,64}$/.test(visitor)) {
    visitor = "v" + randomId(16);
    store(VISITOR_KEY, visitor);
  }
  /** Lines sent but not acknowledged: resent after a reconnect (the server stores each client id once). */
  let pending = [];
  try { pending = JSON.parse(load(PENDING_KEY) || "[]").filter((p) => p && p.client_id && (p.text || p.attachment)); } catch (e) { pending = []; }
  const savePending = () => store(PENDING_KEY, JSON.stringify(pending));

  const shown = new Map(); // message id -> element
  const pendingNodes = new Map(); // client id -> element
  let lastId = 0;
  let socket = null;
  let retry = 0;
  let pingTimer = null;
  let limits = { max_bytes: 10 * 1024 * 1024 };
  let open = !framed; // inside the widget: folded away until the shop page says it is open
  let unread = 0;
  let historyDone = false;

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function size(bytes) {
    if (!bytes && bytes !== 0) return "";
    return bytes < 1024 * 1024 ? Math.max(1, Math.round(bytes / 1024)) + " KB" : (bytes / 1024 / 1024).toFixed(1) + " MB";
  }

  /** A picture as a thumbnail that opens full size; a file as a download link with its size. */
  function attachmentNode(a) {
    if (a.kind === "image") {
      return el("a", { class: "picture", href: a.url, target: "_blank", rel: "noopener", title: "查看原图" },
        el("img", { src: a.url, alt: a.name ? "图片：" + a.name : "图片", loading: "lazy" }));
    }
    return el("a", { class: "file", href: a.url, download: a.name || "", target: "_blank", rel: "noopener" },
      el("span", { class: "file-icon", "aria-hidden": "true", text: "📄" }),
      el("span", { class: "file-name", text: a.name || "文件" }),
      el("span", { class: "file-size", text: size(a.size) }));
  }

  /** What the bubble says: with suggestion buttons, only their lead line (the numbered list is for text channels). */
  function bubbleText(text, suggestions) {
    if (!suggestions || !suggestions.length) return text;
    const kept = text.split("\n").filter((line) => !/^\s*\d+[.、)]\s*/.test(line));
    return kept.join("\n").trim() || text;
  }

  function bubble(kind, text, opts) {
    const o = opts || {};
    const a = o.attachment;
    const body = a ? el("div", { class: "bubble media" }, attachmentNode(a), a.caption ? el("div", { class: "caption", text: a.caption }) : null)
      : el("div", { class: "bubble", text: bubbleText(text, o.suggestions) });
    const column = el("div", { class: "col" },
      o.who ? el("div", { class: "who", text: o.who }) : null,
      body,
      o.suggestions && o.suggestions.length ? suggestionButtons(o.suggestions) : null,
      kind === "system" ? null : el("div", { class: "meta", text: o.meta || "" }));
    return el("div", { class: "msg " + kind + (o.pending ? " pending" : ""), dataset: o.dataset || {} }, column);
  }

  function suggestionButtons(questions, label) {
    return el("div", { class: "suggestions", role: "group", "aria-label": label || "您是不是想问" },
      questions.map((q) => el("button", { type: "button", text: q, onclick: () => send(q) })));
  }

  function withCaption(m) {
    if (!m.attachment) return null;
    const placeholder = m.attachment.kind === "image" ? "[图片]" : "[文件] " + (m.attachment.name || "");
    const caption = m.text && m.text.trim() !== placeholder.trim() ? m.text : "";
    return Object.assign({}, m.attachment, { caption });
  }

  function render(m, live) {
    if (shown.has(m.id)) return;
    if (m.client_id && pendingNodes.has(m.client_id)) {
      pendingNodes.get(m.client_id).remove();
      pendingNodes.delete(m.client_id);
    }
    const attachment = withCaption(m);
    let node;
    if (m.direction === "in") {
      node = bubble("in", m.text, { meta: clock(m.at), attachment });
    } else if (m.sender === "system") {
      node = bubble("system", m.text);
    } else if (m.sender === "agent") {
      node = bubble("out agent", m.text, { who: "客服 " + (m.sender_name || ""), meta: clock(m.at), attachment });
      hideTyping();
    } else {
      node = bubble("out bot", m.text, { who: "智能客服", meta: clock(m.at), suggestions: m.suggestions, attachment });
    }
    node.dataset.id = m.id;
    shown.set(m.id, node);
    log.append(node);
    lastId = Math.max(lastId, m.id);
    if (live && m.direction === "out" && !open) setUnread(unread + 1);
    scrollDown();
  }

  function showPending(p) {
    if (pendingNodes.has(p.client_id)) return;
    const text = p.attachment ? (p.label || "[图片]") : p.text;
    const node = bubble("in", text, { meta: "发送中…", pending: true, dataset: { client: p.client_id } });
    pendingNodes.set(p.client_id, node);
    log.append(node);
    scrollDown();
  }

  /** Too fast: the server kept nothing; the line stays with the server's notice and a button to send it again. */
  function notSent(node, p, notice) {
    const meta = node.querySelector(".meta");
    node.classList.add("failed");
    meta.replaceChildren(notice + " ", el("button", {
      type: "button", class: "resend", text: "重发",
      onclick: () => {
        node.classList.remove("failed");
        meta.textContent = "发送中…";
        pending.push(p); // the same client id: it was never stored
        savePending();
        transmit(p);
      },
    }));
  }

  function setStatus(s) {
    let text = "智能客服在线，有问题随时问我";
    if (s.state === "queued") text = s.position ? "正在为您转接人工客服，当前排队第 " + s.position + " 位" : "正在为您转接人工客服…";
    else if (s.state === "assigned") text = "客服 " + (s.agent_name || "") + " 正在为您服务";
    else if (s.state === "closed") text = "本次会话已结束";
    statusLine.textContent = text;
    statusLine.dataset.state = s.state;
    humanButton.disabled = s.state === "queued" || s.state === "assigned";
    csat.classList.toggle("hidden", !s.csat_pending);
    scrollDown();
  }

  function showWelcome(w) {
    if (!w) return;
    document.getElementById("welcome-text").textContent = w.text || "";
    const common = document.getElementById("common");
    common.replaceChildren(...(w.questions || []).map((q) => el("button", { type: "button", text: q, onclick: () => send(q) })));
    common.classList.toggle("hidden", !(w.questions || []).length);
    document.getElementById("welcome").classList.remove("hidden");
  }

  // --- typing, both ways ---------------------------------------------------------------------------
  let typingTimer = null;
  let lastTyping = 0;
  function showTyping() {
    typingLine.classList.remove("hidden");
    clearTimeout(typingTimer);
    typingTimer = setTimeout(hideTyping, TYPING_SHOWN_MS);
  }
  function hideTyping() { clearTimeout(typingTimer); typingLine.classList.add("hidden"); }
  input.addEventListener("input", () => {
    const now = Date.now();
    if (!input.value.trim() || now - lastTyping < TYPING_EVERY_MS) return;
    lastTyping = now;
    if (socket && socket.readyState === WebSocket.OPEN) socket.send('{"type":"typing"}');
  });

  // --- the widget's frame: close button, open/closed state, unread count for the launcher ------------
  function setUnread(n) {
    unread = n;
    if (framed) window.parent.postMessage({ kefu: "unread", count: unread }, "*");
  }
  if (framed) {
    const closeButton = document.getElementById("close");
    closeButton.classList.remove("hidden");
    closeButton.addEventListener("click", () => window.parent.postMessage({ kefu: "close" }, "*"));
    window.addEventListener("message", (event) => {
      // Only the page that framed us says whether the chat is shown (it cannot read anything back).
      if (event.source !== window.parent || !event.data || event.data.kefu !== "state") return;
      open = !!event.data.open;
      if (open) { setUnread(0); input.focus(); scrollDown(); }
    });
    window.parent.postMessage({ kefu: "ready" }, "*");
  }

  function transmit(p) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      const frame = { type: "message", client_id: p.client_id, text: p.text };
      if (p.attachment) frame.attachment = p.attachment;
      socket.send(JSON.stringify(frame));
    }
  }

  function send(text) {
    const clean = (text || "").trim();
    if (!clean) return;
    const p = { client_id: "c" + randomId(8), text: clean };
    lastTyping = 0; // the next line being typed is news again
    pending.push(p);
    savePending();
    showPending(p);
    transmit(p);
  }

  // --- pictures and files: upload first (POST /web/uploads), then a message that carries its key -------
  async function sendFile(file) {
    if (!file) return;
    const isImage = /^image\//.test(file.type);
    const label = isImage ? "[图片]" : "[文件] " + file.name;
    const p = { client_id: "c" + randomId(8), text: "", attachment: null, label };
    showPending(p);
    const node = pendingNodes.get(p.client_id);
    const meta = node.querySelector(".meta");
    if (file.size > limits.max_bytes) {
      node.classList.add("failed");
      meta.textContent = "文件太大：最大 " + size(limits.max_bytes) + "，请压缩后再发送。";
      pendingNodes.delete(p.client_id);
      return;
    }
    meta.textContent = "上传中…";
    const body = new FormData();
    body.append("file", file, file.name || (isImage ? "image.png" : "file"));
    let data = null;
    let resp = null;
    try {
      resp = await fetch("/web/uploads?visitor=" + encodeURIComponent(visitor), { method: "POST", body });
      data = await resp.json();
    } catch (e) { data = null; }
    if (!resp || !resp.ok || !data || !data.key) {
      node.classList.add("failed");
      meta.textContent = "发送失败：" + ((data && data.error) || "网络异常，请稍后重试。");
      pendingNodes.delete(p.client_id);
      return;
    }
    p.attachment = data.key;
    meta.textContent = "发送中…";
    pending.push(p);
    savePending();
    transmit(p);
  }
  document.getElementById("attach").addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => { [...fileInput.files].forEach(sendFile); fileInput.value = ""; });
  input.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData ? event.clipboardData.files : [])];
    if (files.length) { event.preventDefault(); files.forEach(sendFile); }
  });
  const drop = document.getElementById("drop");
  const chat = document.querySelector(".chat");
  chat.addEventListener("dragover", (event) => {
    if (event.dataTransfer && [...event.dataTransfer.types].includes("Files")) { event.preventDefault(); drop.classList.remove("hidden"); }
  });
  chat.addEventListener("dragleave", (event) => { if (!chat.contains(event.relatedTarget)) drop.classList.add("hidden"); });
  chat.addEventListener("drop", (event) => {
    drop.classList.add("hidden");
    if (!event.dataTransfer || !event.dataTransfer.files.length) return;
    event.preventDefault();
    [...event.dataTransfer.files].forEach(sendFile);
  });

  function connect() {
    statusLine.textContent = retry ? "连接中断，正在重新连接…" : "正在连接…";
    socket = new WebSocket(wsUrl("/web/ws?visitor=" + encodeURIComponent(visitor) + "&after=" + lastId));
    socket.addEventListener("open", () => {
      retry = 0;
      clearInterval(pingTimer);
      pingTimer = setInterval(() => socket.readyState === WebSocket.OPEN && socket.send('{"type":"ping"}'), 25000);
    });
    socket.addEventListener("message", (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      if (data.type === "history") {
        if (data.uploads) { limits = data.uploads; fileInput.accept = (limits.types || []).join(","); }
        if (!historyDone) showWelcome(data.welcome);
        data.messages.forEach((m) => render(m, historyDone));
        historyDone = true;
        setStatus(data.status);
        // Lines the history shows were stored (only their ack was lost): nothing to resend.
        const stored = new Set(data.messages.map((m) => m.client_id).filter(Boolean));
        pending = pending.filter((p) => !stored.has(p.client_id));
        savePending();
        // Whatever was not acknowledged before the connection dropped goes again (never stored twice).
        pending.forEach((p) => { showPending(p); transmit(p); });
      } else if (data.type === "message") {
        render(data.message, true);
      } else if (data.type === "status") {
        setStatus(data);
      } else if (data.type === "typing") {
        showTyping();
      } else if (data.type === "ack") {
        pending = pending.filter((p) => p.client_id !== data.client_id);
        savePending();
      } else if (data.type === "error" && data.client_id) {
        const failed = pending.find((p) => p.client_id === data.client_id);
        pending = pending.filter((p) => p.client_id !== data.client_id);
        savePending();
        const node = pendingNodes.get(data.client_id);
        if (node && failed && data.code === "rate_limited") notSent(node, failed, data.error);
        else if (node) { node.classList.add("failed"); node.querySelector(".meta").textContent = "发送失败：" + data.error; }
      }
    });
    socket.addEventListener("close", () => {
      clearInterval(pingTimer);
      retry += 1;
      statusLine.textContent = "连接中断，正在重新连接…";
      setTimeout(connect, Math.min(10000, 500 * 2 ** Math.min(retry, 5)));
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    send(input.value);
    input.value = "";
    input.style.height = "";
    input.focus();
  });
  input.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter is a new line; Enter while an IME is composing picks the characters.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  input.addEventListener("input", () => {
    input.style.height = "";
    input.style.height = Math.min(input.scrollHeight, 120) + "px";
  });
  humanButton.addEventListener("click", () => send("转人工"));
  // Inside the widget's frame, Esc asks the shop page to fold the chat away (widget.js checks the sender).
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && framed) window.parent.postMessage({ kefu: "close" }, "*");
  });
  csat.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-rating]");
    if (!button) return;
    send(button.dataset.rating);
    csat.classList.add("hidden");
  });

  pending.forEach(showPending);
  connect();
  if (!framed) input.focus();
})();
