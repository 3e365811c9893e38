/* The admin dashboard: GET /admin/api/stats, charts drawn as inline SVG (no chart library). */
"use strict";
(function () {
  const { el, svg, sync, duration, api } = window.kefu;
  const TOKEN_KEY = "kefu.adminToken";
  const $ = (id) => document.getElementById(id);
  const CHANNELS = { web: "网站", wechat: "微信公众号", onebot: "QQ", qqbot: "QQ 机器人", wecom: "微信客服" };
  const DECISIONS = { answer: "直接回答", suggest: "您是不是想问", handoff: "转人工", smalltalk: "寒暄", with_human: "人工服务中",
    csat: "满意度评价", event: "事件", non_text: "非文字", not_addressed: "群聊未@", none: "未分类" };
  const PRESENCE = { online: ["在线", "ok"], away: ["忙碌", "warn"], offline: ["离线", "off"] };

  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let timer = null;
  let zone = undefined; // business_hours.timezone, from the stats: times are shown there, not in the browser's zone
  const when = (iso) => new Date(iso).toLocaleString("zh-CN", { timeZone: zone });

  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    $("signin-error").textContent = "";
    try { await load(); enter(); } catch (e) {
      $("signin-error").textContent = e.status === 401 || e.status === 403 ? "令牌不正确或没有管理权限。" : "加载失败：" + e.message;
    }
  });
  $("signout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); location.reload(); });
  $("refresh").addEventListener("click", () => load().catch(showError));
  $("range").addEventListener("change", () => load().catch(showError));
  $("reload").addEventListener("click", reloadKb);

  function enter() {
    sessionStorage.setItem(TOKEN_KEY, token);
    $("signin").classList.add("hidden");
    $("app").classList.remove("hidden");
    clearInterval(timer);
    timer = setInterval(() => load().catch(showError), 30000);
    // The agent management and FAQ editor tabs (admin_agents.js, admin_faq.js) start from here.
    document.dispatchEvent(new CustomEvent("kefu:admin-ready", { detail: { token } }));
  }

  // Tabs: 看板 / 客服管理 / FAQ 编辑 (each panel is a <main data-panel>).
  document.querySelectorAll(".tabs .tab").forEach((tab) => tab.addEventListener("click", () => {
    document.querySelectorAll(".tabs .tab").forEach((t) => t.setAttribute("aria-current", t === tab ? "page" : "false"));
    document.querySelectorAll("main[data-panel]").forEach((m) => m.classList.toggle("hidden", m.dataset.panel !== tab.dataset.tab));
    // The time range and refresh belong to the dashboard only.
    document.querySelectorAll(".dash-only").forEach((e) => e.classList.toggle("hidden", tab.dataset.tab !== "dash"));
    document.dispatchEvent(new CustomEvent("kefu:admin-tab", { detail: { tab: tab.dataset.tab } }));
  }));
  function showError(e) { $("updated").textContent = "刷新失败：" + e.message; }

  async function load() {
    const hours = Number($("range").value);
    const to = new Date();
    const from = new Date(to.getTime() - hours * 3600 * 1000);
    const q = "?from=" + encodeURIComponent(from.toISOString()) + "&to=" + encodeURIComponent(to.toISOString());
    const stats = await api("GET", "/admin/api/stats" + q, token);
    render(stats);
    // 教机器人 (learn.js) adds its column to the unanswered groups just drawn.
    document.dispatchEvent(new CustomEvent("kefu:unanswered", { detail: { clusters: stats.unanswered, token } }));
    $("updated").textContent = "更新于 " + to.toLocaleTimeString("zh-CN");
    return stats;
  }

  async function reloadKb() {
    const out = $("reload-result");
    out.textContent = "正在加载…";
    try {
      const r = await api("POST", "/admin/api/kb/reload", token);
      out.textContent = r.changed ? "已加载新版本 " + r.version : "内容未变化，仍为版本 " + r.version;
    } catch (e) {
      out.textContent = e.status === 422 ? "加载失败，继续使用上一个可用版本，请查看下方错误。" : "加载失败：" + e.message;
    }
    load().catch(showError);
  }

  const pct = (x) => (x === null || x === undefined ? "—" : Math.round(x * 1000) / 10 + "%");

  function render(s) {
    const t = s.totals;
    const kpis = [
      ["客户消息", t.messages], ["会话", t.conversations],
      ["机器人解决率", pct(t.resolution_rate), t.resolution_rate !== null && t.resolution_rate >= 0.7 ? "good" : ""],
      ["转人工率", pct(t.handoff_rate)],
      ["平均首次响应", duration(s.first_response_s.avg)], ["平均排队等待", duration(s.waiting_s.avg)],
      ["满意度", s.csat.avg === null ? "—" : s.csat.avg + " / 5"], ["当前排队", t.queue_length, t.queue_length > 0 ? "bad" : ""],
    ];
    $("kpis").replaceChildren(...kpis.map(([label, value, cls]) =>
      el("div", { class: "kpi" }, el("div", { class: "label", text: label }), el("div", { class: "value " + (cls || ""), text: String(value) }))));

    zone = s.timezone || undefined;
    renderKb(s.kb);
    const labels = s.bucket_labels || s.buckets.map((b) => bucketLabel(b, s.bucket));
    const channels = Object.keys(s.messages_by_channel);
    stackedBars($("chart-messages"), labels, channels.map((ch) => s.messages_by_channel[ch]));
    $("legend-messages").replaceChildren(...channels.map((ch, i) =>
      el("span", {}, el("i", { class: "sw c" + (i % 6) }), CHANNELS[ch] || ch)));
    const resolved = s.conversations_per_bucket.map((n, i) => n - s.handoffs_per_bucket[i]);
    stackedBars($("chart-handoffs"), labels, [resolved, s.handoffs_per_bucket], [0, 3]);
    hbars($("chart-csat"), ["5 分", "4 分", "3 分", "2 分", "1 分"], [5, 4, 3, 2, 1].map((k) => s.csat.distribution[String(k)]),
      [1, 1, 2, 3, 3], s.csat.count ? "共 " + s.csat.count + " 个评价" : "暂无评价");
    const dec = Object.entries(s.decisions).sort((a, b) => b[1] - a[1]);
    hbars($("chart-decisions"), dec.map(([k]) => DECISIONS[k] || k), dec.map(([, v]) => v),
      dec.map(([k]) => ({ answer: 1, suggest: 2, handoff: 3, smalltalk: 5 }[k] ?? 0)), dec.length ? "" : "暂无消息");
    const f = s.first_response_s, w = s.waiting_s;
    hbars($("chart-times"), ["首响 中位", "首响 P90", "等待 中位", "等待 P90"], [f.p50, f.p90, w.p50, w.p90].map((v) => v || 0),
      [0, 0, 4, 4], f.count || w.count ? "" : "暂无人工会话", (v) => duration(v));

    const agents = $("agents").tBodies[0];
    agents.replaceChildren(...(s.agents.length ? s.agents.map((a) => {
      const [label, cls] = PRESENCE[a.presence] || [a.presence, "off"];
      const bar = el("i");
      bar.style.width = Math.min(100, (a.load / Math.max(1, a.max_chats)) * 100) + "%";
      return el("tr", {}, el("td", {}, a.name, el("div", { class: "groups", text: a.groups.join("、") })),
        el("td", {}, el("span", { class: "badge " + cls, text: label })),
        el("td", {}, el("span", { class: "load" }, bar), a.load + " / " + a.max_chats));
    }) : [el("tr", {}, el("td", { colspan: "3", class: "empty-note", text: "还没有客服（kefu agent add 创建）" }))]));

    // Redrawn every 30 s: a group that did not change keeps its rows (and its 教机器人), and sync takes out
    // only what changed, so the admin's place in the table (a row, a link, a button) keeps the focus.
    const un = $("unanswered").tBodies[0];
    const before = drawn;
    drawn = new Map();
    sync(un, s.unanswered.length ? s.unanswered.flatMap((c) => clusterRows(c, before)) :
      [el("tr", {}, el("td", { colspan: "5", class: "empty-note", text: "这段时间机器人都答上了" }))]);
  }

  // A group of unanswered questions, and on click its messages with links to their conversations.
  const opened = new Set();
  let drawn = new Map(); // group text -> { same: what it was drawn from, rows }
  function clusterRows(c, before) {
    const same = JSON.stringify([c, zone]);
    const had = before.get(c.text);
    if (had && had.same === same) { drawn.set(c.text, had); return had.rows; }
    const drill = el("tr", { class: "drill" + (opened.has(c.text) ? "" : " hidden") },
      el("td", { colspan: "5" }, el("ul", {}, (c.messages || []).map((m) => el("li", {},
        when(m.at) + " · " + (CHANNELS[m.channel] || m.channel) + " · “" + m.text + "”",
        el("a", { href: "/agent#c=" + m.conversation_id, target: "_blank", rel: "noopener", text: "查看会话 #" + m.conversation_id }))))));
    const row = el("tr", { class: "cluster", tabindex: "0", dataset: { key: c.text }, "aria-expanded": opened.has(c.text) ? "true" : "false",
      title: "点击查看这些消息和所在会话" },
      el("td", { text: c.text }), el("td", { class: "num", text: String(c.count) }),
      el("td", { class: "ex", text: c.examples.filter((x) => x !== c.text).join("；") || "—" }),
      el("td", { text: Object.keys(c.channels).map((k) => CHANNELS[k] || k).join("、") }),
      el("td", { class: "ex", text: c.last_at ? when(c.last_at) : "" }));
    const toggle = () => {
      // The drill row after it (sync may have kept an equal one from the last refresh instead of `drill`).
      const show = row.nextElementSibling.classList.toggle("hidden") === false;
      if (show) opened.add(c.text); else opened.delete(c.text);
      row.setAttribute("aria-expanded", show ? "true" : "false");
    };
    row.addEventListener("click", toggle);
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") toggle(); });
    drawn.set(c.text, { same, rows: [row, drill] });
    return [row, drill];
  }

  function renderKb(kb) {
    const rows = [["状态", kb.loaded ? (kb.errors.length ? "有错误（仍在使用上一版）" : "正常") : "未加载"],
      ["版本", kb.version || "—"], ["问答条目", String(kb.entries)],
      ["加载时间", kb.loaded_at ? when(kb.loaded_at) : "—"],
      ["最近尝试", kb.last_attempt_at ? when(kb.last_attempt_at) : "—"]];
    $("kb").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    // Chinese, with paths relative to the FAQ folder (errors_zh); the English ones are for the log and CLI.
    const errors = kb.errors_zh || kb.errors;
    $("kb-errors").replaceChildren(...(errors.length ? [el("ul", { class: "kb-errors" }, errors.map((e) => el("li", { text: e })))] : []));
  }

  function bucketLabel(iso, unit) {
    const d = new Date(iso);
    return unit === "hour" ? String(d.getHours()).padStart(2, "0") + ":00" : (d.getMonth() + 1) + "/" + d.getDate();
  }

  /** A round axis maximum with four equal integer steps (1, 2, 2.5, 5 × 10^k per step). */
  function niceMax(v) {
    const raw = Math.max(1, v) / 4;
    const p = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 3, 4, 5, 10].map((m) => m * p).find((s) => s >= raw && Number.isInteger(s)) || Math.ceil(raw);
    return step * 4;
  }

  /** Vertical stacked bars: one series per colour, labels on the x axis. */
  function stackedBars(box, labels, series, colours) {
    const W = 720, H = 220, L = 36, B = 24, T = 10;
    const n = labels.length;
    const totals = labels.map((_, i) => series.reduce((sum, s) => sum + (s[i] || 0), 0));
    const max = niceMax(Math.max(0, ...totals));
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
    const y = (v) => T + (H - T - B) * (1 - v / max);
    for (let k = 0; k <= 4; k++) {
      const v = (max * k) / 4;
      chart.append(svg("line", { x1: L, x2: W, y1: y(v), y2: y(v), stroke: "#eef0f3" }),
        svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", text: Math.round(v) }));
    }
    const step = (W - L) / Math.max(1, n);
    const bw = Math.max(2, step * 0.62);
    const every = Math.ceil(n / 12);
    labels.forEach((label, i) => {
      let base = 0;
      series.forEach((s, j) => {
        const v = s[i] || 0;
        if (v > 0) {
          const rect = svg("rect", { x: L + i * step + (step - bw) / 2, y: y(base + v), width: bw, height: y(base) - y(base + v), rx: 2,
            class: "c" + ((colours ? colours[j] : j) % 6) });
          rect.append(svg("title", { text: label + "：" + v }));
          chart.append(rect);
        }
        base += v;
      });
      if (i % every === 0) chart.append(svg("text", { x: L + i * step + step / 2, y: H - 6, "text-anchor": "middle", text: label }));
    });
    box.replaceChildren(chart);
  }

  /** Horizontal bars with values, for small distributions. */
  function hbars(box, labels, values, colours, note, fmt) {
    const W = 300, row = 28, L = 84, R = 56;
    const H = Math.max(1, labels.length) * row + (note ? 22 : 4);
    const max = Math.max(1, ...values);
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}` });
    labels.forEach((label, i) => {
      const yy = i * row + 6;
      const w = ((W - L - R) * (values[i] || 0)) / max;
      chart.append(svg("text", { x: L - 8, y: yy + 14, "text-anchor": "end", text: label }),
        svg("rect", { x: L, y: yy, width: W - L - R, height: 18, rx: 3, fill: "#f1f3f6" }),
        svg("rect", { x: L, y: yy, width: Math.max(0, w), height: 18, rx: 3, class: "c" + ((colours[i] || 0) % 6) }),
        svg("text", { x: L + Math.max(0, w) + 6, y: yy + 14, class: "v", text: fmt ? fmt(values[i]) : String(values[i] || 0) }));
    });
    if (note) chart.append(svg("text", { x: 0, y: H - 6, text: note }));
    box.replaceChildren(chart);
  }

  if (token) load().then(enter).catch(() => { sessionStorage.removeItem(TOKEN_KEY); token = ""; });
})();
