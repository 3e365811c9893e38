/* The supervisor page: 排班 (/api/v1/shifts), 绩效 (/api/v1/reports/agents), 质检 (/api/v1/qa). */
"use strict";
(function () {
  const { el, duration, api } = window.kefu;
  const TOKEN_KEY = "kefu.supervisorToken";
  const $ = (id) => document.getElementById(id);
  const DAYS = "日一二三四五六";
  const REVIEW = { open: "待复核", confirmed: "已确认", dismissed: "已驳回" };
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let monday = startOfWeek(addDays(new Date(), 7)); // next week: what a supervisor plans
  let kpiRows = [];
  let sort = { key: "agent", dir: 1 };
  let openQa = null;

  // --- dates (local) -------------------------------------------------------------------------------
  function addDays(d, n) { const x = new Date(d); x.setDate(x.getDate() + n); return x; }
  function startOfWeek(d) { const x = new Date(d.getFullYear(), d.getMonth(), d.getDate()); return addDays(x, -((x.getDay() + 6) % 7)); }
  function ymd(d) { return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" + String(d.getDate()).padStart(2, "0"); }
  // Shift times are read and written in the business-hours time zone, whatever the browser's: the API
  // answers local ISO times (read as text, not through Date) and takes naive ones as that zone.
  function hm(iso) { return iso.slice(11, 16); }
  function dayText(iso) {
    const [y, m, d] = iso.slice(0, 10).split("-").map(Number);
    return m + "月" + d + "日（周" + DAYS[new Date(Date.UTC(y, m - 1, d)).getUTCDay()] + "）";
  }
  function isoLocal(date, time) { return date + "T" + time + ":00"; }

  // --- sign-in and tabs ------------------------------------------------------------------------------
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    $("signin-error").textContent = "";
    try { await api("GET", "/api/v1/qa?flagged=1", token); enter(); } catch (e) {
      $("signin-error").textContent = e.status === 401 || e.status === 403 ? "令牌不正确，或不是主管/管理员。" : "加载失败：" + e.message;
    }
  });
  $("signout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); location.reload(); });
  for (const name of ["shifts", "kpis", "qa"]) $("tab-" + name).addEventListener("click", () => show(name));

  function enter() {
    sessionStorage.setItem(TOKEN_KEY, token);
    $("signin").classList.add("hidden");
    $("app").classList.remove("hidden");
    const yesterday = ymd(addDays(new Date(), -1));
    $("k-from").value = $("k-to").value = yesterday;
    $("q-from").value = ymd(addDays(new Date(), -7));
    $("q-to").value = ymd(new Date());
    show("shifts");
  }
  function show(name) {
    for (const other of ["shifts", "kpis", "qa"]) {
      $("tab-" + other).setAttribute("aria-selected", String(other === name));
      $("pane-" + other).classList.toggle("hidden", other !== name);
    }
    const load = { shifts: loadWeek, kpis: loadKpis, qa: loadQa }[name];
    load().catch(fail);
  }
  function fail(e) { $("status").textContent = "出错了：" + e.message; }
  function done(text) { $("status").textContent = text; }

  // --- 排班 -----------------------------------------------------------------------------------------
  $("week-prev").addEventListener("click", () => { monday = addDays(monday, -7); loadWeek().catch(fail); });
  $("week-next").addEventListener("click", () => { monday = addDays(monday, 7); loadWeek().catch(fail); });

  async function loadWeek() {
    const sunday = addDays(monday, 6);
    $("week-label").textContent = ymd(monday) + " 至 " + ymd(sunday);
    if (!$("s-date").value) $("s-date").value = ymd(monday);
    const range = "?from=" + ymd(monday) + "&to=" + ymd(sunday);
    const [list, coverage, swaps] = await Promise.all([
      api("GET", "/api/v1/shifts" + range, token),
      api("GET", "/api/v1/shifts/coverage" + range, token),
      api("GET", "/api/v1/shifts/swaps?status=pending", token),
    ]);
    $("shifts").tBodies[0].replaceChildren(...(list.shifts.length ? list.shifts.map((s) => el("tr", {},
      el("td", { text: dayText(s.start) }), el("td", { text: hm(s.start) + "–" + hm(s.end) }),
      el("td", { text: s.group }), el("td", { text: s.agent }),
      el("td", {}, el("button", { type: "button", class: "danger", text: "删除", "aria-label": "删除 " + s.agent + " 的班次",
        onclick: () => removeShift(s.id) })))) : [el("tr", {}, el("td", { colspan: "5", class: "empty-note", text: "本周还没有班次" }))]));
    $("gaps").replaceChildren(...(coverage.gaps.length ? coverage.gaps.map((g) => el("li", { class: "gap", text: g.text }))
      : [el("li", { class: "ok", text: "营业时间已全部有人值班" })]));
    $("swaps").replaceChildren(...(swaps.swaps.length ? swaps.swaps.map((w) => el("li", { class: "swap" },
      el("span", { text: w.requester + " → " + w.with_agent + "：" + dayText(w.shift_start) + " " + hm(w.shift_start) }),
      el("button", { type: "button", class: "primary", text: "批准", onclick: () => decide(w.id, "approve") }),
      el("button", { type: "button", text: "驳回", onclick: () => decide(w.id, "reject") })))
      : [el("li", { class: "muted", text: "没有待审批的调班" })]));
    done("排班已更新");
  }

  $("shift-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const date = $("s-date").value;
    const start = $("s-start").value;
    const end = $("s-end").value;
    const endDate = end <= start ? ymd(addDays(new Date(date + "T00:00:00"), 1)) : date; // across midnight
    $("shift-error").textContent = "";
    try {
      await api("POST", "/api/v1/shifts", token, {
        agent: $("s-agent").value.trim(), group: $("s-group").value.trim(),
        start: isoLocal(date, start), end: isoLocal(endDate, end),
      });
      await loadWeek();
    } catch (e) { $("shift-error").textContent = "添加失败：" + e.message; }
  });
  async function removeShift(id) { await api("DELETE", "/api/v1/shifts/" + id, token).catch(fail); loadWeek().catch(fail); }
  async function decide(id, action) {
    try { await api("POST", "/api/v1/shifts/swaps/" + id + "/" + action, token, {}); } catch (e) { fail(e); }
    loadWeek().catch(fail);
  }

  // --- 绩效 -----------------------------------------------------------------------------------------
  const COLUMNS = [
    ["agent", "客服", (r) => r.agent],
    ["conversations", "接待会话", (r) => r.conversations],
    ["frt50", "首响中位数", (r) => r.first_response_s.p50, duration],
    ["frt90", "首响 P90", (r) => r.first_response_s.p90, duration],
    ["handling", "平均处理时长", (r) => r.handling_s.avg, duration],
    ["messages", "消息数", (r) => r.messages],
    ["tin", "转入", (r) => r.transfers_in],
    ["tout", "转出", (r) => r.transfers_out],
    ["tickets", "处理留言", (r) => r.tickets_handled],
    ["breaches", "首响超时", (r) => r.sla_breaches],
    ["csat", "满意度", (r) => r.csat.average],
    ["csatn", "评价数", (r) => r.csat.count],
    ["late", "迟到", (r) => (r.attendance["迟到"] || 0) + (r.attendance["迟到且早退"] || 0)],
    ["absent", "缺勤", (r) => r.attendance["缺勤"] || 0],
    ["qa", "质检均分", (r) => r.qa.average],
    ["qaflag", "待复核", (r) => r.qa.flagged],
  ];
  $("k-load").addEventListener("click", () => loadKpis().catch(fail));
  $("k-xlsx").addEventListener("click", () => exportXlsx().catch(fail));
  function kpiRange() { return "?from=" + $("k-from").value + "&to=" + $("k-to").value; }

  async function loadKpis() {
    const data = await api("GET", "/api/v1/reports/agents" + kpiRange() + "&format=json", token);
    kpiRows = data.rows;
    renderKpis();
    done("绩效已更新");
  }
  function renderKpis() {
    const col = COLUMNS.find((c) => c[0] === sort.key) || COLUMNS[1];
    const value = (r) => { const v = col[2](r); return v === null || v === undefined ? -Infinity : v; };
    const rows = kpiRows.slice().sort((a, b) => {
      const x = value(a), y = value(b);
      return (typeof x === "string" ? x.localeCompare(y, "zh-CN") : x - y) * sort.dir;
    });
    const table = $("kpis-table");
    table.tHead.replaceChildren(el("tr", {}, ...COLUMNS.map(([key, label]) => el("th", { scope: "col", text: label, dataset: { key },
      "aria-sort": key === sort.key ? (sort.dir > 0 ? "ascending" : "descending") : "none",
      onclick: () => { sort = { key, dir: key === sort.key ? -sort.dir : -1 }; renderKpis(); } }))));
    table.tBodies[0].replaceChildren(...rows.map((r) => el("tr", {}, ...COLUMNS.map(([key, , get, fmt], i) => {
      const v = get(r);
      if (i === 0) return el("td", { class: "name" }, el("button", { type: "button", text: v, onclick: () => drill(r) }));
      return el("td", { text: v === null || v === undefined ? "—" : fmt ? fmt(v) : String(v) });
    }))));
  }
  function drill(r) {
    $("drill").classList.remove("hidden");
    $("drill-title").textContent = r.agent + " 的明细";
    const dist = r.csat.distribution;
    const items = [
      ["接待会话", r.conversations + " 个" + (r.conversation_ids.length ? "（" + r.conversation_ids.join("、") + "）" : "")],
      ["首次响应", "中位数 " + duration(r.first_response_s.p50) + "，P90 " + duration(r.first_response_s.p90) + "，共 " + r.first_response_s.count + " 次"],
      ["处理时长", "平均 " + duration(r.handling_s.avg)],
      ["满意度分布", [5, 4, 3, 2, 1].map((n) => n + "分 " + (dist[String(n)] || 0)).join(" · ")],
      ["出勤", "排班 " + r.attendance.shifts + " 次，在线 " + r.attendance.online_hours + " 小时 / 计划 " + r.attendance.scheduled_hours + " 小时"],
      ["质检", (r.qa.average === null ? "—" : r.qa.average + " 分") + "，" + r.qa.count + " 个会话，待复核 " + r.qa.flagged],
    ];
    $("drill-body").replaceChildren(...items.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  }
  async function exportXlsx() {
    const resp = await fetch("/api/v1/reports/agents" + kpiRange() + "&format=xlsx", { headers: { Authorization: "Bearer " + token } });
    if (!resp.ok) throw new Error(resp.status + " " + resp.statusText);
    const blob = await resp.blob();
    const name = /filename="([^"]+)"/.exec(resp.headers.get("Content-Disposition") || "");
    const link = el("a", { href: URL.createObjectURL(blob), download: name ? name[1] : "kefu-agents.xlsx" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  // --- 质检 -----------------------------------------------------------------------------------------
  $("q-load").addEventListener("click", () => loadQa().catch(fail));
  async function loadQa() {
    const q = "?from=" + $("q-from").value + "&to=" + $("q-to").value + ($("q-flagged").checked ? "&flagged=1" : "");
    const data = await api("GET", "/api/v1/qa" + q, token);
    $("qa-table").tBodies[0].replaceChildren(...(data.results.length ? data.results.map((r) => el("tr", { dataset: { conversation: r.conversation_id } },
      el("td", {}, el("button", { type: "button", text: "#" + r.conversation_id, onclick: () => openResult(r.conversation_id) })),
      el("td", { text: r.agent || "—" }), el("td", { text: r.score + " / " + r.max_score }),
      el("td", { text: r.hits.map((h) => h.name).filter((v, i, a) => a.indexOf(v) === i).join("、") || "—" }),
      el("td", { text: r.review ? REVIEW[r.review] : "—" })))
      : [el("tr", {}, el("td", { colspan: "5", class: "empty-note", text: "没有需要复核的会话" }))]));
    done("质检结果已更新");
  }
  function highlighted(text, hits) {
    const parts = [];
    let at = 0;
    for (const h of hits.filter((x) => x.end > x.start).sort((a, b) => a.start - b.start)) {
      if (h.start < at) continue;
      parts.push(text.slice(at, h.start), el("mark", { class: "qa-hit", title: h.name + (h.suggestion ? "：建议 " + h.suggestion : ""), text: text.slice(h.start, h.end) }));
      at = h.end;
    }
    parts.push(text.slice(at));
    return parts;
  }
  async function openResult(id) {
    const r = await api("GET", "/api/v1/qa/" + id, token);
    openQa = id;
    $("qa-detail").classList.remove("hidden");
    $("qa-detail-title").textContent = "会话 #" + id + " · " + (r.agent || "") + " · " + r.score + " 分" + (r.review ? " · " + REVIEW[r.review] : "");
    const WHO = { customer: "客户", agent: "客服", bot: "智能客服", system: "系统" };
    $("qa-messages").replaceChildren(...r.messages.map((m) => {
      const hits = r.hits.filter((h) => h.message_index === m.index);
      return el("div", { class: "m " + m.sender + (hits.length ? " hit" : "") },
        el("div", { class: "who", text: WHO[m.sender] || m.sender }),
        el("div", { class: "text" }, ...highlighted(m.text, hits)),
        ...hits.map((h) => el("div", { class: "qa-note", text: "⚠ " + h.name + (h.text && h.end === h.start ? "（" + h.text + "）" : "") + (h.suggestion ? " — 建议：" + h.suggestion : "") })));
    }));
    $("review-form").classList.toggle("hidden", r.review !== "open");
    $("review-result").textContent = r.review_note ? "复核意见：" + r.review_note : "";
  }
  async function review(action) {
    const note = $("review-note").value.trim();
    if (!note) { $("review-result").textContent = "请先填写复核意见"; return; }
    try {
      await api("POST", "/api/v1/qa/" + openQa + "/review", token, { action, note });
      $("review-result").textContent = action === "confirm" ? "已确认" : "已驳回";
      await openResult(openQa);
      await loadQa();
    } catch (e) { $("review-result").textContent = "提交失败：" + e.message; }
  }
  $("confirm").addEventListener("click", () => review("confirm"));
  $("dismiss").addEventListener("click", () => review("dismiss"));

  if (token) api("GET", "/api/v1/qa?flagged=1", token).then(enter, () => sessionStorage.removeItem(TOKEN_KEY));
})();
