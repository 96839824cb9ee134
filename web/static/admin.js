// admin.js: the operator console, /admin.
//
// `state` holds the token, the sales, the selected sale and its summary;
// handlers change it and call render(). The selected sale's summary and its
// timeline (the server's per-second samples, drawn as the live charts) are
// polled every second, its sources every three; the list and the bans every
// five. "#report/<sale>" shows a sale's report instead: its totals, the
// charts of the whole sale and the orders' CSV.
"use strict";

(() => {
  const { $, request, store, setText, show, formatNumber, formatTime, formatMoney, stateLabel } = api;

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
    // the live charts' data: the selected sale's last 15 minutes
    timeline: { samples: [], marks: [], now: 0 },
    timelineError: "",
    passes: [], // passes made for the selected sale in this visit, newest first
    passStatus: "",
    view: "console", // or "report"
    report: null, // { id, sale, summary, series, error }
    reportCsvStatus: "",
    reportCsvError: "",
    busy: false,
  };

  const liveWindow = 15 * 60; // seconds the live charts show
  const maxPasses = 10; // passes kept on screen

  let summaryTimer = 0;
  let summaryGeneration = 0; // answers for a sale no longer selected are dropped
  let listTimer = 0;
  let sourcesTimer = 0;
  let timelineTimer = 0;
  let reportTimer = 0;

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
      route();
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
    clearTimeout(timelineTimer);
    clearTimeout(reportTimer);
    state.view = "console";
    state.report = null;
    render();
  }

  // route follows the address's hash: "#<sale>" selects a sale in the
  // console, "#report/<sale>" opens its report.
  function route() {
    if (!state.signedIn) return;
    const hash = decodeURIComponent(location.hash.slice(1));
    if (hash.startsWith("report/")) {
      openReport(hash.slice("report/".length));
      return;
    }
    const was = state.view;
    clearTimeout(reportTimer);
    state.view = "console";
    state.report = null;
    if (hash && state.sales.some((s) => s.id === hash) && (hash !== state.selected || was !== "console")) select(hash);
    else render();
    if (was === "report") $("detail-title").scrollIntoView();
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
    state.timeline = { samples: [], marks: [], now: 0 };
    state.timelineError = "";
    state.passes = [];
    state.passStatus = "";
    clearFieldErrors($("pass-form"), "pass-error");
    history.replaceState(null, "", "#" + encodeURIComponent(id));
    fillControls();
    fillDefences();
    clearFieldErrors($("defences"), "defences-error");
    $("message-text").value = "";
    render();
    summaryGeneration++;
    clearTimeout(summaryTimer);
    clearTimeout(sourcesTimer);
    clearTimeout(timelineTimer);
    pollSummary(summaryGeneration);
    pollSources(summaryGeneration);
    pollTimeline(summaryGeneration);
  }

  // fillControls copies the sale's rate and max_active into the inputs; only on
  // selection and after Apply, so a poll never overwrites what the operator types.
  function fillControls() {
    const s = selectedSale();
    $("rate").value = s && s.admission_rate != null ? s.admission_rate : "";
    $("max-active").value = s && s.max_active != null ? s.max_active : "";
    fitSlider(s ? s.admission_rate : 10);
  }

  // fitSlider sets the slider's range around a rate (up to at least twice
  // it), and its thumb on it. Fine steps below 20 per second.
  function fitSlider(rate) {
    const slider = $("rate-slider");
    const r = Number(rate) > 0 ? Number(rate) : 10;
    const top = niceCeil(Math.max(20, r * 2));
    const step = top <= 20 ? 0.1 : 1;
    slider.min = String(step);
    slider.max = String(top);
    slider.step = String(step);
    slider.value = String(Math.min(top, Math.max(step, r)));
    slider.setAttribute("aria-valuetext", formatNumber(r) + " per second");
  }

  function niceCeil(v) {
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  // The slider and the number show one value: moving one moves the other.
  function sliderMoved() {
    const v = Number($("rate-slider").value);
    $("rate").value = String(v);
    $("rate-slider").setAttribute("aria-valuetext", formatNumber(v) + " per second");
  }

  function rateTyped() {
    const v = Number($("rate").value);
    if (!(v > 0)) return;
    const slider = $("rate-slider");
    if (v > Number(slider.max)) fitSlider(v);
    else {
      slider.value = String(v);
      slider.setAttribute("aria-valuetext", formatNumber(v) + " per second");
    }
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

  // --- the live charts --------------------------------------------------------------

  // pollTimeline reads the samples after the last one every second and keeps
  // the last 15 minutes (by the server's clock).
  async function pollTimeline(generation) {
    if (generation !== summaryGeneration || !state.signedIn) return;
    if (!document.hidden && state.view === "console") await loadTimeline(generation);
    if (generation === summaryGeneration && state.signedIn) {
      timelineTimer = setTimeout(() => pollTimeline(generation), 1000);
    }
  }

  async function loadTimeline(generation) {
    const tl = state.timeline;
    const last = tl.samples.length ? tl.samples[tl.samples.length - 1].t : 0;
    const since = last ? last + 1 : Math.floor(Date.now() / 1000) - liveWindow - 60;
    try {
      const res = await admin("GET", "/sales/" + encodeURIComponent(state.selected) + "/timeline?since=" + since);
      if (generation !== summaryGeneration) return;
      const from = res.now - liveWindow;
      const seen = new Set(tl.marks.map(markKey));
      tl.samples = tl.samples.concat(res.samples || []).filter((s) => s.t >= from);
      tl.marks = tl.marks.concat((res.marks || []).filter((m) => !seen.has(markKey(m)))).filter((m) => m.t >= from);
      tl.now = res.now;
      state.timelineError = "";
    } catch (err) {
      if (generation !== summaryGeneration) return;
      state.timelineError = "Charts unavailable: " + err.message;
    }
    render();
  }

  const markKey = (m) => m.t + "|" + m.field + "|" + m.to;

  // chartSpecs are the charts of a sale: what each draws from the samples.
  const chartSpecs = [
    {
      key: "queue", title: "Queue length", unit: "waiting",
      series: [{ name: "In line", className: "s-a", value: (s) => s.queue_length }],
    },
    {
      key: "admissions", title: "Admissions per second", unit: "per second",
      series: [
        { name: "Admitted", className: "s-a", rate: (s) => s.admitted_total },
        { name: "Rate set", className: "s-b", value: (s) => s.admission_rate },
      ],
    },
    {
      key: "active", title: "Active tickets", unit: "tickets",
      series: [{ name: "Active", className: "s-a", value: (s) => s.active }],
    },
    {
      key: "units", title: "Units", unit: "units",
      series: [
        { name: "Sold", className: "s-b", value: (s) => s.sold },
        { name: "Held", className: "s-c", value: (s) => s.held },
        { name: "Remaining", className: "s-a", value: (s) => s.remaining },
      ],
    },
  ];

  // buildCharts makes the figures of chartSpecs in a container, once; ids
  // are prefix + "-" + key (the svg) and + "-numbers" (the text).
  function buildCharts(container, prefix) {
    container.replaceChildren(...chartSpecs.map((spec) => {
      const fig = document.createElement("figure");
      const cap = document.createElement("figcaption");
      const title = document.createElement("strong");
      title.textContent = spec.title;
      const numbers = document.createElement("p");
      numbers.id = prefix + "-" + spec.key + "-numbers";
      numbers.className = "chart-numbers";
      numbers.textContent = "No samples yet.";
      const legend = document.createElement("ul");
      legend.className = "legend";
      legend.setAttribute("aria-hidden", "true"); // the numbers above say it in words
      for (const s of spec.series) {
        const li = document.createElement("li");
        li.className = s.className;
        li.textContent = s.name;
        legend.append(li);
      }
      const mark = document.createElement("li");
      mark.className = "mark";
      mark.textContent = "Change";
      legend.append(mark);
      cap.append(title, numbers, legend);
      const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.id = prefix + "-" + spec.key;
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", spec.title + ": no samples yet");
      fig.append(cap, svg);
      return fig;
    }));
  }

  // seriesPoints turns samples into [t, value] points; a counter ("rate")
  // becomes its increase per second between samples.
  function seriesPoints(samples, s) {
    if (s.value) return samples.map((x) => [x.t, s.value(x)]);
    const out = [];
    for (let i = 1; i < samples.length; i++) {
      const dt = samples[i].t - samples[i - 1].t;
      if (dt > 0) out.push([samples[i].t, Math.max(0, s.rate(samples[i]) - s.rate(samples[i - 1])) / dt]);
    }
    return out;
  }

  function markLabel(m) {
    if (m.field === "admission_rate") return "rate " + formatNumber(m.to);
    return stateLabel(m.to).toLowerCase();
  }

  function markText(m) {
    const at = new Date(m.t * 1000).toLocaleTimeString();
    if (m.field === "admission_rate") return at + ": admission rate " + formatNumber(m.from) + " → " + formatNumber(m.to) + " per second";
    return at + ": " + stateLabel(m.from) + " → " + stateLabel(m.to);
  }

  // drawCharts draws samples over [from, to] into the charts of prefix, with
  // the numbers as text (now, highest) and as each svg's label; what (e.g.
  // "last 15 minutes") goes in the labels.
  function drawCharts(prefix, samples, marks, from, to, what, gap) {
    const chartMarks = marks.map((m) => ({ t: m.t, label: markLabel(m), className: m.field === "state" ? "state" : "rate" }));
    const rateChanges = marks.filter((m) => m.field === "admission_rate").length;
    for (const spec of chartSpecs) {
      const svg = $(prefix + "-" + spec.key);
      const series = spec.series.map((s) => ({ name: s.name, className: s.className, gap, points: seriesPoints(samples, s) }));
      chart.line(svg, { from, to, series, marks: chartMarks });
      const words = series.map((s) => {
        if (s.points.length === 0) return s.name + ": no samples";
        const now = s.points[s.points.length - 1][1];
        const high = Math.max(...s.points.map((p) => p[1]));
        return s.name + " " + formatNumber(round(now)) + " now, highest " + formatNumber(round(high));
      }).join("; ");
      const text = samples.length ? words : "No samples yet.";
      setText($(prefix + "-" + spec.key + "-numbers"), text);
      svg.setAttribute("aria-label", spec.title + ", " + what + ": " + text +
        (rateChanges ? "; " + rateChanges + " admission-rate change" + (rateChanges > 1 ? "s" : "") + " marked" : ""));
    }
  }

  const round = (v) => Math.round(v * 10) / 10;

  function renderChanges(list, marks) {
    const key = JSON.stringify(marks);
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.replaceChildren(...marks.map((m) => {
      const li = document.createElement("li");
      li.textContent = markText(m);
      return li;
    }));
  }

  function renderLiveCharts() {
    const tl = state.timeline;
    const to = tl.now || Math.floor(Date.now() / 1000);
    drawCharts("live", tl.samples, tl.marks, to - liveWindow, to, "last 15 minutes", 5);
    renderChanges($("live-changes"), tl.marks);
  }

  // --- the report -----------------------------------------------------------------------

  async function openReport(id) {
    state.view = "report";
    summaryGeneration++; // the console's polls stop
    clearTimeout(summaryTimer);
    clearTimeout(sourcesTimer);
    clearTimeout(timelineTimer);
    state.selected = "";
    state.reportCsvStatus = "";
    state.reportCsvError = "";
    state.report = { id, sale: null, summary: null, series: null, error: "" };
    render();
    window.scrollTo(0, 0);
    clearTimeout(reportTimer);
    loadReport(state.report);
  }

  // loadReport reads the report's data, and again every 5 s while it is
  // shown: after a sale ends its held orders still settle, and the last
  // samples (the close itself) come a second later.
  async function loadReport(report) {
    if (state.report !== report || !state.signedIn) return;
    const id = report.id;
    if (!document.hidden) await readReport(report, id);
    if (state.report === report && state.signedIn && !report.missing) {
      reportTimer = setTimeout(() => loadReport(report), 5000);
    }
  }

  async function readReport(report, id) {
    try {
      const path = "/sales/" + encodeURIComponent(id);
      const sale = await admin("GET", path);
      // at most about 600 points a chart, whatever the sale's length
      const started = Date.parse(sale.starts_at) / 1000;
      const step = Math.max(1, Math.ceil((Date.now() / 1000 - started) / 600));
      const [summary, series] = await Promise.all([
        admin("GET", path + "/summary"),
        admin("GET", path + "/timeline?since=0&step=" + step),
      ]);
      Object.assign(report, { sale, summary, series, error: "" });
    } catch (err) {
      report.missing = err.status === 404;
      report.error = report.missing ? "There is no sale " + id + "." : "Could not load the report: " + err.message;
    }
    if (state.report === report) render();
  }

  function renderReport() {
    const r = state.report;
    if (!r) return;
    const { sale, summary: sum, series } = r;
    setText($("report-title"), "Report: " + (sale ? sale.name : r.id));
    $("report-back").href = "#" + encodeURIComponent(r.id);
    setText($("report-error"), r.error);
    show($("report-error"), Boolean(r.error));
    const st = (sum && sum.state) || (sale && sale.state) || "";
    setText($("report-state"), st ? stateLabel(st) : "");
    $("report-state").className = "badge " + st;
    show($("report-state"), Boolean(st));
    show($("report-live"), Boolean(st) && !finalStates.includes(st));
    const samples = (series && series.samples) || [];
    const marks = (series && series.marks) || [];
    const first = samples.length ? samples[0].t : 0;
    const last = samples.length ? samples[samples.length - 1].t : 0;
    setText($("report-meta"), sale
      ? "Sale " + sale.id + " · started " + formatTime(sale.starts_at) +
        (last ? " · last sample " + formatTime(new Date(last * 1000).toISOString()) : "") +
        (sale.ends_at ? " · ends " + formatTime(sale.ends_at) : "")
      : "");
    renderTotals(sale, sum, samples);
    const step = series && samples.length > 1 ? samples[1].t - samples[0].t : 1;
    drawCharts("report", samples, marks, first, Math.max(last, first + 1), "the whole sale",
      Math.max(5, (series ? series.coarse_seconds : 60) * 2, step * 3));
    renderChanges($("report-changes"), marks);
    $("report-csv").disabled = state.busy || !sale;
    setText($("report-csv-status"), state.reportCsvStatus);
    setText($("report-csv-error"), state.reportCsvError);
    show($("report-csv-error"), Boolean(state.reportCsvError));
  }

  function renderTotals(sale, sum, samples) {
    const peak = (f) => (samples.length ? Math.max(...samples.map((s) => s[f])) : null);
    const rows = !sum ? [] : [
      ["Sold", formatNumber(sum.sold) + " of " + formatNumber(sum.stock_total)],
      ["Revenue", sale ? formatMoney(sum.sold * sale.price_cents, sale.currency) : "—"],
      ["Held", formatNumber(sum.held)],
      ["Remaining", formatNumber(sum.remaining)],
      ["Orders (total)", formatNumber(sum.orders_total)],
      ["Admitted (total)", formatNumber(sum.admitted_total)],
      ["Skipped (total)", formatNumber(sum.skipped_total)],
      ["Tickets expired", formatNumber(sum.tickets_expired_total)],
      ["Longest queue", formatNumber(peak("queue_length"))],
      ["Most active tickets", formatNumber(peak("active"))],
      ["Redis and MySQL", sum.consistent ? "Consistent" : "INCONSISTENT"],
    ];
    const key = JSON.stringify(rows);
    const dl = $("report-totals");
    if (dl.dataset.key === key) return;
    dl.dataset.key = key;
    dl.replaceChildren(...rows.map(([k, v]) => {
      const div = document.createElement("div");
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      div.append(dt, dd);
      return div;
    }));
  }

  // downloadCSV fetches the orders with the admin token (a plain link could
  // not send it) and hands the file to the browser as a download.
  async function downloadCSV() {
    const r = state.report;
    if (!r) return;
    state.reportCsvStatus = "Preparing the download…";
    state.reportCsvError = "";
    state.busy = true;
    render();
    try {
      const res = await fetch("/api/v1/admin/sales/" + encodeURIComponent(r.id) + "/orders.csv", {
        headers: { Authorization: "Bearer " + state.token }, cache: "no-store",
      });
      if (!res.ok) {
        let message = "the server answered " + res.status + ".";
        try {
          message = (await res.json()).error.message || message;
        } catch {
          // not our JSON error: keep the status
        }
        throw new Error(message);
      }
      const blob = await res.blob();
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = "orders-" + r.id + ".csv";
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      const lines = (await blob.text()).split("\n").length - 2; // header and the last newline
      const n = Math.max(0, lines);
      state.reportCsvStatus = "Downloaded orders-" + r.id + ".csv (" + formatNumber(n) + (n === 1 ? " order)." : " orders).");
    } catch (err) {
      state.reportCsvStatus = "";
      state.reportCsvError = "Could not download the orders: " + err.message;
    }
    state.busy = false;
    render();
  }

  // --- passes ---------------------------------------------------------------------------

  async function makePass(ev) {
    ev.preventDefault();
    const form = $("pass-form");
    clearFieldErrors(form, "pass-error");
    const user = $("pass-user").value;
    const ttl = $("pass-ttl").value.trim();
    const body = { user_id: user, ttl_seconds: ttl === "" ? undefined : Number(ttl) };
    const id = state.selected;
    state.passStatus = "";
    state.busy = true;
    render();
    try {
      const pass = await admin("POST", "/sales/" + encodeURIComponent(id) + "/passes", body);
      if (state.selected === id) {
        state.passes = [pass].concat(state.passes).slice(0, maxPasses);
        state.passStatus = "Made a pass for " + pass.user_id + ".";
        $("pass-user").value = "";
      }
    } catch (err) {
      fieldError(form, err.message, "pass-error");
    }
    state.busy = false;
    render();
  }

  async function copyPass(pass, area) {
    let ok = false;
    try {
      await navigator.clipboard.writeText(pass.pass);
      ok = true;
    } catch {
      // no clipboard permission (an http page, say): select it for Ctrl+C
      area.focus();
      area.select();
      try {
        ok = document.execCommand("copy");
      } catch {
        ok = false;
      }
    }
    state.passStatus = ok ? "Copied the pass for " + pass.user_id + "." : "Selected the pass for " + pass.user_id + ": press Ctrl+C to copy it.";
    render();
  }

  function renderPasses() {
    $("pass-make").disabled = state.busy;
    setText($("pass-status"), state.passStatus);
    const list = $("passes");
    const key = JSON.stringify(state.passes);
    show(list, state.passes.length > 0);
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.replaceChildren(...state.passes.map((p, i) => {
      const li = document.createElement("li");
      const what = document.createElement("p");
      what.textContent = "Pass for " + p.user_id + ", valid until " + formatTime(p.expires_at) + ". The shopper joins with it as {\"pass\": \"…\"}, or opens ";
      // the waiting page takes #pass= and joins with it
      const link = document.createElement("a");
      link.href = location.origin + "/sales/" + encodeURIComponent(state.selected) + "#pass=" + encodeURIComponent(p.pass);
      link.textContent = "the waiting-page link for " + p.user_id;
      what.append(link, ".");
      const label = document.createElement("label");
      const areaId = "pass-token-" + i;
      label.htmlFor = areaId;
      label.textContent = "Pass token for " + p.user_id;
      const area = document.createElement("textarea");
      area.id = areaId;
      area.readOnly = true;
      area.rows = 3;
      area.value = p.pass;
      area.spellcheck = false;
      const copy = actionButton("Copy pass", "for " + p.user_id, () => copyPass(p, area));
      copy.dataset.key = "copy " + i + " " + p.pass.slice(-16);
      const buttons = document.createElement("p");
      buttons.className = "buttons";
      buttons.append(copy);
      li.append(what, label, area, buttons);
      return li;
    }));
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
    if (!("describedby" in el.dataset)) el.dataset.describedby = el.getAttribute("aria-describedby") || "";
    el.setAttribute("aria-invalid", "true");
    el.setAttribute("aria-describedby", (note.id + " " + el.dataset.describedby).trim());
    if (el.closest("details")) el.closest("details").open = true;
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
      if ("describedby" in el.dataset) {
        // back to the field's own hint, if it had one
        if (el.dataset.describedby) el.setAttribute("aria-describedby", el.dataset.describedby);
        else el.removeAttribute("aria-describedby");
        delete el.dataset.describedby;
      }
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
    clearFieldErrors(form, "create-error");
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
      // next to the field the message names ("stock: must be …"; a taken
      // id's "a sale with this id exists"), else under the form
      if (namedField(form, err.message)) fieldError(form, err.message, "create-error");
      else state.createError = err.message;
    }
    state.busy = false;
    render();
  }

  // --- rendering --------------------------------------------------------------------

  function render() {
    show($("signin-view"), !state.signedIn);
    show($("console-view"), state.signedIn && state.view === "console");
    show($("report-view"), state.signedIn && state.view === "report");
    show($("signout"), state.signedIn);
    setText($("error"), state.error);
    show($("error"), Boolean(state.error));
    $("admin-signin").disabled = state.busy;
    if (!state.signedIn) return;
    if (state.view === "report") {
      renderReport();
      return;
    }

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
    $("report-link").href = "#report/" + encodeURIComponent(state.selected);
    renderLiveCharts();
    renderPasses();

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
    $("rate-slider").disabled = final;

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
  $("rate-slider").addEventListener("input", sliderMoved);
  $("rate").addEventListener("input", rateTyped);
  $("pass-form").addEventListener("submit", makePass);
  $("report-csv").addEventListener("click", () => {
    if (!state.busy) downloadCSV();
  });
  window.addEventListener("hashchange", route);
  buildCharts($("live-charts"), "live");
  buildCharts($("report-charts"), "report");

  if (state.token) {
    state.busy = true; // checking the stored token
    tryToken(state.token);
  } else {
    render();
  }
})();
