/* FAQ 编辑 on the admin page: pick an entry, edit it with live checks (the `kefu kb check` rules, on the
   server, in Chinese), preview how test questions would be answered, save to the YAML file (comments kept)
   and the bot uses it at once. A file changed by someone else meanwhile → 409, reopen the entry.
   新建条目 appends an entry to a chosen file with the same checks (POST instead of PUT). */
"use strict";
(function () {
  const { el, api } = window.kefu;
  const $ = (id) => document.getElementById(id);
  const DECISIONS = { answer: "直接回答", suggest: "给出猜测", handoff: "转人工", smalltalk: "寒暄" };
  let token = "";
  let files = [];
  let open = null; // { file, id, version, entry, isNew }
  let checkTimer = null;
  let lastCheck = 0;

  document.addEventListener("kefu:admin-ready", (e) => { token = e.detail.token; });
  document.addEventListener("kefu:admin-tab", (e) => { if (e.detail.tab === "faq-editor") loadList().catch(showError); });

  function showError(e) { $("faq-status").textContent = e.message; }

  async function loadList() {
    files = (await api("GET", "/admin/api/faq", token)).files;
    renderList();
  }

  function renderList() {
    const needle = $("faq-filter").value.trim().toLowerCase();
    const items = [];
    for (const f of files) {
      const entries = f.entries.filter((e) => !needle || e.id.toLowerCase().includes(needle) || String(e.question || "").toLowerCase().includes(needle));
      if (!entries.length) continue;
      items.push(el("li", { class: "file", text: f.name }));
      for (const e of entries) {
        const current = open && open.file === f.name && open.id === e.id;
        const li = el("li", { tabindex: "0", "aria-current": current ? "true" : "false", dataset: { id: e.id, file: f.name } },
          String(e.question || ""), el("span", { class: "id", text: e.id + (e.category ? " · " + e.category : "") }));
        li.addEventListener("click", () => openEntry(f.name, e.id));
        li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openEntry(f.name, e.id); });
        items.push(li);
      }
    }
    $("faq-list").replaceChildren(...(items.length ? items : [el("li", { class: "file", text: "没有匹配的条目" })]));
  }
  $("faq-filter").addEventListener("input", renderList);

  const lines = (text) => text.split("\n").map((s) => s.trim()).filter(Boolean);
  const words = (text) => text.split(/[,，、]/).map((s) => s.trim()).filter(Boolean);
  const answerOf = (entry) => (entry.answer && typeof entry.answer === "object" ? entry.answer.default || "" : entry.answer || "");

  function showForm(isNew, where) {
    $("faq-mode").textContent = isNew ? "新建条目" : "编辑条目";
    $("faq-where").textContent = where;
    $("faq-new-fields").classList.toggle("hidden", !isNew);
    $("faq-empty").classList.add("hidden");
    $("faq-form").classList.remove("hidden");
    $("faq-problems").replaceChildren();
    $("faq-problems").className = "faq-problems";
    $("faq-preview").replaceChildren();
    $("faq-status").textContent = "";
  }

  async function openEntry(file, id) {
    const data = await api("GET", "/admin/api/faq/entry?file=" + encodeURIComponent(file) + "&id=" + encodeURIComponent(id), token);
    open = { file, id, version: data.version, entry: data.entry, isNew: false };
    fill(data.entry);
    showForm(false, file + " · " + id);
    if (!$("faq-tests").value.trim()) $("faq-tests").value = (data.entry.similar || [])[0] || data.entry.question || "";
    renderList();
  }

  /** An empty form for a new entry, written into the chosen file (the open entry's file by default). */
  async function newEntry() {
    await loadList(); // the files' current versions (and the list, if the tab was opened a moment ago)
    if (!files.length) { $("faq-status").textContent = "没有可写的 FAQ 文件。"; return; }
    const file = open && files.some((f) => f.name === open.file) ? open.file : files[0].name;
    $("faq-file").replaceChildren(...files.map((f) => el("option", { value: f.name, text: f.name })));
    $("faq-file").value = file;
    $("faq-id").value = "";
    // Used when the admin leaves the id empty: short, unique enough, and valid for `kefu kb check`.
    const autoId = "faq-" + Math.random().toString(16).slice(2, 10);
    open = { file, id: autoId, autoId, version: files.find((f) => f.name === file).version, entry: {}, isNew: true };
    fill({});
    $("faq-tests").value = "";
    showForm(true, "");
    renderList();
    $("faq-question").focus();
  }
  $("faq-new").addEventListener("click", () => newEntry().catch(showError));
  $("faq-file").addEventListener("change", () => {
    if (!open || !open.isNew) return;
    open.file = $("faq-file").value;
    open.version = files.find((f) => f.name === open.file).version;
    scheduleCheck();
  });
  $("faq-id").addEventListener("input", () => {
    if (!open || !open.isNew) return;
    open.id = $("faq-id").value.trim() || open.autoId;
    scheduleCheck();
  });

  function fill(entry) {
    $("faq-question").value = entry.question || "";
    $("faq-similar").value = (entry.similar || []).join("\n");
    $("faq-answer").value = answerOf(entry);
    $("faq-category").value = entry.category || "";
    $("faq-keywords").value = (entry.keywords || []).join(", ");
    $("faq-enabled").checked = entry.enabled !== false;
  }

  /** Only the fields that differ from the file: the saved diff stays as small as the edit. */
  function changes() {
    const e = open.entry;
    const now = {
      question: $("faq-question").value.trim(), similar: lines($("faq-similar").value), answer: $("faq-answer").value.trim(),
      category: $("faq-category").value.trim(), keywords: words($("faq-keywords").value), enabled: $("faq-enabled").checked,
    };
    const was = { question: e.question || "", similar: e.similar || [], answer: answerOf(e), category: e.category || "",
      keywords: e.keywords || [], enabled: e.enabled !== false };
    const out = {};
    for (const key of Object.keys(now)) if (JSON.stringify(now[key]) !== JSON.stringify(was[key])) out[key] = now[key];
    return out;
  }

  function scheduleCheck() {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(check, 350);
  }
  ["faq-question", "faq-similar", "faq-answer", "faq-category", "faq-keywords", "faq-tests"].forEach((id) => $(id).addEventListener("input", scheduleCheck));
  $("faq-enabled").addEventListener("change", scheduleCheck);

  async function check() {
    if (!open) return;
    const mine = ++lastCheck;
    const body = { file: open.file, id: open.id, entry: changes(), questions: lines($("faq-tests").value), new: open.isNew };
    let result;
    try { result = await api("POST", "/admin/api/faq/check", token, body); } catch (e) { showProblems([e.message]); return; }
    if (mine !== lastCheck) return; // typed on meanwhile: a newer check renders
    showProblems(result.problems.map((p) => p.text), result.ok);
    renderPreview(result.preview);
  }

  function showProblems(texts, ok) {
    const box = $("faq-problems");
    box.className = "faq-problems" + (ok && !texts.length ? " ok" : "");
    box.replaceChildren(...(texts.length ? [el("ul", {}, texts.map((t) => el("li", { text: t })))] : ok ? ["检查通过，可以保存。"] : []));
  }

  function describe(a) {
    if (!a) return "知识库有错误，无法回答";
    if (a.decision === "answer") return "直接回答（" + a.entry_id + "，置信度 " + Math.round(a.confidence * 100) + "%）：" + a.answer;
    if (a.decision === "suggest") return "给出猜测：" + a.suggestions.join(" / ");
    return DECISIONS[a.decision] || a.decision;
  }

  function renderPreview(rows) {
    $("faq-preview").replaceChildren(...rows.map((r) => {
      const now = describe(r.now), after = describe(r.after);
      return el("div", { class: "prow" }, el("div", { class: "pq", text: "试问：" + r.question }),
        el("div", { class: "pa", text: "现在：" + now }),
        el("div", { class: "pa" + (now !== after ? " changed" : ""), text: "保存后：" + after }));
    }));
  }

  $("faq-reset").addEventListener("click", () => { if (open) { fill(open.entry); check(); } });

  $("faq-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!open) return;
    const entry = changes();
    if (!Object.keys(entry).length) { $("faq-status").textContent = open.isNew ? "请先填写标准问题和答案。" : "没有修改。"; return; }
    $("faq-save").disabled = true;
    $("faq-status").textContent = "正在保存…";
    try {
      const body = { file: open.file, id: open.id, entry, version: open.version };
      const saved = await api(open.isNew ? "POST" : "PUT", "/admin/api/faq/entry", token, body);
      const done = (open.isNew ? "已新建条目 " + open.id + "，写入 " : "已保存到 ") + saved.file +
        "，机器人已使用新版本 " + (saved.reload.version || "");
      const keep = open;
      await loadList();
      await openEntry(keep.file, keep.id);
      $("faq-status").textContent = done;
    } catch (e) {
      if (e.status === 409) $("faq-status").textContent = "该文件已被其他人修改，请点左侧条目重新打开后再编辑。";
      else if (e.status === 422) { $("faq-status").textContent = "有错误，未保存。"; check(); }
      else $("faq-status").textContent = "保存失败：" + e.message;
    } finally {
      $("faq-save").disabled = false;
    }
  });
})();
