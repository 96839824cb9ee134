// index.js: the list of sales on /.
"use strict";

(() => {
  const { $, request, formatMoney, formatNumber, formatTime, stateLabel, setText, show } = api;

  const state = { sales: null, loading: true, error: "" };

  async function load() {
    state.loading = true;
    state.error = "";
    render();
    try {
      const res = await request("GET", "/api/v1/sales");
      state.sales = Array.isArray(res.sales) ? res.sales : [];
    } catch (err) {
      state.error = "Could not load the sales: " + err.message;
    }
    state.loading = false;
    render();
  }

  function render() {
    show($("loading"), state.loading);
    setText($("error"), state.error);
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
    parts.push(formatNumber(sale.stock_remaining) + " of " + formatNumber(sale.stock_total) + " left");
    if (sale.state === "upcoming" && sale.starts_at) parts.push("starts " + formatTime(sale.starts_at));
    facts.textContent = parts.filter(Boolean).join(" · ");

    li.append(h, badge, facts);
    return li;
  }

  $("retry").addEventListener("click", load);
  load();
})();
