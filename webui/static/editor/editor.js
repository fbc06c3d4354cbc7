// The methodology editor: a textarea under a highlighted copy of its text, line numbers
// with diagnostic markers, live diagnostics (a debounced POST to /editor/check), and the
// try-it panel (POST /editor/try). The page works without it: the form saves, the server
// shows the diagnostics.
(function () {
  "use strict";
  var root = document.getElementById("editor");
  if (!root || !window.TanpuLexer) { return; }
  var lexer = window.TanpuLexer;
  var textarea = document.getElementById("source");
  var layer = root.querySelector(".tp-highlight code");
  var highlightPre = root.querySelector(".tp-highlight");
  var gutter = root.querySelector(".tp-gutter");
  var statusBox = document.getElementById("check-status");
  var list = document.getElementById("diagnostics");
  var examplesBox = document.getElementById("examples");
  var submissionBox = document.getElementById("submission");
  var checkUrl = root.getAttribute("data-check-url");
  var tryUrl = root.getAttribute("data-try-url");
  var methodology = root.getAttribute("data-methodology") || "";
  var versionInput = document.getElementById("version-number");
  var i18n = JSON.parse(document.getElementById("editor-strings").textContent || "{}");
  var diagnostics = [];
  var timer = null, inflight = null, generation = 0;

  root.classList.add("enhanced");

  // `name` in a message is code: shown as code, the rest escaped as text
  function ticks(s) { return lexer.escapeHtml(s || "").replace(/`([^`\n]+)`/g, "<code>$1</code>"); }

  function t(key) { return i18n[key] || key.replace(/^status:/, ""); }

  // ------------------------------------------------------------ rendering
  function marksByLine() {
    var out = {};
    diagnostics.forEach(function (d, index) {
      if (!d.line) { return; }
      var endLine = d.end_line || d.line;
      for (var ln = d.line; ln <= endLine; ln++) {
        var start = ln === d.line ? Math.max((d.column || 1) - 1, 0) : 0;
        var end = ln === endLine && d.end_column ? d.end_column - 1 : 1e9;
        if (end <= start) { end = start + 1; }
        (out[ln] = out[ln] || []).push({start: start, end: end,
          cls: "diag diag-" + (d.severity === "error" ? "error" : "warning"), index: index});
      }
    });
    return out;
  }

  function render() {
    var lines = textarea.value.split("\n");
    var marks = marksByLine();
    var html = [], numbers = [];
    for (var i = 0; i < lines.length; i++) {
      var ln = i + 1, text = lines[i].replace(/\r$/, "");
      html.push(lexer.lineHtml(text, marks[ln]));
      var here = (marks[ln] || []);
      var cls = "ln", title = "";
      if (here.length) {
        var severe = here.some(function (m) { return m.cls.indexOf("diag-error") >= 0; });
        cls += severe ? " has-error" : " has-warning";
        title = here.map(function (m) {
          var d = diagnostics[m.index];
          return d.code + ": " + d.message;
        }).filter(function (v, k, a) { return a.indexOf(v) === k; }).join("\n");
      }
      numbers.push('<span class="' + cls + '" data-line="' + ln + '"' +
        (title ? ' title="' + lexer.escapeHtml(title) + '"' : "") + ">" + ln + "</span>");
    }
    // a final newline needs a line of its own in the <pre> to keep the heights equal
    layer.innerHTML = html.join("\n") + "\n";
    gutter.innerHTML = numbers.join("");
    syncScroll();
  }

  function syncScroll() {
    highlightPre.scrollTop = textarea.scrollTop;
    highlightPre.scrollLeft = textarea.scrollLeft;
    gutter.scrollTop = textarea.scrollTop;
  }

  function caretBlock(d) {
    var lines = textarea.value.split("\n");
    var text = (lines[d.line - 1] || "").replace(/\r$/, "").replace(/\t/g, " ");
    var start = Math.max((d.column || 1) - 1, 0);
    var end = d.end_line === d.line && d.end_column ? Math.max(d.end_column - 1, start + 1)
      : Math.max(text.length, start + 1);
    function width(s) {  // East Asian wide characters take two cells
      var w = 0;
      for (var k = 0; k < s.length; k++) {
        w += /[\u1100-\u115F\u2E80-\uA4CF\uAC00-\uD7A3\uF900-\uFAFF\uFE30-\uFE4F\uFF00-\uFF60\uFFE0-\uFFE6]/.test(s[k]) ? 2 : 1;
      }
      return w;
    }
    // a long line: a window around the columns, so the carets stay in view
    if (width(text.slice(0, start)) > 32) {
      var cut = start - 16;
      text = "…" + text.slice(cut);
      start -= cut - 1;
      end -= cut - 1;
    }
    if (text.length > end + 24) { text = text.slice(0, end + 16) + "…"; }
    var pad = new Array(width(text.slice(0, start)) + 1).join(" ");
    var carets = new Array(Math.max(width(text.slice(start, end)), 1) + 1).join("^");
    var gut = String(d.line);
    return gut + " | " + text + "\n" + new Array(gut.length + 1).join(" ") + " | " + pad +
      carets + (d.label ? " " + d.label : "");
  }

  function renderList() {
    list.innerHTML = "";
    var none = document.getElementById("no-diagnostics");
    if (none) { none.hidden = diagnostics.length > 0; }
    diagnostics.forEach(function (d) {
      var li = document.createElement("li");
      li.className = "diagnostic " + (d.severity === "error" ? "error" : "warning");
      li.setAttribute("data-line", d.line || "");
      li.setAttribute("data-column", d.column || "");
      li.setAttribute("data-code", d.code);
      li.tabIndex = 0;
      var head = document.createElement("div");
      head.className = "head";
      head.innerHTML = '<span class="where">' + (d.line ? t("line") + " " + d.line + ":" + d.column : "") +
        '</span> <span class="code">' + lexer.escapeHtml(d.code) + '</span> <span class="message">' +
        ticks(d.message) + "</span>";
      li.appendChild(head);
      if (d.line) {
        var pre = document.createElement("pre");
        pre.className = "caret";
        pre.textContent = caretBlock(d);
        li.appendChild(pre);
      }
      if (d.help) {
        var help = document.createElement("p");
        help.className = "help";
        help.innerHTML = lexer.escapeHtml(t("help")) + ": " + ticks(d.help);
        li.appendChild(help);
      }
      li.addEventListener("click", function () { jumpTo(d.line, d.column); });
      li.addEventListener("keydown", function (e) { if (e.key === "Enter") { jumpTo(d.line, d.column); } });
      list.appendChild(li);
    });
  }

  function renderStatus(result) {
    statusBox.className = "check-status " + (result.ok ? (result.warnings ? "warn" : "ok") : "bad");
    statusBox.setAttribute("data-ok", result.ok ? "true" : "false");
    statusBox.querySelector(".summary").textContent = result.ok
      ? t("compiles") + (result.warnings ? " — " + result.warnings + " " + t("warnings") : "")
      : result.errors + " " + t("errors") + (result.warnings ? ", " + result.warnings + " " + t("warnings") : "");
    var hash = statusBox.querySelector(".hash");
    if (hash) { hash.textContent = result.content_hash || ""; }
    if (examplesBox) {
      examplesBox.innerHTML = "";
      (result.examples || []).forEach(function (ex) {
        var li = document.createElement("li");
        li.className = ex.passed ? "pass" : "fail";
        li.setAttribute("data-line", ex.line || "");
        li.innerHTML = '<span class="badge ' + (ex.passed ? "ok" : "fail") + '">' +
          (ex.passed ? t("passed") : t("failed")) + "</span> " + lexer.escapeHtml(ex.title) +
          (ex.failures && ex.failures.length ? '<ul class="failures">' + ex.failures.map(function (f) {
            return "<li>" + lexer.escapeHtml(f) + "</li>"; }).join("") + "</ul>" : "");
        if (ex.line) { li.addEventListener("click", function () { jumpTo(ex.line, 1); }); }
        examplesBox.appendChild(li);
      });
      if (!(result.examples || []).length) {
        examplesBox.innerHTML = '<li class="muted">' + lexer.escapeHtml(result.ok ? t("no examples") : t("examples run once it compiles")) + "</li>";
      }
    }
    if (submissionBox && result.submission) {
      var s = result.submission;
      submissionBox.setAttribute("data-submittable", s.submittable ? "true" : "false");
      submissionBox.querySelector(".verdict").textContent = s.submittable ? t("can be submitted") : t("cannot be submitted yet");
      var ul = submissionBox.querySelector("ul.problems");
      ul.innerHTML = s.problems.map(function (p) { return "<li>" + lexer.escapeHtml(p) + "</li>"; }).join("");
    }
  }

  function jumpTo(line, column) {
    if (!line) { return; }
    var lines = textarea.value.split("\n");
    var offset = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) { offset += lines[i].length + 1; }
    offset += Math.max((column || 1) - 1, 0);
    textarea.focus();
    textarea.setSelectionRange(offset, offset);
    var lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 20;
    textarea.scrollTop = Math.max(0, (line - 4) * lineHeight);
    syncScroll();
  }

  // ------------------------------------------------------------ checking
  function check() {
    var mine = ++generation;
    if (inflight && inflight.abort) { inflight.abort(); }
    var controller = window.AbortController ? new AbortController() : null;
    inflight = controller;
    statusBox.classList.add("checking");
    window.tanpuFetch(checkUrl, {
      method: "POST",
      headers: {"Content-Type": "application/json", "Accept": "application/json"},
      body: JSON.stringify({source: textarea.value, methodology: methodology,
                            version: versionInput ? versionInput.value : ""}),
      signal: controller ? controller.signal : undefined
    }).then(function (response) {
      return response.json().then(function (body) { return {status: response.status, body: body}; });
    }).then(function (answer) {
      if (mine !== generation) { return; }
      statusBox.classList.remove("checking");
      if (answer.status !== 200) {
        statusBox.querySelector(".summary").textContent = answer.body.message || t("check failed");
        return;
      }
      diagnostics = answer.body.diagnostics || [];
      render();
      renderList();
      renderStatus(answer.body);
      root.dispatchEvent(new CustomEvent("tanpu:checked", {detail: answer.body}));
    }).catch(function (error) {
      if (error && error.name === "AbortError") { return; }
      statusBox.classList.remove("checking");
      statusBox.querySelector(".summary").textContent = t("check failed");
    });
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(check, 350);
  }

  // ------------------------------------------------------------ editing
  textarea.addEventListener("input", function () { render(); schedule(); });
  textarea.addEventListener("scroll", syncScroll);
  if (versionInput) { versionInput.addEventListener("input", schedule); }
  textarea.addEventListener("keydown", function (e) {
    if (e.key === "Tab" && !e.shiftKey && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      var s = textarea.selectionStart, end = textarea.selectionEnd;
      textarea.setRangeText("  ", s, end, "end");
      render(); schedule();
    } else if ((e.ctrlKey || e.metaKey) && (e.key === "s" || e.key === "S")) {
      e.preventDefault();
      var form = document.getElementById("editor-form");
      if (form) { if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); } }
    }
  });
  gutter.addEventListener("click", function (e) {
    var line = e.target.getAttribute && e.target.getAttribute("data-line");
    if (line) { jumpTo(parseInt(line, 10), 1); }
  });
  list.querySelectorAll("li.diagnostic").forEach(function (li) {
    li.addEventListener("click", function () {
      jumpTo(parseInt(li.getAttribute("data-line"), 10), parseInt(li.getAttribute("data-column"), 10));
    });
  });

  try {
    diagnostics = JSON.parse(document.getElementById("initial-diagnostics").textContent || "[]");
  } catch (e) { diagnostics = []; }
  render();

  // ------------------------------------------------------------ try it
  var tryButton = document.getElementById("try-run");
  var tryResults = document.getElementById("try-results");
  var recordsBox = document.getElementById("try-records");
  var fileInput = document.getElementById("try-file");
  var explainBox = document.getElementById("try-explain");

  function money(mg) { return (mg / 1000).toLocaleString(undefined, {maximumFractionDigits: 3}) + " g"; }

  function renderResults(body) {
    tryResults.innerHTML = "";
    if (!body.ok) {
      var p = document.createElement("p");
      p.className = "notice bad";
      p.textContent = body.message || body.error || t("cannot evaluate");
      tryResults.appendChild(p);
      return;
    }
    var totals = body.totals;
    var summary = document.createElement("p");
    summary.className = "try-summary";
    summary.setAttribute("data-records", totals.records);
    summary.setAttribute("data-reduction-mg", totals.reduction_mg);
    summary.textContent = totals.records + " " + t("records") + " · " + t("total reduction") + " " +
      money(totals.reduction_mg) + " · " + totals.points + " " + t("points") + " · " +
      Object.keys(totals.by_status).map(function (k) { return t("status:" + k) + " " + totals.by_status[k]; }).join(", ");
    tryResults.appendChild(summary);
    var table = document.createElement("table");
    table.className = "list try-table";
    table.innerHTML = "<thead><tr><th>" + t("row") + "</th><th>id</th><th>" + t("status") +
      '</th><th class="num">' + t("reduction") + '</th><th class="num">' + t("points") +
      "</th><th>" + t("explanation") + "</th></tr></thead>";
    var tbody = document.createElement("tbody");
    body.results.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.className = "result status-" + r.status;
      tr.setAttribute("data-id", r.id || "");
      tr.setAttribute("data-status", r.status);
      var why = (r.explanation_text || []).join("\n");
      tr.innerHTML = "<td>" + (r.row || "") + "</td><td class=\"mono\">" + lexer.escapeHtml(r.id || "") +
        '</td><td><span class="status">' + lexer.escapeHtml(t("status:" + r.status)) + "</span>" +
        (r.code ? ' <span class="tag">' + lexer.escapeHtml(r.code) + "</span>" : "") +
        (r.message ? '<div class="small muted">' + lexer.escapeHtml(r.message) + "</div>" : "") +
        (r.cap_note ? '<div class="small cap-note">' + ticks(r.cap_note) + "</div>" : "") +
        '</td><td class="num">' + money(r.reduction_mg) + '</td><td class="num">' + r.points +
        (r.bonus ? " + " + r.bonus : "") + "</td><td>" +
        (why ? "<details><summary>" + t("why") + '</summary><pre class="explanation">' +
          lexer.escapeHtml(why) + "</pre></details>" : "") + "</td>";
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
    var wrap = document.createElement("div");
    wrap.className = "scroll";
    wrap.appendChild(table);
    tryResults.appendChild(wrap);
    if (body.truncated) {
      var more = document.createElement("p");
      more.className = "muted small";
      more.textContent = t("only the first results are shown");
      tryResults.appendChild(more);
    }
  }

  if (tryButton) {
    tryButton.addEventListener("click", function (e) {
      e.preventDefault();
      var options = {method: "POST", headers: {"Accept": "application/json"}};
      if (fileInput && fileInput.files && fileInput.files.length) {
        var data = new FormData();
        data.append("source", textarea.value);
        data.append("file", fileInput.files[0]);
        data.append("explain", explainBox && !explainBox.checked ? "0" : "1");
        options.body = data;
      } else {
        options.headers["Content-Type"] = "application/json";
        options.body = JSON.stringify({source: textarea.value, records: recordsBox.value,
                                       explain: !explainBox || explainBox.checked});
      }
      tryButton.disabled = true;
      tryResults.setAttribute("aria-busy", "true");
      window.tanpuFetch(tryUrl, options).then(function (response) {
        return response.json();
      }).then(function (body) {
        renderResults(body);
      }).catch(function () {
        renderResults({ok: false, message: t("cannot evaluate")});
      }).then(function () {
        tryButton.disabled = false;
        tryResults.removeAttribute("aria-busy");
      });
    });
  }
})();
