/* Delivery state under each outgoing bubble of the agent console (apart from agent.js, which calls
   window.kefu.delivery): 发送中 / 已送达 / 发送失败 / 未送达 with the reason in Chinese, and 重发 where a resend
   can help. Updated live: the server's `message.delivery` event makes agent.js reload the conversation. */
"use strict";
(function () {
  const { el, api } = window.kefu;
  const TOKEN_KEY = "kefu.agentToken";
  const LABEL = { failed: "发送失败", undeliverable: "未送达" };

  function notDelivered(m) {
    const d = m.delivery;
    return !!d && (d.state === "failed" || d.state === "undeliverable");
  }

  /** The class the message row gets: a bubble that did not arrive is marked, not just annotated. */
  function cls(m) { return notDelivered(m) ? " not-delivered" : ""; }

  /** The line under an outgoing bubble (null when there is nothing worth saying). */
  function mark(m, conversationId, refresh) {
    const d = m.delivery;
    if (!d || m.direction !== "out") return null;
    if (d.state === "sent") return m.sender === "agent" ? el("div", { class: "delivery sent", text: "已送达" }) : null;
    if (d.state === "queued") {
      return el("div", { class: "delivery queued", text: d.reason_text ? "重试中：" + d.reason_text : "发送中…" });
    }
    const retry = d.retry ? el("button", { type: "button", class: "retry", text: "重发", "aria-label": "重发这条消息",
      onclick: async (event) => {
        event.target.disabled = true;
        try {
          await api("POST", "/api/v1/conversations/" + conversationId + "/messages/" + m.id + "/retry",
            sessionStorage.getItem(TOKEN_KEY) || "");
        } catch (e) { alert("重发失败：" + e.message); }
        refresh();
      } }) : null;
    return el("div", { class: "delivery undelivered", role: "status" },
      el("span", { text: "⚠ " + LABEL[d.state] + "：" + (d.reason_text || d.reason || "平台拒收") }), retry);
  }

  window.kefu.delivery = { mark, cls };
})();
