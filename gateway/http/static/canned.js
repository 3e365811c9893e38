/* Canned replies in the agent console, apart from agent.js: filling placeholders (the known ones by the
   server, the rest asked for in a small inline form) and the 管理快捷回复 dialog (list, add, edit, delete).
   agent.js calls window.kefu.canned.fill(); a change here fires "kefu:canned-changed" on document. */
"use strict";
(function () {
  const { el, api } = window.kefu;
  const TOKEN_KEY = "kefu.agentToken";
  const LABELS = {
    customer_name: "客户昵称", agent_name: "客服名字", order_id: "订单号", group: "技能组",
    shop_name: "店铺名称", date: "日期", service_hours: "人工客服服务时间",
  };
  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";
  const label = (name) => LABELS[name] || name;

  // --- filling -------------------------------------------------------------------------------------
  /** The canned reply's text for this conversation, every placeholder filled; null when the agent cancels. */
  async function fill(item, conversationId) {
    const body = conversationId !== null && conversationId !== undefined ? { conversation_id: conversationId } : {};
    let rendered;
    try { rendered = await api("POST", "/api/v1/canned/" + item.id + "/render", token(), body); }
    catch (e) { rendered = { text: item.text, missing: item.placeholders || [], complete: false }; }
    if (rendered.complete || !rendered.missing.length) return rendered.text;
    const values = await ask(rendered.missing, item.title);
    if (!values) return null;
    const done = await api("POST", "/api/v1/canned/" + item.id + "/render", token(), { ...body, values });
    return done.complete ? done.text : fill(item, conversationId);
  }

  /** An inline form above the reply box asking for `names`; resolves to {name: value} or null (取消). */
  function ask(names, title) {
    const form = document.getElementById("reply-form");
    const old = document.getElementById("canned-fill");
    if (old) old.remove();
    return new Promise((resolve) => {
      const inputs = names.map((name) => el("input", { type: "text", id: "canned-fill-" + name, maxlength: "200",
        required: true, "data-name": name, placeholder: "请输入" + label(name) }));
      const error = el("span", { class: "error", role: "alert" });
      const finish = (values) => { box.remove(); resolve(values); };
      const submit = () => {
        const values = {};
        for (const input of inputs) {
          if (!input.value.trim()) { error.textContent = "请填写" + label(input.dataset.name); input.focus(); return; }
          values[input.dataset.name] = input.value.trim();
        }
        finish(values);
      };
      const box = el("div", { id: "canned-fill", class: "canned-fill", role: "group", "aria-label": "填写快捷回复「" + title + "」" },
        el("div", { class: "muted small", text: "快捷回复「" + title + "」还需要填写：" }),
        ...inputs.map((input) => el("label", { for: input.id }, el("span", { text: label(input.dataset.name) }), input)),
        el("div", { class: "dialog-actions" }, error,
          el("button", { type: "button", text: "取消", onclick: () => finish(null) }),
          el("button", { type: "button", class: "primary", text: "填入回复", onclick: submit })));
      box.addEventListener("keydown", (e) => {
        if (e.key === "Enter" && !e.isComposing) { e.preventDefault(); e.stopPropagation(); submit(); }
        else if (e.key === "Escape") { e.preventDefault(); finish(null); }
      });
      form.prepend(box);
      inputs[0].focus();
    });
  }

  // --- managing ------------------------------------------------------------------------------------
  let me = null;
  let editing = null; // the reply being edited, or null for a new one
  const dialog = el("dialog", { id: "canned-dialog", class: "canned-dialog", "aria-labelledby": "canned-dialog-title" });
  const list = el("ul", { class: "canned-list", "aria-label": "快捷回复列表" });
  const fTitle = el("input", { type: "text", id: "canned-title", maxlength: "64", required: true, placeholder: "例如：退款进度" });
  const fText = el("textarea", { id: "canned-text", rows: "3", maxlength: "2000", required: true,
    placeholder: "例如：{customer_name}您好，您的退款已提交……" });
  const fGroup = el("select", { id: "canned-group" });
  const fError = el("p", { class: "error", role: "alert" });
  const formTitle = el("h3", { text: "新增快捷回复" });
  const save = el("button", { type: "submit", class: "primary", text: "保存" });
  const cancelEdit = el("button", { type: "button", class: "hidden", text: "取消编辑", onclick: () => edit(null) });
  dialog.append(
    el("h2", { id: "canned-dialog-title", text: "管理快捷回复" }),
    list,
    el("form", { id: "canned-form", onsubmit: onSave }, formTitle,
      el("label", { for: "canned-title", text: "标题" }), fTitle,
      el("label", { for: "canned-text", text: "内容" }), fText,
      el("p", { class: "muted small", text: "可用占位符：" + Object.keys(LABELS).map((k) => "{" + k + "}" + label(k)).join("、") +
        "。发送时自动填写已知内容，其余会提示您填写。" }),
      el("label", { for: "canned-group", text: "适用范围" }), fGroup,
      fError,
      el("div", { class: "dialog-actions" }, cancelEdit,
        el("button", { type: "button", text: "关闭", onclick: () => dialog.close() }), save)));
  document.body.append(dialog);

  const opener = el("button", { type: "button", id: "canned-manage", text: "快捷回复", title: "管理快捷回复", onclick: open });
  const signout = document.getElementById("signout");
  if (signout) signout.before(opener);

  async function open() {
    me = await api("GET", "/api/v1/me", token());
    const everything = me.role === "supervisor" || me.role === "admin";
    fGroup.replaceChildren(...(everything ? [el("option", { value: "", text: "所有技能组（共用）" })] : []),
      ...me.groups.map((g) => el("option", { value: g, text: g })));
    edit(null);
    await reload();
    dialog.showModal();
  }

  async function reload() {
    const rows = (await api("GET", "/api/v1/canned", token())).canned;
    list.replaceChildren(...(rows.length ? rows.map((c) => el("li", { dataset: { id: c.id } },
      el("div", { class: "row" },
        el("strong", { text: c.title }),
        el("span", { class: "badge", text: c.group || "共用" }),
        el("span", { class: "spacer" }),
        c.editable ? el("button", { type: "button", text: "编辑", "aria-label": "编辑 " + c.title, onclick: () => edit(c) }) : null,
        c.editable ? el("button", { type: "button", class: "danger", text: "删除", "aria-label": "删除 " + c.title, onclick: () => remove(c) }) : null),
      el("div", { class: "x", text: c.text })))
      : [el("li", { class: "muted", text: "还没有快捷回复" })]));
  }

  function edit(item) {
    editing = item;
    formTitle.textContent = item ? "编辑「" + item.title + "」" : "新增快捷回复";
    fTitle.value = item ? item.title : "";
    fText.value = item ? item.text : "";
    fGroup.value = item ? item.group || "" : fGroup.options.length ? fGroup.options[0].value : "";
    cancelEdit.classList.toggle("hidden", !item);
    fError.textContent = "";
  }

  async function onSave(event) {
    event.preventDefault();
    const body = { title: fTitle.value.trim(), text: fText.value.trim(), group: fGroup.value || null };
    try {
      if (editing) await api("PUT", "/api/v1/canned/" + editing.id, token(), body);
      else await api("POST", "/api/v1/canned", token(), body);
    } catch (e) {
      fError.textContent = "保存失败：" + e.message;
      return;
    }
    edit(null);
    await reload();
    document.dispatchEvent(new CustomEvent("kefu:canned-changed"));
  }

  async function remove(item) {
    if (!confirm("删除快捷回复「" + item.title + "」？")) return;
    try { await api("DELETE", "/api/v1/canned/" + item.id, token()); }
    catch (e) { fError.textContent = "删除失败：" + e.message; return; }
    if (editing && editing.id === item.id) edit(null);
    await reload();
    document.dispatchEvent(new CustomEvent("kefu:canned-changed"));
  }

  window.kefu.canned = { fill };
})();
