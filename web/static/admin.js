// admin.js: the operator console, /admin.
//
// `state` holds the token, the sales, the selected sale and its summary;
// handlers change it and call render(). The selected sale's summary is polled
// every second; the list every five.
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
    busy: false,
  };

  let summaryTimer = 0;
  let summaryGeneration = 0; // answers for a sale no longer selected are dropped
  let listTimer = 0;

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
      if (!document.hidden) await loadSales();
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
    history.replaceState(null, "", "#" + encodeURIComponent(id));
    fillControls();
    render();
    summaryGeneration++;
    clearTimeout(summaryTimer);
    pollSummary(summaryGeneration);
  }

  // fillControls copies the sale's rate and max_active into the inputs; only on
  // selection and after Apply, so a poll never overwrites what the operator types.
  function fillControls() {
    const s = selectedSale();
    $("rate").value = s && s.admission_rate != null ? s.admission_rate : "";
    $("max-active").value = s && s.max_active != null ? s.max_active : "";
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

  if (state.token) {
    state.busy = true; // checking the stored token
    tryToken(state.token);
  } else {
    render();
  }
})();
