/* kefu shared helpers: DOM building without innerHTML (customer text is untrusted), time formats. */
"use strict";
(function (global) {
  /** Build an element: el("div", {class: "x", text: "..."}, child, ...). Text always via textContent. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") node.textContent = String(value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children.flat()) if (child) node.append(child);
    return node;
  }

  /** Make `nodes` the children of `container`, taking out only what changed: a child the same as a wanted
   * node (the node itself, or equal markup and text: isEqualNode) stays where it is; the others are
   * inserted, moved or removed. For lists rebuilt on a live event or a timer: a child taken out of the
   * document loses the focus (what the user types or tabs to next goes nowhere) and a click half done.
   * Should the focused child itself have changed, the same control in its replacement gets the focus back
   * (the child with the same data-key / data-id, else at the same place; the same position inside it). */
  function sync(container, nodes) {
    const active = document.activeElement;
    const spot = active && active !== container && container.contains(active) ? locate(container, active) : null;
    const spare = [...container.children];
    const wanted = nodes.map((node) => {
      let i = spare.indexOf(node);
      if (i < 0) i = spare.findIndex((old) => old.isEqualNode(node));
      return i < 0 ? node : spare.splice(i, 1)[0];
    });
    wanted.forEach((node, i) => { if (container.children[i] !== node) container.insertBefore(node, container.children[i] || null); });
    while (container.children.length > wanted.length) container.lastElementChild.remove();
    if (spot && !container.contains(active)) refocus(container, spot);
  }
  const keyOf = (node) => node.dataset.key ?? node.dataset.id ?? null;
  function locate(container, active) {
    const path = [];
    let node = active;
    while (node.parentElement !== container) { path.unshift([...node.parentElement.children].indexOf(node)); node = node.parentElement; }
    return { key: keyOf(node), at: [...container.children].indexOf(node), path, tag: active.tagName };
  }
  function refocus(container, spot) {
    const children = [...container.children];
    const top = (spot.key !== null && children.find((c) => keyOf(c) === spot.key)) || children[Math.min(spot.at, children.length - 1)];
    if (!top) return;
    let target = top;
    for (const i of spot.path) target = target && target.children[i];
    (target && target.tagName === spot.tag ? target : top).focus({ preventScroll: true });
  }

  function clock(iso) {
    const d = iso ? new Date(iso) : new Date();
    return d.toLocaleTimeString("zh-CN", { hour: "2-digit", minute: "2-digit" });
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " 秒";
    if (s < 3600) return Math.floor(s / 60) + " 分 " + (s % 60) + " 秒";
    return Math.floor(s / 3600) + " 小时 " + Math.floor((s % 3600) / 60) + " 分";
  }

  function randomId(bytes) {
    const buf = new Uint8Array(bytes || 16);
    crypto.getRandomValues(buf);
    return Array.from(buf, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function api(method, path, token, body) {
    const headers = { Authorization: "Bearer " + token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (!resp.ok) {
      const err = new Error((data && data.error) || resp.status + " " + resp.statusText);
      err.status = resp.status;
      throw err;
    }
    return data;
  }

  function wsUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  global.kefu = { el, svg, sync, clock, duration, randomId, api, wsUrl };
})(window);
