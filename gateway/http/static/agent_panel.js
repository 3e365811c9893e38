/* The console's customer panel (name, masked channel identity, first contact, past conversations, tags,
   订单信息 through actions.order_info), the history search, and the phone layout's list ⇄ conversation switch.
   Follows agent.js through the "kefu:conversation" event; opens conversations with window.kefuConsole.open. */
"use strict";
(function () {
  const { el, api } = window.kefu;
  const $ = (id) => document.getElementById(id);
  const CHANNELS = { web: "网站", wechat: "微信公众号", onebot: "QQ", qqbot: "QQ 机器人", wecom: "微信客服" };
  const STATES = { queued: "排队中", assigned: "服务中", closed: "已结束", bot: "机器人服务" };
  // window.kefuConsole is agent.js's (shared with agent_media.js).
  const token = () => window.kefuConsole.token();
  const open = (id) => window.kefuConsole.open(id);
  const when = (iso) => (iso ? new Date(iso).toLocaleString("zh-CN", { dateStyle: "short", timeStyle: "short" }) : "—");
  let panelFor = null; // conversation id the panel shows
  let tags = [];

  // --- the customer panel ----------------------------------------------------------------------------
  document.addEventListener("kefu:conversation", (e) => {
    const { id, conversation, switching } = e.detail;
    document.querySelector(".workspace").classList.add("has-conv");
    if (switching || panelFor !== id) loadPanel(id, conversation);
  });

  async function loadPanel(id, conversation) {
    panelFor = id;
    let data;
    try { data = await api("GET", "/agent/api/conversations/" + id + "/customer", token()); } catch (e) { return; }
    if (panelFor !== id) return;
    const rows = [["昵称", data.name || "—"], ["渠道", (CHANNELS[data.channel] || data.channel) + " / " + data.account],
      ["渠道身份", data.identity || "—"], ["首次来访", when(data.first_contact)],
      ["历史会话", data.conversations.length + " 次"]];
    if (conversation && conversation.csat && conversation.csat.rating) rows.push(["满意度", conversation.csat.rating + " 分"]);
    $("customer").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    tags = data.tags;
    renderTags();
    $("order-box").classList.toggle("hidden", !data.order_info);
    $("order-result").replaceChildren();
    $("history").replaceChildren(...(data.conversations.length ? data.conversations.map((c) => el("li", {},
      c.viewable
        ? el("a", { href: "#c=" + c.id, text: "#" + c.id + " · " + when(c.opened_at), onclick: (ev) => { ev.preventDefault(); open(c.id); } })
        : el("span", { text: "#" + c.id + " · " + when(c.opened_at), title: "由其他客服接待，您无权查看" }),
      el("span", { class: "muted", text: " " + (STATES[c.state] || c.state) }))) : [el("li", { class: "muted", text: "首次咨询" })]));
  }

  function renderTags() {
    $("customer-tags").replaceChildren(...tags.map((t) => el("span", { class: "tag" }, t,
      el("button", { type: "button", class: "x", text: "×", "aria-label": "删除标签 " + t, onclick: () => saveTags(tags.filter((x) => x !== t)) }))));
  }

  async function saveTags(next) {
    const id = panelFor;
    try {
      tags = (await api("PUT", "/agent/api/conversations/" + id + "/customer/tags", token(), { tags: next })).tags;
      renderTags();
    } catch (e) { alert("保存标签失败：" + e.message); }
  }

  $("tag-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("tag-input").value.trim();
    if (!value || panelFor === null) return;
    $("tag-input").value = "";
    if (!tags.includes(value)) saveTags(tags.concat(value));
  });

  $("order-info").addEventListener("click", async () => {
    const out = $("order-result");
    out.textContent = "查询中…";
    try {
      const r = await api("POST", "/agent/api/conversations/" + panelFor + "/order-info", token());
      out.replaceChildren(...(r.texts.length ? r.texts.map((t) => el("p", { text: t })) : [el("p", { class: "muted", text: "没有查到订单信息" })]));
    } catch (e) { out.textContent = e.message; }
  });

  // --- history search ------------------------------------------------------------------------------------
  let query = "";
  let before = null;

  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); search(false); });
  $("search-more").addEventListener("click", () => search(true));
  $("search-clear").addEventListener("click", () => {
    $("search-q").value = "";
    $("search-results").classList.add("hidden");
  });

  async function search(more) {
    if (!more) { query = $("search-q").value.trim(); before = null; $("search-list").replaceChildren(); }
    if (!query) return;
    let data;
    const q = "?q=" + encodeURIComponent(query) + (before ? "&before=" + before : "");
    try { data = await api("GET", "/agent/api/search" + q, token()); } catch (e) {
      $("search-list").replaceChildren(el("li", { class: "empty-row", text: "搜索失败：" + e.message }));
      $("search-results").classList.remove("hidden");
      return;
    }
    before = data.next_before;
    const items = data.items.map(hit);
    if (!more && !items.length) items.push(el("li", { class: "empty-row", text: "没有找到包含“" + query + "”的消息" }));
    $("search-list").append(...items);
    $("search-more").classList.toggle("hidden", !before);
    $("search-results").classList.remove("hidden");
  }

  function hit(h) {
    const who = h.direction === "in" ? (h.customer_name || "客户") : { bot: "机器人", agent: "客服", system: "系统" }[h.sender] || h.sender;
    const li = el("li", { tabindex: "0", dataset: { id: String(h.conversation_id) } },
      el("div", { class: "row" }, el("span", { class: "name", text: "#" + h.conversation_id + " " + (h.customer_name || CHANNELS[h.channel] || "") }),
        el("span", { class: "badge", text: STATES[h.state] || h.state })),
      el("div", { class: "last" }, ...highlight(who + "：" + h.text)),
      el("div", { class: "last", text: when(h.created_at) }));
    li.addEventListener("click", () => open(h.conversation_id));
    li.addEventListener("keydown", (e) => { if (e.key === "Enter") open(h.conversation_id); });
    return li;
  }

  function highlight(text) {
    const parts = [];
    let at = 0;
    const lower = text.toLowerCase(), needle = query.toLowerCase();
    for (let i = lower.indexOf(needle); needle && i >= 0; i = lower.indexOf(needle, at)) {
      parts.push(text.slice(at, i), el("mark", { text: text.slice(i, i + needle.length) }));
      at = i + needle.length;
    }
    parts.push(text.slice(at));
    return parts;
  }

  // --- phone layout: one column, the list or the open conversation (agent.css, max-width 767px) ----------------
  $("back").addEventListener("click", () => document.querySelector(".workspace").classList.remove("has-conv"));
})();
