/* The customer chat: one WebSocket to /web/ws, history on connect, resend of unacknowledged lines. */
"use strict";
(function () {
  const { el, clock, randomId, wsUrl } = window.kefu;
  const VISITOR_KEY = "kefu.visitor";
  const PENDING_KEY = "kefu.pending";

  const log = document.getElementById("log");
  const statusLine = document.getElementById("status");
  const form = document.getElementById("composer");
  const input = document.getElementById("input");
  const humanButton = document.getElementById("human");
  const csat = document.getElementById("csat");

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
  try { pending = JSON.parse(load(PENDING_KEY) || "[]").filter((p) => p && p.client_id && p.text); } catch (e) { pending = []; }
  const savePending = () => store(PENDING_KEY, JSON.stringify(pending));

  const shown = new Map(); // message id -> element
  const pendingNodes = new Map(); // client id -> element
  let lastId = 0;
  let socket = null;
  let retry = 0;
  let pingTimer = null;

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function bubble(kind, text, opts) {
    const o = opts || {};
    const body = el("div", { class: "bubble", text });
    const column = el("div", { class: "col" },
      o.who ? el("div", { class: "who", text: o.who }) : null,
      body,
      o.suggestions && o.suggestions.length ? suggestionButtons(o.suggestions) : null,
      kind === "system" ? null : el("div", { class: "meta", text: o.meta || "" }));
    return el("div", { class: "msg " + kind + (o.pending ? " pending" : ""), dataset: o.dataset || {} }, column);
  }

  function suggestionButtons(questions) {
    return el("div", { class: "suggestions", role: "group", "aria-label": "您是不是想问" },
      questions.map((q) => el("button", { type: "button", text: q, onclick: () => send(q) })));
  }

  function render(m) {
    if (shown.has(m.id)) return;
    if (m.client_id && pendingNodes.has(m.client_id)) {
      pendingNodes.get(m.client_id).remove();
      pendingNodes.delete(m.client_id);
    }
    let node;
    if (m.direction === "in") {
      node = bubble("in", m.text, { meta: clock(m.at) });
    } else if (m.sender === "system") {
      node = bubble("system", m.text);
    } else if (m.sender === "agent") {
      node = bubble("out agent", m.text, { who: "客服 " + (m.sender_name || ""), meta: clock(m.at) });
    } else {
      node = bubble("out bot", m.text, { who: "智能客服", meta: clock(m.at), suggestions: m.suggestions });
    }
    node.dataset.id = m.id;
    shown.set(m.id, node);
    log.append(node);
    lastId = Math.max(lastId, m.id);
    scrollDown();
  }

  function showPending(p) {
    if (pendingNodes.has(p.client_id)) return;
    const node = bubble("in", p.text, { meta: "发送中…", pending: true, dataset: { client: p.client_id } });
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

  function transmit(p) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "message", client_id: p.client_id, text: p.text }));
    }
  }

  function send(text) {
    const clean = (text || "").trim();
    if (!clean) return;
    const p = { client_id: "c" + randomId(8), text: clean };
    pending.push(p);
    savePending();
    showPending(p);
    transmit(p);
  }

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
        data.messages.forEach(render);
        setStatus(data.status);
        // Lines the history shows were stored (only their ack was lost): nothing to resend.
        const stored = new Set(data.messages.map((m) => m.client_id).filter(Boolean));
        pending = pending.filter((p) => !stored.has(p.client_id));
        savePending();
        // Whatever was not acknowledged before the connection dropped goes again (never stored twice).
        pending.forEach((p) => { showPending(p); transmit(p); });
      } else if (data.type === "message") {
        render(data.message);
      } else if (data.type === "status") {
        setStatus(data);
      } else if (data.type === "ack") {
        pending = pending.filter((p) => p.client_id !== data.client_id);
        savePending();
      } else if (data.type === "error" && data.client_id) {
        const failed = pending.find((p) => p.client_id === data.client_id);
        pending = pending.filter((p) => p.client_id !== data.client_id);
        savePending();
        const node = pendingNodes.get(data.client_id);
        if (node && failed && data.code === "rate_limited") notSent(node, failed, data.error);
        else if (node) node.querySelector(".meta").textContent = "发送失败：" + data.error;
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
    if (event.key === "Escape" && window.parent !== window) window.parent.postMessage({ kefu: "close" }, "*");
  });
  csat.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-rating]");
    if (!button) return;
    send(button.dataset.rating);
    csat.classList.add("hidden");
  });

  pending.forEach(showPending);
  connect();
  input.focus();
})();
