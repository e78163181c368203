/* Console behaviour: CSRF header for htmx, toasts, deadline countdowns, the review player with its
   transcript, draft evidence highlighting, autosave forms. No inline scripts (CSP script-src 'self'). */
(function () {
  "use strict";

  function cookie(name) {
    var m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : "";
  }
  function csrfToken() {
    var meta = document.querySelector("input[name=csrf_token]");
    return cookie("hotline_csrf") || (meta ? meta.value : "");
  }
  window.hotlineCsrf = csrfToken;

  document.addEventListener("htmx:configRequest", function (e) {
    e.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  var toastTimer = null;
  function toast(msg) {
    var el = document.getElementById("toast");
    if (!el) return;
    el.textContent = msg;
    el.classList.add("show");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { el.classList.remove("show"); }, 2600);
  }
  window.hotlineToast = toast;
  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr;
    var msg = "操作失败（" + xhr.status + "）";
    try { var j = JSON.parse(xhr.responseText); if (j && j.detail) msg = typeof j.detail === "string" ? j.detail : msg; } catch (err) { /* html */ }
    toast(msg);
  });
  document.addEventListener("htmx:sendError", function () { toast("网络连接中断，请稍后重试"); });
  document.body && document.body.addEventListener("toast", function (e) { toast(e.detail.value || e.detail); });

  /* ------------------------------------------------------------ deadline countdowns */
  function fmtLeft(ms) {
    var neg = ms < 0, s = Math.abs(ms) / 1000;
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    var txt = d > 0 ? d + " 天 " + h + " 小时" : (h > 0 ? h + " 小时 " + m + " 分" : m + " 分钟");
    return neg ? "已逾期 " + txt : "剩余 " + txt;
  }
  function tickCountdowns() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-deadline"));
      if (isNaN(due)) return;
      if (el.getAttribute("data-done") === "1") return;
      var left = due - now;
      el.textContent = fmtLeft(left);
      el.classList.toggle("overdue", left < 0);
      el.classList.toggle("soon", left >= 0 && left < 4 * 3600 * 1000);
      var row = el.closest("tr");
      if (row) row.classList.toggle("row-overdue", left < 0);
    });
  }

  /* ------------------------------------------------------------ review player */
  function initPlayer(root) {
    var audio = root.querySelector("audio");
    var segs = Array.prototype.slice.call(root.querySelectorAll(".seg"));
    if (!audio) return;
    var current = null;
    segs.forEach(function (btn) {
      btn.addEventListener("click", function () {
        var t = parseFloat(btn.getAttribute("data-start"));
        if (isNaN(t)) return;
        audio.currentTime = t;
        var p = audio.play();
        if (p && p.catch) p.catch(function () { /* autoplay refused: the position is set anyway */ });
      });
    });
    function highlight() {
      var t = audio.currentTime, found = null;
      for (var i = 0; i < segs.length; i++) {
        var s = parseFloat(segs[i].getAttribute("data-start")), e = parseFloat(segs[i].getAttribute("data-end"));
        if (t >= s && t < e) { found = segs[i]; break; }
      }
      if (found === current) return;
      if (current) { current.classList.remove("current"); current.removeAttribute("aria-current"); }
      current = found;
      if (found) {
        found.classList.add("current");
        found.setAttribute("aria-current", "true");
        var box = found.closest(".transcript");
        if (box && !box.matches(":hover")) {
          var top = found.offsetTop - box.offsetTop - box.clientHeight / 3;
          box.scrollTo({ top: top, behavior: "smooth" });
        }
      }
    }
    audio.addEventListener("timeupdate", highlight);
    audio.addEventListener("seeked", highlight);
    ["pause", "ended"].forEach(function (ev) {
      audio.addEventListener(ev, function () {
        setTimeout(function () { document.body.dispatchEvent(new CustomEvent("refresh-status")); }, 400);
      });
    });
    root.addEventListener("keydown", function (e) {
      if (e.target.matches("input, textarea, select")) return;
      if (e.key === " " && e.target === document.body) { e.preventDefault(); audio.paused ? audio.play() : audio.pause(); }
    });
  }

  /* ------------------------------------------------------------ draft evidence */
  function initEvidence(root) {
    var text = root.querySelector(".evidence-text");
    if (!text) return;
    function focusField(name, on) {
      text.querySelectorAll("mark.ev").forEach(function (m) {
        var fields = (m.getAttribute("data-fields") || "").split(" ");
        m.classList.toggle("focus", on && fields.indexOf(name) >= 0);
      });
      if (on) {
        var first = text.querySelector("mark.ev.focus");
        if (first) text.scrollTo({ top: first.offsetTop - text.offsetTop - 40, behavior: "smooth" });
      }
    }
    root.querySelectorAll("[data-field]").forEach(function (el) {
      var name = el.getAttribute("data-field");
      el.addEventListener("focusin", function () { focusField(name, true); });
      el.addEventListener("focusout", function () { focusField(name, false); });
      el.addEventListener("mouseenter", function () { focusField(name, true); });
      el.addEventListener("mouseleave", function () { if (!el.contains(document.activeElement)) focusField(name, false); });
    });
  }

  /* subjects editor: add / remove rows */
  function initSubjects(root) {
    root.querySelectorAll("[data-add-subject]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var box = document.getElementById(btn.getAttribute("data-add-subject"));
        var tpl = document.getElementById("subject-row-template");
        if (!box || !tpl) return;
        var n = box.querySelectorAll(".subject-row").length;
        var html = tpl.innerHTML.replace(/__N__/g, String(n)).replace(/__M__/g, String(n + 1));
        box.insertAdjacentHTML("beforeend", html);
        var first = box.lastElementChild.querySelector("input");
        if (first) first.focus();
      });
    });
    root.addEventListener("click", function (e) {
      var rm = e.target.closest("[data-remove-row]");
      if (rm) { var row = rm.closest(".subject-row"); if (row) row.remove(); }
    });
  }

  /* ------------------------------------------------------------ charts (Chart.js) */
  var PALETTE = ["#1d4ed8", "#c2410c", "#047857", "#7c3aed", "#b91c1c", "#0e7490", "#a16207", "#be185d", "#4d7c0f", "#475569"];
  function initCharts(root) {
    if (typeof window.Chart === "undefined") return;
    window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    window.Chart.defaults.color = "#3a4354";
    window.Chart.defaults.animation = false;
    root.querySelectorAll("canvas[data-chart]").forEach(function (cv) {
      if (cv._chart) return;
      var spec;
      try { spec = JSON.parse(document.getElementById(cv.getAttribute("data-chart")).textContent); } catch (e) { return; }
      var datasets = spec.datasets.map(function (ds, i) {
        var color = ds.color || PALETTE[i % PALETTE.length];
        var per = spec.type === "doughnut" || spec.type === "pie";
        return {
          label: ds.label, data: ds.data, borderWidth: spec.type === "line" ? 2 : 1, tension: 0, pointRadius: 2,
          backgroundColor: per ? spec.labels.map(function (_, j) { return PALETTE[j % PALETTE.length]; }) : color,
          borderColor: per ? "#fff" : color, stack: spec.stacked ? "s" : undefined
        };
      });
      cv._chart = new window.Chart(cv, {
        type: spec.type, data: { labels: spec.labels, datasets: datasets },
        options: {
          responsive: true, maintainAspectRatio: false, indexAxis: spec.horizontal ? "y" : "x",
          plugins: { legend: { display: datasets.length > 1 || spec.type === "doughnut", position: "bottom" },
                     title: { display: false } },
          scales: (spec.type === "doughnut" || spec.type === "pie") ? {} : {
            x: { stacked: !!spec.stacked, ticks: { autoSkip: true, maxRotation: 0 } },
            y: { stacked: !!spec.stacked, beginAtZero: true, ticks: { precision: 0 } }
          }
        }
      });
      cv.setAttribute("data-rendered", "1");
    });
  }
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("canvas[data-chart]").forEach(function (cv) { if (cv._chart) cv._chart.resize(); });
  });


  /* ------------------------------------------------------------ operator live panel (SSE) */
  function initLive(root) {
    var box = root.querySelector ? root.querySelector("[data-live-url]") : null;
    if (!box || !box.getAttribute("data-live-url") || typeof EventSource === "undefined") return;
    var stateEl = document.getElementById("live-state");
    var callBox = document.getElementById("live-call");
    var tr = document.getElementById("live-transcript");
    var current = null;
    function setState(label, cls) {
      stateEl.textContent = label;
      stateEl.className = "live-state " + (cls || "");
      stateEl.setAttribute("data-state", cls || "waiting");
    }
    function kindOf(type) {
      type = String(type || "").toLowerCase();
      if (/ring/.test(type)) return "ringing";
      if (/fail/.test(type)) return "missed";
      if (/answer|bridge|connect/.test(type)) return "on-call";
      if (/hangup|ended|end|fail|abandon/.test(type)) return "ended";
      if (/transcript|partial|asr|text/.test(type)) return "text";
      return null;
    }
    function loadCall(id) {
      if (!id || current === id) return;
      current = id;
      tr.innerHTML = "";
      var p = htmx.ajax("GET", "/op/live/" + encodeURIComponent(id), { target: "#live-call", swap: "innerHTML" });
      if (p && p.then) p.then(function () { if (!callBox.querySelector("[data-call-id]")) current = null; },
                              function () { current = null; });
    }
    /* the routing changes this operator's state by itself (on call, wrap-up, available again):
       reload the state card after such an event, once the worker has written it */
    var stateTimer = null;
    function refreshStateCard(delayMs) {
      if (!document.getElementById("op-state")) return;
      clearTimeout(stateTimer);
      stateTimer = setTimeout(function () {
        htmx.ajax("GET", "/op/state", { target: "#op-state", swap: "outerHTML" });
      }, delayMs);
    }
    var wrapTimer = null, wrapAt = null;
    function armWrapUp() {  /* wrap-up ends without an event: reload the card when it is over */
      var card = document.getElementById("op-state");
      var at = card ? card.getAttribute("data-refresh-at") : null;
      if (at === wrapAt) return;
      wrapAt = at;
      clearTimeout(wrapTimer);
      if (!at) return;
      var ms = Date.parse(at) - Date.now();
      if (ms > -5000 && ms < 86400000) {
        wrapTimer = setTimeout(function () { wrapAt = null; refreshStateCard(0); }, Math.max(ms, 0) + 500);
      }
    }
    document.body.addEventListener("htmx:afterSettle", armWrapUp);
    armWrapUp();
    function handle(type, data) {
      var k = kindOf(data.type || data.event || type);
      if (k && k !== "text") refreshStateCard(k === "ended" || k === "missed" ? 1200 : 400);
      var id = data.call_uuid || data.call_id || data.id;
      if (k === "ringing") { setState("来电振铃中", "ringing"); }
      else if (k === "on-call") {
        setState("通话中", "on-call");
        /* the call becomes the operator's (calls.operator_id) when it is bridged, not when they answer
           (the "12388 来电" announcement comes in between): load its part only then */
        if (id && /bridge|connect/.test(String(data.type || data.event || type))) loadCall(id);
      }
      else if (k === "missed") { if (!id || id === current) setState("来电未接通", ""); }
      else if (k === "ended") { if (!id || id === current) setState("通话已结束（请完成登记）", ""); }
      else if (k === "text") {
        var d = data.data || {};  /* live events: {type, call_id, data: {text, start, end, speaker}} */
        var txt = data.text || d.text || data.partial || "";
        if (!txt) return;
        var who = (data.speaker || d.speaker) === "operator" ? "接线员" : "来电人";
        var line = document.createElement("div");
        line.textContent = who + "：" + txt;
        if (data.type === "partial" || data.final === false || d.final === false || data.partial) {
          var last = tr.querySelector(".partial");
          if (last) last.remove();
          line.className = "partial muted";
        } else {
          var p = tr.querySelector(".partial"); if (p) p.remove();
        }
        tr.appendChild(line);
        tr.scrollTop = tr.scrollHeight;
      }
    }
    var es = new EventSource(box.getAttribute("data-live-url"), { withCredentials: true });
    function onEvent(e) {
      var data = {};
      try { data = JSON.parse(e.data || "{}"); } catch (err) { return; }
      handle(e.type, data);
    }
    es.onmessage = onEvent;
    ["ringing", "operator_ringing", "operator_failed", "answered", "operator_answered", "bridged", "call_bridged", "hangup",
     "operator_hangup", "call_ended", "transcript", "partial", "live"].forEach(function (n) { es.addEventListener(n, onEvent); });
    es.onopen = function () { if (!current) setState("等待来电", "waiting"); };
    es.onerror = function () { if (!current) setState("实时连接中断，正在重连…", ""); };
  }

  /* ------------------------------------------------------------ misc */
  function initConfirm(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) { if (!window.confirm(f.getAttribute("data-confirm"))) e.preventDefault(); });
    });
  }
  function initPrint(root) {
    root.querySelectorAll("[data-print]").forEach(function (b) { b.addEventListener("click", function () { window.print(); }); });
  }
  function initAutosubmit(root) {
    root.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
      s.addEventListener("change", function () { if (s.form) s.form.requestSubmit ? s.form.requestSubmit() : s.form.submit(); });
    });
  }

  function init(root) {
    initPlayer(root.querySelector ? (root.querySelector("[data-player]") || root) : document);
    initEvidence(root);
    initSubjects(root);
    initCharts(root);
    initConfirm(root);
    initPrint(root);
    initAutosubmit(root);
    initLive(root);
    tickCountdowns();
  }
  document.addEventListener("DOMContentLoaded", function () {
    init(document);
    setInterval(tickCountdowns, 30000);
  });
  document.addEventListener("htmx:afterSettle", function (e) { initCharts(e.target); tickCountdowns(); });
})();
