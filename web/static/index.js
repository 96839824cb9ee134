// index.js: the list of sales on /, in the shopper's language.
"use strict";

(() => {
  const { $, request, formatMoney, formatTime, stateLabel, setText, show, t, has, translate, prefs, sleep } = api;

  const state = { sales: null, loading: true, error: null, ready: false };

  async function load() {
    state.loading = true;
    state.error = null;
    render();
    try {
      const res = await request("GET", "/api/v1/sales");
      state.sales = Array.isArray(res.sales) ? res.sales : [];
    } catch (err) {
      state.error = err;
    }
    state.loading = false;
    render();
  }

  const languages = () => Array.from($("lang").options, (o) => o.value);

  // useLanguage loads lang and redraws the page in it; false when its
  // catalogue cannot be had (the page keeps the one it has).
  async function useLanguage(lang) {
    try {
      await api.loadLanguage(lang);
    } catch {
      $("lang").value = api.language();
      return false;
    }
    state.ready = true;
    translate(document);
    $("lang").value = lang;
    render();
    return true;
  }

  function errorText(err) {
    const reason = has("error." + err.code) ? t("error." + err.code) : err.status === 0 ? t("error.network") : err.message;
    return t("index.error", { reason });
  }

  function render() {
    if (!state.ready) return;
    setText($("brand-title"), has("title") ? t("title") : "flashsale");
    document.title = t("index.title") + (has("title") ? " · " + t("title") : "");
    const notice = has("notice") ? t("notice") : "";
    setText($("theme-notice"), notice);
    show($("theme-notice"), Boolean(notice));
    show($("loading"), state.loading);
    setText($("error"), state.error ? errorText(state.error) : "");
    show($("error"), Boolean(state.error));
    show($("retry"), Boolean(state.error));
    const sales = state.sales || [];
    show($("empty"), !state.loading && !state.error && sales.length === 0);
    $("sales").replaceChildren(...sales.map(card));
  }

  function card(sale) {
    const li = document.createElement("li");
    li.className = "card";

    const h = document.createElement("h2");
    const a = document.createElement("a");
    a.href = "/sales/" + encodeURIComponent(sale.id);
    a.textContent = sale.name || sale.id;
    h.append(a);

    const badge = document.createElement("span");
    badge.className = "badge " + (sale.state || "");
    badge.textContent = stateLabel(sale.state);

    const facts = document.createElement("p");
    facts.className = "muted";
    const parts = [formatMoney(sale.price_cents, sale.currency)];
    parts.push(t("sale.left", { left: sale.stock_remaining, total: sale.stock_total }));
    if (sale.state === "upcoming" && sale.starts_at) parts.push(t("index.starts", { time: formatTime(sale.starts_at) }));
    facts.textContent = parts.filter(Boolean).join(" · ");

    li.append(h, badge, facts);
    return li;
  }

  async function start() {
    $("retry").addEventListener("click", load);
    $("lang").addEventListener("change", () => {
      prefs.set("fs_lang", $("lang").value);
      useLanguage($("lang").value);
    });
    const lang = api.chooseLanguage(languages());
    const sales = load();
    while (!(await useLanguage(lang)) && !(await useLanguage("en"))) await sleep(5000);
    await sales;
  }

  start();
})();
