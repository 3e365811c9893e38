/* The console's pictures and files (show them, send them: button, paste, drag), platform events as lines,
 * and typing both ways ("对方正在输入…" / the agent's own notice to a web visitor). Loaded before agent.js,
 * which calls window.kefuMedia and exposes window.kefuConsole. */
"use strict";
(function () {
  const { el } = window.kefu;
  const TYPING_EVERY_MS = 2000;
  const TYPING_SHOWN_MS = 4000;
  const $ = (id) => document.getElementById(id);
  const consoleApi = () => window.kefuConsole;

  function size(bytes) {
    if (!bytes && bytes !== 0) return "";
    return bytes < 1024 * 1024 ? Math.max(1, Math.round(bytes / 1024)) + " KB" : (bytes / 1024 / 1024).toFixed(1) + " MB";
  }

  /** One message's bubble: a picture, a file link, an event line, or its text. */
  function bubble(m) {
    const a = m.attachment;
    if (m.kind === "event") return el("div", { class: "bubble", text: "客户" + (m.text || "触发了一个事件") });
    if (!a) return el("div", { class: "bubble", text: m.text });
    const placeholder = a.kind === "image" ? "[图片]" : ("[文件] " + (a.name || "")).trim();
    const caption = m.text && m.text.trim() !== placeholder ? m.text : "";
    const body = a.kind === "image"
      ? el("a", { class: "picture", href: a.url, target: "_blank", rel: "noopener", title: "查看原图" },
        el("img", { src: a.url, alt: a.name ? "图片：" + a.name : "客户发送的图片", loading: "lazy" }))
      : el("a", { class: "file", href: a.url, download: a.name || "", target: "_blank", rel: "noopener" },
        el("span", { "aria-hidden": "true", text: "📄" }), el("span", { class: "file-name", text: a.name || "文件" }),
        el("span", { class: "file-size", text: size(a.size) }));
    return el("div", { class: "bubble media" }, body, caption ? el("div", { class: "caption", text: caption }) : null);
  }

  // --- "对方正在输入…" ------------------------------------------------------------------------------
  let typingTimer = null;
  const typingLine = el("p", { id: "customer-typing", class: "customer-typing hidden", "aria-live": "polite", text: "对方正在输入…" });
  function typing(frame) {
    const c = consoleApi();
    if (!c || frame.conversation_id !== c.current()) return;
    typingLine.classList.remove("hidden");
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => typingLine.classList.add("hidden"), TYPING_SHOWN_MS);
  }

  // --- sending pictures and files -------------------------------------------------------------------
  async function upload(file) {
    const c = consoleApi();
    const id = c && c.current();
    const error = $("reply-error");
    if (!file || id === null || id === undefined) return;
    error.textContent = "正在发送 " + (file.name || "图片") + "…";
    const body = new FormData();
    body.append("file", file, file.name || "image.png");
    let data = null;
    let resp = null;
    try {
      resp = await fetch("/api/v1/conversations/" + id + "/attachments", {
        method: "POST", headers: { Authorization: "Bearer " + c.token() }, body,
      });
      data = await resp.json();
    } catch (e) { data = null; }
    if (!resp || !resp.ok) {
      const why = (data && data.error) || "网络异常，请稍后重试";
      error.textContent = resp && resp.status === 403 ? "只有接入此会话的客服可以发送：" + why : "发送失败：" + why;
      return;
    }
    error.textContent = "";
    await c.open(id);
  }

  function install() {
    const form = $("reply-form");
    const reply = $("reply");
    const actions = form.querySelector(".reply-actions");
    const picker = el("input", { type: "file", id: "attach-file", class: "sr-only", tabindex: "-1",
      accept: "image/png,image/jpeg,image/gif,image/webp,application/pdf" });
    const button = el("button", { type: "button", id: "attach", class: "attach", title: "发送图片或文件（也可粘贴或拖入）",
      text: "图片/文件", onclick: () => picker.click() });
    picker.addEventListener("change", () => { [...picker.files].forEach(upload); picker.value = ""; });
    actions.insertBefore(button, $("send"));
    actions.append(picker);
    form.parentNode.insertBefore(typingLine, form);
    reply.addEventListener("paste", (event) => {
      const files = [...(event.clipboardData ? event.clipboardData.files : [])];
      if (files.length) { event.preventDefault(); files.forEach(upload); }
    });
    form.addEventListener("dragover", (event) => {
      if (event.dataTransfer && [...event.dataTransfer.types].includes("Files")) event.preventDefault();
    });
    form.addEventListener("drop", (event) => {
      if (!event.dataTransfer || !event.dataTransfer.files.length) return;
      event.preventDefault();
      [...event.dataTransfer.files].forEach(upload);
    });
    // The agent typing: one notice every 2 s at most, only for real replies (not internal notes).
    let last = 0;
    reply.addEventListener("input", () => {
      const c = consoleApi();
      const now = Date.now();
      if (!c || $("note-mode").checked || !reply.value.trim() || now - last < TYPING_EVERY_MS) return;
      last = now;
      if (c.current() !== null) c.send({ type: "typing", conversation_id: c.current() });
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", install);
  else install();
  window.kefuMedia = { bubble, typing };
})();
