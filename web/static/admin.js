// admin.js: the operator console, /admin.
//
// `state` holds the token, the sales, the selected sale and its summary;
// handlers change it and call render(). The selected sale's summary is polled
// every second, its sources every three; the list and the bans every five.
"use strict";

(() => {
  const { $, request, store, setText, show, formatNumber, formatTime, stateLabel } = api;

  const tokenKey = "fs_admin_token";
  const summaryFields = [
    "stock_total", "sold", "held", "remaining", "queue_length", "active",
    "admitted_total", "skipped_total", "tickets_expired_total", "orders_total",
  ];
  const finalStates = ["closed", "sold_out"];

  const state = {
    token: store.get(tokenKey),
    signedIn: false,
    error: "",
    sales: [],
    salesKey: "", // the list as last drawn, so the table is rebuilt only on change
    selected: "", // sale id
    summary: null,
    summaryError: "",
    controlError: "",
    controlStatus: "",
    createError: "",
    createStatus: "",
    defencesStatus: "",
    messageError: "",
    messageStatus: "",
    sources: null, // the selected sale's, null until read
    sourcesKey: "",
    sourcesError: "",
    sourcesStatus: "",
    bans: null,
    bansKey: "",
    bansError: "",
    bansStatus: "",
    busy: false,
  };

  let summaryTimer = 0;
  let summaryGeneration = 0; // answers for a sale no longer selected are dropped
  let listTimer = 0;
  let sourcesTimer = 0;

  // admin calls the operator API with the admin token. A 401 signs out.
  async function admin(method, path, body) {
    try {
      return await request(method, "/api/v1/admin" + path, { token: state.token, body });
    } catch (err) {
      if (err.status === 401 && state.signedIn) signOut("The admin token was not accepted. Sign in again.");
      throw err;
    }
  }

  // --- signing in ------------------------------------------------------------

  async function signIn(ev) {
    ev.preventDefault();
    const token = $("admin-token").value.trim();
    if (!token) return;
    await tryToken(token);
  }

  async function tryToken(token) {
    state.busy = true;
    state.error = "";
    render();
    try {
      const res = await request("GET", "/api/v1/admin/sales", { token });
      state.token = token;
      store.set(tokenKey, token);
      state.signedIn = true;
      setSales(res.sales);
      $("admin-token").value = "";
      scheduleList();
      loadBans();
      const wanted = decodeURIComponent(location.hash.slice(1));
      if (wanted && state.sales.some((s) => s.id === wanted)) select(wanted);
    } catch (err) {
      state.error = err.status === 401 ? "Wrong token." : "Could not sign in: " + err.message;
      if (err.status === 401) store.remove(tokenKey);
    }
    state.busy = false;
    render();
  }

  function signOut(message) {
    store.remove(tokenKey);
    state.token = null;
    state.signedIn = false;
    state.selected = "";
    state.summary = null;
    state.error = message || "";
    clearTimeout(summaryTimer);
    clearTimeout(listTimer);
    clearTimeout(sourcesTimer);
    render();
  }

  // --- the list ----------------------------------------------------------------

  function setSales(sales) {
    state.sales = Array.isArray(sales) ? sales : [];
  }

  async function loadSales() {
    try {
      setSales((await admin("GET", "/sales")).sales);
      state.error = "";
    } catch (err) {
      if (err.status !== 401) state.error = "Could not load the sales: " + err.message;
    }
    render();
  }

  function scheduleList() {
    clearTimeout(listTimer);
    listTimer = setTimeout(async () => {
      if (!state.signedIn) return;
      if (!document.hidden) await Promise.all([loadSales(), loadBans()]);
      scheduleList();
    }, 5000);
  }

  const selectedSale = () => state.sales.find((s) => s.id === state.selected) || null;

  function replaceSale(sale) {
    const i = state.sales.findIndex((s) => s.id === sale.id);
    if (i >= 0) state.sales[i] = sale;
    else state.sales.push(sale);
  }

  // --- the selected sale ---------------------------------------------------------

  function select(id) {
    state.selected = id;
    state.summary = null;
    state.summaryError = "";
    state.controlError = "";
    state.controlStatus = "";
    state.defencesStatus = "";
    state.messageError = "";
    state.messageStatus = "";
    state.sources = null;
    state.sourcesError = "";
    state.sourcesStatus = "";
    history.replaceState(null, "", "#" + encodeURIComponent(id));
    fillControls();
    fillDefences();
    clearFieldErrors($("defences"), "defences-error");
    $("message-text").value = "";
    render();
    summaryGeneration++;
    clearTimeout(summaryTimer);
    clearTimeout(sourcesTimer);
    pollSummary(summaryGeneration);
    pollSources(summaryGeneration);
  }

  // fillControls copies the sale's rate and max_active into the inputs; only on
  // selection and after Apply, so a poll never overwrites what the operator types.
  function fillControls() {
    const s = selectedSale();
    $("rate").value = s && s.admission_rate != null ? s.admission_rate : "";
    $("max-active").value = s && s.max_active != null ? s.max_active : "";
  }

  // fillDefences copies the sale's join defences into their fields (on
  // selection and after Save, as fillControls).
  function fillDefences() {
    const s = selectedSale();
    $("join-challenge").value = (s && s.join_challenge) || "none";
    $("pow-difficulty").value = s && s.pow_difficulty != null ? s.pow_difficulty : "";
    $("max-users-per-ip").value = s && s.max_users_per_ip != null ? s.max_users_per_ip : "";
  }

  async function pollSources(generation) {
    if (generation !== summaryGeneration || !state.signedIn) return;
    if (!document.hidden) await loadSources(generation);
    if (generation === summaryGeneration && state.signedIn) {
      sourcesTimer = setTimeout(() => pollSources(generation), 3000);
    }
  }

  async function loadSources(generation) {
    try {
      const res = await admin("GET", "/sales/" + encodeURIComponent(state.selected) + "/sources");
      if (generation !== summaryGeneration) return;
      state.sources = Array.isArray(res.sources) ? res.sources : [];
      state.sourcesError = "";
    } catch (err) {
      if (generation !== summaryGeneration) return;
      state.sourcesError = "Sources unavailable: " + err.message;
    }
    render();
  }

  async function pollSummary(generation) {
    if (generation !== summaryGeneration || !state.signedIn) return;
    const id = state.selected;
    try {
      const summary = await admin("GET", "/sales/" + encodeURIComponent(id) + "/summary");
      if (generation !== summaryGeneration) return;
      state.summary = summary;
      state.summaryError = "";
    } catch (err) {
      if (generation !== summaryGeneration) return;
      state.summaryError = "Summary unavailable: " + err.message;
    }
    render();
    if (state.signedIn) summaryTimer = setTimeout(() => pollSummary(generation), 1000);
  }

  async function patch(body, done) {
    const id = state.selected;
    state.controlError = "";
    state.controlStatus = "";
    state.busy = true;
    render();
    try {
      const sale = await admin("PATCH", "/sales/" + encodeURIComponent(id), body);
      replaceSale(sale);
      if (state.summary && state.selected === sale.id) state.summary.state = sale.state; // until the next poll
      state.controlStatus = done + " " + formatTime(new Date().toISOString()) + ".";
      if ("admission_rate" in body || "max_active" in body) fillControls();
    } catch (err) {
      state.controlError = err.message;
    }
    state.busy = false;
    render();
  }

  function apply(ev) {
    ev.preventDefault();
    const body = {};
    const rate = $("rate").value.trim();
    const max = $("max-active").value.trim();
    if (rate !== "") body.admission_rate = Number(rate);
    if (max !== "") body.max_active = Number(max);
    if (Object.keys(body).length === 0) {
      state.controlError = "Enter an admission rate or a max active count.";
      render();
      return;
    }
    patch(body, "Applied");
  }

  function setState(next) {
    if (next === "closed") {
      const ok = confirm("Close sale " + state.selected + "? Admission and checkout stop for good; this cannot be undone.");
      if (!ok) return;
    }
    const words = { paused: "Paused", open: "Opened", closed: "Closed" };
    patch({ state: next }, words[next]);
  }

  // --- join defences and the message ------------------------------------------------

  async function saveDefences(ev) {
    ev.preventDefault();
    const form = $("defences");
    clearFieldErrors(form, "defences-error");
    const body = { join_challenge: $("join-challenge").value };
    for (const [id, name] of [["pow-difficulty", "pow_difficulty"], ["max-users-per-ip", "max_users_per_ip"]]) {
      const v = $(id).value.trim();
      if (v !== "") body[name] = Number(v);
    }
    const id = state.selected;
    state.defencesStatus = "";
    state.busy = true;
    render();
    try {
      replaceSale(await admin("PATCH", "/sales/" + encodeURIComponent(id), body));
      if (state.selected === id) {
        fillDefences();
        state.defencesStatus = "Saved " + formatTime(new Date().toISOString()) + ".";
      }
    } catch (err) {
      fieldError(form, err.message, "defences-error");
    }
    state.busy = false;
    render();
  }

  async function sendMessage(text) {
    const id = state.selected;
    state.messageError = "";
    state.messageStatus = "";
    state.busy = true;
    render();
    try {
      replaceSale(await admin("POST", "/sales/" + encodeURIComponent(id) + "/message", { text }));
      if (state.selected === id) {
        state.messageStatus = (text ? "Posted " : "Cleared ") + formatTime(new Date().toISOString()) + ".";
        $("message-text").value = "";
      }
    } catch (err) {
      state.messageError = err.message;
    }
    state.busy = false;
    render();
  }

  function postMessage(ev) {
    ev.preventDefault();
    const text = $("message-text").value;
    if (!text.trim()) {
      state.messageError = "Write a message first, or press Clear to take the current one down.";
      state.messageStatus = "";
      render();
      $("message-text").focus();
      return;
    }
    sendMessage(text);
  }

  // --- bans --------------------------------------------------------------------------

  async function loadBans() {
    try {
      const res = await admin("GET", "/bans");
      state.bans = Array.isArray(res.bans) ? res.bans : [];
      state.bansError = "";
    } catch (err) {
      if (err.status !== 401) state.bansError = "Could not load the bans: " + err.message;
    }
    render();
  }

  const banTarget = (b) => (b.user_id != null ? "user " + b.user_id : "address " + b.ip);

  async function banPrefix(prefix) {
    const id = state.selected;
    const ok = confirm("Ban " + prefix + " from sale " + id + "? Every shopper from these addresses is refused at once, " +
      "and their waiting pages close.");
    if (!ok) return;
    state.sourcesStatus = "";
    state.sourcesError = "";
    state.busy = true;
    render();
    try {
      await admin("POST", "/bans", { ip: prefix, sale_id: id, reason: "bot source in the sources table" });
      state.sourcesStatus = "Banned " + prefix + " from this sale.";
    } catch (err) {
      state.sourcesError = "Could not ban " + prefix + ": " + err.message;
    }
    state.busy = false;
    render();
    loadBans();
  }

  async function addBan(ev) {
    ev.preventDefault();
    const form = $("ban-form");
    clearFieldErrors(form, "ban-error");
    const body = {};
    for (const el of form.elements) {
      if (!el.name) continue;
      const v = el.value.trim();
      if (v !== "") body[el.name] = el.type === "number" ? Number(v) : v;
    }
    state.bansStatus = "";
    state.busy = true;
    render();
    try {
      const ban = await admin("POST", "/bans", body);
      form.reset();
      state.bansStatus = "Banned " + banTarget(ban) + ".";
    } catch (err) {
      fieldError(form, err.message, "ban-error");
    }
    state.busy = false;
    render();
    loadBans();
  }

  async function liftBan(ban) {
    if (!confirm("Lift the ban on " + banTarget(ban) + "?")) return;
    state.bansStatus = "";
    state.bansError = "";
    state.busy = true;
    render();
    try {
      await admin("DELETE", "/bans/" + encodeURIComponent(ban.id));
      state.bansStatus = "Lifted the ban on " + banTarget(ban) + ".";
    } catch (err) {
      state.bansError = err.status === 404 ? "That ban was already gone." : "Could not lift the ban: " + err.message;
    }
    state.busy = false;
    render();
    loadBans();
  }

  // fieldError shows a 422 next to the field its message names first (the
  // server's messages start with the field: "pow_difficulty: must be …"),
  // else in the form's error line.
  function fieldError(form, message, generalId) {
    const el = namedField(form, message);
    const note = el && $(el.id + "-error");
    if (!note) {
      setText($(generalId), message);
      show($(generalId), true);
      return;
    }
    setText(note, message);
    show(note, true);
    el.setAttribute("aria-invalid", "true");
    el.setAttribute("aria-describedby", note.id);
    el.focus();
  }

  function namedField(form, message) {
    let found = null;
    let first = Infinity;
    for (const el of form.elements) {
      if (!el.name) continue;
      const m = new RegExp("\\b" + el.name + "\\b").exec(message);
      if (m && m.index < first) {
        first = m.index;
        found = el;
      }
    }
    return found;
  }

  function clearFieldErrors(form, generalId) {
    for (const el of form.elements) {
      if (!el.id) continue;
      const note = $(el.id + "-error");
      if (!note) continue;
      show(note, false);
      el.removeAttribute("aria-invalid");
      el.removeAttribute("aria-describedby");
    }
    show($(generalId), false);
  }

  // --- creating ------------------------------------------------------------------

  // saleBody reads the create form: only filled fields, numbers as numbers,
  // local date-times as RFC 3339 UTC.
  function saleBody(form) {
    const body = {};
    for (const el of form.elements) {
      if (!el.name || el.disabled) continue;
      const v = el.value.trim();
      if (v === "") continue;
      if (el.type === "number") body[el.name] = Number(v);
      else if (el.type === "datetime-local") body[el.name] = toRFC3339(v);
      else if (el.name === "currency") body[el.name] = v.toUpperCase();
      else body[el.name] = v;
    }
    return body;
  }

  // toRFC3339 turns a datetime-local value (the reader's zone) into UTC with Z.
  function toRFC3339(local) {
    const d = new Date(local);
    if (Number.isNaN(d.getTime())) return local; // the server names the field
    return d.toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  async function create(ev) {
    ev.preventDefault();
    const form = $("create-sale");
    clearInvalid(form);
    state.createError = "";
    state.createStatus = "";
    state.busy = true;
    render();
    try {
      const sale = await admin("POST", "/sales", saleBody(form));
      replaceSale(sale);
      form.reset();
      state.createStatus = "Created sale " + sale.id + ".";
      select(sale.id);
    } catch (err) {
      state.createError = err.message;
      markInvalid(form, err.message);
    }
    state.busy = false;
    render();
  }

  // markInvalid flags the field a 422 message names: the one named first
  // ("ends_at must be after starts_at" is about ends_at).
  function markInvalid(form, message) {
    let name = "";
    let first = Infinity;
    for (const el of form.elements) {
      if (!el.name) continue;
      const m = new RegExp("\\b" + el.name + "\\b").exec(message);
      if (m && m.index < first) {
        first = m.index;
        name = el.name;
      }
    }
    if (!name) return;
    const el = form.elements.namedItem(name);
    el.setAttribute("aria-invalid", "true");
    el.setAttribute("aria-errormessage", "create-error");
    if (el.closest("details")) el.closest("details").open = true;
    el.focus();
  }

  function clearInvalid(form) {
    for (const el of form.querySelectorAll("[aria-invalid]")) {
      el.removeAttribute("aria-invalid");
      el.removeAttribute("aria-errormessage");
    }
  }

  // --- rendering --------------------------------------------------------------------

  function render() {
    show($("signin-view"), !state.signedIn);
    show($("console-view"), state.signedIn);
    show($("signout"), state.signedIn);
    setText($("error"), state.error);
    show($("error"), Boolean(state.error));
    $("admin-signin").disabled = state.busy;
    if (!state.signedIn) return;

    renderSales();
    renderDetail();
    renderBans();
    setText($("create-error"), state.createError);
    show($("create-error"), Boolean(state.createError));
    setText($("create-status"), state.createStatus);
    $("create").disabled = state.busy;
  }

  function renderSales() {
    const key = JSON.stringify([state.sales, state.selected]);
    show($("no-sales"), state.sales.length === 0);
    if (key === state.salesKey) return; // unchanged: keep focus where it is
    state.salesKey = key;
    const focused = document.activeElement && document.activeElement.dataset.sale;
    $("sales-body").replaceChildren(...state.sales.map(saleRow));
    if (focused) {
      const again = $("sales-body").querySelector('button[data-sale="' + CSS.escape(focused) + '"]');
      if (again) again.focus();
    }
  }

  function saleRow(sale) {
    const tr = document.createElement("tr");
    const selected = sale.id === state.selected;
    if (selected) tr.className = "selected";

    const button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    button.dataset.sale = sale.id;
    button.textContent = sale.id;
    button.setAttribute("aria-pressed", String(selected));
    button.addEventListener("click", () => select(sale.id));

    const badge = document.createElement("span");
    badge.className = "badge " + (sale.state || "");
    badge.textContent = stateLabel(sale.state);

    tr.append(
      cell(button),
      cell(sale.name),
      cell(badge),
      cell(formatNumber(sale.stock_remaining) + " / " + formatNumber(sale.stock_total), "num"),
      cell(formatNumber(sale.admission_rate), "num"),
      cell(formatNumber(sale.max_active), "num"),
    );
    return tr;
  }

  function cell(content, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.append(content ?? "");
    return td;
  }

  function renderDetail() {
    const sale = selectedSale();
    show($("detail"), Boolean(state.selected));
    if (!state.selected) return;
    renderDefences(sale);
    renderSources();
    setText($("detail-id"), state.selected);
    $("detail-link").href = "/sales/" + encodeURIComponent(state.selected);

    const s = state.summary;
    setText($("summary-error"), state.summaryError);
    show($("summary-error"), Boolean(state.summaryError));
    setText($("summary-state"), stateLabel((s && s.state) || (sale && sale.state)));
    for (const f of summaryFields) setText($("summary-" + f), formatNumber(s && s[f]));
    setText($("summary-mysql-paid"), formatNumber(s && s.mysql && s.mysql.paid));
    setText($("summary-mysql-held"), formatNumber(s && s.mysql && s.mysql.held));
    setText($("summary-as_of"), s && s.as_of ? formatTime(s.as_of) : "—");
    setText($("summary-age"), s && s.as_of ? age(s.as_of) : "—");

    const badge = $("consistent");
    show(badge, Boolean(s));
    const consistent = !s || s.consistent !== false;
    setText(badge, consistent ? "Consistent" : "INCONSISTENT: Redis and MySQL disagree");
    badge.className = "badge " + (consistent ? "ok" : "bad");

    const current = (s && s.state) || (sale && sale.state) || "";
    const final = finalStates.includes(current);
    $("pause").disabled = state.busy || current !== "open";
    $("resume").disabled = state.busy || !(current === "paused" || current === "upcoming");
    setText($("resume"), current === "upcoming" ? "Start now" : "Resume");
    $("close").disabled = state.busy || final;
    $("apply").disabled = state.busy || final;

    setText($("control-error"), state.controlError);
    show($("control-error"), Boolean(state.controlError));
    setText($("control-status"), state.controlStatus);
  }

  function renderDefences(sale) {
    $("save-defences").disabled = state.busy;
    setText($("defences-status"), state.defencesStatus);

    const m = sale && sale.message;
    setText($("message-current"), m && m.text ? "Shown now (since " + formatTime(m.at) + "): “" + m.text + "”" : "No message.");
    $("message-post").disabled = state.busy;
    $("message-clear").disabled = state.busy;
    setText($("message-error"), state.messageError);
    show($("message-error"), Boolean(state.messageError));
    setText($("message-status"), state.messageStatus);
  }

  function renderSources() {
    const list = state.sources || [];
    show($("no-sources"), state.sources !== null && list.length === 0);
    // An empty table is only headers, which may scroll sideways with
    // nothing in it to focus (no keyboard way to scroll): hidden instead.
    show($("sources").parentElement, list.length > 0);
    setText($("sources-error"), state.sourcesError);
    show($("sources-error"), Boolean(state.sourcesError));
    setText($("sources-status"), state.sourcesStatus);
    const key = JSON.stringify(list);
    if (key === state.sourcesKey) return;
    state.sourcesKey = key;
    rebuild($("sources-body"), list.map((src) => {
      const tr = document.createElement("tr");
      const ban = actionButton("Ban this prefix", src.prefix, () => banPrefix(src.prefix));
      ban.className = "danger";
      tr.append(cell(src.prefix), cell(formatNumber(src.users), "num"), cell(formatNumber(src.joins), "num"), cell(ban));
      return tr;
    }));
  }

  function renderBans() {
    const list = state.bans || [];
    show($("no-bans"), state.bans !== null && list.length === 0);
    show($("bans").parentElement, list.length > 0);
    setText($("bans-error"), state.bansError);
    show($("bans-error"), Boolean(state.bansError));
    setText($("bans-status"), state.bansStatus);
    $("ban-add").disabled = state.busy;
    const key = JSON.stringify(list);
    if (key === state.bansKey) return;
    state.bansKey = key;
    rebuild($("bans-body"), list.map((b) => {
      const tr = document.createElement("tr");
      const lift = actionButton("Lift ban", banTarget(b), () => liftBan(b));
      tr.append(
        cell(banTarget(b), "wrap"),
        cell(b.sale_id || "every sale"),
        cell(b.reason || "—", "wrap"),
        cell(formatTime(b.created_at)),
        cell(b.expires_at ? formatTime(b.expires_at) : "until lifted"),
        cell(lift),
      );
      return tr;
    }));
  }

  // actionButton is a row's button: its visible words, and for screen
  // readers the row it acts on ("Ban this prefix 127.0.0.0/24"). It is
  // never disabled (a disabled button drops the keyboard's focus); a click
  // while another call runs does nothing.
  function actionButton(words, what, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.key = words + " " + what;
    b.append(words);
    const hidden = document.createElement("span");
    hidden.className = "visually-hidden";
    hidden.textContent = " " + what;
    b.append(hidden);
    b.addEventListener("click", () => {
      if (!state.busy) onClick();
    });
    return b;
  }

  // rebuild replaces a table body's rows, keeping the focus on the same
  // row's button when it is still there.
  function rebuild(body, rows) {
    const focused = body.contains(document.activeElement) && document.activeElement.dataset.key;
    body.replaceChildren(...rows);
    if (focused) {
      const again = body.querySelector('button[data-key="' + CSS.escape(focused) + '"]');
      if (again) again.focus();
    }
  }

  function age(iso) {
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    return Number.isNaN(s) ? "—" : s < 2 ? "just now" : s + " s ago";
  }

  // --- start ---------------------------------------------------------------------------

  $("admin-signin-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signOut(""));
  $("refresh").addEventListener("click", loadSales);
  $("controls").addEventListener("submit", apply);
  $("pause").addEventListener("click", () => setState("paused"));
  $("resume").addEventListener("click", () => setState("open"));
  $("close").addEventListener("click", () => setState("closed"));
  $("create-sale").addEventListener("submit", create);
  $("defences").addEventListener("submit", saveDefences);
  $("message-form").addEventListener("submit", postMessage);
  $("message-clear").addEventListener("click", () => sendMessage(""));
  $("bans-refresh").addEventListener("click", loadBans);
  $("ban-form").addEventListener("submit", addBan);

  if (state.token) {
    state.busy = true; // checking the stored token
    tryToken(state.token);
  } else {
    render();
  }
})();
