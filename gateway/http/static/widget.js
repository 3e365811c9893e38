/* kefu chat widget: paste
 *   <script src="https://your-host/widget.js" data-kefu-host="https://your-host" async></script>
 * into any page; it adds a floating 在线客服 button that opens the chat (/chat) in an iframe.
 * Optional: data-kefu-title="联系客服" (the button and the chat's header), data-kefu-color="#1677ff",
 * data-kefu-position="left".
 * On a phone (viewport under 600 px) the chat opens full-screen and the page behind it stops scrolling;
 * the button shows how many replies arrived while the chat was closed.
 */
(function () {
  "use strict";
  if (window.__kefuWidget) return;
  window.__kefuWidget = true;
  var script = document.currentScript || document.querySelector("script[data-kefu-host]");
  var host = (script && script.getAttribute("data-kefu-host")) || (script && new URL(script.src).origin) || "";
  host = host.replace(/\/+$/, "");
  var title = ((script && script.getAttribute("data-kefu-title")) || "在线客服").slice(0, 40);
  var color = (script && script.getAttribute("data-kefu-color")) || "#1677ff";
  if (!/^#[0-9a-fA-F]{3,8}$/.test(color)) color = "#1677ff";
  var side = script && script.getAttribute("data-kefu-position") === "left" ? "left" : "right";
  var ACTIVE_KEY = "kefu.widget.active"; // this shop's visitor has chatted: load the chat early for unread counts
  var PHONE = window.matchMedia("(max-width: 599.98px)");

  function css(node, styles) { for (var k in styles) node.style[k] = styles[k]; }
  function remember() { try { localStorage.setItem(ACTIVE_KEY, "1"); } catch (e) { /* private mode */ } }
  function chattedBefore() { try { return localStorage.getItem(ACTIVE_KEY) === "1"; } catch (e) { return false; } }

  var button = document.createElement("button");
  button.type = "button";
  button.setAttribute("aria-haspopup", "dialog");
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("data-kefu", "launcher");
  var label = document.createElement("span");
  label.textContent = title;
  var badge = document.createElement("span");
  badge.setAttribute("data-kefu", "unread");
  badge.setAttribute("aria-live", "polite");
  badge.hidden = true;
  button.appendChild(label);
  button.appendChild(badge);
  css(button, {
    position: "fixed", bottom: "24px", zIndex: "2147483000", padding: "12px 18px", border: "none",
    borderRadius: "999px", background: color, color: "#fff", fontSize: "15px", cursor: "pointer",
    boxShadow: "0 6px 20px rgba(0,0,0,.2)", fontFamily: "inherit", display: "flex", alignItems: "center", gap: "8px"
  });
  css(badge, {
    minWidth: "20px", height: "20px", padding: "0 6px", borderRadius: "999px", background: "#ef4444",
    color: "#fff", fontSize: "12px", lineHeight: "20px", textAlign: "center", fontWeight: "600"
  });
  button.style[side] = "24px";

  var frame = null;
  var shown = false;
  var unread = 0;
  var savedOverflow = null;

  function setUnread(count) {
    unread = count;
    badge.hidden = !count;
    badge.textContent = count > 99 ? "99+" : String(count);
    button.setAttribute("aria-label", count ? title + "，" + count + " 条未读消息" : title);
  }

  function place() {
    if (!frame) return;
    if (PHONE.matches) {
      // Full-screen on a phone: nothing of the page peeks out, the launcher hides, the page stops scrolling.
      css(frame, { top: "0", left: "0", right: "0", bottom: "0", width: "100%", height: "100%", maxWidth: "none",
        maxHeight: "none", borderRadius: "0", boxShadow: "none" });
    } else {
      css(frame, { top: "auto", left: "auto", right: "auto", bottom: "84px", width: "380px", height: "600px",
        maxWidth: "calc(100vw - 24px)", maxHeight: "calc(100vh - 108px)", borderRadius: "14px",
        boxShadow: "0 12px 40px rgba(0,0,0,.25)" });
      frame.style[side] = "12px";
    }
    button.style.display = shown && PHONE.matches ? "none" : "flex";
    var root = document.documentElement;
    if (shown && PHONE.matches) {
      if (savedOverflow === null) savedOverflow = root.style.overflow;
      root.style.overflow = "hidden";
    } else if (savedOverflow !== null) {
      root.style.overflow = savedOverflow;
      savedOverflow = null;
    }
  }

  function tell() {
    if (frame && frame.contentWindow) frame.contentWindow.postMessage({ kefu: "state", open: shown }, host || "*");
  }

  function makeFrame() {
    frame = document.createElement("iframe");
    frame.src = host + "/chat?title=" + encodeURIComponent(title);
    frame.title = title;
    frame.setAttribute("role", "dialog");
    frame.setAttribute("aria-label", title);
    css(frame, { position: "fixed", border: "none", zIndex: "2147483001", background: "#fff", display: "none" });
    document.body.appendChild(frame);
    place();
  }

  function open() {
    if (!frame) makeFrame();
    shown = true;
    remember();
    frame.style.display = "block";
    button.setAttribute("aria-expanded", "true");
    setUnread(0);
    place();
    tell();
  }
  function close() {
    if (!frame || !shown) return;
    shown = false;
    frame.style.display = "none";
    button.setAttribute("aria-expanded", "false");
    place();
    tell();
    button.focus();
  }
  button.addEventListener("click", function () { if (shown) close(); else open(); });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") close(); });
  if (PHONE.addEventListener) PHONE.addEventListener("change", place);
  window.addEventListener("message", function (e) {
    // Only the chat frame itself may fold the chat away or report unread replies.
    if (!frame || e.source !== frame.contentWindow || e.origin !== new URL(frame.src).origin || !e.data) return;
    if (e.data.kefu === "close") close();
    else if (e.data.kefu === "ready") tell();
    else if (e.data.kefu === "unread" && !shown) setUnread(Math.max(0, Math.min(999, Number(e.data.count) || 0)));
  });
  function mount() {
    setUnread(0);
    document.body.appendChild(button);
    if (chattedBefore()) makeFrame(); // loaded hidden: replies that come while browsing show on the button
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
