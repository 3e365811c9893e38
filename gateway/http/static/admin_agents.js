/* 客服管理 on the admin page: add agents (token shown once), groups, capacity, role, disable/enable. */
"use strict";
(function () {
  const { el, api } = window.kefu;
  const $ = (id) => document.getElementById(id);
  const ROLES = { agent: "客服", supervisor: "主管", admin: "管理员" };
  const PRESENCE = { online: ["在线", "ok"], away: ["忙碌", "warn"], offline: ["离线", "off"] };
  let token = "";
  let groups = [];

  document.addEventListener("kefu:admin-ready", (e) => { token = e.detail.token; });
  document.addEventListener("kefu:admin-tab", (e) => { if (e.detail.tab === "agents-admin") load().catch(fail); });

  function fail(e) { $("agent-error").textContent = e.message; }

  async function load() {
    const data = await api("GET", "/admin/api/agents", token);
    groups = data.groups;
    // Reloaded after every change in the table: the groups already ticked for the agent being added stay ticked.
    const ticked = new Set([...document.querySelectorAll("input[name=new-group]:checked")].map((i) => i.value));
    $("agent-groups").replaceChildren(...(groups.length ? groups.map((g) => el("label", {},
      el("input", { type: "checkbox", value: g, name: "new-group", checked: ticked.has(g) }), g)) : [el("span", { class: "muted", text: "未配置技能组" })]));
    const body = $("agent-table").tBodies[0];
    body.replaceChildren(...(data.agents.length ? data.agents.map(row) :
      [el("tr", {}, el("td", { colspan: "6", class: "empty-note", text: "还没有客服，用上面的表单添加第一位。" }))]));
  }

  function row(a) {
    const [label, cls] = a.enabled ? (PRESENCE[a.presence] || [a.presence, "off"]) : ["已停用", "off"];
    const role = el("select", { "aria-label": a.name + " 的角色" }, Object.entries(ROLES).map(([v, t]) =>
      el("option", { value: v, text: t, selected: v === a.role })));
    role.addEventListener("change", () => change(a, { role: role.value }));
    const picks = el("span", { class: "gp" }, groups.map((g) => {
      const box = el("input", { type: "checkbox", value: g, checked: a.groups.includes(g), "aria-label": a.name + " 技能组 " + g });
      box.addEventListener("change", () => change(a, { groups: [...picks.querySelectorAll("input:checked")].map((i) => i.value) }));
      return el("label", {}, box, g);
    }));
    const max = el("input", { type: "number", min: "0", max: "50", value: String(a.max_chats), "aria-label": a.name + " 同时接待上限" });
    max.addEventListener("change", () => change(a, { max_chats: Number(max.value) }));
    return el("tr", { class: a.enabled ? "" : "disabled", dataset: { id: String(a.id) } },
      el("td", {}, el("strong", { text: a.name }), el("div", { class: "groups", text: "编号 " + a.id + " · 接待中 " + a.load })),
      el("td", {}, role), el("td", {}, picks), el("td", {}, max),
      el("td", {}, el("span", { class: "badge " + cls, text: label })),
      el("td", {},
        el("button", { type: "button", class: a.enabled ? "danger" : "", text: a.enabled ? "停用" : "启用",
          onclick: () => change(a, { enabled: !a.enabled }) }), " ",
        el("button", { type: "button", text: "重置令牌", onclick: () => resetToken(a) })));
  }

  async function change(agent, body) {
    $("agent-error").textContent = "";
    if (body.enabled === false && !confirm("停用 " + agent.name + "？停用后其令牌立即失效。")) return load();
    try { await api("PATCH", "/admin/api/agents/" + agent.id, token, body); } catch (e) { fail(e); }
    await load();
  }

  async function resetToken(agent) {
    if (!confirm("为 " + agent.name + " 生成新令牌？旧令牌会立即失效。")) return;
    try { showToken(agent.name, (await api("POST", "/admin/api/agents/" + agent.id + "/token", token)).token); } catch (e) { fail(e); }
  }

  function showToken(name, plain) {
    const box = $("agent-token");
    box.replaceChildren("客服 " + name + " 的登录令牌（只显示这一次，请复制后交给本人，在 /agent 页面登录）：",
      el("code", { text: plain }));
    box.classList.remove("hidden");
  }

  $("agent-add").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("agent-error").textContent = "";
    const body = {
      name: $("agent-name").value.trim(), role: $("agent-role").value, max_chats: Number($("agent-max").value),
      groups: [...document.querySelectorAll("input[name=new-group]:checked")].map((i) => i.value),
    };
    try {
      const created = await api("POST", "/admin/api/agents", token, body);
      showToken(created.agent.name, created.token);
      $("agent-name").value = "";
      document.querySelectorAll("input[name=new-group]").forEach((i) => { i.checked = false; }); // added: the form starts over
      await load();
    } catch (e) { fail(e); }
  });
})();
