/* kefu chat widget: paste
 *   <script src="https://your-host/widget.js" data-kefu-host="https://your-host" async></script>
 * into any page; it adds a floating 在线客服 button that opens the chat (/chat) in an iframe.
 * Optional: data-kefu-title="联系客服", data-kefu-color="#1677ff", data-kefu-position="left".
 */
(function () {
  "use strict";
  if (window.__kefuWidget) return;
  window.__kefuWidget = true;
  var script = document.currentScript || document.querySelector("script[data-kefu-host]");
  var host = (script && script.getAttribute("data-kefu-host")) || (script && new URL(script.src).origin) || "";
  host = host.replace(/\/+$/, "");
  var title = (script && script.getAttribute("data-kefu-title")) || "在线客服";
  var color = (script && script.getAttribute("data-kefu-color")) || "#1677ff";
  if (!/^#[0-9a-fA-F]{3,8}$/.test(color)) color = "#1677ff";
  var side = script && script.getAttribute("data-kefu-position") === "left" ? "left" : "right";

  function css(node, styles) { for (var k in styles) node.style[k] = styles[k]; }

  var button = document.createElement("button");
  button.type = "button";
  button.textContent = title;
  button.setAttribute("aria-haspopup", "dialog");
  button.setAttribute("aria-expanded", "false");
  css(button, {
    position: "fixed", bottom: "24px", zIndex: "2147483000", padding: "12px 18px", border: "none",
    borderRadius: "999px", background: color, color: "#fff", fontSize: "15px", cursor: "pointer",
    boxShadow: "0 6px 20px rgba(0,0,0,.2)", fontFamily: "inherit"
  });
  button.style[side] = "24px";

  var frame = null;
  function open() {
    if (!frame) {
      frame = document.createElement("iframe");
      frame.src = host + "/chat";
      frame.title = title;
      frame.setAttribute("role", "dialog");
      css(frame, {
        position: "fixed", bottom: "84px", width: "380px", height: "600px", maxWidth: "calc(100vw - 24px)",
        maxHeight: "calc(100vh - 108px)", border: "none", borderRadius: "14px", zIndex: "2147483000",
        boxShadow: "0 12px 40px rgba(0,0,0,.25)", background: "#fff"
      });
      frame.style[side] = "12px";
      document.body.appendChild(frame);
    } else {
      frame.style.display = frame.style.display === "none" ? "block" : "none";
    }
    button.setAttribute("aria-expanded", frame.style.display === "none" ? "false" : "true");
  }
  function close() {
    if (frame && frame.style.display !== "none") {
      frame.style.display = "none";
      button.setAttribute("aria-expanded", "false");
      button.focus();
    }
  }
  button.addEventListener("click", open);
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") close(); });
  window.addEventListener("message", function (e) {
    // Only the chat frame itself may fold the chat away (Esc pressed inside it).
    if (frame && e.source === frame.contentWindow && e.origin === new URL(frame.src).origin &&
        e.data && e.data.kefu === "close") close();
  });
  function mount() { document.body.appendChild(button); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
